package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestCRUD(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	insertOK(t, e, testNS,
		bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: "a"}},
		bson.D{{Key: "_id", Value: "s"}, {Key: "name", Value: "b"}},
	)
	steps := []struct {
		name    string
		run     func() (bool, error)
		wantOK  bool
		wantErr mongoerr.Code
	}{
		{"replace existing", func() (bool, error) {
			return e.Replace(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "name", Value: "a2"}}))
		}, true, 0},
		{"replace by equal numeric _id", func() (bool, error) {
			return e.Replace(ctx, testNS, rv(t, 1.0), mustDoc(t, bson.D{{Key: "_id", Value: int64(1)}, {Key: "name", Value: "a3"}}))
		}, true, 0},
		{"replace changing _id", func() (bool, error) {
			return e.Replace(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "_id", Value: 2}}))
		}, false, mongoerr.ImmutableField},
		{"replace missing doc", func() (bool, error) {
			return e.Replace(ctx, testNS, rv(t, 99), mustDoc(t, bson.D{{Key: "x", Value: 1}}))
		}, false, 0},
		{"replace missing collection", func() (bool, error) {
			return e.Replace(ctx, "db.none", rv(t, 1), mustDoc(t, bson.D{{Key: "x", Value: 1}}))
		}, false, 0},
		{"delete existing", func() (bool, error) { return e.Delete(ctx, testNS, rv(t, "s")) }, true, 0},
		{"delete again", func() (bool, error) { return e.Delete(ctx, testNS, rv(t, "s")) }, false, 0},
		{"delete missing collection", func() (bool, error) { return e.Delete(ctx, "db.none", rv(t, "s")) }, false, 0},
	}
	for _, st := range steps {
		ok, err := st.run()
		if st.wantErr != 0 {
			wantCode(t, err, st.wantErr)
		} else if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if ok != st.wantOK {
			t.Fatalf("%s: got %v, want %v", st.name, ok, st.wantOK)
		}
	}
	doc, found, err := e.Get(testNS, rv(t, int64(1)))
	if err != nil || !found {
		t.Fatalf("Get: %v %v", found, err)
	}
	if got := doc.Lookup("name").StringValue(); got != "a3" {
		t.Fatalf("name = %q, want a3", got)
	}
	if first, _ := doc.IndexErr(0); first.Key() != "_id" {
		t.Fatalf("_id is not the first field of %v", doc)
	}
	if _, found, _ := e.Get(testNS, rv(t, "s")); found {
		t.Fatal("deleted document still found")
	}
	st, err := e.Stats(testNS)
	if err != nil {
		t.Fatal(err)
	}
	if st.Count != 1 || st.DataSize != int64(len(doc)) {
		t.Fatalf("stats %+v, want count 1 size %d", st, len(doc))
	}
	mustValid(t, e, testNS)
}

func TestInsertIDHandling(t *testing.T) {
	e := openTest(t, Options{})
	cases := []struct {
		name string
		doc  bson.D
		want func(id bson.RawValue) bool
	}{
		{"missing _id gets ObjectId", bson.D{{Key: "a", Value: 1}}, func(id bson.RawValue) bool { return id.Type == bson.TypeObjectID }},
		{"_id not first is moved", bson.D{{Key: "a", Value: 1}, {Key: "_id", Value: "x"}}, func(id bson.RawValue) bool { return id.StringValue() == "x" }},
		{"_id document", bson.D{{Key: "_id", Value: bson.D{{Key: "k", Value: 1}}}}, func(id bson.RawValue) bool { return id.Type == bson.TypeEmbeddedDocument }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := insertOK(t, e, testNS, c.doc)
			if !c.want(res[0].ID) {
				t.Fatalf("unexpected _id %v", res[0].ID)
			}
			doc, found, err := e.Get(testNS, res[0].ID)
			if err != nil || !found {
				t.Fatalf("Get: %v %v", found, err)
			}
			first, _ := doc.IndexErr(0)
			if first.Key() != "_id" || !first.Value().Equal(res[0].ID) {
				t.Fatalf("stored %v: _id not first or different", doc)
			}
			elems, _ := doc.Elements()
			if len(elems) != len(c.doc)+btoi(!hasID(c.doc)) {
				t.Fatalf("stored %v has %d fields", doc, len(elems))
			}
		})
	}
	mustValid(t, e, testNS)
}

func hasID(d bson.D) bool {
	for _, e := range d {
		if e.Key == "_id" {
			return true
		}
	}
	return false
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestBadInput checks each refused document gets its code and that the
// refused write changes nothing at all in the store.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{MaxDocumentSize: 4096})
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "u"}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "p"}, {Field: "q"}}}); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "u", Value: "x"}})

	valid := mustDoc(t, bson.D{{Key: "_id", Value: 5}, {Key: "a", Value: "b"}})
	badLen := slices.Clone(valid)
	binary.LittleEndian.PutUint32(badLen, uint32(len(valid)+3))
	truncated := valid[:len(valid)-2]
	badType := slices.Clone(valid)
	badType[4+len("\x10_id\x00")+4] = 0x42 // type byte of field "a"
	noNull := slices.Clone(valid)
	noNull[len(noNull)-1] = 1
	big := mustDoc(t, bson.D{{Key: "_id", Value: 6}, {Key: "s", Value: strings.Repeat("x", 5000)}})

	cases := []struct {
		name string
		doc  bson.Raw
		code mongoerr.Code
	}{
		{"too large", big, mongoerr.BSONObjectTooLarge},
		{"length header too big", badLen, mongoerr.InvalidBSON},
		{"truncated", truncated, mongoerr.InvalidBSON},
		{"unknown element type", badType, mongoerr.InvalidBSON},
		{"missing terminator", noNull, mongoerr.InvalidBSON},
		{"empty bytes", bson.Raw{}, mongoerr.InvalidBSON},
		{"garbage", bson.Raw("\x01\x02\x03"), mongoerr.InvalidBSON},
		{"dollar field", mustDoc(t, bson.D{{Key: "_id", Value: 7}, {Key: "$set", Value: 1}}), mongoerr.DollarPrefixedFieldName},
		{"dollar field first", mustDoc(t, bson.D{{Key: "$x", Value: 1}}), mongoerr.DollarPrefixedFieldName},
		{"duplicate _id", mustDoc(t, bson.D{{Key: "_id", Value: 1}}), mongoerr.DuplicateKey},
		{"duplicate _id other numeric type", mustDoc(t, bson.D{{Key: "_id", Value: 1.0}}), mongoerr.DuplicateKey},
		{"unique violation", mustDoc(t, bson.D{{Key: "_id", Value: 8}, {Key: "u", Value: "x"}}), mongoerr.DuplicateKey},
		{"array _id", mustDoc(t, bson.D{{Key: "_id", Value: bson.A{1}}}), mongoerr.InvalidIdField},
		{"regex _id", mustDoc(t, bson.D{{Key: "_id", Value: bson.Regex{Pattern: "a"}}}), mongoerr.InvalidIdField},
		{"two _id fields", mustDoc(t, bson.D{{Key: "_id", Value: 9}, {Key: "_id", Value: 10}}), mongoerr.BadValue},
		{"parallel arrays", mustDoc(t, bson.D{{Key: "_id", Value: 11}, {Key: "p", Value: bson.A{1}}, {Key: "q", Value: bson.A{2}}}), mongoerr.CannotIndexParallelArrays},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := rawState(t, e)
			last := e.LastOpTime()
			res, err := e.Insert(ctx, testNS, []bson.Raw{c.doc}, WriteOptions{Ordered: true})
			if err != nil {
				t.Fatalf("Insert: call error %v", err)
			}
			if len(res) != 1 {
				t.Fatalf("%d results", len(res))
			}
			wantCode(t, res[0].Err, c.code)
			if !bytes.Equal(before, rawState(t, e)) {
				t.Fatal("refused insert changed the store")
			}
			if e.LastOpTime() != last {
				t.Fatal("refused insert wrote an oplog entry")
			}
		})
	}
	t.Run("replace with bad documents", func(t *testing.T) {
		before := rawState(t, e)
		for _, c := range cases[:9] {
			if _, err := e.Replace(ctx, testNS, rv(t, 1), c.doc); mongoerr.CodeOf(err) != c.code {
				t.Fatalf("%s: Replace error %v, want code %v", c.name, err, c.code)
			}
		}
		if !bytes.Equal(before, rawState(t, e)) {
			t.Fatal("refused replace changed the store")
		}
	})
	t.Run("document of exactly the maximum size", func(t *testing.T) {
		pad := 4096 - len(mustDoc(t, bson.D{{Key: "_id", Value: 12}, {Key: "s", Value: ""}}))
		insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 12}, {Key: "s", Value: strings.Repeat("y", pad)}})
	})
	mustValid(t, e, testNS)
}

func TestBadInput16MiB(t *testing.T) {
	e := openTest(t, Options{})
	doc := mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "s", Value: strings.Repeat("x", DefaultMaxDocumentSize)}})
	res, err := e.Insert(context.Background(), testNS, []bson.Raw{doc}, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, res[0].Err, mongoerr.BSONObjectTooLarge)
	if !strings.Contains(res[0].Err.Error(), "max size: 16777216") {
		t.Fatalf("message %q", res[0].Err)
	}
	if n := len(e.ListCollections()); n != 0 {
		t.Fatalf("refused insert created %d collections", n)
	}
	// A document of exactly the limit is accepted (its batch is larger than
	// half a memtable, so Pebble takes its large-batch path).
	pad := DefaultMaxDocumentSize - len(mustDoc(t, bson.D{{Key: "_id", Value: 2}, {Key: "s", Value: ""}}))
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 2}, {Key: "s", Value: strings.Repeat("y", pad)}})
	got, found, err := e.Get(testNS, rv(t, 2))
	if err != nil || !found || len(got) != DefaultMaxDocumentSize {
		t.Fatalf("Get of the largest document: %d bytes, %v %v", len(got), found, err)
	}
	if _, err := e.Replace(context.Background(), testNS, rv(t, 2), mustDoc(t, bson.D{{Key: "s", Value: "small"}})); err != nil {
		t.Fatal(err)
	}
	mustValid(t, e, testNS)
}

func TestInsertOrderedUnordered(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			e := openTest(t, Options{})
			docs := []bson.Raw{
				mustDoc(t, bson.D{{Key: "_id", Value: 1}}),
				mustDoc(t, bson.D{{Key: "_id", Value: 2}}),
				mustDoc(t, bson.D{{Key: "_id", Value: 1}}), // duplicate within the call
				mustDoc(t, bson.D{{Key: "$bad", Value: 1}}),
				mustDoc(t, bson.D{{Key: "_id", Value: 3}}),
			}
			res, err := e.Insert(context.Background(), testNS, docs, WriteOptions{Ordered: ordered})
			if err != nil {
				t.Fatal(err)
			}
			wantLen, wantCount := 5, int64(3)
			if ordered {
				wantLen, wantCount = 3, 2
			}
			if len(res) != wantLen {
				t.Fatalf("%d results, want %d", len(res), wantLen)
			}
			wantCode(t, res[2].Err, mongoerr.DuplicateKey)
			if !ordered {
				wantCode(t, res[3].Err, mongoerr.DollarPrefixedFieldName)
			}
			st, _ := e.Stats(testNS)
			if st.Count != wantCount {
				t.Fatalf("count %d, want %d", st.Count, wantCount)
			}
			// One oplog entry per written document, after the create entry.
			ops, err := e.ReadOplog(OpTime{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(ops)) != 1+wantCount || ops[0].Op != OpCommand {
				t.Fatalf("oplog %+v", ops)
			}
			for i, r := range res {
				if r.Err == nil && r.OpTime.IsZero() {
					t.Fatalf("result %d has no optime", i)
				}
			}
			mustValid(t, e, testNS)
		})
	}
}

func TestDuplicateKeyMessages(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	for _, spec := range []IndexSpec{
		{Key: []IndexKeyPart{{Field: "name"}}, Unique: true},
		{Key: []IndexKeyPart{{Field: "a"}, {Field: "b", Desc: true}}, Unique: true},
		{Key: []IndexKeyPart{{Field: "o.p"}}, Unique: true},
	} {
		if _, err := e.CreateIndex(ctx, testNS, spec); err != nil {
			t.Fatal(err)
		}
	}
	oid := bson.NewObjectID()
	insertOK(t, e, testNS,
		bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: "x"}, {Key: "a", Value: 1}, {Key: "b", Value: "q"}, {Key: "o", Value: bson.D{{Key: "p", Value: 2.5}}}},
		bson.D{{Key: "_id", Value: oid}, {Key: "name", Value: "y"}, {Key: "a", Value: 2}, {Key: "o", Value: bson.D{{Key: "p", Value: 3.0}}}},
	)
	cases := []struct {
		name string
		doc  bson.D
		msg  string
	}{
		{"string", bson.D{{Key: "name", Value: "x"}},
			`E11000 duplicate key error collection: db.coll index: name_1 dup key: { name: "x" }`},
		{"int _id", bson.D{{Key: "_id", Value: 1}},
			`E11000 duplicate key error collection: db.coll index: _id_ dup key: { _id: 1 }`},
		{"ObjectId _id", bson.D{{Key: "_id", Value: oid}},
			fmt.Sprintf(`E11000 duplicate key error collection: db.coll index: _id_ dup key: { _id: ObjectId('%s') }`, oid.Hex())},
		{"compound", bson.D{{Key: "name", Value: "z"}, {Key: "a", Value: 1}, {Key: "b", Value: "q"}},
			`E11000 duplicate key error collection: db.coll index: a_1_b_-1 dup key: { a: 1, b: "q" }`},
		{"compound with missing field", bson.D{{Key: "name", Value: "w"}, {Key: "a", Value: 2}, {Key: "o", Value: 1}},
			`E11000 duplicate key error collection: db.coll index: a_1_b_-1 dup key: { a: 2, b: null }`},
		{"dotted, equal number of another type", bson.D{{Key: "name", Value: "v"}, {Key: "o", Value: bson.D{{Key: "p", Value: int64(3)}}}},
			`E11000 duplicate key error collection: db.coll index: o.p_1 dup key: { o.p: 3 }`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := e.Insert(ctx, testNS, []bson.Raw{mustDoc(t, c.doc)}, WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wantCode(t, res[0].Err, mongoerr.DuplicateKey)
			me, _ := mongoerr.As(res[0].Err)
			if me.Msg != c.msg {
				t.Fatalf("message\n got %s\nwant %s", me.Msg, c.msg)
			}
			var dk *DuplicateKeyError
			if !errors.As(res[0].Err, &dk) || dk.NS != testNS || len(dk.KeyValue) == 0 {
				t.Fatalf("not a DuplicateKeyError with details: %#v", res[0].Err)
			}
		})
	}
	t.Run("replace into a taken key", func(t *testing.T) {
		_, err := e.Replace(ctx, testNS, rv(t, oid), mustDoc(t, bson.D{{Key: "name", Value: "x"}}))
		wantCode(t, err, mongoerr.DuplicateKey)
	})
	t.Run("replace keeping its own key", func(t *testing.T) {
		ok, err := e.Replace(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "name", Value: "x"}, {Key: "extra", Value: true}}))
		if err != nil || !ok {
			t.Fatalf("Replace: %v %v", ok, err)
		}
	})
	mustValid(t, e, testNS)
}

func TestUniqueNullsAndSparse(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if _, err := e.CreateIndex(ctx, "db.u", IndexSpec{Key: []IndexKeyPart{{Field: "k"}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateIndex(ctx, "db.s", IndexSpec{Key: []IndexKeyPart{{Field: "k"}}, Unique: true, Sparse: true}); err != nil {
		t.Fatal(err)
	}
	// Unique: the second document without k collides on null.
	insertOK(t, e, "db.u", bson.D{{Key: "_id", Value: 1}})
	res, _ := e.Insert(ctx, "db.u", []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: 2}})}, WriteOptions{})
	wantCode(t, res[0].Err, mongoerr.DuplicateKey)
	// Unique sparse: documents without k are not indexed, so no collision;
	// an explicit null is indexed.
	insertOK(t, e, "db.s", bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "_id", Value: 3}, {Key: "k", Value: nil}})
	res, _ = e.Insert(ctx, "db.s", []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: 4}, {Key: "k", Value: nil}})}, WriteOptions{})
	wantCode(t, res[0].Err, mongoerr.DuplicateKey)
	// Two documents of one call with the same unique key: the second sees
	// the first (same batch).
	res, err := e.Insert(ctx, "db.u", []bson.Raw{
		mustDoc(t, bson.D{{Key: "_id", Value: 10}, {Key: "k", Value: "same"}}),
		mustDoc(t, bson.D{{Key: "_id", Value: 11}, {Key: "k", Value: "same"}}),
	}, WriteOptions{})
	if err != nil || len(res) != 2 || res[0].Err != nil {
		t.Fatalf("Insert: %v %+v", err, res)
	}
	wantCode(t, res[1].Err, mongoerr.DuplicateKey)
	st, _ := e.Stats("db.s")
	if st.IndexKeys["k_1"] != 1 {
		t.Fatalf("sparse index has %d keys, want 1", st.IndexKeys["k_1"])
	}
	mustValid(t, e, "db.u")
	mustValid(t, e, "db.s")
}

// TestConcurrentSameKey checks the write lock's invariant: of many writers
// racing for the same _id or the same unique key, exactly one succeeds.
func TestConcurrentSameKey(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "u"}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		const writers = 16
		var wg sync.WaitGroup
		var mu sync.Mutex
		okID, okUnique := 0, 0
		for w := range writers {
			wg.Add(2)
			go func() {
				defer wg.Done()
				res, err := e.Insert(ctx, testNS, []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: fmt.Sprintf("same-%d", round)}, {Key: "u", Value: fmt.Sprintf("a-%d-%d", round, w)}})}, WriteOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if res[0].Err == nil {
					okID++
				} else if mongoerr.CodeOf(res[0].Err) != mongoerr.DuplicateKey {
					t.Errorf("unexpected error %v", res[0].Err)
				}
			}()
			go func() {
				defer wg.Done()
				res, err := e.Insert(ctx, testNS, []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: fmt.Sprintf("u-%d-%d", round, w)}, {Key: "u", Value: fmt.Sprintf("same-%d", round)}})}, WriteOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if res[0].Err == nil {
					okUnique++
				}
			}()
		}
		wg.Wait()
		if okID != 1 || okUnique != 1 {
			t.Fatalf("round %d: %d writers won the _id, %d the unique key; want 1 and 1", round, okID, okUnique)
		}
	}
	mustValid(t, e, testNS)
}

func TestIDRangeScan(t *testing.T) {
	e := openTest(t, Options{})
	var docs []bson.D
	for i := range 10 {
		var id any = int32(i)
		switch i % 3 {
		case 1:
			id = int64(i)
		case 2:
			id = float64(i)
		}
		docs = append(docs, bson.D{{Key: "_id", Value: id}})
	}
	docs = append(docs, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "_id", Value: 2.5}})
	insertOK(t, e, testNS, docs...)
	s, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	cases := []struct {
		name    string
		r       IDRange
		reverse bool
		want    string
	}{
		{"all", IDRange{}, false, "0 1 2.0 2.5 3 4 5.0 6 7 8.0 9 \"a\" \"b\""},
		{"all reverse", IDRange{}, true, "\"b\" \"a\" 9 8.0 7 6 5.0 4 3 2.5 2.0 1 0"},
		{"[2, 5)", IDRange{Lo: rv(t, 2), Hi: rv(t, int64(5)), LoInclusive: true}, false, "2.0 2.5 3 4"},
		{"(2, 5]", IDRange{Lo: rv(t, 2), Hi: rv(t, 5.0), HiInclusive: true}, false, "2.5 3 4 5.0"},
		{"(2, 5] reverse", IDRange{Lo: rv(t, 2), Hi: rv(t, 5), HiInclusive: true}, true, "5.0 4 3 2.5"},
		{"[MinKey, 1]", IDRange{Lo: keys.MinKey(), Hi: rv(t, 1), LoInclusive: true, HiInclusive: true}, false, "0 1"},
		{"(8, MaxKey]", IDRange{Lo: rv(t, 8), Hi: keys.MaxKey(), HiInclusive: true}, false, "9 \"a\" \"b\""},
		{"strings only", IDRange{Lo: rv(t, ""), Hi: rv(t, bson.D{}), LoInclusive: true}, false, "\"a\" \"b\""},
		{"empty", IDRange{Lo: rv(t, 100), Hi: rv(t, 200)}, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			it, err := s.ScanIDRange(testNS, c.r, c.reverse)
			got := strings.Join(scanIDs(t, it, err), " ")
			if got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	it, err := s.ScanIDRange("db.missing", IDRange{}, false)
	if ids := scanIDs(t, it, err); len(ids) != 0 {
		t.Fatalf("missing collection yielded %v", ids)
	}
}

// TestIDPointScan covers the point read of ScanIndex on _id_: a range
// [Encode(v), PrefixEnd(Encode(v))) is one Get, and answers what a scan of
// that range would: the one document equal to v in MongoDB's order (2 and
// 2.0 are one _id), nothing for a missing one, nothing from the
// neighbours, and the document as of the snapshot.
func TestIDPointScan(t *testing.T) {
	e := openTest(t, Options{NoSync: true})
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "_id", Value: 2.0}, {Key: "v", Value: "old"}},
		bson.D{{Key: "_id", Value: int64(3)}}, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "_id", Value: "ab"}})
	s, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if _, err := e.Replace(context.Background(), testNS, rv(t, 2), mustDoc(t, bson.D{{Key: "_id", Value: 2.0}, {Key: "v", Value: "new"}})); err != nil {
		t.Fatal(err)
	}
	point := func(v any) []string {
		t.Helper()
		lo := keys.Encode(rv(t, v))
		if !isPointRange(lo, keys.PrefixEnd(lo)) {
			t.Fatalf("%v: not a point range", v)
		}
		it, err := s.ScanIndex(testNS, IDIndexName, lo, keys.PrefixEnd(lo), false)
		return scanIDs(t, it, err)
	}
	for _, c := range []struct {
		v    any
		want string
	}{{int64(1), "[1]"}, {2, "[2.0]"}, {3.0, "[3]"}, {"a", "[\"a\"]"}, {"ab", "[\"ab\"]"}, {4, "[]"}, {"b", "[]"}} {
		if got := fmt.Sprint(point(c.v)); got != c.want {
			t.Errorf("point %v: got %s, want %s", c.v, got, c.want)
		}
	}
	lo := keys.Encode(rv(t, 2))
	it, err := s.ScanIndex(testNS, IDIndexName, lo, keys.PrefixEnd(lo), false)
	if err != nil || !it.Next() {
		t.Fatalf("point 2: %v %v", err, it.Err())
	}
	if got := it.Doc().Lookup("v").StringValue(); got != "old" {
		t.Fatalf("point read saw %q, not the snapshot's document", got)
	}
	if !bytes.Equal(it.IndexKey(), lo) || it.Next() {
		t.Fatalf("IndexKey %x (want %x), or a second result", it.IndexKey(), lo)
	}
	_ = it.Close()
	// Ranges that are not one whole value stay scans.
	if isPointRange(lo[:len(lo)-1], keys.PrefixEnd(lo[:len(lo)-1])) || isPointRange(lo, nil) || isPointRange(nil, lo) {
		t.Fatal("a partial or open range taken for a point")
	}
	it, err = s.ScanIndex("db.missing", IDIndexName, lo, keys.PrefixEnd(lo), false)
	if ids := scanIDs(t, it, err); len(ids) != 0 {
		t.Fatalf("missing collection yielded %v", ids)
	}
}

func TestSnapshotIsolation(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "v"}}}); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 10}}, bson.D{{Key: "_id", Value: 2}, {Key: "v", Value: 20}})
	s, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	it, err := s.ScanIndex(testNS, "v_1", nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() {
		t.Fatal("no first entry")
	}
	// Writes after the snapshot, including a catalog change, stay invisible
	// to it, also to an iterator already half way.
	if _, err := e.Delete(ctx, testNS, rv(t, 2)); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 3}, {Key: "v", Value: 15}})
	if err := e.DropIndex(ctx, testNS, "v_1"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	ids = append(ids, shell(it.ID()))
	for it.Next() {
		ids = append(ids, shell(it.ID()))
	}
	if it.Err() != nil || strings.Join(ids, " ") != "1 2" {
		t.Fatalf("snapshot scan %v (err %v), want 1 2", ids, it.Err())
	}
	if _, found, _ := s.Get(testNS, rv(t, 2)); !found {
		t.Fatal("snapshot lost a document deleted after it")
	}
	if _, found, _ := s.Get(testNS, rv(t, 3)); found {
		t.Fatal("snapshot sees a later insert")
	}
	if _, err := e.Snapshot(); err != nil { // a second one, left open on purpose
		t.Fatal(err)
	}
	pending, err := s.ScanIDRange(testNS, IDRange{}, false)
	if err != nil {
		t.Fatal(err)
	}
	// Close releases open snapshots and iterators; using them afterwards
	// reports ErrClosed instead of crashing.
	if err := e.Close(); err != nil {
		t.Fatalf("Close with open snapshots: %v", err)
	}
	if pending.Next() || !errors.Is(pending.Err(), ErrClosed) {
		t.Fatalf("iterator after Close: %v", pending.Err())
	}
	if err := pending.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(testNS, rv(t, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("snapshot Get after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Insert(ctx, testNS, []bson.Raw{mustDoc(t, bson.D{})}, WriteOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Insert after Close: %v", err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "v", Desc: true}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}, bson.D{{Key: "_id", Value: 2}, {Key: "v", Value: 2}})
	if err := e.SetTerm(ctx, 7); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 3}, {Key: "v", Value: 3}})
	last := e.LastOpTime()
	before, _ := e.Stats(testNS)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDir(t, dir, Options{})
	if got := e.LastOpTime(); got != last || got.Term != 7 {
		t.Fatalf("last optime %v, want %v", got, last)
	}
	if e.Term() != 7 {
		t.Fatalf("term %d", e.Term())
	}
	after, _ := e.Stats(testNS)
	before.StorageSize, after.StorageSize = 0, 0
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("stats changed over reopen:\n%+v\n%+v", before, after)
	}
	specs, _ := e.ListIndexes(testNS)
	if len(specs) != 2 || specs[1].Name != "v_-1" || !specs[1].Unique {
		t.Fatalf("indexes %+v", specs)
	}
	res, _ := e.Insert(ctx, testNS, []bson.Raw{mustDoc(t, bson.D{{Key: "v", Value: 2}})}, WriteOptions{})
	wantCode(t, res[0].Err, mongoerr.DuplicateKey)
	mustValid(t, e, testNS)
}

// TestReadOplogRaw: the raw read returns exactly the bytes
// EncodeOplogEntry makes of ReadOplog's entries, with their optimes, and
// honours the entry limit and the byte bound (which never holds back the
// first entry).
func TestReadOplogRaw(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{NoSync: true})
	for i := range 5 {
		insertOK(t, e, testNS, bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: strings.Repeat("x", 100*(i+1))}})
	}
	if _, err := e.Delete(ctx, testNS, rv(t, 0)); err != nil {
		t.Fatal(err)
	}
	dec, err := e.ReadOplog(OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.ReadOplogRaw(OpTime{}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != len(dec) {
		t.Fatalf("raw read %d entries, decoded %d", len(raw), len(dec))
	}
	for i := range raw {
		if raw[i].OpTime != dec[i].OpTime() || !bytes.Equal(raw[i].Data, EncodeOplogEntry(dec[i])) {
			t.Fatalf("entry %d: raw %s %x, decoded %s", i, raw[i].OpTime, raw[i].Data, dec[i].OpTime())
		}
		back, err := DecodeOplogEntry(raw[i].Data)
		if err != nil || back.OpTime() != dec[i].OpTime() {
			t.Fatalf("entry %d does not decode: %v", i, err)
		}
	}
	after := raw[1].OpTime
	if got, err := e.ReadOplogRaw(after, 2, 0); err != nil || len(got) != 2 || got[0].OpTime != raw[2].OpTime {
		t.Fatalf("limit 2 after %s: %v %v", after, got, err)
	}
	bound := len(raw[2].Data) + len(raw[3].Data)
	if got, err := e.ReadOplogRaw(after, 0, bound); err != nil || len(got) != 2 {
		t.Fatalf("bound of two entries: %d entries, %v", len(got), err)
	}
	if got, err := e.ReadOplogRaw(after, 0, 1); err != nil || len(got) != 1 {
		t.Fatalf("bound below one entry: %d entries (want the first), %v", len(got), err)
	}
	if got, err := e.ReadOplogRaw(raw[len(raw)-1].OpTime, 0, 0); err != nil || len(got) != 0 {
		t.Fatalf("after the last: %v %v", got, err)
	}
}

func TestOplog(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}})
	if _, err := e.Replace(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "a", Value: 2}})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Delete(ctx, testNS, rv(t, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "a"}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetTerm(ctx, 3); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.SetTerm(ctx, 2), mongoerr.StaleTerm)
	if err := e.DropIndex(ctx, testNS, "a_1"); err != nil {
		t.Fatal(err)
	}
	if err := e.DropCollection(ctx, testNS); err != nil {
		t.Fatal(err)
	}
	ops, err := e.ReadOplog(OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, o := range ops {
		if o.Index != uint64(i+1) {
			t.Fatalf("entry %d has index %d", i, o.Index)
		}
		s := fmt.Sprintf("%d:%s:%s", o.Term, o.Op, o.NS)
		if o.Doc != nil {
			s += ":" + o.Doc.String()
		}
		got = append(got, s)
	}
	want := []string{
		`1:c:db.$cmd:{"create": "coll"}`,
		`1:i:db.coll:{"_id": {"$numberInt":"1"},"a": {"$numberInt":"1"}}`,
		`1:u:db.coll:{"_id": {"$numberInt":"1"},"a": {"$numberInt":"2"}}`,
		`1:d:db.coll`,
		`1:c:db.$cmd:{"createIndexes": "coll","spec": {"key": {"a": {"$numberInt":"1"}},"name": "a_1"}}`,
		`3:c:db.$cmd:{"dropIndexes": "coll","index": "a_1"}`,
		`3:c:db.$cmd:{"drop": "coll"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("oplog\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ops[3].ID.Int32() != 1 || ops[0].Wall.IsZero() {
		t.Fatalf("delete entry %+v", ops[3])
	}
	if last := e.LastOpTime(); last != ops[len(ops)-1].OpTime() {
		t.Fatalf("LastOpTime %v, last entry %v", last, ops[len(ops)-1].OpTime())
	}
	page, err := e.ReadOplog(ops[1].OpTime(), 2)
	if err != nil || len(page) != 2 || page[0].Index != 3 {
		t.Fatalf("ReadOplog after %v limit 2: %+v %v", ops[1].OpTime(), page, err)
	}
	if err := e.TruncateOplogBefore(ops[4].OpTime()); err != nil {
		t.Fatal(err)
	}
	rest, _ := e.ReadOplog(OpTime{}, 0)
	if len(rest) != 3 || rest[0].Index != 5 {
		t.Fatalf("after truncation %+v", rest)
	}
	if e.LastOpTime() != ops[len(ops)-1].OpTime() {
		t.Fatal("truncation moved LastOpTime")
	}
}

func TestDDL(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if err := e.CreateCollection(ctx, "db.a"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		run  func() error
		code mongoerr.Code
	}{
		{"create existing", func() error { return e.CreateCollection(ctx, "db.a") }, mongoerr.NamespaceExists},
		{"bad namespace", func() error { return e.CreateCollection(ctx, "nodot") }, mongoerr.InvalidNamespace},
		{"bad namespace dollar", func() error { return e.CreateCollection(ctx, "db.a$b") }, mongoerr.InvalidNamespace},
		{"bad db name", func() error { return e.CreateCollection(ctx, "d b.c") }, mongoerr.InvalidNamespace},
		{"drop missing", func() error { return e.DropCollection(ctx, "db.none") }, mongoerr.NamespaceNotFound},
		{"drop _id_", func() error { return e.DropIndex(ctx, "db.a", "_id_") }, mongoerr.InvalidOptions},
		{"drop missing index", func() error { return e.DropIndex(ctx, "db.a", "nope") }, mongoerr.IndexNotFound},
		{"index empty key", func() error { _, err := e.CreateIndex(ctx, "db.a", IndexSpec{}); return err }, mongoerr.CannotCreateIndex},
		{"index $ field", func() error {
			_, err := e.CreateIndex(ctx, "db.a", IndexSpec{Key: []IndexKeyPart{{Field: "$a"}}})
			return err
		}, mongoerr.CannotCreateIndex},
		{"index bad dotted field", func() error {
			_, err := e.CreateIndex(ctx, "db.a", IndexSpec{Key: []IndexKeyPart{{Field: "a..b"}}})
			return err
		}, mongoerr.CannotCreateIndex},
		{"index repeated field", func() error {
			_, err := e.CreateIndex(ctx, "db.a", IndexSpec{Key: []IndexKeyPart{{Field: "a"}, {Field: "a", Desc: true}}})
			return err
		}, mongoerr.CannotCreateIndex},
		{"index same name other key", func() error {
			if _, err := e.CreateIndex(ctx, "db.a", IndexSpec{Name: "x", Key: []IndexKeyPart{{Field: "a"}}}); err != nil {
				return err
			}
			_, err := e.CreateIndex(ctx, "db.a", IndexSpec{Name: "x", Key: []IndexKeyPart{{Field: "b"}}})
			return err
		}, mongoerr.IndexKeySpecsConflict},
		{"index same key other name", func() error {
			_, err := e.CreateIndex(ctx, "db.a", IndexSpec{Name: "y", Key: []IndexKeyPart{{Field: "a"}}})
			return err
		}, mongoerr.IndexOptionsConflict},
		{"index same name and key, other options", func() error {
			_, err := e.CreateIndex(ctx, "db.a", IndexSpec{Name: "x", Key: []IndexKeyPart{{Field: "a"}}, Unique: true})
			return err
		}, mongoerr.IndexOptionsConflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.run(), c.code) })
	}
	created, err := e.CreateIndex(ctx, "db.a", IndexSpec{Name: "x", Key: []IndexKeyPart{{Field: "a"}}})
	if err != nil || created {
		t.Fatalf("identical index: created=%v err=%v, want false nil", created, err)
	}
	if created, err := e.CreateIndex(ctx, "db.a", IndexSpec{Key: []IndexKeyPart{{Field: "_id"}}}); err != nil || created {
		t.Fatalf("_id index: %v %v", created, err)
	}
	if created, err := e.CreateIndex(ctx, "db.implicit", IndexSpec{Key: []IndexKeyPart{{Field: "k"}}}); err != nil || !created {
		t.Fatalf("index on a new collection: %v %v", created, err)
	}
	got := fmt.Sprint(e.ListCollections())
	if got != "[{db.a 1} {db.implicit 2}]" {
		t.Fatalf("collections %s", got)
	}
	for i := 0; i < maxIndexesPerCollection-1; i++ { // _id_ is the 64th
		if _, err := e.CreateIndex(ctx, "db.many", IndexSpec{Key: []IndexKeyPart{{Field: fmt.Sprintf("f%d", i)}}}); err != nil {
			t.Fatalf("index %d: %v", i, err)
		}
	}
	_, err = e.CreateIndex(ctx, "db.many", IndexSpec{Key: []IndexKeyPart{{Field: "last"}}})
	wantCode(t, err, mongoerr.CannotCreateIndex)
}

func TestDropCleansKeys(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "a"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "b"}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		insertOK(t, e, testNS, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: bson.A{i, i + 1}}, {Key: "b", Value: i}})
	}
	c := e.collection(testNS)
	ixA, ixB := c.indexByName("a_1"), c.indexByName("b_1")
	if n := countKeys(t, e, indexPrefix(c.id, ixA.id)); n != 40 {
		t.Fatalf("a_1 has %d keys", n)
	}
	if err := e.DropIndex(ctx, testNS, "a_1"); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, e, indexPrefix(c.id, ixA.id)); n != 0 {
		t.Fatalf("dropped index left %d keys", n)
	}
	if n := countKeys(t, e, indexPrefix(c.id, ixB.id)); n != 20 {
		t.Fatalf("other index has %d keys", n)
	}
	st, _ := e.Stats(testNS)
	if _, ok := st.IndexSizes["a_1"]; ok || st.NIndexes != 2 {
		t.Fatalf("stats after dropIndex %+v", st)
	}
	mustValid(t, e, testNS)
	if err := e.DropCollection(ctx, testNS); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{docPrefix(c.id), collIndexPrefix(c.id), metaCollKey(c.id), metaStatsKey(c.id)} {
		if n := countKeys(t, e, p); n != 0 {
			t.Fatalf("dropped collection left %d keys under %x", n, p)
		}
	}
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}})
	if c2 := e.collection(testNS); c2.id == c.id {
		t.Fatal("collection id reused after drop")
	}
	if _, found, _ := e.Get(testNS, rv(t, 2)); found {
		t.Fatal("document of the dropped collection visible")
	}
	mustValid(t, e, testNS)
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "tags"}}}); err != nil {
		t.Fatal(err)
	}
	docs := []bson.D{
		{{Key: "_id", Value: 1}, {Key: "tags", Value: bson.A{"a", "b", "a"}}},
		{{Key: "_id", Value: 2}, {Key: "tags", Value: "c"}},
		{{Key: "_id", Value: 3}},
	}
	insertOK(t, e, testNS, docs...)
	size := int64(0)
	for _, d := range docs {
		size += int64(len(mustDoc(t, d)))
	}
	steps := []struct {
		name      string
		run       func()
		count     int64
		tagKeys   int64
		totalKeys int64
	}{
		{"after inserts", func() {}, 3, 4, 7},
		{"after replace", func() {
			if _, err := e.Replace(ctx, testNS, rv(t, 2), mustDoc(t, bson.D{{Key: "tags", Value: bson.A{"x", "y", "z"}}})); err != nil {
				t.Fatal(err)
			}
			size += int64(len(mustDoc(t, bson.D{{Key: "_id", Value: 2}, {Key: "tags", Value: bson.A{"x", "y", "z"}}}))) -
				int64(len(mustDoc(t, docs[1])))
		}, 3, 6, 9},
		{"after delete", func() {
			if _, err := e.Delete(ctx, testNS, rv(t, 1)); err != nil {
				t.Fatal(err)
			}
			size -= int64(len(mustDoc(t, docs[0])))
		}, 2, 4, 6},
	}
	for _, s := range steps {
		s.run()
		st, err := e.Stats(testNS)
		if err != nil {
			t.Fatal(err)
		}
		if st.Count != s.count || st.DataSize != size || st.IndexKeys["tags_1"] != s.tagKeys ||
			st.IndexKeys["_id_"] != s.count || st.IndexKeys["tags_1"]+st.IndexKeys["_id_"] != s.totalKeys {
			t.Fatalf("%s: stats %+v; want count %d size %d tag keys %d", s.name, st, s.count, size, s.tagKeys)
		}
		if st.AvgObjSize != size/s.count || st.NIndexes != 2 || st.TotalIndexSize != st.IndexSizes["_id_"]+st.IndexSizes["tags_1"] || st.TotalIndexSize <= 0 {
			t.Fatalf("%s: derived figures wrong: %+v", s.name, st)
		}
		mustValid(t, e, testNS)
	}
	_, err := e.Stats("db.none")
	wantCode(t, err, mongoerr.NamespaceNotFound)
}

// TestConcurrentMixed runs writers, snapshot readers and index builds and
// drops at the same time, then checks the store is consistent.
func TestConcurrentMixed(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "u"}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	const writers, opsPerWriter = 8, 60
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range opsPerWriter {
				id := fmt.Sprintf("w%d-%d", w, i/3)
				switch i % 3 {
				case 0:
					res, err := e.Insert(ctx, testNS, []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: id}, {Key: "u", Value: id}, {Key: "tags", Value: bson.A{i, w}}})}, WriteOptions{})
					if err != nil || res[0].Err != nil {
						t.Errorf("Insert %s: %v %v", id, err, res)
					}
				case 1:
					if ok, err := e.Replace(ctx, testNS, rv(t, id), mustDoc(t, bson.D{{Key: "u", Value: id + "'"}, {Key: "tags", Value: bson.A{w}}})); err != nil || !ok {
						t.Errorf("Replace %s: %v %v", id, ok, err)
					}
				case 2:
					if w%2 == 0 {
						if ok, err := e.Delete(ctx, testNS, rv(t, id)); err != nil || !ok {
							t.Errorf("Delete %s: %v %v", id, ok, err)
						}
					}
				}
			}
		}()
	}
	var side sync.WaitGroup
	side.Add(2)
	go func() { // readers: every snapshot sees a consistent collection
		defer side.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			s, err := e.Snapshot()
			if err != nil {
				t.Error(err)
				return
			}
			it, err := s.ScanIndex(testNS, "u_1", nil, nil, false)
			if err != nil {
				t.Error(err)
				_ = s.Close()
				return
			}
			n := 0
			for it.Next() {
				n++
			}
			if it.Err() != nil {
				t.Errorf("scan: %v", it.Err())
			}
			_ = it.Close()
			docs, err := s.ScanIDRange(testNS, IDRange{}, false)
			if err != nil {
				t.Error(err)
				_ = s.Close()
				return
			}
			m := 0
			for docs.Next() {
				m++
			}
			if docs.Err() != nil || m != n {
				t.Errorf("snapshot: unique index has %d entries, collection %d documents (%v)", n, m, docs.Err())
			}
			_ = s.Close()
		}
	}()
	go func() { // catalog changes during the writes
		defer side.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "tags"}}}); err != nil {
				t.Error(err)
				return
			}
			if r, err := e.Validate(ctx, testNS); err != nil || !r.Valid {
				t.Errorf("Validate during writes: %v %v", err, r.Errors)
			}
			if err := e.DropIndex(ctx, testNS, "tags_1"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	close(done)
	side.Wait()
	r := mustValid(t, e, testNS)
	want := int64(writers * opsPerWriter / 3 / 2) // half the writers deleted theirs
	if r.NRecords != want {
		t.Fatalf("%d documents, want %d", r.NRecords, want)
	}
}

// TestRecordEncodings checks the hand-built encodings equal bson.Marshal
// of the record structs, which is how they are read back.
func TestRecordEncodings(t *testing.T) {
	wall := time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	for _, o := range []OplogEntry{
		{Term: 1, Index: 2, Op: OpInsert, NS: "db.c", ID: rv(t, 7), Doc: mustDoc(t, bson.D{{Key: "_id", Value: 7}}), Wall: wall},
		{Term: 1 << 40, Index: 1 << 50, Op: OpDelete, NS: "db.c", ID: rv(t, "x"), Wall: wall},
		{Term: 3, Index: 4, Op: OpCommand, NS: "db.$cmd", Doc: mustDoc(t, bson.D{{Key: "drop", Value: "c"}}), Wall: wall},
	} {
		want := marshalRecord(oplogRecord{Term: int64(o.Term), Index: int64(o.Index), Op: o.Op, NS: o.NS, ID: o.ID, Doc: o.Doc, Wall: o.Wall})
		got := encodeOplogEntry(o)
		if !bytes.Equal(got, want) {
			t.Fatalf("oplog entry\n got %v\nwant %v", bson.Raw(got), bson.Raw(want))
		}
		back, err := decodeOplogEntry(oplogKey(o.OpTime()), got)
		if err != nil || back.Op != o.Op || !back.Wall.Equal(o.Wall) || back.OpTime() != o.OpTime() || !bytes.Equal(back.Doc, o.Doc) {
			t.Fatalf("round trip %+v → %+v (%v)", o, back, err)
		}
	}
	s := newCollStats()
	s.count, s.size = 3, 300
	s.addKey(5, 20, 1)
	s.addKey(2, 10, 2)
	if got, want := s.encode(), marshalRecord(s.record()); !bytes.Equal(got, want) {
		t.Fatalf("stats\n got %v\nwant %v", bson.Raw(got), bson.Raw(want))
	}
}
