package storage

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// IDIndexName is the name of the index on _id that every collection has.
// It is not stored as index entries: the document keys d|collID|key(_id)
// are that index.
const IDIndexName = "_id_"

// maxIndexesPerCollection is MongoDB's limit, _id_ included.
const maxIndexesPerCollection = 64

// maxIndexKeyFields is MongoDB's limit on the fields of a compound index.
const maxIndexKeyFields = 32

// IndexKeyPart is one field of an index key pattern.
type IndexKeyPart struct {
	Field string // dotted path, e.g. "a.b"
	Desc  bool   // true for -1
}

// IndexSpec describes an index. The zero Name is replaced by MongoDB's
// generated name ("a_1_b_-1").
type IndexSpec struct {
	Name   string
	Key    []IndexKeyPart
	Unique bool
	Sparse bool
	// Multikey is set by the engine (and ignored by CreateIndex) once some
	// document has produced more than one key in the index. It never goes
	// back to false while the index exists: a planner may rely on a false
	// value to intersect bounds and to read sorted results from the index.
	Multikey bool
}

// KeyPattern returns the key as MongoDB shows it: {a: 1, b: -1}.
func (s IndexSpec) KeyPattern() bson.D {
	d := make(bson.D, 0, len(s.Key))
	for _, p := range s.Key {
		dir := int32(1)
		if p.Desc {
			dir = -1
		}
		d = append(d, bson.E{Key: p.Field, Value: dir})
	}
	return d
}

// DefaultIndexName returns the name MongoDB gives an index with this key.
func DefaultIndexName(key []IndexKeyPart) string {
	parts := make([]string, 0, 2*len(key))
	for _, p := range key {
		dir := "1"
		if p.Desc {
			dir = "-1"
		}
		parts = append(parts, p.Field, dir)
	}
	return strings.Join(parts, "_")
}

func idIndexSpec() IndexSpec {
	return IndexSpec{Name: IDIndexName, Key: []IndexKeyPart{{Field: "_id"}}, Unique: true}
}

func sameKey(a, b []IndexKeyPart) bool { return slices.Equal(a, b) }

// CollectionInfo describes a collection.
type CollectionInfo struct {
	NS string
	ID uint32
}

// index is a secondary index of a collection. Immutable once published.
type index struct {
	id    uint32
	spec  IndexSpec
	paths [][]string // spec.Key fields split at dots
	desc  []bool
}

func newIndex(id uint32, spec IndexSpec) *index {
	ix := &index{id: id, spec: spec}
	for _, p := range spec.Key {
		ix.paths = append(ix.paths, strings.Split(p.Field, "."))
		ix.desc = append(ix.desc, p.Desc)
	}
	return ix
}

// collection is a collection's metadata. Immutable once published: a
// change builds a new *collection and a new *catalog.
type collection struct {
	id      uint32
	ns      string
	indexes []*index // secondary indexes in creation order; _id_ is implicit
}

func (c *collection) indexByName(name string) *index {
	for _, ix := range c.indexes {
		if ix.spec.Name == name {
			return ix
		}
	}
	return nil
}

func (c *collection) withIndexes(idx []*index) *collection {
	return &collection{id: c.id, ns: c.ns, indexes: idx}
}

// catalog is the set of collections. Immutable once published (copy on
// write): readers load it from Engine.cat without a lock.
type catalog struct {
	byNS map[string]*collection
}

func (c *catalog) list() []CollectionInfo {
	out := make([]CollectionInfo, 0, len(c.byNS))
	for _, coll := range c.byNS {
		out = append(out, CollectionInfo{NS: coll.ns, ID: coll.id})
	}
	slices.SortFunc(out, func(a, b CollectionInfo) int { return strings.Compare(a.NS, b.NS) })
	return out
}

func (c *catalog) with(coll *collection) *catalog {
	n := &catalog{byNS: maps.Clone(c.byNS)}
	n.byNS[coll.ns] = coll
	return n
}

func (c *catalog) without(ns string) *catalog {
	n := &catalog{byNS: maps.Clone(c.byNS)}
	delete(n.byNS, ns)
	return n
}

// Records stored under m|c|collID. Field names are short and stable: they
// are the on-disk format.
type collRecord struct {
	ID      int64         `bson:"id"`
	NS      string        `bson:"ns"`
	Indexes []indexRecord `bson:"indexes"`
}

type indexRecord struct {
	ID     int64       `bson:"id"`
	Name   string      `bson:"name"`
	Key    []keyRecord `bson:"key"`
	Unique bool        `bson:"unique"`
	Sparse bool        `bson:"sparse"`
	// Multikey was added after version 1 of the format; absent means false.
	Multikey bool `bson:"multikey,omitempty"`
}

type keyRecord struct {
	Field string `bson:"f"`
	Desc  bool   `bson:"d"`
}

func (c *collection) record() collRecord {
	r := collRecord{ID: int64(c.id), NS: c.ns, Indexes: []indexRecord{}}
	for _, ix := range c.indexes {
		ir := indexRecord{ID: int64(ix.id), Name: ix.spec.Name, Unique: ix.spec.Unique, Sparse: ix.spec.Sparse, Multikey: ix.spec.Multikey}
		for _, p := range ix.spec.Key {
			ir.Key = append(ir.Key, keyRecord{Field: p.Field, Desc: p.Desc})
		}
		r.Indexes = append(r.Indexes, ir)
	}
	return r
}

func marshalRecord(v any) []byte {
	b, err := bson.Marshal(v)
	if err != nil {
		// Records are plain structs of strings, integers and slices of
		// them: marshalling cannot fail.
		panic(fmt.Sprintf("storage: marshal %T: %v", v, err))
	}
	return b
}

// decodeCollRecord parses and checks a stored collection record.
func decodeCollRecord(key, val []byte, ids idsRecord) (*collection, error) {
	var r collRecord
	if err := bson.Unmarshal(val, &r); err != nil {
		return nil, fmt.Errorf("collection record %x: %v: %w", key, err, ErrCorrupt)
	}
	if r.ID <= 0 || r.ID >= ids.NextColl || string(metaCollKey(uint32(r.ID))) != string(key) {
		return nil, fmt.Errorf("collection record %x: id %d does not match its key: %w", key, r.ID, ErrCorrupt)
	}
	if err := ValidateNamespace(r.NS); err != nil {
		return nil, fmt.Errorf("collection record %x: %v: %w", key, err, ErrCorrupt)
	}
	c := &collection{id: uint32(r.ID), ns: r.NS}
	seen := map[string]bool{}
	for _, ir := range r.Indexes {
		spec := IndexSpec{Name: ir.Name, Unique: ir.Unique, Sparse: ir.Sparse, Multikey: ir.Multikey}
		for _, k := range ir.Key {
			spec.Key = append(spec.Key, IndexKeyPart{Field: k.Field, Desc: k.Desc})
		}
		if ir.ID <= 0 || ir.ID >= ids.NextIndex || seen[ir.Name] || validateIndexKey(spec.Key) != nil {
			return nil, fmt.Errorf("collection %s: bad index record %q (id %d): %w", r.NS, ir.Name, ir.ID, ErrCorrupt)
		}
		seen[ir.Name] = true
		c.indexes = append(c.indexes, newIndex(uint32(ir.ID), spec))
	}
	return c, nil
}

// idsRecord holds the ID allocators (m|n). IDs are never reused within a
// store's lifetime, so keys of a dropped collection or index can never be
// mistaken for a new one's, even if a range deletion were incomplete.
type idsRecord struct {
	NextColl  int64 `bson:"nextColl"`
	NextIndex int64 `bson:"nextIndex"`
}

// ValidateNamespace checks a "db.collection" name as MongoDB does.
func ValidateNamespace(ns string) error {
	db, coll, ok := strings.Cut(ns, ".")
	bad := !ok || db == "" || coll == "" || len(ns) > 255 || len(db) > 63 ||
		strings.ContainsAny(db, "/\\. \"$*<>:|?\x00") || strings.ContainsAny(coll, "$\x00") ||
		strings.HasPrefix(coll, ".") || strings.HasSuffix(coll, ".")
	if bad {
		return mongoerr.New(mongoerr.InvalidNamespace, "Invalid namespace specified '%s'", ns)
	}
	return nil
}

func validateIndexKey(key []IndexKeyPart) error {
	if len(key) == 0 {
		return mongoerr.New(mongoerr.CannotCreateIndex, "index key pattern must not be empty")
	}
	if len(key) > maxIndexKeyFields {
		return mongoerr.New(mongoerr.CannotCreateIndex, "index key pattern has %d fields; the maximum is %d", len(key), maxIndexKeyFields)
	}
	seen := map[string]bool{}
	for _, p := range key {
		f := p.Field
		if f == "" || strings.HasPrefix(f, "$") || strings.HasPrefix(f, ".") || strings.HasSuffix(f, ".") || strings.Contains(f, "..") || strings.ContainsRune(f, 0) {
			return mongoerr.New(mongoerr.CannotCreateIndex, "bad index key field name %q", f)
		}
		for part := range strings.SplitSeq(f, ".") {
			if strings.HasPrefix(part, "$") {
				return mongoerr.New(mongoerr.CannotCreateIndex, "index key field %q has a $-prefixed path component", f)
			}
		}
		if seen[f] {
			return mongoerr.New(mongoerr.CannotCreateIndex, "index key pattern repeats field %q", f)
		}
		seen[f] = true
	}
	return nil
}

func describeSpec(s IndexSpec) string {
	var b strings.Builder
	b.WriteString("{ key: { ")
	for i, p := range s.Key {
		if i > 0 {
			b.WriteString(", ")
		}
		dir := "1"
		if p.Desc {
			dir = "-1"
		}
		b.WriteString(p.Field + ": " + dir)
	}
	b.WriteString(" }, name: " + strconv.Quote(s.Name))
	if s.Unique {
		b.WriteString(", unique: true")
	}
	if s.Sparse {
		b.WriteString(", sparse: true")
	}
	b.WriteString(" }")
	return b.String()
}
