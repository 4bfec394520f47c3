package executor

import (
	"context"
	"math"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/storage"
)

var (
	keyX      = []SplitKeyField{{Field: "x"}}
	keyHashed = []SplitKeyField{{Field: "k", Hashed: true}}
	pad       = strings.Repeat("p", 80)
)

func bnd(t *testing.T, field string, v any) bson.Raw { return doc(t, bson.D{{Key: field, Value: v}}) }

func allX(t *testing.T) (bson.Raw, bson.Raw) {
	return bnd(t, "x", bson.MinKey{}), bnd(t, "x", bson.MaxKey{})
}

func splitVector(t *testing.T, x *Executor, ns string, spec SplitSpec) *SplitResult {
	t.Helper()
	res, err := x.SplitVector(context.Background(), ns, spec)
	if err != nil {
		t.Fatalf("SplitVector(%s): %v", ns, err)
	}
	return res
}

// xPoints returns the split keys' x values, checking they increase.
func xPoints(t *testing.T, res *SplitResult) []int64 {
	t.Helper()
	var out []int64
	for i, k := range res.SplitKeys {
		v, ok := k.Lookup("x").AsInt64OK()
		if !ok {
			t.Fatalf("split key %d %s has no integer x", i, k)
		}
		if i > 0 && v <= out[i-1] {
			t.Fatalf("split keys not increasing: %v then %d", out, v)
		}
		out = append(out, v)
	}
	return out
}

// pieceSizes returns the bytes of each piece the points cut docs into
// (docs given as x value and size, in any order).
func pieceSizes(points []int64, xs []int64, sizes []int64) []int64 {
	out := make([]int64, len(points)+1)
	for i, x := range xs {
		p := 0
		for p < len(points) && x >= points[p] {
			p++
		}
		out[p] += sizes[i]
	}
	return out
}

func loadX(t *testing.T, eng *storage.Engine, ns string, xs []int64) []int64 {
	t.Helper()
	sizes := make([]int64, len(xs))
	load(t, eng, ns, len(xs), func(i int) bson.D {
		d := bson.D{{Key: "_id", Value: i}, {Key: "x", Value: xs[i]}, {Key: "pad", Value: pad}}
		sizes[i] = int64(len(doc(t, d)))
		return d
	})
	return sizes
}

func indexX(t *testing.T, eng *storage.Engine, ns string) {
	t.Helper()
	if _, err := eng.CreateIndex(context.Background(), ns, storage.IndexSpec{Name: "x_1", Key: []storage.IndexKeyPart{{Field: "x"}}}); err != nil {
		t.Fatal(err)
	}
}

// TestSplitVectorRangedEven cuts evenly spread data into pieces of about
// half the maximum, the same with the shard-key index and without it.
func TestSplitVectorRangedEven(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	xs := make([]int64, 1000)
	for i := range xs {
		xs[i] = int64((i * 7919) % 1000) // a permutation: _id order is not key order
	}
	sizes := loadX(t, eng, "db.idx", xs)
	loadX(t, eng, "db.scan", xs)
	indexX(t, eng, "db.idx")
	docSize := sizes[0]
	const maxBytes = 20000
	lo, hi := allX(t)

	var byIndex []int64
	for _, ns := range []string{"db.idx", "db.scan"} {
		res := splitVector(t, x, ns, SplitSpec{Key: keyX, Min: lo, Max: hi, MaxChunkBytes: maxBytes})
		if wantIdx := map[string]string{"db.idx": "x_1", "db.scan": ""}[ns]; res.IndexUsed != wantIdx {
			t.Fatalf("%s: index used %q, want %q", ns, res.IndexUsed, wantIdx)
		}
		if res.NumDocs != 1000 || res.DataSize != 1000*docSize || res.Jumbo {
			t.Fatalf("%s: docs %d size %d jumbo %v", ns, res.NumDocs, res.DataSize, res.Jumbo)
		}
		pts := xPoints(t, res)
		if want := int(1000*docSize/(maxBytes/2)) - 1; len(pts) < want || len(pts) > want+1 {
			t.Fatalf("%s: %d split points %v, want %d or %d", ns, len(pts), pts, want, want+1)
		}
		ps := pieceSizes(pts, xs, sizes)
		for i, s := range ps[:len(ps)-1] {
			if s < maxBytes/2 || s >= maxBytes/2+docSize {
				t.Fatalf("%s: piece %d holds %d bytes, want [%d, %d)", ns, i, s, maxBytes/2, maxBytes/2+docSize)
			}
		}
		if ns == "db.idx" {
			byIndex = pts
		} else if len(byIndex) != len(pts) {
			t.Fatalf("index scan points %v, collection scan points %v", byIndex, pts)
		} else {
			for i := range pts {
				if pts[i] != byIndex[i] {
					t.Fatalf("index scan points %v, collection scan points %v", byIndex, pts)
				}
			}
		}
	}

	// Small enough: measured, not split.
	res := splitVector(t, x, "db.idx", SplitSpec{Key: keyX, Min: lo, Max: hi, MaxChunkBytes: 1000*docSize + 1})
	if len(res.SplitKeys) != 0 || res.NumDocs != 1000 {
		t.Fatalf("range under the maximum: %v", res)
	}
	// Measure only; a sub-range counts only its documents.
	res = splitVector(t, x, "db.idx", SplitSpec{Key: keyX, Min: bnd(t, "x", 100), Max: bnd(t, "x", 300)})
	if len(res.SplitKeys) != 0 || res.NumDocs != 200 || res.DataSize != 200*docSize {
		t.Fatalf("measure [100, 300): %+v", res)
	}
	// The cap on points.
	res = splitVector(t, x, "db.idx", SplitSpec{Key: keyX, Min: lo, Max: hi, MaxChunkBytes: maxBytes, MaxPoints: 3})
	if len(res.SplitKeys) != 3 {
		t.Fatalf("MaxPoints 3: %d points", len(res.SplitKeys))
	}
	// A missing collection is an empty range.
	res = splitVector(t, x, "db.none", SplitSpec{Key: keyX, Min: lo, Max: hi, MaxChunkBytes: maxBytes, Force: true})
	if len(res.SplitKeys) != 0 || res.NumDocs != 0 || res.Jumbo {
		t.Fatalf("missing collection: %+v", res)
	}
}

// TestSplitVectorSkewed never cuts a run of one key value: a hot value
// lands whole in one piece, and the other pieces stay near half the
// maximum.
func TestSplitVectorSkewed(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	var xs []int64
	for i := range 600 {
		xs = append(xs, int64(i))
	}
	for range 400 {
		xs = append(xs, 300) // a hot key: 401 documents with x = 300
	}
	sizes := loadX(t, eng, "db.c", xs)
	indexX(t, eng, "db.c")
	docSize := sizes[0]
	const maxBytes = 20000
	lo, hi := allX(t)
	res := splitVector(t, x, "db.c", SplitSpec{Key: keyX, Min: lo, Max: hi, MaxChunkBytes: maxBytes})
	pts := xPoints(t, res)
	ps := pieceSizes(pts, xs, sizes)
	hot := 0 // the piece holding x = 300
	for hot < len(pts) && pts[hot] <= 300 {
		hot++
	}
	if ps[hot] < 401*docSize || hot >= len(pts) || pts[hot] != 301 {
		t.Fatalf("the hot key 300 is not in one piece ending at 301: points %v sizes %v", pts, ps)
	}
	for i, s := range ps[:len(ps)-1] {
		if i != hot && (s < maxBytes/2 || s >= maxBytes/2+docSize) {
			t.Fatalf("piece %d holds %d bytes: points %v sizes %v", i, s, pts, ps)
		}
	}
	// The median of the skewed range is the hot key.
	res = splitVector(t, x, "db.c", SplitSpec{Key: keyX, Min: lo, Max: hi, Force: true})
	if pts := xPoints(t, res); len(pts) != 1 || pts[0] != 300 {
		t.Fatalf("forced split of the skewed range at %v, want [300]", pts)
	}
	// A range whose median shares the first key: the next key value.
	res = splitVector(t, x, "db.c", SplitSpec{Key: keyX, Min: bnd(t, "x", 300), Max: hi, Force: true})
	if pts := xPoints(t, res); len(pts) != 1 || pts[0] != 301 {
		t.Fatalf("forced split of [300, MaxKey) at %v, want [301]", pts)
	}
}

// TestSplitVectorJumbo reports a range of one key value as jumbo.
func TestSplitVectorJumbo(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	xs := make([]int64, 300)
	for i := range xs {
		xs[i] = 5
	}
	loadX(t, eng, "db.c", xs)
	indexX(t, eng, "db.c")
	lo, hi := allX(t)
	for _, spec := range []SplitSpec{
		{Key: keyX, Min: lo, Max: hi, MaxChunkBytes: 1000},
		{Key: keyX, Min: lo, Max: hi, Force: true},
	} {
		res := splitVector(t, x, "db.c", spec)
		if !res.Jumbo || len(res.SplitKeys) != 0 || res.NumDocs != 300 {
			t.Fatalf("single key range (force %v): %+v", spec.Force, res)
		}
	}
	// Not jumbo when no split is needed.
	res := splitVector(t, x, "db.c", SplitSpec{Key: keyX, Min: lo, Max: hi, MaxChunkBytes: 1 << 30})
	if res.Jumbo {
		t.Fatalf("small single-key range reported jumbo")
	}
	// A few documents larger than half the maximum: cut at the median.
	big := strings.Repeat("b", 4000)
	load(t, eng, "db.big", 4, func(i int) bson.D {
		return bson.D{{Key: "_id", Value: i}, {Key: "x", Value: i}, {Key: "pad", Value: big}}
	})
	res = splitVector(t, x, "db.big", SplitSpec{Key: keyX, Min: lo, Max: hi, MaxChunkBytes: 3000})
	if pts := xPoints(t, res); len(pts) == 0 {
		t.Fatalf("large documents: no split point: %+v", res)
	}
}

// TestSplitVectorForceMedian splits at the median document.
func TestSplitVectorForceMedian(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	xs := make([]int64, 101)
	for i := range xs {
		xs[i] = int64(100 - i)
	}
	loadX(t, eng, "db.c", xs)
	indexX(t, eng, "db.c")
	lo, hi := allX(t)
	for _, tc := range []struct {
		lo, hi bson.Raw
		want   int64
	}{
		{lo, hi, 50},
		{bnd(t, "x", 10), bnd(t, "x", 60), 35},
		{bnd(t, "x", 10), bnd(t, "x", 12), 11},
	} {
		res := splitVector(t, x, "db.c", SplitSpec{Key: keyX, Min: tc.lo, Max: tc.hi, Force: true})
		if pts := xPoints(t, res); len(pts) != 1 || pts[0] != tc.want {
			t.Fatalf("median of [%s, %s): %v, want %d", tc.lo, tc.hi, pts, tc.want)
		}
	}
	// One document: nothing to split at.
	res := splitVector(t, x, "db.c", SplitSpec{Key: keyX, Min: bnd(t, "x", 10), Max: bnd(t, "x", 11), Force: true})
	if len(res.SplitKeys) != 0 || !res.Jumbo {
		t.Fatalf("one document forced: %+v", res)
	}
	// _id as the shard key reads the documents themselves.
	res = splitVector(t, x, "db.c", SplitSpec{Key: []SplitKeyField{{Field: "_id"}}, Min: bnd(t, "_id", bson.MinKey{}), Max: bnd(t, "_id", bson.MaxKey{}), Force: true})
	if res.IndexUsed != storage.IDIndexName || len(res.SplitKeys) != 1 || res.SplitKeys[0].Lookup("_id").AsInt64() != 50 {
		t.Fatalf("median by _id: %+v", res)
	}
}

// TestSplitVectorCompound uses an index whose leading fields are the key.
func TestSplitVectorCompound(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	load(t, eng, "db.c", 400, func(i int) bson.D {
		return bson.D{{Key: "_id", Value: i}, {Key: "a", Value: i % 4}, {Key: "b", Value: i}, {Key: "c", Value: pad}}
	})
	if _, err := eng.CreateIndex(context.Background(), "db.c", storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "a"}, {Field: "b"}, {Field: "c"}}}); err != nil {
		t.Fatal(err)
	}
	key := []SplitKeyField{{Field: "a"}, {Field: "b"}}
	lo := doc(t, bson.D{{Key: "a", Value: bson.MinKey{}}, {Key: "b", Value: bson.MinKey{}}})
	hi := doc(t, bson.D{{Key: "a", Value: bson.MaxKey{}}, {Key: "b", Value: bson.MaxKey{}}})
	res := splitVector(t, x, "db.c", SplitSpec{Key: key, Min: lo, Max: hi, Force: true})
	if res.IndexUsed != "a_1_b_1_c_1" || len(res.SplitKeys) != 1 {
		t.Fatalf("compound: %+v", res)
	}
	// 400 documents, 100 per a value: the median (200th) is {a: 2, b: 2}.
	if k := res.SplitKeys[0]; k.Lookup("a").AsInt64() != 2 || k.Lookup("b").AsInt64() != 2 || len(mustElems(t, k)) != 2 {
		t.Fatalf("compound median %s, want {a: 2, b: 2}", k)
	}
}

// TestSplitVectorHashedNotFirst reads a key whose hashed field is not
// the first by a sorted collection scan, even when an index on the plain
// values exists.
func TestSplitVectorHashedNotFirst(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	load(t, eng, "db.c", 100, func(i int) bson.D {
		return bson.D{{Key: "_id", Value: i}, {Key: "a", Value: i % 2}, {Key: "h", Value: i}}
	})
	if _, err := eng.CreateIndex(context.Background(), "db.c", storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "a"}, {Field: "h"}}}); err != nil {
		t.Fatal(err)
	}
	key := []SplitKeyField{{Field: "a"}, {Field: "h", Hashed: true}}
	lo := doc(t, bson.D{{Key: "a", Value: bson.MinKey{}}, {Key: "h", Value: bson.MinKey{}}})
	hi := doc(t, bson.D{{Key: "a", Value: bson.MaxKey{}}, {Key: "h", Value: bson.MaxKey{}}})
	res := splitVector(t, x, "db.c", SplitSpec{Key: key, Min: lo, Max: hi, Force: true})
	if res.IndexUsed != "" || len(res.SplitKeys) != 1 || res.NumDocs != 100 {
		t.Fatalf("hashed second field: %+v", res)
	}
	// The median: the 50th document in (a, hash(h)) order, which is the
	// first of a = 1; its h is a NumberLong hash.
	k := res.SplitKeys[0]
	if k.Lookup("a").AsInt64() != 1 || k.Lookup("h").Type != bson.TypeInt64 {
		t.Fatalf("median %s, want {a: 1, h: NumberLong(...)}", k)
	}
	want := int64(math.MaxInt64)
	for i := 1; i < 100; i += 2 {
		want = min(want, keys.Hash(bson.RawValue{Type: bson.TypeInt32, Value: bsonInt32(int32(i))}))
	}
	if k.Lookup("h").Int64() != want {
		t.Fatalf("median %s, want h = %d (the smallest hash of a = 1)", k, want)
	}
}

func mustElems(t *testing.T, d bson.Raw) []bson.RawElement {
	el, err := d.Elements()
	if err != nil {
		t.Fatal(err)
	}
	return el
}

// TestSplitVectorHashed cuts hashed ranges at hash values, with or
// without data.
func TestSplitVectorHashed(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	lo, hi := bnd(t, "k", bson.MinKey{}), bnd(t, "k", bson.MaxKey{})
	hashOf := func(k bson.Raw) int64 {
		t.Helper()
		v := k.Lookup("k")
		if v.Type != bson.TypeInt64 {
			t.Fatalf("hashed split key %s is not a NumberLong", k)
		}
		return v.Int64()
	}

	// No data needed: the midpoint of the whole hash range is 0, of
	// [0, MaxKey) 2^62, of [-8, -4) -6.
	for _, tc := range []struct {
		lo, hi bson.Raw
		want   int64
	}{
		{lo, hi, 0},
		{bnd(t, "k", int64(0)), hi, 1 << 62},
		{lo, bnd(t, "k", int64(0)), -1 << 62},
		{bnd(t, "k", int64(-8)), bnd(t, "k", int64(-4)), -6},
	} {
		res := splitVector(t, x, "db.h", SplitSpec{Key: keyHashed, Min: tc.lo, Max: tc.hi, Force: true})
		if len(res.SplitKeys) != 1 || hashOf(res.SplitKeys[0]) != tc.want || res.Jumbo {
			t.Fatalf("hash midpoint of [%s, %s): %+v, want %d", tc.lo, tc.hi, res, tc.want)
		}
	}
	// One hash value cannot be cut by hash.
	res := splitVector(t, x, "db.h", SplitSpec{Key: keyHashed, Min: bnd(t, "k", int64(7)), Max: bnd(t, "k", int64(8)), Force: true})
	if len(res.SplitKeys) != 0 {
		t.Fatalf("range of one hash value split: %+v", res)
	}

	// With data: enough equal hash ranges for pieces of about half the
	// maximum; uniform hashes fill them about equally.
	var size int64
	load(t, eng, "db.h", 2000, func(i int) bson.D {
		d := bson.D{{Key: "_id", Value: i}, {Key: "k", Value: i}, {Key: "pad", Value: pad}}
		size += int64(len(doc(t, d)))
		return d
	})
	res = splitVector(t, x, "db.h", SplitSpec{Key: keyHashed, Min: lo, Max: hi, MaxChunkBytes: size / 2})
	if res.NumDocs != 2000 || res.DataSize != size || len(res.SplitKeys) != 3 {
		t.Fatalf("hashed split of 2000 docs at max size/2: %+v", res)
	}
	pts := []int64{hashOf(res.SplitKeys[0]), hashOf(res.SplitKeys[1]), hashOf(res.SplitKeys[2])}
	if pts[0] != -1<<62 || pts[1] != 0 || pts[2] != 1<<62 {
		t.Fatalf("hashed points %v, want quarters of the hash range", pts)
	}
	counts := make([]int, 4)
	for i := range 2000 {
		h := keys.Hash(bson.RawValue{Type: bson.TypeInt32, Value: bsonInt32(int32(i))})
		p := 0
		for p < 3 && h >= pts[p] {
			p++
		}
		counts[p]++
	}
	for i, c := range counts {
		if math.Abs(float64(c)-500) > 100 {
			t.Fatalf("hashed piece %d holds %d of 2000 documents: %v", i, c, counts)
		}
	}
	// Below the maximum: measured only.
	res = splitVector(t, x, "db.h", SplitSpec{Key: keyHashed, Min: lo, Max: hi, MaxChunkBytes: size * 2})
	if len(res.SplitKeys) != 0 || res.NumDocs != 2000 {
		t.Fatalf("hashed range under the maximum: %+v", res)
	}
	// A sub-range of hashes counts the documents hashing into it.
	res = splitVector(t, x, "db.h", SplitSpec{Key: keyHashed, Min: bnd(t, "k", int64(0)), Max: hi})
	if res.NumDocs != int64(counts[2]+counts[3]) {
		t.Fatalf("documents in [0, MaxKey): %d, want %d", res.NumDocs, counts[2]+counts[3])
	}
	// Even one hot value never makes a hashed range jumbo while the
	// range spans more than one hash.
	load(t, eng, "db.hot", 500, func(i int) bson.D {
		return bson.D{{Key: "_id", Value: i}, {Key: "k", Value: "same"}, {Key: "pad", Value: pad}}
	})
	res = splitVector(t, x, "db.hot", SplitSpec{Key: keyHashed, Min: lo, Max: hi, MaxChunkBytes: 1000})
	if res.Jumbo || len(res.SplitKeys) == 0 {
		t.Fatalf("hot hashed value: %+v", res)
	}
}

func bsonInt32(n int32) []byte {
	return []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}
}

// TestSplitVectorErrors refuses bad ranges and key patterns.
func TestSplitVectorErrors(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	lo, hi := allX(t)
	for _, tc := range []struct {
		name string
		spec SplitSpec
	}{
		{"no key", SplitSpec{Min: lo, Max: hi}},
		{"min not below max", SplitSpec{Key: keyX, Min: hi, Max: lo}},
		{"empty range", SplitSpec{Key: keyX, Min: lo, Max: lo}},
		{"bound with another field", SplitSpec{Key: keyX, Min: bnd(t, "y", 1), Max: hi}},
		{"missing bound", SplitSpec{Key: keyX, Max: hi}},
		{"array bound", SplitSpec{Key: keyX, Min: bnd(t, "x", bson.A{1}), Max: hi}},
		{"hashed bound not a NumberLong", SplitSpec{Key: keyHashed, Min: bnd(t, "k", 1), Max: bnd(t, "k", bson.MaxKey{})}},
		{"negative max", SplitSpec{Key: keyX, Min: lo, Max: hi, MaxChunkBytes: -1}},
	} {
		_, err := x.SplitVector(context.Background(), "db.c", tc.spec)
		if !mongoerr.HasCode(err, mongoerr.BadValue) {
			t.Errorf("%s: %v, want BadValue", tc.name, err)
		}
	}
	for _, p := range []bson.D{{}, {{Key: "a", Value: "text"}}, {{Key: "a", Value: -1}}, {{Key: "a", Value: "hashed"}, {Key: "b", Value: "hashed"}}} {
		if _, err := ParseSplitKey(doc(t, p)); !mongoerr.HasCode(err, mongoerr.BadValue) {
			t.Errorf("ParseSplitKey(%v): %v, want BadValue", p, err)
		}
	}
	k, err := ParseSplitKey(doc(t, bson.D{{Key: "a", Value: 1.0}, {Key: "h", Value: "hashed"}}))
	if err != nil || len(k) != 2 || k[0] != (SplitKeyField{Field: "a"}) || k[1] != (SplitKeyField{Field: "h", Hashed: true}) {
		t.Fatalf("ParseSplitKey: %v %v", k, err)
	}
	// The sorted fallback is bounded.
	load(t, eng, "db.c", 20, func(i int) bson.D { return bson.D{{Key: "_id", Value: i}, {Key: "x", Value: i}} })
	_, err = x.SplitVector(context.Background(), "db.c", SplitSpec{Key: keyX, Min: lo, Max: hi, Force: true, MaxSortedDocs: 10})
	if !mongoerr.HasCode(err, mongoerr.OperationFailed) {
		t.Fatalf("sorted fallback over its bound: %v", err)
	}
}

// TestSplitVectorSmallCollection: when the whole collection on the shard
// fits in MaxChunkBytes, no range of it can need a split; the answer comes
// from the collection's totals (an upper bound of the range's) without a
// scan, and a measuring call (no MaxChunkBytes) still measures the range.
func TestSplitVectorSmallCollection(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	xs := make([]int64, 100)
	for i := range xs {
		xs[i] = int64(i)
	}
	sizes := loadX(t, eng, "db.small", xs)
	total := sumInts(sizes)
	lo, hi := allX(t)
	half := bnd(t, "x", 50)
	for _, c := range []struct {
		name     string
		max      bson.Raw // the range is [MinKey, max)
		maxBytes int64
		docs     int64
		size     int64
		split    bool
	}{
		{"all, fits", hi, total, 100, total, false},
		{"half, fits: the collection's totals", half, total + 1, 100, total, false},
		{"half, measured", half, 0, 50, sumInts(sizes[:50]), false},
		{"all, larger than the maximum", hi, total - 1, 100, total, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := splitVector(t, x, "db.small", SplitSpec{Key: keyX, Min: lo, Max: c.max, MaxChunkBytes: c.maxBytes})
			if res.NumDocs != c.docs || res.DataSize != c.size || (len(res.SplitKeys) > 0) != c.split {
				t.Fatalf("docs %d size %d split keys %d, want docs %d size %d split %v", res.NumDocs, res.DataSize, len(res.SplitKeys), c.docs, c.size, c.split)
			}
		})
	}
}

func sumInts(xs []int64) int64 {
	n := int64(0)
	for _, x := range xs {
		n += x
	}
	return n
}
