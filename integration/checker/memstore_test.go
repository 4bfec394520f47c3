package checker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// faults selects what memStore does wrong. An N counts calls of one kind
// from 1; 0 disables the fault.
type faults struct {
	dropAt          int           // the N-th insert is acknowledged but not kept
	dupAt           int           // the N-th insert is kept twice
	errAfterApplyAt int           // the N-th insert is applied, then a network error is returned
	timeoutAt       int           // the N-th insert times out without being applied
	failAt          int           // the N-th insert fails definitely (BadValue), not applied
	failAppliedAt   int           // the N-th insert fails definitely but is applied: a lying server
	extraID         string        // a document nobody wrote
	staleReadAt     int           // reads N..N+3 return "not found": a rolled-back counter
	resetCounterAt  int           // before the N-th update, every counter goes back to 0
	doubleUpdateAt  int           // the N-th update is applied twice
	stallAt         int           // from the N-th insert, no insert applies for stallFor
	stallFor        time.Duration //
	hang            bool          // every call blocks until its context is done
}

// memStore is an in-memory Store with fault injection, and the ground truth
// of what it did for the tests to compare the checker's findings with. It
// is safe for concurrent use.
type memStore struct {
	f       faults
	hanging chan struct{} // closed on the first hanging call

	mu       sync.Mutex
	docs     map[string]int // _id -> copies
	counters map[string]int64
	inserts  int
	reads    int
	updates  int
	applied  map[string]time.Time // insert _id -> when it was applied

	stallFrom, stallUntil time.Time

	// Ground truth: the _id each fault hit.
	dropped, duplicated, errAfterApply, timedOut, failed, failedApplied string
	hangOnce                                                            sync.Once
}

func newMemStore(f faults) *memStore {
	m := &memStore{f: f, docs: map[string]int{}, counters: map[string]int64{},
		applied: map[string]time.Time{}, hanging: make(chan struct{})}
	if f.extraID != "" {
		m.docs[f.extraID] = 1
	}
	return m
}

func (m *memStore) hang(ctx context.Context) error {
	m.hangOnce.Do(func() { close(m.hanging) })
	<-ctx.Done()
	return fmt.Errorf("memstore: %w", ctx.Err())
}

var (
	errNetwork   = mongo.CommandError{Message: "connection reset by peer", Labels: []string{"NetworkError"}}
	errBadValue  = mongo.CommandError{Code: 2, Name: "BadValue", Message: "bad value"}
	errTimeoutOp = fmt.Errorf("memstore insert: %w", context.DeadlineExceeded)
)

func (m *memStore) InsertOne(ctx context.Context, doc bson.D) error {
	if m.f.hang {
		return m.hang(ctx)
	}
	id := doc[0].Value.(string)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inserts++
	n := m.inserts
	if n == m.f.stallAt {
		m.stallFrom = time.Now()
		m.stallUntil = m.stallFrom.Add(m.f.stallFor)
	}
	// Invariant: no insert applies in (stallFrom, stallUntil): the stall is
	// set and checked under mu, and a stalled insert applies only after
	// waking past stallUntil.
	for {
		wait := time.Until(m.stallUntil)
		if wait <= 0 {
			break
		}
		m.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			m.mu.Lock()
			return fmt.Errorf("memstore stalled insert: %w", ctx.Err())
		}
		m.mu.Lock()
	}
	switch n {
	case m.f.timeoutAt:
		m.timedOut = id
		return errTimeoutOp
	case m.f.failAt:
		m.failed = id
		return errBadValue
	}
	m.docs[id]++
	m.applied[id] = time.Now()
	switch n {
	case m.f.dropAt:
		m.dropped = id
		delete(m.docs, id)
	case m.f.failAppliedAt:
		m.failedApplied = id
		return errBadValue
	}
	if n == m.f.dupAt {
		m.duplicated = id
		m.docs[id]++
	}
	if n == m.f.errAfterApplyAt {
		m.errAfterApply = id
		return errNetwork
	}
	return nil
}

func (m *memStore) UpdateCounter(ctx context.Context, id string, inc int64) (int64, error) {
	if m.f.hang {
		return 0, m.hang(ctx)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.updates++
	if m.updates == m.f.resetCounterAt {
		for c := range m.counters {
			m.counters[c] = 0
		}
	}
	m.counters[id] += inc
	if m.updates == m.f.doubleUpdateAt {
		m.counters[id] += inc
	}
	return m.counters[id], nil
}

func (m *memStore) ReadCounter(ctx context.Context, id string) (int64, bool, error) {
	if m.f.hang {
		return 0, false, m.hang(ctx)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.f.staleReadAt > 0 && m.reads >= m.f.staleReadAt && m.reads < m.f.staleReadAt+4 {
		return 0, false, nil
	}
	n, ok := m.counters[id]
	return n, ok, nil
}

func (m *memStore) ScanIDs(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, n := range m.docs {
		for range n {
			ids = append(ids, id)
		}
	}
	for id := range m.counters {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// appliedAt returns when each insert was applied (a copy).
func (m *memStore) appliedAt() map[string]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]time.Time, len(m.applied))
	for k, v := range m.applied {
		out[k] = v
	}
	return out
}
