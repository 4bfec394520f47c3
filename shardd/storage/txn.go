package storage

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// txn is one write under construction: a Pebble indexed batch (its reads
// see the database plus what the batch already holds, so documents written
// earlier in the same call are seen by later checks) and the metadata
// changes it stages. It exists only while the engine's write lock is held;
// it ends with Engine.commit or txn.abort.
type txn struct {
	e          *Engine
	op, ns     string    // for the slow-operation log
	start      time.Time // when the write began waiting for the lock
	b          *pebble.Batch
	cat        *catalog
	catChanged bool
	ids        idsRecord
	idsChanged bool
	stats      map[uint32]*collStats // staged totals; nil means the collection was dropped
	term       uint64
	last       OpTime
	wall       time.Time
	entries    int
	// replica is set by ApplyOplog: the write replays a primary's entries,
	// which apply.go stores as received (with their own optimes), so the
	// code paths it shares with local writes (ensureCollection, insertDoc,
	// the DDL bodies) must not add entries of their own.
	replica bool
	// stmt, when set, is the retryable-write statement of the data entry
	// the write adds next: oplog attaches it to that entry and records it
	// in the batch (session.go).
	stmt *StmtWrite
}

// slowWrite is the duration from which a write is logged as slow.
const slowWrite = 500 * time.Millisecond

// newTxn starts a write. The write lock must be held.
func (e *Engine) newTxn(op, ns string, start time.Time) *txn {
	return &txn{
		e:     e,
		op:    op,
		ns:    ns,
		start: start,
		b:     e.db.NewIndexedBatch(),
		cat:   e.cat.Load(),
		ids:   e.ids,
		stats: map[uint32]*collStats{},
		term:  e.term.Load(),
		last:  e.last,
		wall:  wallNow(),
	}
}

// abort discards the write and releases the write lock.
func (t *txn) abort() {
	_ = t.b.Close()
	t.e.unlock()
}

// commit applies the write and releases the write lock, then waits for the
// WAL sync. It returns once the write is durable (or, with NoSync, applied).
//
// Group commit: the batch enters Pebble's commit pipeline while the write
// lock is held (ApplyNoSyncWait), which fixes its place in the WAL and makes
// it visible; the lock is released before waiting for the sync, so the
// writers queued behind it apply their batches meanwhile and Pebble's WAL
// writer covers all of them with the next fsync. Because the WAL is one
// sequential file, a synced batch implies every earlier batch is synced too,
// which is why markDurable may advance the durable optime to this batch's
// last entry even if an earlier writer has not yet woken up.
func (e *Engine) commit(t *txn) error {
	if t.entries == 0 {
		t.abort()
		return nil
	}
	for id, s := range t.stats {
		if s == nil {
			_ = t.b.Delete(metaStatsKey(id), nil)
		} else {
			_ = t.b.Set(metaStatsKey(id), s.encode(), nil)
		}
	}
	if t.idsChanged {
		_ = t.b.Set(metaKey(metaIDs), marshalRecord(t.ids), nil)
	}
	_ = t.b.Set(metaKey(metaLastOp), encodeOpTime(t.last), nil)

	if t.catChanged {
		e.ddl.Lock()
	}
	var err error
	if e.opts.NoSync {
		err = e.db.Apply(t.b, pebble.NoSync)
	} else {
		err = e.db.ApplyNoSyncWait(t.b, pebble.Sync)
	}
	if err == nil {
		e.last, e.ids = t.last, t.ids
		for id, s := range t.stats {
			if s == nil {
				delete(e.stats, id)
			} else {
				e.stats[id] = s
			}
		}
		if t.catChanged {
			e.cat.Store(t.cat)
		}
	}
	if t.catChanged {
		e.ddl.Unlock()
	}
	e.unlock()
	if err != nil {
		_ = t.b.Close()
		return fmt.Errorf("apply write batch: %w", err)
	}
	if !e.opts.NoSync {
		if err := t.b.SyncWait(); err != nil {
			_ = t.b.Close()
			return fmt.Errorf("sync write-ahead log: %w", err)
		}
	}
	e.markDurable(t.last)
	if d := time.Since(t.start); d >= slowWrite {
		e.log.Warn().Str("op", t.op).Str("ns", t.ns).Int("entries", t.entries).Dur("dur", d).Msg("slow write")
	}
	return t.b.Close()
}

// oplog adds an oplog entry to the write and returns its optime.
func (t *txn) oplog(op, ns string, id bson.RawValue, doc bson.Raw) OpTime {
	if t.replica {
		return t.last // ApplyOplog writes the primary's entry itself
	}
	t.last = OpTime{Term: t.term, Index: t.last.Index + 1}
	en := OplogEntry{Term: t.last.Term, Index: t.last.Index, Op: op, NS: ns, ID: id, Doc: doc, Wall: t.wall}
	if t.stmt != nil && op != OpCommand {
		en.Stmt, t.stmt = t.stmt, nil
		t.putStmt(*en.Stmt, t.last)
	}
	_ = t.b.Set(oplogKey(t.last), encodeOplogEntry(en), nil)
	t.entries++
	return t.last
}

func (t *txn) command(ns string, cmd bson.D) {
	db, _, _ := strings.Cut(ns, ".")
	t.oplog(OpCommand, db+".$cmd", bson.RawValue{}, marshalRecord(cmd))
}

// statsFor returns the staged totals of c, cloning the published ones.
func (t *txn) statsFor(c *collection) *collStats {
	if s, ok := t.stats[c.id]; ok && s != nil {
		return s
	}
	cur := t.e.stats[c.id]
	if cur == nil {
		cur = newCollStats()
	}
	s := cur.clone()
	t.stats[c.id] = s
	return s
}

// get returns a copy of the value at key as this write sees it.
func (t *txn) get(key []byte) ([]byte, bool, error) {
	val, closer, err := t.b.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %x: %w", key, err)
	}
	out := append([]byte(nil), val...)
	_ = closer.Close()
	return out, true, nil
}

// uniqueConflict reports whether an entry with this tuple exists in ix for
// a document other than the one with key(_id) self.
func (t *txn) uniqueConflict(c *collection, ix *index, tuple, self []byte) (bool, error) {
	p := append(indexPrefix(c.id, ix.id), tuple...)
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return false, fmt.Errorf("unique check on %s: %w", ix.spec.Name, err)
	}
	conflict := false
	for ok := it.First(); ok; ok = it.Next() {
		_, other, err := splitIndexEntry(it.Key())
		if err != nil {
			_ = it.Close()
			return false, err
		}
		if !bytes.Equal(other, self) {
			conflict = true
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return false, fmt.Errorf("unique check on %s: %w", ix.spec.Name, err)
	}
	return conflict, nil
}

// ensureCollection returns ns's collection, creating it in this write if it
// does not exist (MongoDB creates collections implicitly on first write).
func (t *txn) ensureCollection(ns string) (*collection, error) {
	if c := t.cat.byNS[ns]; c != nil {
		return c, nil
	}
	if t.ids.NextColl >= 1<<32 {
		return nil, mongoerr.New(mongoerr.InternalError, "collection ids exhausted")
	}
	c := &collection{id: uint32(t.ids.NextColl), ns: ns}
	t.ids.NextColl++
	t.idsChanged = true
	t.cat, t.catChanged = t.cat.with(c), true
	_ = t.b.Set(metaCollKey(c.id), marshalRecord(c.record()), nil)
	t.stats[c.id] = newCollStats()
	_, coll, _ := strings.Cut(ns, ".")
	t.command(ns, bson.D{{Key: "create", Value: coll}})
	return c, nil
}

// putCollection stages a changed collection record.
func (t *txn) putCollection(c *collection) {
	t.cat, t.catChanged = t.cat.with(c), true
	_ = t.b.Set(metaCollKey(c.id), marshalRecord(c.record()), nil)
}

// noteMultikey records that a document produced n keys in index number i
// of c: from the first document with more than one key, the index is
// multikey, in the catalog published with this write and in its stored
// record. The new catalog is published under the DDL lock together with
// the batch (Engine.commit), so a snapshot that sees such a document also
// sees the flag.
func (t *txn) noteMultikey(c *collection, i, n int) {
	if n <= 1 {
		return
	}
	cur := t.cat.byNS[c.ns]
	if cur == nil || cur.id != c.id {
		return
	}
	for j, ix := range cur.indexes {
		if ix.id != c.indexes[i].id || ix.spec.Multikey {
			continue
		}
		idx := slices.Clone(cur.indexes)
		spec := ix.spec
		spec.Multikey = true
		idx[j] = newIndex(ix.id, spec)
		t.putCollection(cur.withIndexes(idx))
	}
}

// allIndexKeys computes doc's keys in every secondary index of c.
func allIndexKeys(c *collection, doc bson.Raw) ([][]indexKey, error) {
	out := make([][]indexKey, len(c.indexes))
	for i, ix := range c.indexes {
		ks, err := ix.keysFor(doc)
		if err != nil {
			return nil, err
		}
		out[i] = ks
	}
	return out, nil
}
