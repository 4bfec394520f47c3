package migrate

import (
	"context"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// CriticalSections is the donor's registry of write blocks: while a
// migration's critical section holds a range, writes that may touch it
// wait (DESIGN §7 step 3). The write path calls BeginWrite before a write
// to a namespace and the returned done function after it; Enter blocks
// the range for new writes and then waits for the writes to the namespace
// that were already running, so once Enter returns, nothing writes to the
// range until Leave: the donor's oplog then holds the range's last mods.
//
// Which writes wait: an insert waits when one of its documents belongs to
// a held range; an update, delete or findAndModify (documents unknown
// before it runs) waits when any range of its namespace is held, as
// MongoDB's critical section blocks the whole collection. Writes to other
// namespaces never wait. A section ends by Leave or, when the migration
// driver is gone, by itself after its timeout (as aborted).
//
// The zero value is not usable; use NewCriticalSections. It is safe for
// concurrent use.
type CriticalSections struct {
	// OnRelease, if set (before the first Enter), runs each time a
	// section ends (Leave or timeout), before its blocked writes go on.
	OnRelease func()

	mu      sync.Mutex
	held    map[string][]*Section           // by namespace
	writers map[string]map[*writer]struct{} // running writes by namespace
	waiting map[string]int                  // blocked writes by namespace
}

type writer struct{ done chan struct{} }

// Section is one held critical section.
type Section struct {
	cs        *CriticalSections
	r         Range
	released  chan struct{}
	once      sync.Once
	timer     *time.Timer
	committed bool // set before released is closed
}

// NewCriticalSections returns an empty registry.
func NewCriticalSections() *CriticalSections {
	return &CriticalSections{held: map[string][]*Section{}, writers: map[string]map[*writer]struct{}{}, waiting: map[string]int{}}
}

// Enter holds r: writes that may touch it wait from now on. It then waits
// until every write to r.NS that began before it has finished, or ctx
// ends (the section is then released and ctx's error returned as
// Interrupted). The section ends by itself after timeout (> 0) unless
// Leave ends it first. A range overlapping a held one is refused with
// ConflictingOperationInProgress (117).
func (cs *CriticalSections) Enter(ctx context.Context, r Range, timeout time.Duration) (*Section, error) {
	cs.mu.Lock()
	for _, s := range cs.held[r.NS] {
		if s.r.Overlaps(r) {
			cs.mu.Unlock()
			return nil, mongoerr.New(mongoerr.ConflictingOperationInProgress, "a critical section already holds %s, which overlaps %s", s.r, r)
		}
	}
	s := &Section{cs: cs, r: r, released: make(chan struct{})}
	cs.held[r.NS] = append(cs.held[r.NS], s)
	var running []chan struct{}
	for w := range cs.writers[r.NS] {
		running = append(running, w.done)
	}
	if timeout > 0 {
		// Set under cs.mu, which Leave holds to read it.
		s.timer = time.AfterFunc(timeout, func() { s.Leave(false) })
	}
	cs.mu.Unlock()
	for _, ch := range running {
		select {
		case <-ch:
		case <-ctx.Done():
			s.Leave(false)
			return nil, mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "entering the critical section of %s: %v", r, ctx.Err())
		}
	}
	return s, nil
}

// Leave releases the section; committed tells the blocked writes that the
// range moved (they then re-check their shard version, which the commit
// made stale). It is idempotent; the first call decides.
func (s *Section) Leave(committed bool) {
	s.once.Do(func() {
		cs := s.cs
		cs.mu.Lock()
		if s.timer != nil {
			s.timer.Stop()
		}
		list := cs.held[s.r.NS]
		for i, x := range list {
			if x == s {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(cs.held, s.r.NS)
		} else {
			cs.held[s.r.NS] = list
		}
		s.committed = committed
		cs.mu.Unlock()
		if cs.OnRelease != nil {
			cs.OnRelease()
		}
		close(s.released)
	})
}

// Range returns the held range.
func (s *Section) Range() Range { return s.r }

// Released reports whether the section ended (Leave, or its timeout).
func (s *Section) Released() bool {
	select {
	case <-s.released:
		return true
	default:
		return false
	}
}

// Held reports whether any critical section holds a range of ns.
func (cs *CriticalSections) Held(ns string) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.held[ns]) > 0
}

// Waiting returns how many writes to ns are waiting for a section.
func (cs *CriticalSections) Waiting(ns string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.waiting[ns]
}

// Running returns how many writes to ns are registered (between
// BeginWrite and their done) or waiting.
func (cs *CriticalSections) Running(ns string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.writers[ns]) + cs.waiting[ns]
}

// BeginWrite is the write path's hook, called before a write to ns runs.
// docs are the documents an insert writes (nil for writes whose documents
// are not known before they run: they wait for any section of ns). It
// waits while a section blocks the write, then registers the write as
// running and returns the function that ends it (call it when the write
// has finished, applied or not). blockedBy reports whether the write
// waited and whether the last section it waited for was committed (the
// caller re-checks its routing then). Errors: Interrupted when ctx ends
// while waiting.
func (cs *CriticalSections) BeginWrite(ctx context.Context, ns string, docs []bson.Raw) (done func(), waited, committed bool, err error) {
	for {
		cs.mu.Lock()
		s := cs.blocking(ns, docs)
		if s == nil {
			w := &writer{done: make(chan struct{})}
			ws := cs.writers[ns]
			if ws == nil {
				ws = map[*writer]struct{}{}
				cs.writers[ns] = ws
			}
			ws[w] = struct{}{}
			cs.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { cs.endWrite(ns, w) }) }, waited, committed, nil
		}
		cs.waiting[ns]++
		cs.mu.Unlock()
		waited = true
		var werr error
		select {
		case <-s.released:
			committed = s.committed
		case <-ctx.Done():
			werr = mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted,
				"write to %s interrupted while waiting for the migration critical section of %s: %v", ns, s.r, ctx.Err())
		}
		cs.mu.Lock()
		if cs.waiting[ns]--; cs.waiting[ns] == 0 {
			delete(cs.waiting, ns)
		}
		cs.mu.Unlock()
		if werr != nil {
			return nil, waited, false, werr
		}
	}
}

// blocking returns a section that blocks the write, or nil; cs.mu held.
func (cs *CriticalSections) blocking(ns string, docs []bson.Raw) *Section {
	list := cs.held[ns]
	if len(list) == 0 {
		return nil
	}
	if docs == nil {
		return list[0]
	}
	for _, d := range docs {
		for _, s := range list {
			if s.r.Contains(d) {
				return s
			}
		}
	}
	return nil
}

func (cs *CriticalSections) endWrite(ns string, w *writer) {
	cs.mu.Lock()
	if ws := cs.writers[ns]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(cs.writers, ns)
		}
	}
	cs.mu.Unlock()
	close(w.done)
}
