package storage

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

type scanCase struct {
	lo, hi  []byte
	reverse bool
	want    string // _ids in scan order
}

func enc(t testing.TB, desc []bool, vals ...any) []byte {
	t.Helper()
	rvs := make([]bson.RawValue, len(vals))
	for i, v := range vals {
		rvs[i] = rv(t, v)
	}
	return keys.EncodeTuple(rvs, desc)
}

func TestIndexKinds(t *testing.T) {
	d := func(kv ...any) bson.D {
		var out bson.D
		for i := 0; i < len(kv); i += 2 {
			out = append(out, bson.E{Key: kv[i].(string), Value: kv[i+1]})
		}
		return out
	}
	asc, desc := []bool{false}, []bool{true}
	cases := []struct {
		name  string
		spec  IndexSpec
		docs  []bson.D
		want  string // full forward scan
		nkeys int64
		scans []scanCase
	}{
		{
			name: "single ascending, mixed types, missing is null",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "a"}}},
			docs: []bson.D{d("_id", 1, "a", 3), d("_id", 2, "a", 1), d("_id", 3, "a", "x"), d("_id", 4), d("_id", 5, "a", 2.5), d("_id", 6, "a", int64(2))},
			want: "4 2 6 5 1 3", nkeys: 6,
			scans: []scanCase{
				{lo: enc(t, asc, 2), hi: enc(t, asc, 3), want: "6 5"},
				{lo: enc(t, asc, 2), hi: keys.PrefixEnd(enc(t, asc, 3)), want: "6 5 1"},
				{lo: enc(t, asc, 2), hi: keys.PrefixEnd(enc(t, asc, 3)), reverse: true, want: "1 5 6"},
				{lo: enc(t, asc, nil), hi: keys.PrefixEnd(enc(t, asc, nil)), want: "4"},
				{lo: enc(t, asc, ""), want: "3"},
			},
		},
		{
			name: "single descending",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "a", Desc: true}}},
			docs: []bson.D{d("_id", 1, "a", 3), d("_id", 2, "a", 1), d("_id", 3, "a", "x"), d("_id", 4), d("_id", 5, "a", 2.5)},
			want: "3 1 5 2 4", nkeys: 5,
			scans: []scanCase{
				{lo: enc(t, desc, 3), hi: keys.PrefixEnd(enc(t, desc, 1)), want: "1 5 2"},
				{lo: enc(t, desc, 3), hi: keys.PrefixEnd(enc(t, desc, 1)), reverse: true, want: "2 5 1"},
			},
		},
		{
			name: "compound ascending/descending",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "a"}, {Field: "b", Desc: true}}},
			docs: []bson.D{d("_id", 1, "a", 1, "b", "x"), d("_id", 2, "a", 1, "b", "y"), d("_id", 3, "a", 2, "b", "a"), d("_id", 4, "a", 1), d("_id", 5, "b", "z")},
			want: "5 2 1 4 3", nkeys: 5,
			scans: []scanCase{
				{lo: enc(t, asc, 1), hi: keys.PrefixEnd(enc(t, asc, 1)), want: "2 1 4"},
				{lo: enc(t, []bool{false, true}, 1, "x"), hi: keys.PrefixEnd(enc(t, asc, 1)), want: "1 4"},
			},
		},
		{
			name: "unique",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "u"}}, Unique: true},
			docs: []bson.D{d("_id", 1, "u", "b"), d("_id", 2, "u", "a"), d("_id", 3, "u", bson.A{"c", "d"})},
			want: "2 1 3 3", nkeys: 4,
		},
		{
			name: "sparse skips documents without the field, keeps explicit null",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "a"}}, Sparse: true},
			docs: []bson.D{d("_id", 1, "a", 1), d("_id", 2), d("_id", 3, "a", nil), d("_id", 4, "b", 1)},
			want: "3 1", nkeys: 2,
		},
		{
			name: "sparse compound indexes a document with any of the fields",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "a"}, {Field: "b"}}, Sparse: true},
			docs: []bson.D{d("_id", 1, "a", 1), d("_id", 2), d("_id", 3, "b", 1)},
			want: "3 1", nkeys: 2,
		},
		{
			name: "multikey: one entry per distinct element, empty array is undefined",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "tags"}}},
			docs: []bson.D{d("_id", 1, "tags", bson.A{3, 1}), d("_id", 2, "tags", bson.A{2}), d("_id", 3, "tags", bson.A{}), d("_id", 4, "tags", bson.A{1, 1.0, int64(1)}), d("_id", 5)},
			want: "3 5 1 4 2 1", nkeys: 6,
			scans: []scanCase{
				{lo: enc(t, asc, 1), hi: keys.PrefixEnd(enc(t, asc, 1)), want: "1 4"},
			},
		},
		{
			name: "multikey nested array element is indexed as an array",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "a"}}},
			docs: []bson.D{d("_id", 1, "a", bson.A{bson.A{1, 2}, 3}), d("_id", 2, "a", bson.A{1, 2})},
			want: "2 2 1 1", nkeys: 4,
			scans: []scanCase{
				{lo: enc(t, asc, bson.A{1, 2}), hi: keys.PrefixEnd(enc(t, asc, bson.A{1, 2})), want: "1"},
			},
		},
		{
			name: "dotted path through an array of documents",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "a.b"}}},
			docs: []bson.D{
				d("_id", 1, "a", bson.A{d("b", 2), d("b", 1)}),
				d("_id", 2, "a", d("b", 3)),
				d("_id", 3, "a", bson.A{d("c", 1)}),
				d("_id", 4, "a", bson.A{1, 2}),
				d("_id", 5, "a", bson.A{d("b", bson.A{7, 8})}),
				d("_id", 6, "a", bson.A{d("b", 9), d("x", 0)}),
			},
			want: "3 4 6 1 1 2 5 5 6", nkeys: 9,
			scans: []scanCase{
				{lo: enc(t, asc, 7), want: "5 5 6"},
			},
		},
		{
			name: "positional path component",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "a.0"}}},
			docs: []bson.D{d("_id", 1, "a", bson.A{5, 6}), d("_id", 2, "a", bson.A{4})},
			want: "2 1", nkeys: 2,
		},
		{
			name: "compound with one multikey field",
			spec: IndexSpec{Key: []IndexKeyPart{{Field: "x"}, {Field: "ys.v", Desc: true}}},
			docs: []bson.D{d("_id", 1, "x", 1, "ys", bson.A{d("v", 1), d("v", 2)}), d("_id", 2, "x", 0, "ys", bson.A{d("v", 5)})},
			want: "2 1 1", nkeys: 3,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			// Build the index both ways: before the documents (maintained on
			// insert) and after them (built over existing documents).
			for _, buildFirst := range []bool{true, false} {
				e := openTest(t, Options{NoSync: true})
				if buildFirst {
					if _, err := e.CreateIndex(ctx, testNS, c.spec); err != nil {
						t.Fatal(err)
					}
				}
				insertOK(t, e, testNS, c.docs...)
				if !buildFirst {
					if _, err := e.CreateIndex(ctx, testNS, c.spec); err != nil {
						t.Fatal(err)
					}
				}
				name := DefaultIndexName(c.spec.Key)
				s, err := e.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				it, err := s.ScanIndex(testNS, name, nil, nil, false)
				if got := strings.Join(scanIDs(t, it, err), " "); got != c.want {
					t.Fatalf("buildFirst=%v: full scan %q, want %q", buildFirst, got, c.want)
				}
				for i, sc := range c.scans {
					it, err := s.ScanIndex(testNS, name, sc.lo, sc.hi, sc.reverse)
					if got := strings.Join(scanIDs(t, it, err), " "); got != sc.want {
						t.Fatalf("buildFirst=%v: scan %d: %q, want %q", buildFirst, i, got, sc.want)
					}
				}
				_ = s.Close()
				st, err := e.Stats(testNS)
				if err != nil {
					t.Fatal(err)
				}
				if st.IndexKeys[name] != c.nkeys {
					t.Fatalf("buildFirst=%v: %d keys, want %d", buildFirst, st.IndexKeys[name], c.nkeys)
				}
				mustValid(t, e, testNS)
				// Deleting every document leaves the index empty.
				for _, doc := range c.docs {
					if ok, err := e.Delete(ctx, testNS, rv(t, doc[0].Value)); err != nil || !ok {
						t.Fatalf("Delete: %v %v", ok, err)
					}
				}
				coll := e.collection(testNS)
				if n := countKeys(t, e, collIndexPrefix(coll.id)); n != 0 {
					t.Fatalf("buildFirst=%v: %d index keys left after deleting everything", buildFirst, n)
				}
				mustValid(t, e, testNS)
			}
		})
	}
}

func TestIndexKeyAndIDIndexScan(t *testing.T) {
	e := openTest(t, Options{NoSync: true})
	if _, err := e.CreateIndex(context.Background(), testNS, IndexSpec{Key: []IndexKeyPart{{Field: "a"}, {Field: "b", Desc: true}}}); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: "k"}, {Key: "b", Value: 2}})
	s, _ := e.Snapshot()
	defer func() { _ = s.Close() }()
	it, err := s.ScanIndex(testNS, "a_1_b_-1", nil, nil, false)
	if err != nil || !it.Next() {
		t.Fatalf("scan: %v %v", err, it.Err())
	}
	if want := enc(t, []bool{false, true}, "k", 2); !bytes.Equal(it.IndexKey(), want) {
		t.Fatalf("IndexKey %x, want %x", it.IndexKey(), want)
	}
	if it.Doc().Lookup("a").StringValue() != "k" {
		t.Fatalf("doc %v", it.Doc())
	}
	_ = it.Close()
	it, err = s.ScanIndex(testNS, IDIndexName, keys.Encode(rv(t, 1)), nil, false)
	if ids := scanIDs(t, it, err); fmt.Sprint(ids) != "[1]" {
		t.Fatalf("_id_ scan %v", ids)
	}
	_, err = s.ScanIndex(testNS, "nope", nil, nil, false)
	wantCode(t, err, mongoerr.IndexNotFound)
}

func TestParallelArrays(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{NoSync: true})
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{1}}, {Key: "b", Value: bson.A{2, 3}}})
	before := rawState(t, e)
	_, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "a"}, {Field: "b"}}})
	wantCode(t, err, mongoerr.CannotIndexParallelArrays)
	if !bytes.Equal(before, rawState(t, e)) {
		t.Fatal("failed index build changed the store")
	}
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "a"}, {Field: "c"}}}); err != nil {
		t.Fatal(err)
	}
	res, _ := e.Insert(ctx, testNS, []bson.Raw{mustDoc(t, bson.D{{Key: "a", Value: bson.A{1}}, {Key: "c", Value: bson.A{}}})}, WriteOptions{})
	wantCode(t, res[0].Err, mongoerr.CannotIndexParallelArrays)
	_, err = e.Replace(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "a", Value: bson.A{1}}, {Key: "c", Value: bson.A{1}}}))
	wantCode(t, err, mongoerr.CannotIndexParallelArrays)
	mustValid(t, e, testNS)
}

func TestCreateUniqueIndexOverDuplicates(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{NoSync: true})
	insertOK(t, e, testNS,
		bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: "x"}},
		bson.D{{Key: "_id", Value: 2}, {Key: "name", Value: "y"}},
		bson.D{{Key: "_id", Value: 3}, {Key: "name", Value: bson.A{"z", "x"}}},
	)
	before := rawState(t, e)
	_, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "name"}}, Unique: true})
	wantCode(t, err, mongoerr.DuplicateKey)
	if !strings.Contains(err.Error(), `index: name_1 dup key: { name: "x" }`) {
		t.Fatalf("message %v", err)
	}
	if !bytes.Equal(before, rawState(t, e)) {
		t.Fatal("failed unique build changed the store")
	}
	if specs, _ := e.ListIndexes(testNS); len(specs) != 1 {
		t.Fatalf("indexes after failed build: %+v", specs)
	}
	// The same document repeating a value is not a duplicate.
	if _, err := e.Delete(ctx, testNS, rv(t, 1)); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 4}, {Key: "name", Value: bson.A{"w", "w"}}})
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "name"}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	mustValid(t, e, testNS)
}

// TestValidateDetects injects inconsistencies under the engine (a test
// hook: direct Pebble writes) and checks Validate reports each.
func TestValidateDetects(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		inject func(t *testing.T, e *Engine, c *collection, ix *index)
		check  func(r ValidateResult) bool
	}{
		{"extra entry for a missing document", func(t *testing.T, e *Engine, c *collection, ix *index) {
			k := indexEntryKey(c.id, ix.id, enc(t, nil, 42), keys.Encode(rv(t, 999)))
			if err := e.db.Set(k, nil, nil); err != nil {
				t.Fatal(err)
			}
		}, func(r ValidateResult) bool { return r.Extra == 1 && r.Missing == 0 && r.Stale == 0 }},
		{"stale entry for an existing document", func(t *testing.T, e *Engine, c *collection, ix *index) {
			k := indexEntryKey(c.id, ix.id, enc(t, nil, 42), keys.Encode(rv(t, 1)))
			if err := e.db.Set(k, nil, nil); err != nil {
				t.Fatal(err)
			}
		}, func(r ValidateResult) bool { return r.Stale == 1 && r.Extra == 0 && r.Missing == 0 }},
		{"missing entry", func(t *testing.T, e *Engine, c *collection, ix *index) {
			k := indexEntryKey(c.id, ix.id, enc(t, nil, 2), keys.Encode(rv(t, 2)))
			if err := e.db.Delete(k, nil); err != nil {
				t.Fatal(err)
			}
		}, func(r ValidateResult) bool { return r.Missing == 1 && r.Extra == 0 && r.Stale == 0 }},
		{"document changed under its index", func(t *testing.T, e *Engine, c *collection, ix *index) {
			if err := e.db.Set(docKey(c.id, keys.Encode(rv(t, 3))), mustDoc(t, bson.D{{Key: "_id", Value: 3}, {Key: "v", Value: 30}}), nil); err != nil {
				t.Fatal(err)
			}
		}, func(r ValidateResult) bool { return r.Missing == 1 && r.Stale == 1 && r.Extra == 0 }},
		{"document under the wrong key", func(t *testing.T, e *Engine, c *collection, ix *index) {
			if err := e.db.Set(docKey(c.id, keys.Encode(rv(t, 3))), mustDoc(t, bson.D{{Key: "_id", Value: 4}, {Key: "v", Value: 3}}), nil); err != nil {
				t.Fatal(err)
			}
		}, func(r ValidateResult) bool { return r.BadDocuments == 1 }},
		{"statistics off", func(t *testing.T, e *Engine, c *collection, ix *index) {
			if err := e.db.Set(metaStatsKey(c.id), marshalRecord(statsRecord{Count: 1}), nil); err != nil {
				t.Fatal(err)
			}
		}, func(r ValidateResult) bool { return r.StatsMismatch && r.Missing+r.Extra+r.Stale == 0 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := openTest(t, Options{NoSync: true})
			if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "v"}}}); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 5; i++ {
				insertOK(t, e, testNS, bson.D{{Key: "_id", Value: i}, {Key: "v", Value: i}})
			}
			r := mustValid(t, e, testNS)
			if r.NRecords != 5 || r.NIndexes != 2 || r.KeysPerIndex["v_1"] != 5 {
				t.Fatalf("clean result %+v", r)
			}
			coll := e.collection(testNS)
			c.inject(t, e, coll, coll.indexByName("v_1"))
			r, err := e.Validate(ctx, testNS)
			if err != nil {
				t.Fatal(err)
			}
			if r.Valid || len(r.Errors) == 0 || !c.check(r) {
				t.Fatalf("Validate did not report it: %+v", r)
			}
		})
	}
	e := openTest(t, Options{NoSync: true})
	_, err := e.Validate(ctx, "db.none")
	wantCode(t, err, mongoerr.NamespaceNotFound)
}
