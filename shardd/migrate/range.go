// Package migrate holds the shard-side building blocks of a chunk
// migration (DESIGN §7, docs/design/migrations.md): the key range of a
// chunk and its scan from a storage snapshot (Range), the donor's session
// that clones the range and turns the donor's oplog into the mods of the
// range (Source), the recipient that applies them (Recipient), the donor's
// per-range write block (CriticalSections) and the background deletion of
// a range the donor gave away (RangeDeleter).
//
// It owns no network protocol: shardd/server serves a Source over the
// Migration gRPC service, and a Recipient pulls through a
// shardpb.MigrationClient. It never changes the catalog: committing a
// migration (catalog.CommitMigration) is the orchestrator's.
package migrate

import (
	"bytes"
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/storage"
)

// Range is a chunk of a sharded collection: the documents of NS whose
// shard key (catalog.ShardKey.EncodeDoc: hashed fields hashed, a missing
// field null) lies in [Min, Max). As in the chunk map, a range whose Max is
// the global maximum (every field MaxKey) also holds the documents whose
// key is exactly that maximum. A Range is immutable and safe for
// concurrent use.
type Range struct {
	NS       string
	Key      catalog.ShardKey
	Min, Max bson.Raw
	lo, hi   []byte
	toEnd    bool // Max is the global maximum
}

// NewRange parses a range: keyPattern is the shard key document ({a: 1}
// or {k: "hashed"}), min and max bound documents with exactly the key's
// fields in key order (NumberLong, MinKey or MaxKey for a hashed field).
// Errors: BadValue (or InvalidBSON) for a malformed pattern or bound, or
// min >= max.
func NewRange(ns string, keyPattern, min, max bson.Raw) (Range, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return Range{}, err
	}
	key, err := catalog.ParseShardKey(keyPattern)
	if err != nil {
		return Range{}, err
	}
	r := Range{NS: ns, Key: key, Min: min, Max: max}
	if r.lo, err = encodeBound(key, min); err != nil {
		return Range{}, err
	}
	if r.hi, err = encodeBound(key, max); err != nil {
		return Range{}, err
	}
	if bytes.Compare(r.lo, r.hi) >= 0 {
		return Range{}, mongoerr.New(mongoerr.BadValue, "range [%s, %s) of %s is empty", min, max, ns)
	}
	r.toEnd = bytes.Equal(r.hi, key.Encode(allMaxKey(len(key))))
	return r, nil
}

func allMaxKey(n int) []bson.RawValue {
	out := make([]bson.RawValue, n)
	for i := range out {
		out[i] = keys.MaxKey()
	}
	return out
}

// encodeBound checks a bound document against the key and returns its
// ordered encoding.
func encodeBound(key catalog.ShardKey, b bson.Raw) ([]byte, error) {
	elems, err := b.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "range bound: %v", err)
	}
	if len(elems) != len(key) {
		return nil, mongoerr.New(mongoerr.BadValue, "range bound %s does not match shard key %s", b, key)
	}
	vals := make([]bson.RawValue, len(key))
	for i, e := range elems {
		v := e.Value()
		if e.Key() != key[i].Field || v.Type == bson.TypeArray {
			return nil, mongoerr.New(mongoerr.BadValue, "range bound %s does not match shard key %s", b, key)
		}
		if key[i].Hashed && v.Type != bson.TypeInt64 && v.Type != bson.TypeMinKey && v.Type != bson.TypeMaxKey {
			return nil, mongoerr.New(mongoerr.BadValue, "range bound %s: hashed field %q needs a NumberLong", b, key[i].Field)
		}
		vals[i] = v
	}
	return key.Encode(vals), nil
}

// String describes the range for logs.
func (r Range) String() string { return fmt.Sprintf("%s [%s, %s)", r.NS, r.Min, r.Max) }

// ContainsKey reports whether an encoded shard key lies in the range.
func (r Range) ContainsKey(enc []byte) bool {
	if bytes.Compare(enc, r.lo) < 0 {
		return false
	}
	c := bytes.Compare(enc, r.hi)
	return c < 0 || (c == 0 && r.toEnd)
}

// Contains reports whether doc (a document of r.NS) belongs to the range.
// A document whose shard key cannot be extracted (an array in a key
// field) belongs to no range.
func (r Range) Contains(doc bson.Raw) bool {
	enc, err := r.Key.EncodeDoc(doc)
	return err == nil && r.ContainsKey(enc)
}

// Overlaps reports whether two ranges of the same namespace share a key.
func (r Range) Overlaps(o Range) bool {
	if r.NS != o.NS {
		return false
	}
	rEnd := func(x Range) []byte {
		if x.toEnd {
			return nil
		}
		return x.hi
	}
	less := func(a []byte, endA []byte) bool { return endA == nil || bytes.Compare(a, endA) < 0 }
	return less(r.lo, rEnd(o)) && less(o.lo, rEnd(r))
}

// indexFor returns the name of an index that can serve the range scan:
// the _id index when the key is {_id: 1}, else a non-sparse, non-multikey
// ascending index whose key starts with the shard key's fields ("" when
// none, or when the key is hashed: the store has no hashed indexes).
func (r Range) indexFor(specs []storage.IndexSpec) string {
	for _, f := range r.Key {
		if f.Hashed {
			return ""
		}
	}
	if len(r.Key) == 1 && r.Key[0].Field == "_id" {
		return storage.IDIndexName
	}
	for _, s := range specs {
		if s.Name == storage.IDIndexName || s.Sparse || s.Multikey || len(s.Key) < len(r.Key) {
			continue
		}
		ok := true
		for i, f := range r.Key {
			if s.Key[i].Field != f.Field || s.Key[i].Desc {
				ok = false
				break
			}
		}
		if ok {
			return s.Name
		}
	}
	return ""
}

// Scan calls fn with every document of the range in snap, in the order of
// the shard-key index when there is one (it then reads only the range),
// else in _id order over the whole collection, keeping the documents of
// the range. It returns the name of the index used ("" for a collection
// scan). fn's document is a copy it may keep. A missing collection yields
// nothing. Scan stops with ctx's error when ctx ends.
func (r Range) Scan(ctx context.Context, snap *storage.Snapshot, fn func(doc bson.Raw) error) (string, error) {
	specs, err := snap.ListIndexes(r.NS)
	if err != nil {
		if mongoerr.CodeOf(err) == mongoerr.NamespaceNotFound {
			return "", nil
		}
		return "", err
	}
	index := r.indexFor(specs)
	var it *storage.Iter
	if index == "" {
		it, err = snap.ScanIDRange(r.NS, storage.IDRange{}, false)
	} else {
		var hi []byte
		if !r.toEnd {
			hi = r.hi
		}
		it, err = snap.ScanIndex(r.NS, index, r.lo, hi, false)
	}
	if err != nil {
		return index, fmt.Errorf("scan %s: %w", r, err)
	}
	defer func() { _ = it.Close() }()
	n := 0
	for it.Next() {
		if n++; n&255 == 0 {
			if err := ctx.Err(); err != nil {
				return index, err
			}
		}
		// Index scans re-check too: the bounds are the key's prefix, and
		// the check is what defines membership.
		if !r.Contains(it.Doc()) {
			continue
		}
		if err := fn(it.Doc()); err != nil {
			return index, err
		}
	}
	if err := it.Err(); err != nil {
		return index, fmt.Errorf("scan %s: %w", r, err)
	}
	return index, nil
}
