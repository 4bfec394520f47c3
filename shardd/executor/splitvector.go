package executor

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/storage"
)

// Split points (MongoDB's splitVector): measuring one chunk range of a
// collection and choosing the shard-key values that cut it into pieces of
// about half the maximum chunk size. docs/design/splits.md describes the
// rules; this file is the shard's side of them.

// DefaultMaxSplitPoints caps the split points of one SplitVector when the
// caller gives no cap. It matches the catalog's limit on one SplitChunk.
const DefaultMaxSplitPoints = 8192

// DefaultMaxSortedScanDocs bounds the documents a SplitVector may hold in
// memory when no index gives the shard-key order (the range is then read
// by a collection scan and sorted).
const DefaultMaxSortedScanDocs = 1 << 20

// SplitKeyField is one field of a shard key pattern.
type SplitKeyField struct {
	Field  string
	Hashed bool
}

// ParseSplitKey parses a shard key pattern ({a: 1, b: 1} or
// {k: "hashed"}). Errors are BadValue.
func ParseSplitKey(pattern bson.Raw) ([]SplitKeyField, error) {
	elems, err := pattern.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "key pattern is not a valid BSON document: %v", err)
	}
	if len(elems) == 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "key pattern is empty")
	}
	out := make([]SplitKeyField, 0, len(elems))
	hashed := 0
	for _, e := range elems {
		f := SplitKeyField{Field: e.Key()}
		v := e.Value()
		if s, ok := v.StringValueOK(); ok && s == "hashed" {
			f.Hashed = true
			hashed++
		} else if n, ok := v.AsFloat64OK(); !ok || n != 1 {
			return nil, mongoerr.New(mongoerr.BadValue, "key pattern field %q must be 1 or \"hashed\", got %v", f.Field, v)
		}
		if f.Field == "" || strings.HasPrefix(f.Field, "$") {
			return nil, mongoerr.New(mongoerr.BadValue, "key pattern field name %q is not valid", f.Field)
		}
		out = append(out, f)
	}
	if hashed > 1 {
		return nil, mongoerr.New(mongoerr.BadValue, "a key pattern may have at most one hashed field")
	}
	return out, nil
}

// SplitSpec asks for the split points of the chunk range [Min, Max).
type SplitSpec struct {
	Key      []SplitKeyField
	Min, Max bson.Raw // bound documents with Key's fields in order
	// MaxChunkBytes > 0: a range larger than this is cut into pieces of
	// about MaxChunkBytes/2. With 0 and Force unset the range is only
	// measured.
	MaxChunkBytes int64
	// Force asks for one split point at the median document (for a hashed
	// first field: the midpoint of the hash range).
	Force bool
	// MaxPoints caps the points returned (0: DefaultMaxSplitPoints).
	MaxPoints int
	// MaxSortedDocs bounds the sorted collection-scan fallback
	// (0: DefaultMaxSortedScanDocs).
	MaxSortedDocs int
}

// SplitResult is a SplitVector's answer.
type SplitResult struct {
	// SplitKeys are bound documents, increasing, strictly inside (Min, Max).
	SplitKeys []bson.Raw
	// DataSize and NumDocs measure the range; when MaxChunkBytes is set
	// and the collection's total on this shard is within it, they are that
	// total instead (the range is not read; see SplitVector).
	DataSize int64 // bytes of the documents in the range
	NumDocs  int64
	// Jumbo: a split was needed (the range is larger than MaxChunkBytes,
	// or Force) but none is possible: every document has one key value.
	Jumbo bool
	// IndexUsed names the index read in key order; empty for a
	// collection scan.
	IndexUsed string
}

// splitRange is a parsed SplitSpec.
type splitRange struct {
	key       []SplitKeyField
	lo, hi    []byte // encoded bounds
	minVals   []bson.RawValue
	maxVals   []bson.RawValue
	maxBytes  int64
	force     bool
	maxPoints int
	maxSorted int
}

// SplitVector measures the documents of ns whose shard key lies in
// [spec.Min, spec.Max) and returns the split points (see SplitSpec). It
// reads one snapshot. Work is one pass over the range (two with Force on
// a ranged key); memory is the split points, except when no index on the
// shard key exists: then the range's keys are collected and sorted, at
// most MaxSortedDocs of them (beyond that: OperationFailed).
func (x *Executor) SplitVector(ctx context.Context, ns string, spec SplitSpec) (*SplitResult, error) {
	r, err := parseSplitSpec(spec)
	if err != nil {
		return nil, err
	}
	if !r.force && r.maxBytes > 0 {
		// A range of the collection is never larger than all of it: when
		// the whole collection here fits in MaxChunkBytes nothing needs a
		// split, and the balancer's periodic pass costs one point read
		// instead of a scan. DataSize and NumDocs are then the
		// collection's totals on this shard, an upper bound of the range's.
		if st, err := x.eng.Stats(ns); err == nil && st.DataSize <= r.maxBytes {
			return &SplitResult{DataSize: st.DataSize, NumDocs: st.Count}, nil
		}
	}
	snap, err := x.eng.Snapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	if err := waitSnapshot(ctx, snap); err != nil {
		return nil, err
	}
	if r.key[0].Hashed {
		return r.hashedSplit(ctx, snap, ns)
	}
	specs, err := snap.ListIndexes(ns)
	if err != nil && !mongoerr.HasCode(err, mongoerr.NamespaceNotFound) {
		return nil, err
	}
	var src keySource
	if name, ok := shardKeyIndex(r.key, specs); ok {
		src = &indexSource{ctx: ctx, snap: snap, ns: ns, index: name, lo: r.lo, hi: r.hi}
	} else {
		docs, err := r.collectSorted(ctx, snap, ns)
		if err != nil {
			return nil, err
		}
		src = docs
	}
	res, err := r.walk(src)
	if err != nil {
		return nil, err
	}
	if is, ok := src.(*indexSource); ok {
		res.IndexUsed = is.index
	}
	return res, nil
}

func parseSplitSpec(spec SplitSpec) (*splitRange, error) {
	if len(spec.Key) == 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "split needs a key pattern")
	}
	if spec.MaxChunkBytes < 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "maxChunkSizeBytes must not be negative, got %d", spec.MaxChunkBytes)
	}
	r := &splitRange{key: spec.Key, maxBytes: spec.MaxChunkBytes, force: spec.Force,
		maxPoints: spec.MaxPoints, maxSorted: spec.MaxSortedDocs}
	if r.maxPoints <= 0 {
		r.maxPoints = DefaultMaxSplitPoints
	}
	if r.maxSorted <= 0 {
		r.maxSorted = DefaultMaxSortedScanDocs
	}
	var err error
	if r.minVals, err = boundValues(spec.Key, "min", spec.Min); err != nil {
		return nil, err
	}
	if r.maxVals, err = boundValues(spec.Key, "max", spec.Max); err != nil {
		return nil, err
	}
	r.lo, r.hi = keys.EncodeTuple(r.minVals, nil), keys.EncodeTuple(r.maxVals, nil)
	if bytes.Compare(r.lo, r.hi) >= 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "split range min %s is not below max %s", spec.Min, spec.Max)
	}
	return r, nil
}

// boundValues checks that a bound has exactly the key's fields in order
// (NumberLong, MinKey or MaxKey for a hashed one) and returns its values.
func boundValues(key []SplitKeyField, which string, b bson.Raw) ([]bson.RawValue, error) {
	if len(b) == 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "split range needs a %s bound", which)
	}
	elems, err := b.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "%s bound is not a valid BSON document: %v", which, err)
	}
	if len(elems) != len(key) {
		return nil, mongoerr.New(mongoerr.BadValue, "%s bound %s does not match the key pattern", which, b)
	}
	vals := make([]bson.RawValue, len(key))
	for i, e := range elems {
		v := e.Value()
		switch {
		case e.Key() != key[i].Field:
			return nil, mongoerr.New(mongoerr.BadValue, "%s bound %s does not match the key pattern", which, b)
		case v.Type == bson.TypeArray:
			return nil, mongoerr.New(mongoerr.BadValue, "%s bound %s holds an array", which, b)
		case key[i].Hashed && v.Type != bson.TypeInt64 && v.Type != bson.TypeMinKey && v.Type != bson.TypeMaxKey:
			return nil, mongoerr.New(mongoerr.BadValue, "%s bound %s: hashed field %q needs a NumberLong", which, b, key[i].Field)
		}
		vals[i] = v
	}
	return vals, nil
}

// shardKeyIndex returns an index that lists documents in shard-key order:
// its leading fields are the key's, ascending, and it is neither sparse
// (documents without the key would be missing) nor multikey (one document
// would appear under several keys). A key on _id alone uses the documents;
// a key with a hashed field has no such index (shardd indexes no hashes).
func shardKeyIndex(key []SplitKeyField, specs []storage.IndexSpec) (string, bool) {
	for _, f := range key {
		if f.Hashed {
			return "", false // indexes hold values, not their hashes
		}
	}
	if len(key) == 1 && key[0].Field == "_id" {
		return storage.IDIndexName, true
	}
	for _, s := range specs {
		if s.Name == storage.IDIndexName || s.Sparse || s.Multikey || len(s.Key) < len(key) {
			continue
		}
		ok := true
		for i, f := range key {
			if s.Key[i].Field != f.Field || s.Key[i].Desc {
				ok = false
				break
			}
		}
		if ok {
			return s.Name, true
		}
	}
	return "", false
}

// docKeyValues returns a document's shard-key values as the catalog
// computes them (pkg/catalog ShardKey.Values): a missing field is null, a
// hashed field is NumberLong(keys.Hash(value)). ok is false for a
// document holding an array on a key path, which no chunk can own.
func docKeyValues(key []SplitKeyField, doc bson.Raw) ([]bson.RawValue, bool) {
	out := make([]bson.RawValue, len(key))
	for i, f := range key {
		v, err := doc.LookupErr(strings.Split(f.Field, ".")...)
		if err != nil {
			v = bson.RawValue{Type: bson.TypeNull}
		}
		if v.Type == bson.TypeArray {
			return nil, false
		}
		if f.Hashed {
			v = int64Value(keys.Hash(v))
		}
		out[i] = v
	}
	return out, true
}

func int64Value(n int64) bson.RawValue {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(n))
	return bson.RawValue{Type: bson.TypeInt64, Value: b}
}

// keySource yields the range's documents in shard-key order, as the
// encoded key (the shard-key prefix may be followed by more bytes) and
// the document's size. A source may be walked more than once.
type keySource interface {
	each(fn func(enc []byte, size int64) bool) error
}

// indexSource walks an index (or the documents, for _id) over [lo, hi).
type indexSource struct {
	ctx    context.Context
	snap   *storage.Snapshot
	ns     string
	index  string
	lo, hi []byte
}

func (s *indexSource) each(fn func(enc []byte, size int64) bool) error {
	it, err := s.snap.ScanIndex(s.ns, s.index, s.lo, s.hi, false)
	if err != nil {
		return fmt.Errorf("scan index %s of %s: %w", s.index, s.ns, err)
	}
	defer it.Close()
	n := 0
	for it.Next() {
		if n++; n&255 == 0 && s.ctx.Err() != nil {
			return mongoerr.Wrap(s.ctx.Err(), mongoerr.Interrupted, "splitVector of %s was interrupted", s.ns)
		}
		if !fn(it.IndexKey(), int64(len(it.Doc()))) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("scan index %s of %s: %w", s.index, s.ns, err)
	}
	return nil
}

// sortedDocs is the fallback source: the range's keys collected by a
// collection scan and sorted.
type sortedDocs []keyedDoc

type keyedDoc struct {
	enc  []byte
	size int64
}

func (d sortedDocs) each(fn func(enc []byte, size int64) bool) error {
	for _, k := range d {
		if !fn(k.enc, k.size) {
			return nil
		}
	}
	return nil
}

// scanRange calls fn for every document of ns whose shard key is in
// [lo, hi), in _id order, with its encoded key and size.
func (r *splitRange) scanRange(ctx context.Context, snap *storage.Snapshot, ns string, fn func(enc []byte, size int64) error) error {
	it, err := snap.ScanIDRange(ns, storage.IDRange{}, false)
	if err != nil {
		return fmt.Errorf("scan %s: %w", ns, err)
	}
	defer it.Close()
	n := 0
	for it.Next() {
		if n++; n&255 == 0 && ctx.Err() != nil {
			return mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "splitVector of %s was interrupted", ns)
		}
		doc := it.Doc()
		vals, ok := docKeyValues(r.key, doc)
		if !ok {
			continue
		}
		enc := keys.EncodeTuple(vals, nil)
		if bytes.Compare(enc, r.lo) < 0 || bytes.Compare(enc, r.hi) >= 0 {
			continue
		}
		if err := fn(enc, int64(len(doc))); err != nil {
			return err
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("scan %s: %w", ns, err)
	}
	return nil
}

// collectSorted reads the range by a collection scan and sorts it by key.
func (r *splitRange) collectSorted(ctx context.Context, snap *storage.Snapshot, ns string) (sortedDocs, error) {
	var out sortedDocs
	err := r.scanRange(ctx, snap, ns, func(enc []byte, size int64) error {
		if len(out) >= r.maxSorted {
			return mongoerr.New(mongoerr.OperationFailed,
				"cannot compute split points of %s: more than %d documents in the range and no index on the shard key to read them in order", ns, r.maxSorted)
		}
		out = append(out, keyedDoc{enc: enc, size: size})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b keyedDoc) int { return bytes.Compare(a.enc, b.enc) })
	return out, nil
}

// keyPrefix returns the shard-key part of an encoded index key.
func (r *splitRange) keyPrefix(enc []byte) ([]byte, error) {
	_, rest, err := keys.DecodeTuple(enc, len(r.key), nil)
	if err != nil {
		return nil, fmt.Errorf("decode index key %x: %w", enc, err)
	}
	return enc[:len(enc)-len(rest)], nil
}

// boundDoc turns an encoded shard key into a bound document.
func (r *splitRange) boundDoc(prefix []byte) (bson.Raw, error) {
	vals, _, err := keys.DecodeTuple(prefix, len(r.key), nil)
	if err != nil {
		return nil, fmt.Errorf("decode split key %x: %w", prefix, err)
	}
	for i, f := range r.key {
		if f.Hashed {
			if n, ok := vals[i].AsInt64OK(); ok {
				vals[i] = int64Value(n)
			}
		}
	}
	return r.bound(vals)
}

func (r *splitRange) bound(vals []bson.RawValue) (bson.Raw, error) {
	d := make(bson.D, len(r.key))
	for i, f := range r.key {
		d[i] = bson.E{Key: f.Field, Value: vals[i]}
	}
	b, err := bson.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode split key: %w", err)
	}
	return b, nil
}

// walk chooses split points over a source in key order. A point is
// always the key of a document that starts a new key value, so every
// piece is non-empty and a run of one key value is never cut.
//
// Without Force, a new piece starts at the first new key value after the
// current piece reached MaxChunkBytes/2; the points are kept only if the
// whole range is larger than MaxChunkBytes. With Force, the one point is
// the key of the median document, or, when the median shares the first
// key of the range, the next key value after it.
func (r *splitRange) walk(src keySource) (*SplitResult, error) {
	res := &SplitResult{}
	var (
		prev     []byte // shard key of the previous document
		piece    int64
		points   [][]byte
		distinct bool // more than one key value in the range
		perr     error
	)
	half := r.maxBytes / 2
	if half <= 0 {
		half = 1
	}
	cutting := !r.force && r.maxBytes > 0
	err := src.each(func(enc []byte, size int64) bool {
		p, err := r.keyPrefix(enc)
		if err != nil {
			perr = err
			return false
		}
		newKey := prev != nil && !bytes.Equal(p, prev)
		distinct = distinct || newKey
		if cutting && newKey && piece >= half && len(points) < r.maxPoints {
			points = append(points, p)
			piece = 0
		}
		piece += size
		res.DataSize += size
		res.NumDocs++
		prev = append(prev[:0], p...)
		return true
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	switch {
	case r.force:
		if res.NumDocs == 0 {
			return res, nil
		}
		p, err := r.median(src, res.NumDocs)
		if err != nil {
			return nil, err
		}
		if p == nil {
			res.Jumbo = true
			return res, nil
		}
		points = [][]byte{p}
	case !cutting || res.DataSize <= r.maxBytes:
		return res, nil
	case !distinct:
		res.Jumbo = true
		return res, nil
	case len(points) == 0:
		// Larger than the maximum yet no piece reached half of it: a few
		// large documents. Cut at the median instead.
		p, err := r.median(src, res.NumDocs)
		if err != nil {
			return nil, err
		}
		if p != nil {
			points = [][]byte{p}
		}
	}
	for _, p := range points {
		b, err := r.boundDoc(p)
		if err != nil {
			return nil, err
		}
		res.SplitKeys = append(res.SplitKeys, b)
	}
	return res, nil
}

// median returns the split key closest to the median document of n: the
// median's key when it differs from the range's first key, else the next
// key value after the median; nil when the range holds one key value.
func (r *splitRange) median(src keySource, n int64) ([]byte, error) {
	var (
		first, point []byte
		i            int64
		perr         error
	)
	err := src.each(func(enc []byte, _ int64) bool {
		p, err := r.keyPrefix(enc)
		if err != nil {
			perr = err
			return false
		}
		if i == 0 {
			first = slices.Clone(p)
		}
		i++
		if i-1 >= n/2 && !bytes.Equal(p, first) {
			point = slices.Clone(p)
			return false
		}
		return true
	})
	if err == nil {
		err = perr
	}
	return point, err
}

// hashedSplit splits a range of a key whose first field is hashed by the
// hash values themselves: the hash range [lo, hi) of the first field is
// cut into equal parts (two with Force; enough pieces of about
// MaxChunkBytes/2 otherwise), which needs no knowledge of the data
// because hashes are uniform. The range is still scanned to measure it.
// A range spanning one hash value falls back to the data (walk).
func (r *splitRange) hashedSplit(ctx context.Context, snap *storage.Snapshot, ns string) (*SplitResult, error) {
	lo, hi := hashBound(r.minVals[0]), hashBound(r.maxVals[0])
	span := new(big.Int).Sub(hi, lo)
	if span.Cmp(big.NewInt(2)) < 0 {
		docs, err := r.collectSorted(ctx, snap, ns)
		if err != nil {
			return nil, err
		}
		return r.walk(docs)
	}
	res := &SplitResult{}
	err := r.scanRange(ctx, snap, ns, func(_ []byte, size int64) error {
		res.DataSize += size
		res.NumDocs++
		return nil
	})
	if err != nil {
		return nil, err
	}
	pieces := int64(0)
	switch {
	case r.force:
		pieces = 2
	case r.maxBytes > 0 && res.DataSize > r.maxBytes:
		half := max(r.maxBytes/2, 1)
		pieces = (res.DataSize + half - 1) / half
	default:
		return res, nil
	}
	pieces = min(pieces, int64(r.maxPoints)+1)
	if span.Cmp(big.NewInt(pieces)) < 0 {
		pieces = span.Int64()
	}
	rest := make([]bson.RawValue, len(r.key))
	for i := range rest {
		rest[i] = keys.MinKey()
	}
	for i := int64(1); i < pieces; i++ {
		p := new(big.Int).Mul(span, big.NewInt(i))
		p.Quo(p, big.NewInt(pieces))
		p.Add(p, lo)
		vals := slices.Clone(rest)
		vals[0] = int64Value(p.Int64())
		b, err := r.bound(vals)
		if err != nil {
			return nil, err
		}
		res.SplitKeys = append(res.SplitKeys, b)
	}
	return res, nil
}

// hashBound maps a hashed bound's first value onto the integers: a
// NumberLong is itself, MinKey is the smallest hash and MaxKey one past
// the largest (so [MinKey, MaxKey) covers every hash).
func hashBound(v bson.RawValue) *big.Int {
	switch v.Type {
	case bson.TypeMinKey:
		return big.NewInt(-1 << 63)
	case bson.TypeMaxKey:
		return new(big.Int).Lsh(big.NewInt(1), 63)
	default:
		return big.NewInt(v.Int64()) // boundValues allows only NumberLong besides MinKey and MaxKey
	}
}
