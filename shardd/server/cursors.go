package server

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// docSource is what a server-side cursor reads from: an executor cursor
// (find) or the materialized results of a pipeline (aggregate).
type docSource interface {
	Next() (bson.Raw, bool)
	Err() error
	Close() error
}

// sliceSource serves documents already computed.
type sliceSource struct {
	docs []bson.Raw
}

func (s *sliceSource) Next() (bson.Raw, bool) {
	if len(s.docs) == 0 {
		return nil, false
	}
	d := s.docs[0]
	s.docs[0] = nil
	s.docs = s.docs[1:]
	return d, true
}

func (s *sliceSource) Err() error   { return nil }
func (s *sliceSource) Close() error { s.docs = nil; return nil }

// cursor is one open server-side cursor.
//
// Invariant: at most one call works on a cursor at a time — a call takes it
// out of use with registry.acquire (busy = true) and gives it back with
// release; the reaper and KillCursors never close a busy cursor (a kill of
// a busy cursor marks it killed, and release closes it).
type cursor struct {
	id     int64
	ns     string
	src    docSource
	cancel context.CancelFunc // cancels the context the source reads under

	// Guarded by the registry's mutex:
	busy     bool
	killed   bool
	lastUsed time.Time

	// Owned by the call that holds the cursor (busy):
	pending bson.Raw // read ahead to know whether more follow
	err     error    // error met while reading ahead, reported by the next batch
}

// close releases the cursor's source (its snapshot).
func (c *cursor) close() {
	c.cancel()
	_ = c.src.Close()
}

// fill reads the next batch: up to n documents (n <= 0: no count limit)
// and MaxBatchBytes, always at least one document when any is left. It
// reports exhausted when the source has no more documents.
func (c *cursor) fill(n int) (batch [][]byte, exhausted bool, err error) {
	if c.err != nil {
		return nil, false, c.err
	}
	size := 0
	for n <= 0 || len(batch) < n {
		doc := c.pending
		c.pending = nil
		if doc == nil {
			d, ok := c.src.Next()
			if !ok {
				if err := c.src.Err(); err != nil {
					return nil, false, err
				}
				return batch, true, nil
			}
			doc = d
		}
		if len(batch) > 0 && size+len(doc) > MaxBatchBytes {
			c.pending = doc
			return batch, false, nil
		}
		batch = append(batch, doc)
		size += len(doc)
	}
	// Read one ahead so an exhausted cursor is closed now (id 0) rather
	// than after an empty getMore, as MongoDB does.
	if c.pending == nil {
		d, ok := c.src.Next()
		if !ok {
			if err := c.src.Err(); err != nil {
				c.err = err // this batch is good; the next call fails
				return batch, false, nil
			}
			return batch, true, nil
		}
		c.pending = d
	}
	return batch, false, nil
}

// cursorRegistry holds the open cursors. It is safe for concurrent use;
// its reaper goroutine is owned by the registry and stopped by close.
type cursorRegistry struct {
	timeout time.Duration
	log     zerolog.Logger
	base    context.Context // parent of every cursor's context; cancelled by close
	stop    context.CancelFunc
	done    chan struct{}

	mu     sync.Mutex
	m      map[int64]*cursor
	closed bool
}

func newCursorRegistry(timeout time.Duration, log zerolog.Logger) *cursorRegistry {
	base, stop := context.WithCancel(context.Background())
	r := &cursorRegistry{timeout: timeout, log: log, base: base, stop: stop, done: make(chan struct{}), m: map[int64]*cursor{}}
	go r.reap()
	return r
}

// context returns a context for a new cursor's source, cancelled when the
// cursor is closed or the registry is.
func (r *cursorRegistry) context() (context.Context, context.CancelFunc) {
	return context.WithCancel(r.base)
}

// add registers a busy cursor and returns it with a fresh id (never 0,
// always positive, unique among open cursors).
func (r *cursorRegistry) add(ns string, src docSource, cancel context.CancelFunc) (*cursor, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, mongoerr.New(mongoerr.InterruptedAtShutdown, "server is shutting down")
	}
	c := &cursor{ns: ns, src: src, cancel: cancel, busy: true, lastUsed: time.Now()}
	for {
		c.id = rand.Int64N(1<<63-1) + 1
		if _, taken := r.m[c.id]; !taken {
			break
		}
	}
	r.m[c.id] = c
	return c, nil
}

// acquire takes cursor id for one call. Errors: CursorNotFound (43),
// CursorInUse (143), Unauthorized (13) when ns is set and differs from the
// cursor's namespace (MongoDB's answer).
func (r *cursorRegistry) acquire(id int64, ns string) (*cursor, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.m[id]
	if !ok || c.killed {
		return nil, mongoerr.New(mongoerr.CursorNotFound, "cursor id %d not found", id)
	}
	if ns != "" && ns != c.ns {
		return nil, mongoerr.New(mongoerr.Unauthorized, "Requested getMore on namespace '%s', but cursor belongs to a different namespace %s", ns, c.ns)
	}
	if c.busy {
		return nil, mongoerr.New(mongoerr.CursorInUse, "cursor id %d is already in use", id)
	}
	c.busy = true
	return c, nil
}

// release gives a cursor back after a call; done (or a kill during the
// call) removes and closes it.
func (r *cursorRegistry) release(c *cursor, done bool) {
	r.mu.Lock()
	c.busy = false
	c.lastUsed = time.Now()
	if done || c.killed || r.closed {
		delete(r.m, c.id)
		done = true
	}
	r.mu.Unlock()
	if done {
		c.close()
	}
}

// kill closes the cursors given and reports which existed.
func (r *cursorRegistry) kill(ids []int64) (killed, notFound []int64) {
	var toClose []*cursor
	r.mu.Lock()
	for _, id := range ids {
		c, ok := r.m[id]
		if !ok || c.killed {
			notFound = append(notFound, id)
			continue
		}
		killed = append(killed, id)
		if c.busy {
			c.killed = true // release closes it
			c.cancel()      // and its running call stops soon
			continue
		}
		delete(r.m, id)
		toClose = append(toClose, c)
	}
	r.mu.Unlock()
	for _, c := range toClose {
		c.close()
	}
	return killed, notFound
}

func (r *cursorRegistry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// reap closes cursors idle longer than the timeout until close is called.
func (r *cursorRegistry) reap() {
	defer close(r.done)
	every := min(max(r.timeout/4, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.base.Done():
			return
		case now := <-t.C:
			var expired []*cursor
			r.mu.Lock()
			for id, c := range r.m {
				if !c.busy && now.Sub(c.lastUsed) > r.timeout {
					delete(r.m, id)
					expired = append(expired, c)
				}
			}
			r.mu.Unlock()
			for _, c := range expired {
				c.close()
				r.log.Info().Str(logging.FieldOp, "cursorTimeout").Str(logging.FieldNS, c.ns).
					Int64("cursor", c.id).Dur("idle", r.timeout).Msg("cursor timed out")
			}
		}
	}
}

// close stops the reaper and closes every cursor that is not in use (a
// busy one is closed by its call's release).
func (r *cursorRegistry) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	var toClose []*cursor
	for id, c := range r.m {
		if c.busy {
			c.killed = true
			continue
		}
		delete(r.m, id)
		toClose = append(toClose, c)
	}
	r.mu.Unlock()
	r.stop() // cancels every cursor's context and the reaper
	<-r.done
	for _, c := range toClose {
		c.close()
	}
}
