package catalog

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/RaduBerinde/btreemap"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// ChunkMap is a watch-driven, versioned in-memory copy of the routing
// metadata: shards (with their current primaries), databases, collections
// and chunks. Routers target with it; shards check ownership with it.
//
// It is filled by one paged range read at a revision R of the routing key
// range, then kept current by one etcd watch of that range from R+1. Each
// watch response is decoded outside the lock and applied under the write
// lock, so readers never see half of an etcd transaction, and a chunk
// change costs O(log n) in the collection's chunk count: chunks of a
// collection are held in a B-tree keyed by their encoded min bound, plus
// one B-tree per shard ordered by version for ShardVersion. A compacted
// watch (the revision it must resume from is gone) triggers a full reload
// built off-lock and swapped in; any other watch failure resumes from the
// last applied revision.
//
// Safe for concurrent use: lookups take a read lock (RWMutex). Returned
// Chunks and records share memory with the map and must not be modified.
// One goroutine, owned by the ChunkMap and stopped by Close, runs the
// watch.
type ChunkMap struct {
	c *Catalog

	mu       sync.RWMutex
	st       *routingState
	rev      int64         // the revision the state reflects
	advanced chan struct{} // closed and replaced whenever rev grows
	closed   bool
	reloads  int // full reloads done (tests)

	cancel    context.CancelFunc
	done      chan struct{}
	progress  chan struct{} // ask the watch goroutine for a progress notify
	restartCh chan struct{} // force the watch to restart (tests)
	// beforeWatch, if set (tests, under mu), runs before each watch starts.
	beforeWatch func()
}

type routingState struct {
	shards    map[string]*Shard
	primaries map[string]PrimaryInfo
	dbs       map[string]*Database
	colls     map[string]*Collection
	chunks    map[string]*chunkSet // by collection uuid
}

func newRoutingState() *routingState {
	return &routingState{
		shards: map[string]*Shard{}, primaries: map[string]PrimaryInfo{},
		dbs: map[string]*Database{}, colls: map[string]*Collection{}, chunks: map[string]*chunkSet{},
	}
}

// chunkSet holds one collection's chunks. Invariant: every chunk in byMin
// is in byShard[chunk.Shard] and vice versa.
type chunkSet struct {
	uuid    string
	byMin   *btreemap.BTreeMap[[]byte, *Chunk]
	byShard map[string]*btreemap.BTreeMap[*Chunk, struct{}] // ordered by version, then min
}

const btreeDegree = 32

func cmpChunkVersion(a, b *Chunk) int {
	switch {
	case a.Version.Less(b.Version):
		return -1
	case b.Version.Less(a.Version):
		return 1
	}
	return bytes.Compare(a.MinKey, b.MinKey)
}

func newChunkSet(uuid string) *chunkSet {
	return &chunkSet{uuid: uuid, byMin: btreemap.New[[]byte, *Chunk](btreeDegree, bytes.Compare),
		byShard: map[string]*btreemap.BTreeMap[*Chunk, struct{}]{}}
}

func (s *chunkSet) put(ch *Chunk) {
	if _, old, ok := s.byMin.Get(ch.MinKey); ok {
		s.removeFromShard(old)
	}
	s.byMin.ReplaceOrInsert(ch.MinKey, ch)
	t := s.byShard[ch.Shard]
	if t == nil {
		t = btreemap.New[*Chunk, struct{}](btreeDegree, cmpChunkVersion)
		s.byShard[ch.Shard] = t
	}
	t.ReplaceOrInsert(ch, struct{}{})
}

func (s *chunkSet) remove(minKey []byte) {
	if _, old, ok := s.byMin.Delete(minKey); ok {
		s.removeFromShard(old)
	}
}

func (s *chunkSet) removeFromShard(old *Chunk) {
	if t := s.byShard[old.Shard]; t != nil {
		t.Delete(old)
		if t.Len() == 0 {
			delete(s.byShard, old.Shard)
		}
	}
}

// OpenChunkMap loads the routing metadata and starts watching it. It
// returns after the initial load (or its error). Close stops it.
func (c *Catalog) OpenChunkMap(ctx context.Context) (*ChunkMap, error) {
	st, rev, err := c.loadRouting(ctx)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	m := &ChunkMap{c: c, st: st, rev: rev, advanced: make(chan struct{}), cancel: cancel,
		done: make(chan struct{}), progress: make(chan struct{}, 1), restartCh: make(chan struct{}, 1)}
	go m.run(wctx)
	return m, nil
}

// Close stops the watch and waits for its goroutine. Lookups keep
// answering from the last state; WaitForRevision returns ErrClosed.
func (m *ChunkMap) Close() {
	m.cancel()
	<-m.done
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.advanced)
	}
	m.mu.Unlock()
}

// routingEvent is one decoded change.
type routingEvent struct {
	kind   byte // 's' shard, 'p' primary, 'd' database, 'c' collection, 'k' chunk, 0 ignored
	delete bool
	name   string // shard, db, ns, or chunk uuid
	minKey []byte // chunk min (for deletes)
	shard  *Shard
	prim   PrimaryInfo
	db     *Database
	coll   *Collection
	chunk  *Chunk
}

// decodeRouting classifies and decodes one key of the routing range.
func (c *Catalog) decodeRouting(kv *mvccpb.KeyValue, isDelete bool) (routingEvent, error) {
	key := string(kv.Key)
	rel := strings.TrimPrefix(key, c.root+"/")
	kind, rest, _ := strings.Cut(rel, "/")
	ev := routingEvent{delete: isDelete}
	switch kind {
	case "chunks":
		uuid, hexMin, ok := strings.Cut(rest, "/")
		if !ok {
			return ev, nil
		}
		ev.kind, ev.name = 'k', uuid
		if isDelete {
			mk, err := hex.DecodeString(hexMin)
			if err != nil {
				return ev, corrupt(key, err)
			}
			ev.minKey = mk
			return ev, nil
		}
		ch, err := c.decodeChunk(kv)
		if err != nil {
			return ev, err
		}
		ev.chunk = &ch
	case "collections":
		ev.kind, ev.name = 'c', rest
		if !isDelete {
			ev.coll = &Collection{}
			if err := json.Unmarshal(kv.Value, ev.coll); err != nil {
				return ev, corrupt(key, err)
			}
			ev.coll.ModRevision = kv.ModRevision
		}
	case "databases":
		ev.kind, ev.name = 'd', rest
		if !isDelete {
			ev.db = &Database{}
			if err := json.Unmarshal(kv.Value, ev.db); err != nil {
				return ev, corrupt(key, err)
			}
			ev.db.ModRevision = kv.ModRevision
		}
	case "shards":
		name, sub, nested := strings.Cut(rest, "/")
		ev.name = name
		switch {
		case !nested:
			ev.kind = 's'
			if !isDelete {
				ev.shard = &Shard{}
				if err := json.Unmarshal(kv.Value, ev.shard); err != nil {
					return ev, corrupt(key, err)
				}
				ev.shard.ModRevision = kv.ModRevision
			}
		case sub == "primary":
			ev.kind = 'p'
			if !isDelete {
				if err := json.Unmarshal(kv.Value, &ev.prim); err != nil {
					return ev, corrupt(key, err)
				}
			}
		}
	}
	return ev, nil
}

func (st *routingState) apply(ev *routingEvent) {
	switch ev.kind {
	case 's':
		if ev.delete {
			delete(st.shards, ev.name)
		} else {
			st.shards[ev.name] = ev.shard
		}
	case 'p':
		if ev.delete {
			delete(st.primaries, ev.name)
		} else {
			st.primaries[ev.name] = ev.prim
		}
	case 'd':
		if ev.delete {
			delete(st.dbs, ev.name)
		} else {
			st.dbs[ev.name] = ev.db
		}
	case 'c':
		if ev.delete {
			delete(st.colls, ev.name)
		} else {
			st.colls[ev.name] = ev.coll
		}
	case 'k':
		set := st.chunks[ev.name]
		if ev.delete {
			if set != nil {
				set.remove(ev.minKey)
				if set.byMin.Len() == 0 {
					delete(st.chunks, ev.name)
				}
			}
			return
		}
		if set == nil {
			set = newChunkSet(ev.name)
			st.chunks[ev.name] = set
		}
		ev.chunk.UUID = set.uuid // share one string per collection
		if s := st.shards[ev.chunk.Shard]; s != nil {
			ev.chunk.Shard = s.Name
		}
		set.put(ev.chunk)
	}
}

// loadRouting reads the whole routing range at one revision.
func (c *Catalog) loadRouting(ctx context.Context) (*routingState, int64, error) {
	st := newRoutingState()
	start, end := c.routingRange()
	rev, err := c.scanRange(ctx, start, end, 0, func(kv *mvccpb.KeyValue) error {
		ev, err := c.decodeRouting(kv, false)
		if err != nil {
			return err
		}
		st.apply(&ev)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("load routing metadata: %w", err)
	}
	return st, rev, nil
}

func (m *ChunkMap) advance(rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(rev)
}

func (m *ChunkMap) advanceLocked(rev int64) {
	if rev > m.rev {
		m.rev = rev
		if !m.closed {
			close(m.advanced)
			m.advanced = make(chan struct{})
		}
	}
}

// run owns the watch until ctx ends.
func (m *ChunkMap) run(ctx context.Context) {
	defer close(m.done)
	log := m.c.log.With().Str("op", "chunkmap").Logger()
	start, end := m.c.routingRange()
	backoff := 50 * time.Millisecond
	reload := false
	for ctx.Err() == nil {
		if reload {
			st, rev, err := m.c.loadRouting(ctx)
			if err != nil {
				log.Warn().Err(err).Msg("chunk map reload failed; retrying")
				if !sleepCtx(ctx, backoff) {
					return
				}
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
			m.mu.Lock()
			m.st = st
			m.reloads++
			m.advanceLocked(rev)
			m.mu.Unlock()
			log.Info().Int64("rev", rev).Msg("chunk map reloaded after compaction")
			reload = false
		}
		m.mu.RLock()
		hook := m.beforeWatch
		m.mu.RUnlock()
		if hook != nil {
			hook()
		}
		m.mu.RLock()
		from := m.rev + 1
		m.mu.RUnlock()
		wbase, wcancel := context.WithCancel(ctx)
		wctx := clientv3.WithRequireLeader(wbase)
		wch := m.c.cli.Watch(wctx, start, clientv3.WithRange(end), clientv3.WithRev(from))
		healthy := m.watch(wctx, wch, &reload)
		wcancel()
		if healthy {
			backoff = 50 * time.Millisecond
		} else if ctx.Err() == nil {
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// watch consumes one watch until it ends; it reports whether it ended for
// a reason that needs no backoff (forced restart, compaction).
func (m *ChunkMap) watch(wctx context.Context, wch clientv3.WatchChan, reload *bool) bool {
	log := m.c.log
	for {
		select {
		case <-wctx.Done():
			return false
		case <-m.restartCh:
			return true
		case <-m.progress:
			// Answered on this watch's stream as a progress notify.
			_ = m.c.cli.RequestProgress(wctx)
		case resp, ok := <-wch:
			if !ok {
				return false
			}
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				*reload = true
				return true
			}
			if err := resp.Err(); err != nil {
				log.Warn().Err(err).Msg("chunk map watch failed; resuming")
				return false
			}
			if resp.IsProgressNotify() {
				m.advance(resp.Header.Revision)
				continue
			}
			if len(resp.Events) == 0 {
				continue
			}
			evs := make([]routingEvent, 0, len(resp.Events))
			var last int64
			for _, e := range resp.Events {
				ev, err := m.c.decodeRouting(e.Kv, e.Type == mvccpb.DELETE)
				if err != nil {
					log.Error().Err(err).Str("key", string(e.Kv.Key)).Msg("chunk map: undecodable catalog value ignored")
					continue
				}
				evs = append(evs, ev)
				last = e.Kv.ModRevision
			}
			m.mu.Lock()
			for i := range evs {
				m.st.apply(&evs[i])
			}
			// Events come in revision order and one etcd transaction's
			// events in one response, so the state is exactly the state
			// at the last event's revision.
			m.advanceLocked(last)
			m.mu.Unlock()
		}
	}
}

// restartWatch forces the watch to restart from the last applied revision
// (tests use it to exercise resumption and compaction handling).
func (m *ChunkMap) restartWatch() {
	select {
	case m.restartCh <- struct{}{}:
	default:
	}
}

// Revision returns the etcd revision the map reflects.
func (m *ChunkMap) Revision() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev
}

// WaitForRevision blocks until the map reflects revision rev (for example
// the revision of a catalog change just committed), ctx is done (its
// error), or the map is closed (ErrClosed). It asks etcd for progress
// notifications while waiting, so it also returns for revisions that
// changed nothing in the routing range.
func (m *ChunkMap) WaitForRevision(ctx context.Context, rev int64) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		m.mu.RLock()
		cur, ch, closed := m.rev, m.advanced, m.closed
		m.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case m.progress <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ---- lookups ----

func (m *ChunkMap) sharded(ns string) (*Collection, *chunkSet, error) {
	coll := m.st.colls[ns]
	if coll == nil {
		return nil, nil, coded(ErrNotFound, mongoerr.NamespaceNotFound, "collection %s not found", ns)
	}
	if !coll.Sharded {
		return nil, nil, coded(ErrNotFound, mongoerr.NamespaceNotSharded, "collection %s is not sharded", ns)
	}
	set := m.st.chunks[coll.UUID]
	if set == nil {
		return nil, nil, coded(ErrCorrupt, mongoerr.InternalError, "collection %s has no chunks", ns)
	}
	return coll, set, nil
}

// Collection returns a collection record.
func (m *ChunkMap) Collection(ns string) (Collection, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if c := m.st.colls[ns]; c != nil {
		return *c, true
	}
	return Collection{}, false
}

// Collections returns the collections of db ("" for all), sorted.
func (m *ChunkMap) Collections(db string) []Collection {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Collection
	for _, c := range m.st.colls {
		if db == "" || c.DB() == db {
			out = append(out, *c)
		}
	}
	slices.SortFunc(out, func(a, b Collection) int { return strings.Compare(a.NS, b.NS) })
	return out
}

// Database returns a database record.
func (m *ChunkMap) Database(name string) (Database, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if d := m.st.dbs[name]; d != nil {
		return *d, true
	}
	return Database{}, false
}

// Databases returns all databases sorted by name.
func (m *ChunkMap) Databases() []Database {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Database, 0, len(m.st.dbs))
	for _, d := range m.st.dbs {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Database) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Shard returns a shard record.
func (m *ChunkMap) Shard(name string) (Shard, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s := m.st.shards[name]; s != nil {
		return *s, true
	}
	return Shard{}, false
}

// Shards returns all shards sorted by name.
func (m *ChunkMap) Shards() []Shard {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Shard, 0, len(m.st.shards))
	for _, s := range m.st.shards {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Shard) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Primary returns the current primary of a shard, if any member holds the
// lease.
func (m *ChunkMap) Primary(shard string) (PrimaryInfo, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.st.primaries[shard]
	return p, ok
}

// ChunkFor returns the chunk owning the shard-key values vals (in key
// order, hashed fields already hashed: what ShardKey.Values returns).
// Errors: ErrNotFound with NamespaceNotFound / NamespaceNotSharded.
func (m *ChunkMap) ChunkFor(ns string, vals []bson.RawValue) (Chunk, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	coll, set, err := m.sharded(ns)
	if err != nil {
		return Chunk{}, err
	}
	if len(vals) != len(coll.Key) {
		return Chunk{}, coded(ErrInvalid, mongoerr.ShardKeyNotFound, "%d shard key values for key %s of %s", len(vals), coll.Key, ns)
	}
	return m.chunkForLocked(ns, set, coll.Key.Encode(vals))
}

// ChunkForDoc returns the chunk owning a document (its shard key is
// extracted with ShardKey.Values).
func (m *ChunkMap) ChunkForDoc(ns string, doc bson.Raw) (Chunk, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	coll, set, err := m.sharded(ns)
	if err != nil {
		return Chunk{}, err
	}
	enc, err := coll.Key.EncodeDoc(doc)
	if err != nil {
		return Chunk{}, err
	}
	return m.chunkForLocked(ns, set, enc)
}

// ChunkForKey returns the chunk owning an encoded shard key.
func (m *ChunkMap) ChunkForKey(ns string, enc []byte) (Chunk, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, set, err := m.sharded(ns)
	if err != nil {
		return Chunk{}, err
	}
	return m.chunkForLocked(ns, set, enc)
}

func (m *ChunkMap) chunkForLocked(ns string, set *chunkSet, enc []byte) (Chunk, error) {
	for _, ch := range set.byMin.Descend(btreemap.LE(enc), btreemap.Min[[]byte]()) {
		c := bytes.Compare(enc, ch.MaxKey)
		if c < 0 {
			return *ch, nil
		}
		// The global max bound (all MaxKey) is exclusive, but a document
		// whose shard key is MaxKey still needs an owner: the last chunk.
		if c == 0 {
			if _, last, ok := set.byMin.Max(); ok && last == ch {
				return *ch, nil
			}
		}
		break
	}
	return Chunk{}, coded(ErrCorrupt, mongoerr.InternalError, "no chunk of %s owns key %x (the chunk map has a gap)", ns, enc)
}

// ChunksOverlapping returns, in key order, the chunks of ns that overlap
// the encoded range [lo, hi); nil lo means from the start, nil hi to the
// end.
func (m *ChunkMap) ChunksOverlapping(ns string, lo, hi []byte) ([]Chunk, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, set, err := m.sharded(ns)
	if err != nil {
		return nil, err
	}
	if lo != nil && hi != nil && bytes.Compare(lo, hi) >= 0 {
		return nil, nil // empty range
	}
	from := btreemap.Min[[]byte]()
	if lo != nil {
		// Start at the chunk containing lo.
		for k := range set.byMin.Descend(btreemap.LE(lo), btreemap.Min[[]byte]()) {
			from = btreemap.GE(k)
			break
		}
	}
	to := btreemap.Max[[]byte]()
	if hi != nil {
		to = btreemap.LT(hi)
	}
	var out []Chunk
	for _, ch := range set.byMin.Ascend(from, to) {
		if lo != nil && bytes.Compare(ch.MaxKey, lo) <= 0 {
			continue
		}
		out = append(out, *ch)
	}
	return out, nil
}

// Chunks returns all chunks of ns in key order.
func (m *ChunkMap) Chunks(ns string) ([]Chunk, error) { return m.ChunksOverlapping(ns, nil, nil) }

// ShardsFor returns the shards holding data of ns, sorted: the shards
// owning its chunks, or its database's primary shard if it is unsharded or
// unknown (an unknown collection would be created there).
func (m *ChunkMap) ShardsFor(ns string) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	coll := m.st.colls[ns]
	if coll == nil || !coll.Sharded {
		db, _, err := SplitNS(ns)
		if err != nil {
			return nil, err
		}
		d := m.st.dbs[db]
		if d == nil {
			return nil, coded(ErrNotFound, mongoerr.NamespaceNotFound, "database %q not found", db)
		}
		return []string{d.PrimaryShard}, nil
	}
	set := m.st.chunks[coll.UUID]
	if set == nil {
		return nil, nil
	}
	out := make([]string, 0, len(set.byShard))
	for s := range set.byShard {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// CollectionVersion returns the collection version of a sharded ns.
func (m *ChunkMap) CollectionVersion(ns string) (CollVersion, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	coll, _, err := m.sharded(ns)
	if err != nil {
		return CollVersion{}, err
	}
	return coll.CollVersion(), nil
}

// ShardVersion returns the highest version of the chunks of ns that shard
// owns (0|0 with the collection's epoch if it owns none).
func (m *ChunkMap) ShardVersion(ns, shard string) (CollVersion, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	coll, set, err := m.sharded(ns)
	if err != nil {
		return CollVersion{}, err
	}
	v := CollVersion{Epoch: coll.Epoch}
	if t := set.byShard[shard]; t != nil {
		if ch, _, ok := t.Max(); ok {
			v.Version = ch.Version
		}
	}
	return v, nil
}

// ChunkCount returns how many chunks of ns each shard owns.
func (m *ChunkMap) ChunkCount(ns string) (map[string]int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, set, err := m.sharded(ns)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(set.byShard))
	for s, t := range set.byShard {
		out[s] = t.Len()
	}
	return out, nil
}
