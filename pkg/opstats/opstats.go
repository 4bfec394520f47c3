// Package opstats owns a node's load figures for the logs: a Recorder that
// counts operations by type and keeps their latency in HDR histograms over
// a window, and a Reporter that, every interval, turns the window into one
// structured log line (msg "load": ops/s, p50 and p99 by type) together
// with the node's own gauges (replication state and lag, health, ...), so
// a user watching `psdb cluster logs` sees every node's load and health.
//
// The Recorder is on the hot path of every request: Record takes no global
// lock (the set of types is a copy-on-write map read atomically; each type
// has its own small mutex around a histogram) and never allocates once a
// type has been seen. The Reporter is the only reader: each report swaps
// every type's histogram for a fresh one, so a window never counts an
// operation twice or loses one.
//
// This package must never keep global state, log anything but the load
// line, or block the caller of Record on the Reporter's work (computing
// percentiles happens outside the type's lock).
package opstats

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Common operation types, named as MongoDB's opcounters are (plus the
// replication ones of a shard member).
const (
	OpInsert    = "insert"
	OpQuery     = "query"
	OpUpdate    = "update"
	OpDelete    = "delete"
	OpGetMore   = "getmore"
	OpCommand   = "command"
	OpRepl      = "repl"      // replication RPCs served (progress reports, votes, status)
	OpReplApply = "replApply" // oplog batches applied by a secondary
	OpMigration = "migration" // chunk migration RPCs
)

// Histogram bounds: latencies are recorded in microseconds from 1 µs to one
// hour (longer ones count as one hour), with 2 significant digits (1%).
const (
	minMicros = 1
	maxMicros = int64(time.Hour / time.Microsecond)
	sigFigs   = 2
)

// Recorder counts operations by type with their latency. The zero value is
// not usable: create one with NewRecorder. A Recorder is safe for
// concurrent use; a nil *Recorder records nothing.
type Recorder struct {
	types atomic.Pointer[map[string]*series]
	mu    sync.Mutex // serializes adding a type (copy-on-write of types)
	now   func() time.Time

	windowMu    sync.Mutex
	windowStart time.Time
}

// series is one type's window: a histogram guarded by its own mutex, and a
// spare that the next Snapshot swaps in.
type series struct {
	mu    sync.Mutex
	cur   *hdrhistogram.Histogram
	spare *hdrhistogram.Histogram
}

func newSeries() *series {
	return &series{
		cur:   hdrhistogram.New(minMicros, maxMicros, sigFigs),
		spare: hdrhistogram.New(minMicros, maxMicros, sigFigs),
	}
}

// NewRecorder returns an empty Recorder whose first window starts now.
// types, if any, are created at once, so they appear (with 0 ops) in every
// report from the start.
func NewRecorder(types ...string) *Recorder {
	return newRecorder(time.Now, types...)
}

func newRecorder(now func() time.Time, types ...string) *Recorder {
	r := &Recorder{now: now, windowStart: now()}
	m := make(map[string]*series, len(types))
	for _, t := range types {
		m[t] = newSeries()
	}
	r.types.Store(&m)
	return r
}

// Record counts one operation of type op that took d. Negative durations
// count as 0; durations beyond one hour count as one hour.
func (r *Recorder) Record(op string, d time.Duration) {
	if r == nil {
		return
	}
	s := (*r.types.Load())[op]
	if s == nil {
		s = r.add(op)
	}
	v := min(max(int64(d/time.Microsecond), minMicros), maxMicros)
	s.mu.Lock()
	_ = s.cur.RecordValue(v) // v is within the bounds: never an error
	s.mu.Unlock()
}

// add creates op's series unless another goroutine just did.
func (r *Recorder) add(op string) *series {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.types.Load()
	if s := old[op]; s != nil {
		return s
	}
	m := make(map[string]*series, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	s := newSeries()
	m[op] = s
	r.types.Store(&m)
	return s
}

// OpStats are one type's figures over a window.
type OpStats struct {
	Op    string
	Count int64
	// P50, P99 and Max are latencies over the window (0 when Count is 0),
	// exact to 1%.
	P50, P99, Max time.Duration
}

// Snapshot is a window's figures: every type ever recorded, sorted by name.
type Snapshot struct {
	Start, End time.Time
	Ops        []OpStats
}

// Elapsed is the window's length.
func (s Snapshot) Elapsed() time.Duration { return s.End.Sub(s.Start) }

// Rate is op's operations per second over the window (0 for a type not
// in the snapshot or an empty window).
func (s Snapshot) Rate(op string) float64 {
	el := s.Elapsed().Seconds()
	if el <= 0 {
		return 0
	}
	for _, o := range s.Ops {
		if o.Op == op {
			return float64(o.Count) / el
		}
	}
	return 0
}

// Get returns op's figures and whether op was ever recorded.
func (s Snapshot) Get(op string) (OpStats, bool) {
	for _, o := range s.Ops {
		if o.Op == op {
			return o, true
		}
	}
	return OpStats{}, false
}

// Snapshot ends the current window and starts the next: it returns the
// figures of every type since the previous Snapshot (or NewRecorder) and
// resets them. An operation recorded concurrently lands in exactly one of
// the two windows. A nil Recorder returns an empty Snapshot.
func (r *Recorder) Snapshot() Snapshot {
	if r == nil {
		now := time.Now()
		return Snapshot{Start: now, End: now}
	}
	r.windowMu.Lock()
	defer r.windowMu.Unlock()
	end := r.now()
	snap := Snapshot{Start: r.windowStart, End: end}
	r.windowStart = end
	m := *r.types.Load()
	snap.Ops = make([]OpStats, 0, len(m))
	for op, s := range m {
		s.mu.Lock()
		h := s.cur
		s.cur = s.spare
		s.mu.Unlock()
		// h is ours until the next Snapshot (windowMu): read it unlocked.
		st := OpStats{Op: op, Count: h.TotalCount()}
		if st.Count > 0 {
			st.P50 = micros(h.ValueAtQuantile(50))
			st.P99 = micros(h.ValueAtQuantile(99))
			st.Max = micros(h.Max())
		}
		h.Reset()
		s.mu.Lock()
		s.spare = h
		s.mu.Unlock()
		snap.Ops = append(snap.Ops, st)
	}
	slices.SortFunc(snap.Ops, func(a, b OpStats) int { return strings.Compare(a.Op, b.Op) })
	return snap
}

func micros(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
