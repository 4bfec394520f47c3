package storage

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// Get returns a copy of the latest document with the given _id, and false
// when there is none (or no such collection). It never waits for writers.
func (e *Engine) Get(ns string, id bson.RawValue) (bson.Raw, bool, error) {
	if err := e.begin(); err != nil {
		return nil, false, err
	}
	defer e.end()
	c := e.collection(ns)
	if c == nil || id.Type == 0 {
		return nil, false, nil
	}
	return getCopy(e.db, docKey(c.id, idKey(id)))
}

func getCopy(r pebble.Reader, key []byte) (bson.Raw, bool, error) {
	val, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %x: %w", key, err)
	}
	out := append(bson.Raw(nil), val...)
	_ = closer.Close()
	return out, true, nil
}

// Snapshot is a consistent, read-only view of the store at one moment: the
// documents, the index entries and the catalog, as of its creation. It may
// live as long as a client cursor (across many calls); it pins old data in
// Pebble until closed, so close it when done. A Snapshot and its iterators
// are safe for use by one goroutine at a time; Engine.Close closes any that
// are still open.
type Snapshot struct {
	e      *Engine
	snap   *pebble.Snapshot
	cat    *catalog
	iters  map[*Iter]struct{} // guarded by e.regMu
	closed bool               // guarded by e.regMu
}

// Snapshot opens a consistent view of the store. It never waits for data
// writes; it waits only while a catalog change is being applied.
func (e *Engine) Snapshot() (*Snapshot, error) {
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.end()
	return e.snapshot(), nil
}

func (e *Engine) snapshot() *Snapshot {
	e.ddl.RLock()
	s := &Snapshot{e: e, cat: e.cat.Load(), snap: e.db.NewSnapshot(), iters: map[*Iter]struct{}{}}
	e.ddl.RUnlock()
	e.regMu.Lock()
	e.snaps[s] = struct{}{}
	e.regMu.Unlock()
	return s
}

// Close releases the snapshot and its open iterators. It is idempotent.
func (s *Snapshot) Close() error {
	s.e.regMu.Lock()
	defer s.e.regMu.Unlock()
	if s.closed {
		return nil
	}
	delete(s.e.snaps, s)
	return s.closeLocked()
}

// closeLocked closes the iterators and the Pebble snapshot; regMu is held.
func (s *Snapshot) closeLocked() error {
	s.closed = true
	var errs []error
	for it := range s.iters {
		errs = append(errs, it.closeLocked())
	}
	errs = append(errs, s.snap.Close())
	return errors.Join(errs...)
}

// Get returns the document with the given _id as of the snapshot.
func (s *Snapshot) Get(ns string, id bson.RawValue) (bson.Raw, bool, error) {
	if err := s.e.begin(); err != nil {
		return nil, false, err
	}
	defer s.e.end()
	c := s.cat.byNS[ns]
	if c == nil || id.Type == 0 {
		return nil, false, nil
	}
	if s.isClosed() {
		return nil, false, ErrClosed
	}
	return getCopy(s.snap, docKey(c.id, idKey(id)))
}

func (s *Snapshot) isClosed() bool {
	s.e.regMu.Lock()
	defer s.e.regMu.Unlock()
	return s.closed
}

// Collections returns the collections as of the snapshot, sorted by
// namespace.
func (s *Snapshot) Collections() []CollectionInfo { return s.cat.list() }

// IDRange bounds an _id scan. A zero Lo or Hi (Type 0) is unbounded on that
// side; MinKey and MaxKey are ordinary bounds. Values compare in MongoDB's
// order (keys.Compare), so 1, int64(1) and 1.0 are the same bound.
type IDRange struct {
	Lo, Hi                   bson.RawValue
	LoInclusive, HiInclusive bool
}

// ScanIDRange iterates the collection's documents with _id in r, in _id
// order (descending when reverse). A missing collection yields nothing.
func (s *Snapshot) ScanIDRange(ns string, r IDRange, reverse bool) (*Iter, error) {
	c := s.cat.byNS[ns]
	if c == nil {
		return s.newIter(nil, 0, false, reverse)
	}
	p := docPrefix(c.id)
	lo, hi := p, prefixEnd(p)
	if r.Lo.Type != 0 {
		lo = keys.AppendValue(append([]byte(nil), p...), r.Lo)
		if !r.LoInclusive {
			lo = successor(lo)
		}
	}
	if r.Hi.Type != 0 {
		hi = keys.AppendValue(append([]byte(nil), p...), r.Hi)
		if r.HiInclusive {
			hi = successor(hi)
		}
	}
	return s.newIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi}, len(p), false, reverse)
}

// ScanIndex iterates the entries of an index in key order (descending when
// reverse), yielding each entry's key tuple, _id and document. lo
// (inclusive) and hi (exclusive) bound the key tuple: byte strings built
// with keys.EncodeTuple over a prefix of the index's fields, with the
// index's directions (keys.PrefixEnd of a tuple makes an inclusive upper
// bound for it); nil is unbounded. IndexName "_id_" scans the documents
// themselves (bounds are keys.Encode of an _id). A missing collection
// yields nothing; a missing index is IndexNotFound (27).
func (s *Snapshot) ScanIndex(ns, indexName string, lo, hi []byte, reverse bool) (*Iter, error) {
	c := s.cat.byNS[ns]
	if c == nil {
		return s.newIter(nil, 0, false, reverse)
	}
	var p []byte
	isIndex := indexName != IDIndexName
	if isIndex {
		ix := c.indexByName(indexName)
		if ix == nil {
			return nil, mongoerr.New(mongoerr.IndexNotFound, "index not found with name [%s] in %s", indexName, ns)
		}
		p = indexPrefix(c.id, ix.id)
	} else {
		p = docPrefix(c.id)
	}
	lower, upper := p, prefixEnd(p)
	if lo != nil {
		lower = append(append([]byte(nil), p...), lo...)
	}
	if hi != nil {
		upper = append(append([]byte(nil), p...), hi...)
	}
	if !isIndex && isPointRange(lo, hi) {
		// One _id: a Get, which the bloom filters let skip every table
		// that cannot hold the key, instead of an iterator that seeks in
		// all of them.
		it, err := s.newIter(nil, len(p), false, reverse)
		if it != nil {
			it.point = lower
		}
		return it, err
	}
	it, err := s.newIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper}, len(p), isIndex, reverse)
	if it != nil {
		it.coll = c.id
	}
	return it, err
}

// Iter walks a range of a Snapshot. Use:
//
//	for it.Next() { use(it.ID(), it.Doc()) }
//	if err := it.Err(); …
//	it.Close()
//
// An Iter may be kept across calls (a cursor) as long as its Snapshot is
// open. It is not safe for concurrent use. Every slice it returns is a copy
// that stays valid after Next and Close.
type Iter struct {
	s         *Snapshot
	it        *pebble.Iterator // nil: empty iteration, or a point read
	point     []byte           // a point read: the one document key to Get
	docs      *pebble.Iterator // index scans: positioned on documents by SeekGE (cheaper than a Get per entry)
	coll      uint32
	index     bool // entries of a secondary index (else documents)
	prefixLen int
	reverse   bool
	started   bool
	done      bool
	closed    bool // guarded by e.regMu

	key []byte // the index tuple, or key(_id) for document scans
	id  bson.RawValue
	doc bson.Raw
	err error
}

func (s *Snapshot) newIter(o *pebble.IterOptions, prefixLen int, index, reverse bool) (*Iter, error) {
	if err := s.e.begin(); err != nil {
		return nil, err
	}
	defer s.e.end()
	it := &Iter{s: s, prefixLen: prefixLen, index: index, reverse: reverse}
	s.e.regMu.Lock()
	defer s.e.regMu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if o != nil {
		pit, err := s.snap.NewIter(o)
		if err != nil {
			return nil, fmt.Errorf("open iterator: %w", err)
		}
		it.it = pit
	}
	s.iters[it] = struct{}{}
	return it, nil
}

// Next advances to the next entry and reports whether there is one.
func (it *Iter) Next() bool {
	if it.done || it.err != nil {
		return false
	}
	e := it.s.e
	if err := e.begin(); err != nil {
		it.err = err
		return false
	}
	defer e.end()
	if it.isClosed() {
		it.err = ErrClosed
		return false
	}
	if it.point != nil {
		return it.nextPoint()
	}
	if it.it == nil {
		it.done = true
		return false
	}
	var ok bool
	switch {
	case !it.started && it.reverse:
		ok = it.it.Last()
	case !it.started:
		ok = it.it.First()
	case it.reverse:
		ok = it.it.Prev()
	default:
		ok = it.it.Next()
	}
	it.started = true
	if !ok {
		it.done = true
		it.err = it.it.Error()
		return false
	}
	if err := it.load(); err != nil {
		it.err = err
		return false
	}
	return true
}

// nextPoint is Next of a point read: the document, if any, on the first
// call; nothing after.
func (it *Iter) nextPoint() bool {
	if it.started {
		it.done = true
		return false
	}
	it.started = true
	doc, ok, err := getCopy(it.s.snap, it.point)
	if err != nil || !ok {
		it.done, it.err = true, err
		return false
	}
	id, err := docID(doc)
	if err != nil {
		it.err = fmt.Errorf("document at %x has no leading _id: %w", it.point, err)
		return false
	}
	it.key, it.doc, it.id = it.point[it.prefixLen:], doc, id
	return true
}

// isPointRange reports whether [lo, hi) holds exactly one possible _id
// key: lo is one whole encoded value and hi its PrefixEnd. Encodings are
// prefix-free (pkg/keys), so no other key lies between them.
func isPointRange(lo, hi []byte) bool {
	if lo == nil || hi == nil || !bytes.Equal(hi, keys.PrefixEnd(lo)) {
		return false
	}
	_, rest, err := keys.DecodeValue(lo)
	return err == nil && len(rest) == 0
}

func (it *Iter) load() error {
	k := it.it.Key()
	if !it.index {
		it.key = append([]byte(nil), k[it.prefixLen:]...)
		val, err := it.it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("read document: %w", err)
		}
		it.doc = append(bson.Raw(nil), val...)
	} else {
		tuple, idk, err := splitIndexEntry(k)
		if err != nil {
			return err
		}
		it.key = append([]byte(nil), tuple...)
		if it.docs == nil {
			p := docPrefix(it.coll)
			docs, err := it.s.snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
			if err != nil {
				return fmt.Errorf("open document iterator: %w", err)
			}
			it.docs = docs
		}
		dk := docKey(it.coll, idk)
		if !it.docs.SeekGE(dk) || !bytes.Equal(it.docs.Key(), dk) {
			if err := it.docs.Error(); err != nil {
				return fmt.Errorf("read document: %w", err)
			}
			return fmt.Errorf("index entry %x points to a missing document: %w", k, ErrCorrupt)
		}
		val, err := it.docs.ValueAndErr()
		if err != nil {
			return fmt.Errorf("read document: %w", err)
		}
		it.doc = append(bson.Raw(nil), val...)
	}
	id, err := docID(it.doc)
	if err != nil {
		return fmt.Errorf("document at %x has no leading _id: %w", k, err)
	}
	it.id = id
	return nil
}

// IndexKey returns the current entry's encoded key tuple (for document
// scans, key(_id)).
func (it *Iter) IndexKey() []byte { return it.key }

// ID returns the current document's _id.
func (it *Iter) ID() bson.RawValue { return it.id }

// Doc returns the current document.
func (it *Iter) Doc() bson.Raw { return it.doc }

// Err returns the error that ended the iteration, if any.
func (it *Iter) Err() error { return it.err }

// Close releases the iterator. It is idempotent.
func (it *Iter) Close() error {
	it.s.e.regMu.Lock()
	defer it.s.e.regMu.Unlock()
	if it.closed {
		return nil
	}
	delete(it.s.iters, it)
	return it.closeLocked()
}

func (it *Iter) closeLocked() error {
	it.closed = true
	var errs []error
	if it.docs != nil {
		errs = append(errs, it.docs.Close())
	}
	if it.it != nil {
		errs = append(errs, it.it.Close())
	}
	return errors.Join(errs...)
}

func (it *Iter) isClosed() bool {
	it.s.e.regMu.Lock()
	defer it.s.e.regMu.Unlock()
	return it.closed
}
