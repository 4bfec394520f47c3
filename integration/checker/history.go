package checker

import (
	"slices"
	"sync"
	"time"
)

// OpKind says what an operation did.
type OpKind uint8

const (
	// OpInsert is Store.InsertOne of a document with a fresh unique _id.
	OpInsert OpKind = iota + 1
	// OpUpdate is Store.UpdateCounter: $inc on a counter, returning the value after.
	OpUpdate
	// OpRead is Store.ReadCounter: a primary read of a counter.
	OpRead
)

// String implements fmt.Stringer.
func (k OpKind) String() string {
	switch k {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpRead:
		return "read"
	}
	return "unknown"
}

// Outcome is what the client knows about an operation after it returned.
type Outcome uint8

const (
	// Acked: the operation returned no error; a write must be durable.
	Acked Outcome = iota + 1
	// Failed: the error proves the operation was not applied (see
	// DefiniteFailure); a write must be absent.
	Failed
	// Indeterminate: the error leaves the effect unknown (network error,
	// timeout, not-primary after a retry, write concern error...); a write
	// may be present or absent, never twice.
	Indeterminate
)

// String implements fmt.Stringer.
func (o Outcome) String() string {
	switch o {
	case Acked:
		return "acked"
	case Failed:
		return "failed"
	case Indeterminate:
		return "indeterminate"
	}
	return "unknown"
}

// Op is one recorded operation. Client names the worker ("w3" for writer 3,
// "r1" for reader 1); each client runs its operations one after another, so
// a client's operations are recorded in the order it issued them.
type Op struct {
	Client  string
	Kind    OpKind
	ID      string // the _id inserted, or the counter's _id
	Inc     int64  // OpUpdate: the increment sent
	Value   int64  // OpUpdate/OpRead, when Acked: the value returned (0 when not found)
	Found   bool   // OpRead, when Acked: whether the counter existed
	Start   time.Time
	End     time.Time
	Outcome Outcome
	Err     error  // nil when Acked
	ErrKey  string // ErrorKey(Err): the code ("10107 NotWritablePrimary") or class ("timeout")
}

// History is the record of one Run: every operation with its outcome and
// timestamps. It is safe for concurrent use while Run records into it and
// is not modified after Run returns; its accessors return copies.
type History struct {
	mu       sync.Mutex
	prefix   string
	counters []string
	ops      []Op
	started  time.Time
	finished time.Time
}

func newHistory(prefix string, counters []string) *History {
	return &History{prefix: prefix, counters: counters}
}

func (h *History) record(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of every recorded operation, in the order recorded.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Len returns the number of recorded operations.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Counters returns the _ids of the counter documents the readers used.
func (h *History) Counters() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.counters)
}

// KeyPrefix returns the prefix of every _id the run wrote.
func (h *History) KeyPrefix() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.prefix
}

// Span returns when Run started and when its last worker finished.
func (h *History) Span() (started, finished time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started, h.finished
}
