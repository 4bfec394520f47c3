package executor

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/plan"
	"github.com/psdb/psdb/shardd/storage"
)

func doc(t testing.TB, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t *testing.T, eng *storage.Engine, ns string, n int, mk func(i int) bson.D) {
	t.Helper()
	docs := make([]bson.Raw, n)
	for i := range docs {
		docs[i] = doc(t, mk(i))
	}
	res, err := eng.Insert(context.Background(), ns, docs, storage.WriteOptions{Ordered: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}

func stages(p *plan.Plan) string {
	out := ""
	for d := p.Explain(); ; {
		var next bson.D
		for _, e := range d {
			if e.Key == "stage" {
				if out != "" {
					out += ">"
				}
				out += e.Value.(string)
			}
			if e.Key == "inputStage" {
				next = e.Value.(bson.D)
			}
		}
		if next == nil {
			return out
		}
		d = next
	}
}

// TestPlansFollowTheData checks that the executor gives the planner the
// store's real index state: a sort is read from an index until a document
// makes the index multikey, and results stay right either way.
func TestPlansFollowTheData(t *testing.T) {
	ctx := context.Background()
	eng := openStore(t)
	x := New(eng)
	const ns = "db.people"
	load(t, eng, ns, 500, func(i int) bson.D {
		return bson.D{{Key: "_id", Value: i}, {Key: "age", Value: i % 50}, {Key: "name", Value: fmt.Sprintf("n%03d", i)}}
	})
	if _, err := eng.CreateIndex(ctx, ns, storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "age"}, {Field: "name", Desc: true}}}); err != nil {
		t.Fatal(err)
	}
	spec := FindSpec{
		Filter: doc(t, bson.D{{Key: "age", Value: 7}}),
		Sort:   doc(t, bson.D{{Key: "name", Value: 1}}),
		Limit:  3,
	}
	p, err := x.Plan(ns, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := stages(p); got != "LIMIT>FETCH>IXSCAN" || !p.Reverse {
		t.Fatalf("plan %s reverse=%v, want a backward index scan with no SORT", got, p.Reverse)
	}
	want := []string{"n007", "n057", "n107"}
	check := func() {
		t.Helper()
		got, err := x.FindAll(ctx, ns, spec)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("got %d docs", len(got))
		}
		for i, d := range got {
			if n := d.Lookup("name").StringValue(); n != want[i] {
				t.Fatalf("result %d: %s, want %s", i, n, want[i])
			}
		}
	}
	check()

	// One document with an array of ages makes the index multikey: the
	// sort must now be done by a SORT stage.
	load(t, eng, ns, 1, func(int) bson.D {
		return bson.D{{Key: "_id", Value: 1000}, {Key: "age", Value: bson.A{7, 8}}, {Key: "name", Value: "n000"}}
	})
	p, err = x.Plan(ns, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := stages(p); got != "LIMIT>SORT>FETCH>IXSCAN" {
		t.Fatalf("plan after multikey %s", got)
	}
	want = []string{"n000", "n007", "n057"}
	check()
}

// TestConcurrentIncrements: read-modify-write cycles on one document from
// many goroutines lose no update.
func TestConcurrentIncrements(t *testing.T) {
	ctx := context.Background()
	eng := openStore(t)
	x := New(eng)
	const ns = "db.counters"
	load(t, eng, ns, 1, func(int) bson.D { return bson.D{{Key: "_id", Value: "c"}, {Key: "n", Value: 0}} })
	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				var err error
				if i%2 == 0 {
					_, err = x.Update(ctx, ns, UpdateSpec{Filter: doc(t, bson.D{{Key: "_id", Value: "c"}}), Update: doc(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})})
				} else {
					_, err = x.FindAndModify(ctx, ns, FindAndModifySpec{Filter: doc(t, bson.D{{Key: "_id", Value: "c"}}), Update: doc(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}), New: true})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, _, err := eng.Get(ns, bson.RawValue{Type: bson.TypeString, Value: doc(t, bson.D{{Key: "v", Value: "c"}}).Lookup("v").Value})
	if err != nil {
		t.Fatal(err)
	}
	if n := got.Lookup("n").Int32(); n != workers*each {
		t.Fatalf("n = %d, want %d", n, workers*each)
	}
}

// TestCursorAcrossWrites: a cursor reads one snapshot, so documents
// inserted or deleted while it is open do not change what it returns.
func TestCursorAcrossWrites(t *testing.T) {
	ctx := context.Background()
	eng := openStore(t)
	x := New(eng)
	const ns = "db.c"
	load(t, eng, ns, 300, func(i int) bson.D { return bson.D{{Key: "_id", Value: i}, {Key: "v", Value: i % 7}} })
	c, err := x.Find(ctx, ns, FindSpec{Filter: doc(t, bson.D{{Key: "v", Value: bson.D{{Key: "$gte", Value: 0}}}})})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	for ; n < 10; n++ {
		if _, ok := c.Next(); !ok {
			t.Fatal("cursor ended early")
		}
	}
	load(t, eng, ns, 100, func(i int) bson.D { return bson.D{{Key: "_id", Value: 1000 + i}, {Key: "v", Value: 1}} })
	if _, err := x.Delete(ctx, ns, DeleteSpec{Filter: doc(t, bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: 100}}}})}); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok := c.Next(); !ok {
			break
		}
		n++
	}
	if c.Err() != nil || n != 300 {
		t.Fatalf("cursor returned %d docs (err %v), want the 300 of its snapshot", n, c.Err())
	}
	if cnt, err := x.Count(ctx, ns, nil, 0, 0); err != nil || cnt != 300 {
		t.Fatalf("count after = %d, %v; want 300", cnt, err)
	}
}

// TestSortLimitKeepsTopK: a sort with a limit keeps only skip+limit
// documents while scanning and still returns the right ones.
func TestSortLimitKeepsTopK(t *testing.T) {
	ctx := context.Background()
	eng := openStore(t)
	x := New(eng)
	const ns = "db.c"
	load(t, eng, ns, 2000, func(i int) bson.D { return bson.D{{Key: "_id", Value: i}, {Key: "k", Value: (i * 7919) % 2000}} })
	got, err := x.FindAll(ctx, ns, FindSpec{Sort: doc(t, bson.D{{Key: "k", Value: -1}}), Skip: 5, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got {
		if k := d.Lookup("k").Int32(); k != int32(1994-i) {
			t.Fatalf("result %d has k=%d, want %d", i, k, 1994-i)
		}
	}
}

func TestFindAndModifyRules(t *testing.T) {
	ctx := context.Background()
	eng := openStore(t)
	x := New(eng)
	const ns = "db.c"
	load(t, eng, ns, 3, func(i int) bson.D { return bson.D{{Key: "_id", Value: i}, {Key: "q", Value: i}} })
	res, err := x.FindAndModify(ctx, ns, FindAndModifySpec{Sort: doc(t, bson.D{{Key: "q", Value: -1}}), Remove: true})
	if err != nil || !res.Matched || res.Value.Lookup("_id").Int32() != 2 {
		t.Fatalf("remove highest: %+v %v", res, err)
	}
	res, err = x.FindAndModify(ctx, ns, FindAndModifySpec{
		Filter: doc(t, bson.D{{Key: "_id", Value: 9}}), Update: doc(t, bson.D{{Key: "$set", Value: bson.D{{Key: "q", Value: 9}}}}),
		Upsert: true, New: true,
	})
	if err != nil || res.UpsertedID.Int32() != 9 || res.Value.Lookup("q").Int32() != 9 {
		t.Fatalf("upsert new: %+v %v", res, err)
	}
	_, err = x.FindAndModify(ctx, ns, FindAndModifySpec{})
	if !mongoerr.HasCode(err, mongoerr.FailedToParse) {
		t.Fatalf("neither update nor remove: %v", err)
	}
}

// TestWriteByIDEquality covers the writes whose filter is {_id: v}: they
// skip the scan (idEquality) and must answer exactly as the scan would:
// numeric equality across types (1 and 1.0, 0 and -0.0), no match for a
// missing _id (then an upsert), the rest of the filter still applied
// when it has more fields, and an orphan never written.
func TestWriteByIDEquality(t *testing.T) {
	ctx := context.Background()
	eng := openStore(t)
	x := New(eng)
	const ns = "db.ids"
	load(t, eng, ns, 3, func(i int) bson.D { return bson.D{{Key: "_id", Value: int32(i)}, {Key: "n", Value: 0}} })
	inc := doc(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})
	upd := func(ctx context.Context, filter bson.D, upsert bool) UpdateResult {
		t.Helper()
		res, err := x.Update(ctx, ns, UpdateSpec{Filter: doc(t, filter), Update: inc, Upsert: upsert})
		if err != nil {
			t.Fatalf("update %v: %v", filter, err)
		}
		return res
	}
	for _, c := range []struct {
		filter  bson.D
		upsert  bool
		matched int64
		fast    bool
	}{
		{bson.D{{Key: "_id", Value: 1.0}}, false, 1, true},
		{bson.D{{Key: "_id", Value: int64(2)}}, false, 1, true},
		{bson.D{{Key: "_id", Value: math.Copysign(0, -1)}}, false, 1, true},
		{bson.D{{Key: "_id", Value: 7}}, false, 0, true},
		{bson.D{{Key: "_id", Value: bson.D{{Key: "$eq", Value: 1}}}}, false, 1, false},
		{bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 99}}, false, 0, false},
		{bson.D{{Key: "_id", Value: nil}}, false, 0, false},
		{bson.D{{Key: "_id", Value: math.NaN()}}, false, 0, false},
	} {
		if _, fast := idEquality(doc(t, c.filter)); fast != c.fast {
			t.Errorf("%v: idEquality %v, want %v", c.filter, fast, c.fast)
		}
		if res := upd(ctx, c.filter, c.upsert); res.Matched != c.matched {
			t.Errorf("%v: matched %d, want %d", c.filter, res.Matched, c.matched)
		}
	}
	if res := upd(ctx, bson.D{{Key: "_id", Value: "new"}}, true); res.Matched != 0 || res.UpsertedID.StringValue() != "new" {
		t.Fatalf("upsert by _id: %+v", res)
	}
	// An orphan (the ownership test rejects it) is neither updated nor
	// deleted through the fast path.
	orphans := WithOwnership(ctx, func(d bson.Raw) bool { return d.Lookup("_id").AsInt64() != 2 })
	if res := upd(orphans, bson.D{{Key: "_id", Value: 2}}, false); res.Matched != 0 {
		t.Fatalf("orphan updated: %+v", res)
	}
	if n, err := x.Delete(orphans, ns, DeleteSpec{Filter: doc(t, bson.D{{Key: "_id", Value: 2}}), Limit: 1}); err != nil || n != 0 {
		t.Fatalf("orphan deleted: %d %v", n, err)
	}
	want := map[int64]int32{0: 1, 1: 2, 2: 1}
	for id, n := range want {
		got, ok, err := eng.Get(ns, bson.RawValue{Type: bson.TypeInt64, Value: binary.LittleEndian.AppendUint64(nil, uint64(id))})
		if err != nil || !ok || got.Lookup("n").Int32() != n {
			t.Errorf("_id %d: %v %v %v, want n=%d", id, got, ok, err, n)
		}
	}
}
