package targeting

import (
	"bytes"
	"slices"
	"sort"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// fakeMeta is an in-memory Metadata for table tests: the routing
// decisions are pure functions of it. Not safe for concurrent use.
type fakeMeta struct {
	dbs    map[string]catalog.Database
	colls  map[string]catalog.Collection
	chunks map[string][]catalog.Chunk // by ns, in key order
	// onCollection, if set, runs at every Collection call (tests of the
	// consistency retry mutate the map from it).
	onCollection func(f *fakeMeta)
	calls        int
}

func newFakeMeta() *fakeMeta {
	return &fakeMeta{
		dbs: map[string]catalog.Database{
			"db": {Name: "db", PrimaryShard: "s2", Version: catalog.DatabaseVersion{UUID: "dbuuid", LastMod: 3}},
		},
		colls:  map[string]catalog.Collection{},
		chunks: map[string][]catalog.Chunk{},
	}
}

// addColl adds a sharded collection whose chunks are cut at splits (each a
// tuple of already-hashed values) and assigned to shards round-robin.
func (f *fakeMeta) addColl(t testing.TB, ns string, key catalog.ShardKey, shards []string, splits ...[]bson.RawValue) {
	t.Helper()
	bounds := [][]bson.RawValue{fill(len(key), keys.MinKey())}
	bounds = append(bounds, splits...)
	bounds = append(bounds, fill(len(key), keys.MaxKey()))
	var chunks []catalog.Chunk
	for i := 0; i+1 < len(bounds); i++ {
		lo, hi := keys.EncodeTuple(bounds[i], nil), keys.EncodeTuple(bounds[i+1], nil)
		if bytes.Compare(lo, hi) >= 0 {
			t.Fatalf("split points of %s not increasing at %d", ns, i)
		}
		chunks = append(chunks, catalog.Chunk{UUID: ns + "-uuid", MinKey: lo, MaxKey: hi,
			Min: boundDoc(t, key, bounds[i]), Max: boundDoc(t, key, bounds[i+1]),
			Shard: shards[i%len(shards)], Version: catalog.Version{Major: 1, Minor: uint32(i)}})
	}
	f.colls[ns] = catalog.Collection{NS: ns, UUID: ns + "-uuid", Epoch: ns + "-epoch", Sharded: true, Key: key,
		Version: catalog.Version{Major: 1, Minor: uint32(len(chunks) - 1)}}
	f.chunks[ns] = chunks
}

func boundDoc(t testing.TB, key catalog.ShardKey, vals []bson.RawValue) bson.Raw {
	d := bson.D{}
	for i, kf := range key {
		d = append(d, bson.E{Key: kf.Field, Value: vals[i]})
	}
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fakeMeta) Collection(ns string) (catalog.Collection, bool) {
	f.calls++
	if f.onCollection != nil {
		f.onCollection(f)
	}
	c, ok := f.colls[ns]
	return c, ok
}

func (f *fakeMeta) Database(name string) (catalog.Database, bool) {
	d, ok := f.dbs[name]
	return d, ok
}

func (f *fakeMeta) sharded(ns string) ([]catalog.Chunk, error) {
	c, ok := f.colls[ns]
	if !ok {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "no %s", ns)
	}
	if !c.Sharded {
		return nil, mongoerr.New(mongoerr.NamespaceNotSharded, "%s not sharded", ns)
	}
	return f.chunks[ns], nil
}

func (f *fakeMeta) ChunkFor(ns string, vals []bson.RawValue) (catalog.Chunk, error) {
	chunks, err := f.sharded(ns)
	if err != nil {
		return catalog.Chunk{}, err
	}
	enc := keys.EncodeTuple(vals, nil)
	i := sort.Search(len(chunks), func(i int) bool { return bytes.Compare(chunks[i].MaxKey, enc) > 0 })
	if i == len(chunks) {
		i = len(chunks) - 1 // the global max belongs to the last chunk
	}
	return chunks[i], nil
}

func (f *fakeMeta) ChunksOverlapping(ns string, lo, hi []byte) ([]catalog.Chunk, error) {
	chunks, err := f.sharded(ns)
	if err != nil {
		return nil, err
	}
	var out []catalog.Chunk
	for _, ch := range chunks {
		if (lo == nil || bytes.Compare(ch.MaxKey, lo) > 0) && (hi == nil || bytes.Compare(ch.MinKey, hi) < 0) {
			out = append(out, ch)
		}
	}
	return out, nil
}

func (f *fakeMeta) ShardsFor(ns string) ([]string, error) {
	chunks, err := f.sharded(ns)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range chunks {
		out = append(out, ch.Shard)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (f *fakeMeta) ShardVersion(ns, shard string) (catalog.CollVersion, error) {
	chunks, err := f.sharded(ns)
	if err != nil {
		return catalog.CollVersion{}, err
	}
	v := catalog.CollVersion{Epoch: f.colls[ns].Epoch}
	for _, ch := range chunks {
		if ch.Shard == shard && v.Version.Less(ch.Version) {
			v.Version = ch.Version
		}
	}
	return v, nil
}

var _ Metadata = (*fakeMeta)(nil)

// Raw value constructors for split points and filters.
func rv(t testing.TB, v any) bson.RawValue {
	t.Helper()
	if v == nil {
		return bson.RawValue{Type: bson.TypeNull}
	}
	typ, b, err := bson.MarshalValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return bson.RawValue{Type: typ, Value: b}
}

func tup(t testing.TB, vs ...any) []bson.RawValue {
	out := make([]bson.RawValue, len(vs))
	for i, v := range vs {
		if r, ok := v.(bson.RawValue); ok {
			out[i] = r
			continue
		}
		out[i] = rv(t, v)
	}
	return out
}

func raw(t testing.TB, d any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	hashedKey   = catalog.ShardKey{{Field: "h", Hashed: true}}
	rangedKey   = catalog.ShardKey{{Field: "a"}}
	compoundKey = catalog.ShardKey{{Field: "a"}, {Field: "b"}}
	dottedKey   = catalog.ShardKey{{Field: "x.y"}}
	hcompKey    = catalog.ShardKey{{Field: "h", Hashed: true}, {Field: "a"}}
	threeShards = []string{"s1", "s2", "s3"}
)

// testMeta is the fixture every table test targets against:
//
//	db.hashed   {h: "hashed"}  6 chunks cut at -6e18,-3e18,0,3e18,6e18: s1 s2 s3 s1 s2 s3
//	db.ranged   {a: 1}         [MinKey,null) s1 [null,0) s2 [0,10) s3 [10,20) s1 [20,30) s2 [30,"m") s3 ["m",MaxKey) s1
//	db.compound {a: 1, b: 1}   cut at (0,0) (1,0) (1,10) (2,"x") (5,5): s1 s2 s3 s1 s2 s3
//	db.dotted   {"x.y": 1}     cut at 0, 100: s1 s2 s3
//	db.hcomp    {h: "hashed", a: 1}  cut at (0, MinKey): s1 s2
//	db.plain    unsharded (primary s2)
func testMeta(t testing.TB) *fakeMeta {
	f := newFakeMeta()
	f.addColl(t, "db.hashed", hashedKey, threeShards,
		tup(t, int64(-6e18)), tup(t, int64(-3e18)), tup(t, int64(0)), tup(t, int64(3e18)), tup(t, int64(6e18)))
	f.addColl(t, "db.ranged", rangedKey, threeShards,
		tup(t, nil), tup(t, 0), tup(t, 10), tup(t, 20), tup(t, 30), tup(t, "m"))
	f.addColl(t, "db.compound", compoundKey, threeShards,
		tup(t, 0, 0), tup(t, 1, 0), tup(t, 1, 10), tup(t, 2, "x"), tup(t, 5, 5))
	f.addColl(t, "db.dotted", dottedKey, threeShards, tup(t, 0), tup(t, 100))
	f.addColl(t, "db.hcomp", hcompKey, []string{"s1", "s2"}, tup(t, int64(0), keys.MinKey()))
	f.colls["db.plain"] = catalog.Collection{NS: "db.plain", UUID: "plain-uuid"}
	return f
}
