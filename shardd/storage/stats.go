package storage

import (
	"maps"
	"slices"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Collection statistics are maintained incrementally: every write batch
// carries the collection's new totals (m|s|collID), so they are exact after
// any crash and Stats costs one point read. Validate recomputes them and
// reports a difference.

// idIndexID stands for the _id_ index in statistics records.
const idIndexID = 0

type idxStats struct {
	keys  int64 // entries
	bytes int64 // bytes of their Pebble keys (values are empty)
}

// collStats are a collection's totals. A *collStats in Engine.stats is
// never modified in place: a write works on a clone and swaps it in after
// its batch is applied.
type collStats struct {
	count int64 // documents
	size  int64 // sum of their BSON sizes
	idx   map[uint32]idxStats
}

func newCollStats() *collStats { return &collStats{idx: map[uint32]idxStats{idIndexID: {}}} }

func (s *collStats) clone() *collStats {
	return &collStats{count: s.count, size: s.size, idx: maps.Clone(s.idx)}
}

func (s *collStats) addKey(idx uint32, keyLen int, sign int64) {
	st := s.idx[idx]
	st.keys += sign
	st.bytes += sign * int64(keyLen)
	s.idx[idx] = st
}

// statsRecord is the stored form of collStats (m|s|collID).
type statsRecord struct {
	Count   int64            `bson:"count"`
	Size    int64            `bson:"size"`
	Indexes []idxStatsRecord `bson:"indexes"`
}

type idxStatsRecord struct {
	ID    int64 `bson:"id"`
	Keys  int64 `bson:"keys"`
	Bytes int64 `bson:"bytes"`
}

// encode builds the stored form of s by hand (it is written by every
// write); it equals bson.Marshal(s.record()).
func (s *collStats) encode() []byte {
	idx, b := bsoncore.ReserveLength(make([]byte, 0, 64+40*len(s.idx)))
	b = bsoncore.AppendInt64Element(b, "count", s.count)
	b = bsoncore.AppendInt64Element(b, "size", s.size)
	aidx, b := bsoncore.AppendArrayElementStart(b, "indexes")
	for i, id := range slices.Sorted(maps.Keys(s.idx)) {
		st := s.idx[id]
		didx, b2 := bsoncore.AppendDocumentElementStart(b, strconv.Itoa(i))
		b2 = bsoncore.AppendInt64Element(b2, "id", int64(id))
		b2 = bsoncore.AppendInt64Element(b2, "keys", st.keys)
		b2 = bsoncore.AppendInt64Element(b2, "bytes", st.bytes)
		b, _ = bsoncore.AppendDocumentEnd(b2, didx)
	}
	b, _ = bsoncore.AppendArrayEnd(b, aidx)
	b, _ = bsoncore.AppendDocumentEnd(b, idx)
	return b
}

func (s *collStats) record() statsRecord {
	r := statsRecord{Count: s.count, Size: s.size, Indexes: []idxStatsRecord{}}
	for _, id := range slices.Sorted(maps.Keys(s.idx)) {
		st := s.idx[id]
		r.Indexes = append(r.Indexes, idxStatsRecord{ID: int64(id), Keys: st.keys, Bytes: st.bytes})
	}
	return r
}

func (r statsRecord) toStats() *collStats {
	s := &collStats{count: r.Count, size: r.Size, idx: map[uint32]idxStats{}}
	for _, ir := range r.Indexes {
		s.idx[uint32(ir.ID)] = idxStats{keys: ir.Keys, bytes: ir.Bytes}
	}
	return s
}

// CollStats are a collection's statistics, the figures of MongoDB's
// collStats command.
type CollStats struct {
	NS             string
	Count          int64            // documents
	DataSize       int64            // sum of the documents' BSON sizes
	AvgObjSize     int64            // DataSize / Count (0 when empty)
	StorageSize    int64            // Pebble's estimate of the on-disk bytes of the documents (flushed tables only)
	NIndexes       int              // including _id_
	IndexSizes     map[string]int64 // bytes of each index's entries (their Pebble keys)
	IndexKeys      map[string]int64 // entries of each index
	TotalIndexSize int64
}

// Stats returns the collection's statistics from its incrementally kept
// totals (one point read). It never waits for writers.
// Errors: NamespaceNotFound (26), ErrClosed.
func (e *Engine) Stats(ns string) (CollStats, error) {
	if err := e.begin(); err != nil {
		return CollStats{}, err
	}
	defer e.end()
	// Under ddl the catalog and the stored totals belong together (a
	// concurrent drop cannot remove the record between the two reads).
	e.ddl.RLock()
	c := e.collection(ns)
	var r statsRecord
	var err error
	if c != nil {
		err = e.loadRecord(metaStatsKey(c.id), &r)
	}
	e.ddl.RUnlock()
	if c == nil {
		return CollStats{}, mongoerr.New(mongoerr.NamespaceNotFound, "Collection [%s] not found.", ns)
	}
	if err != nil {
		return CollStats{}, err
	}
	s := r.toStats()
	out := CollStats{
		NS: ns, Count: s.count, DataSize: s.size, NIndexes: 1 + len(c.indexes),
		IndexSizes: map[string]int64{}, IndexKeys: map[string]int64{},
	}
	if s.count > 0 {
		out.AvgObjSize = s.size / s.count
	}
	add := func(name string, st idxStats) {
		out.IndexSizes[name] = st.bytes
		out.IndexKeys[name] = st.keys
		out.TotalIndexSize += st.bytes
	}
	add(IDIndexName, s.idx[idIndexID])
	for _, ix := range c.indexes {
		add(ix.spec.Name, s.idx[ix.id])
	}
	p := docPrefix(c.id)
	if n, err := e.db.EstimateDiskUsage(p, prefixEnd(p)); err == nil {
		out.StorageSize = int64(n)
	}
	return out, nil
}
