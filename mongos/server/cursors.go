package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/aggregate"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/query"
)

// maxBatchBytes bounds the documents of one reply batch, leaving room for
// the reply's own fields under maxReplyBytes.
const maxBatchBytes = 16<<20 - 64<<10

// shardStream is one shard's cursor as the router reads it: the documents
// received and not yet returned, and the shard's cursor id (0: the shard
// has nothing more). Owned by its routerCursor.
type shardStream struct {
	shard string
	conn  ShardConn
	ns    string
	id    int64
	buf   []bson.Raw
}

// fill makes sure buf holds a document unless the shard is exhausted.
func (st *shardStream) fill(ctx context.Context) error {
	for len(st.buf) == 0 && st.id != 0 {
		b, err := st.conn.GetMore(ctx, st.ns, st.id, 0)
		if err != nil {
			st.id = 0 // the shard closes a cursor whose getMore failed
			return err
		}
		st.buf, st.id = b.Docs, b.CursorID
	}
	return nil
}

// Next makes the stream an aggregate.Source (the router's merge of an
// aggregate's shard outputs): the next document, or io.EOF.
func (st *shardStream) Next(ctx context.Context) (bson.Raw, error) {
	if err := st.fill(ctx); err != nil {
		return nil, err
	}
	if len(st.buf) == 0 {
		return nil, io.EOF
	}
	d := st.buf[0]
	st.buf = st.buf[1:]
	return d, nil
}

// kill closes the shard's cursor if still open (best effort).
func (st *shardStream) kill(ctx context.Context) {
	if st.id != 0 {
		_, _, _ = st.conn.KillCursors(ctx, st.ns, st.id)
		st.id = 0
	}
	st.buf = nil
}

// routerCursor merges shard streams: with a sort, a k-way merge by the
// query library's order (each shard returns its stream sorted); without,
// the streams one after the other. It then applies skip and limit (pushed
// down to the shards as limit+skip when there are several). One getMore
// at a time holds mu.
type routerCursor struct {
	id      int64
	ns      string
	mu      sync.Mutex
	streams []*shardStream
	sort    *query.Sort       // nil: concatenate
	proj    *query.Projection // applied after the merge; nil: none (or done by the shards)
	skip    int64             // still to skip
	limit   int64             // 0: none; else the total to return
	sent    int64
	// src, when not nil, replaces the merge of streams: an aggregate's
	// merge part running over them. peeked holds a document read ahead
	// from it (so a batch knows whether one follows); srcDone is set once
	// it returned io.EOF.
	src     aggregate.Source
	peeked  bson.Raw
	srcDone bool
	lastUse time.Time
}

// next returns the next document, or ok false when the cursor is
// exhausted.
func (c *routerCursor) next(ctx context.Context) (bson.Raw, bool, error) {
	for {
		if c.limit > 0 && c.sent >= c.limit {
			return nil, false, nil
		}
		d, ok, err := c.take(ctx)
		if err != nil || !ok {
			return nil, false, err
		}
		if c.skip > 0 {
			c.skip--
			continue
		}
		c.sent++
		if c.proj != nil {
			if d, err = c.proj.Apply(d, -1); err != nil {
				return nil, false, err
			}
		}
		return d, true, nil
	}
}

// take pops the next document of the merged streams.
func (c *routerCursor) take(ctx context.Context) (bson.Raw, bool, error) {
	if c.src != nil {
		return c.takeSrc(ctx)
	}
	best := -1
	for i, st := range c.streams {
		if err := st.fill(ctx); err != nil {
			return nil, false, err
		}
		if len(st.buf) == 0 {
			continue
		}
		if c.sort == nil {
			best = i
			break
		}
		// Ties keep the earlier stream: the merge is stable in shard order.
		if best < 0 || c.sort.Compare(st.buf[0], c.streams[best].buf[0]) < 0 {
			best = i
		}
	}
	if best < 0 {
		return nil, false, nil
	}
	st := c.streams[best]
	d := st.buf[0]
	st.buf = st.buf[1:]
	return d, true, nil
}

// takeSrc pops the next document of src.
func (c *routerCursor) takeSrc(ctx context.Context) (bson.Raw, bool, error) {
	if c.peeked != nil {
		d := c.peeked
		c.peeked = nil
		return d, true, nil
	}
	if c.srcDone {
		return nil, false, nil
	}
	d, err := c.src.Next(ctx)
	if err == io.EOF {
		c.srcDone = true
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return d, true, nil
}

// peek reads one document ahead from src so exhausted can tell whether
// another follows.
func (c *routerCursor) peek(ctx context.Context) error {
	if c.src == nil || c.peeked != nil || c.srcDone {
		return nil
	}
	d, ok, err := c.takeSrc(ctx)
	if ok {
		c.peeked = d
	}
	return err
}

// exhausted reports, without reading from the shards, whether no document
// can follow.
func (c *routerCursor) exhausted() bool {
	if c.src != nil {
		return c.srcDone && c.peeked == nil
	}
	if c.limit > 0 && c.sent >= c.limit {
		return true
	}
	for _, st := range c.streams {
		if len(st.buf) > 0 || st.id != 0 {
			return false
		}
	}
	return true
}

// batch returns up to n documents (n <= 0: as many as fit in a reply) and
// whether the cursor is exhausted after them.
func (c *routerCursor) batch(ctx context.Context, n int) ([]bson.Raw, bool, error) {
	var out []bson.Raw
	size := 0
	for n <= 0 || len(out) < n {
		d, ok, err := c.next(ctx)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			return out, true, nil
		}
		out = append(out, d)
		size += len(d)
		if size >= maxBatchBytes {
			break
		}
	}
	if err := c.peek(ctx); err != nil {
		return nil, false, err
	}
	return out, c.exhausted(), nil
}

// killShards closes every shard cursor still open.
func (c *routerCursor) killShards() {
	open := false
	for _, st := range c.streams {
		open = open || st.id != 0
		st.buf = nil
	}
	if !open {
		return // the common case, a single batch: no call, and no timer to set
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, st := range c.streams {
		st.kill(ctx)
	}
}

// cursorStore holds the open router cursors by id and reaps idle ones. Safe
// for concurrent use; its reaper goroutine is owned by the Server and ends
// on close.
type cursorStore struct {
	timeout time.Duration
	now     func() time.Time
	log     zerolog.Logger

	mu      sync.Mutex
	cursors map[int64]*routerCursor

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newCursorStore(timeout time.Duration, now func() time.Time, log zerolog.Logger) *cursorStore {
	cs := &cursorStore{timeout: timeout, now: now, log: log, cursors: map[int64]*routerCursor{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go cs.reap()
	return cs
}

// reap closes cursors idle for longer than the timeout, checking a few
// times per timeout (at most once a minute, at least once a second).
func (cs *cursorStore) reap() {
	defer close(cs.done)
	every := min(max(cs.timeout/4, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cs.stop:
			return
		case <-t.C:
			cs.reapOnce()
		}
	}
}

func (cs *cursorStore) reapOnce() {
	now := cs.now()
	var idle []*routerCursor
	cs.mu.Lock()
	for id, c := range cs.cursors {
		if c.mu.TryLock() {
			if now.Sub(c.lastUse) > cs.timeout {
				idle = append(idle, c)
				delete(cs.cursors, id)
			}
			c.mu.Unlock()
		}
	}
	cs.mu.Unlock()
	for _, c := range idle {
		c.mu.Lock()
		c.killShards()
		c.mu.Unlock()
		cs.log.Info().Str(logging.FieldNS, c.ns).Int64("cursor", c.id).Msg("idle cursor timed out")
	}
}

// add registers c under a fresh positive id.
func (cs *cursorStore) add(c *routerCursor) int64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := int64(binary.LittleEndian.Uint64(b[:]) >> 1)
		if _, dup := cs.cursors[id]; id != 0 && !dup {
			c.id = id
			c.lastUse = cs.now()
			cs.cursors[id] = c
			return id
		}
	}
}

func (cs *cursorStore) get(id int64) (*routerCursor, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c, ok := cs.cursors[id]
	return c, ok
}

func (cs *cursorStore) remove(id int64) (*routerCursor, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c, ok := cs.cursors[id]
	delete(cs.cursors, id)
	return c, ok
}

// close stops the reaper and kills every open cursor. Idempotent.
func (cs *cursorStore) close() {
	cs.stopOnce.Do(func() {
		close(cs.stop)
		<-cs.done
		cs.mu.Lock()
		all := cs.cursors
		cs.cursors = map[int64]*routerCursor{}
		cs.mu.Unlock()
		for _, c := range all {
			c.killShards()
		}
	})
}
