package executor

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/storage"
)

const sessNS = "db.sess"

func openEngine(t *testing.T) *storage.Engine {
	t.Helper()
	eng, err := storage.Open(t.TempDir(), storage.Options{NoSync: true, Logger: logging.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

func stmt(txn int64, id int32) storage.Statement {
	return storage.Statement{LSID: []byte("session-1"), TxnNumber: txn, StmtID: id}
}

func entries(t *testing.T, eng *storage.Engine) int {
	t.Helper()
	ens, err := eng.ReadOplog(storage.OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(ens)
}

func getV(t *testing.T, eng *storage.Engine, id any) bson.Raw {
	t.Helper()
	b, _ := bson.Marshal(bson.D{{Key: "v", Value: id}})
	d, ok, err := eng.Get(sessNS, bson.Raw(b).Lookup("v"))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return nil
	}
	return d
}

// TestRetryableStatements: each kind of statement, run then retried,
// answers the first result and writes once.
func TestRetryableStatements(t *testing.T) {
	ctx := context.Background()
	eng := openEngine(t)
	x := New(eng)
	load(t, eng, sessNS, 3, func(i int) bson.D { return bson.D{{Key: "_id", Value: i}, {Key: "n", Value: 0}} })
	inc := doc(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})

	type run func() (any, storage.OpTime, error)
	cases := []struct {
		name string
		run  run
	}{
		{"update", func() (any, storage.OpTime, error) {
			return x.RetryableUpdate(ctx, sessNS, UpdateSpec{Filter: doc(t, bson.D{{Key: "_id", Value: 0}}), Update: inc}, stmt(1, 0))
		}},
		{"update-nomatch", func() (any, storage.OpTime, error) {
			return x.RetryableUpdate(ctx, sessNS, UpdateSpec{Filter: doc(t, bson.D{{Key: "_id", Value: 50}}), Update: inc}, stmt(1, 1))
		}},
		{"update-unchanged", func() (any, storage.OpTime, error) {
			set := doc(t, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 0}}}})
			return x.RetryableUpdate(ctx, sessNS, UpdateSpec{Filter: doc(t, bson.D{{Key: "_id", Value: 2}}), Update: set}, stmt(1, 2))
		}},
		{"upsert", func() (any, storage.OpTime, error) {
			return x.RetryableUpdate(ctx, sessNS, UpdateSpec{Filter: doc(t, bson.D{{Key: "k", Value: "up"}}), Update: inc, Upsert: true}, stmt(1, 3))
		}},
		{"delete", func() (any, storage.OpTime, error) {
			return x.RetryableDelete(ctx, sessNS, DeleteSpec{Filter: doc(t, bson.D{{Key: "_id", Value: 1}}), Limit: 1}, stmt(1, 4))
		}},
		{"delete-nothing", func() (any, storage.OpTime, error) {
			return x.RetryableDelete(ctx, sessNS, DeleteSpec{Filter: doc(t, bson.D{{Key: "_id", Value: 60}}), Limit: 1}, stmt(1, 5))
		}},
		{"findAndModify", func() (any, storage.OpTime, error) {
			return x.RetryableFindAndModify(ctx, sessNS, FindAndModifySpec{Filter: doc(t, bson.D{{Key: "_id", Value: 0}}), Update: inc, New: true}, stmt(1, 6))
		}},
		{"findAndModify-upsert", func() (any, storage.OpTime, error) {
			return x.RetryableFindAndModify(ctx, sessNS, FindAndModifySpec{Filter: doc(t, bson.D{{Key: "k", Value: "fam"}}), Update: inc, Upsert: true, New: true}, stmt(1, 7))
		}},
		{"findAndModify-remove", func() (any, storage.OpTime, error) {
			return x.RetryableFindAndModify(ctx, sessNS, FindAndModifySpec{Filter: doc(t, bson.D{{Key: "_id", Value: 2}}), Remove: true}, stmt(1, 8))
		}},
	}
	for _, c := range cases {
		first, at, err := c.run()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if at != eng.LastOpTime() {
			t.Fatalf("%s: recorded at %s, last entry %s", c.name, at, eng.LastOpTime())
		}
		n := entries(t, eng)
		again, at2, err := c.run()
		if err != nil || !reflect.DeepEqual(again, first) || at2 != at {
			t.Fatalf("%s: retry %+v at %s (%v), first %+v at %s", c.name, again, at2, err, first, at)
		}
		if entries(t, eng) != n {
			t.Fatalf("%s: the retry wrote", c.name)
		}
		t.Logf("%s: %+v", c.name, first)
	}
	if d := getV(t, eng, 0); d.Lookup("n").Int32() != 2 {
		t.Fatalf("document 0 = %s, want n: 2 (update once, findAndModify once)", d)
	}
	if getV(t, eng, 1) != nil || getV(t, eng, 2) != nil {
		t.Fatal("deleted documents are back")
	}
	fam, _, _ := x.RetryableFindAndModify(ctx, sessNS, FindAndModifySpec{Filter: doc(t, bson.D{{Key: "k", Value: "fam"}}), Update: inc, Upsert: true, New: true}, stmt(1, 7))
	if fam.Value.Lookup("_id").Type == 0 || fam.UpsertedID.Type == 0 {
		t.Fatalf("upserted findAndModify answer without _id: %+v", fam)
	}
	if r, err := eng.Validate(ctx, sessNS); err != nil || !r.Valid {
		t.Fatalf("validate: %+v %v", r, err)
	}

	// Not retryable: multi updates and limit-0 deletes.
	_, _, err := x.RetryableUpdate(ctx, sessNS, UpdateSpec{Filter: doc(t, bson.D{}), Update: inc, Multi: true}, stmt(1, 20))
	if mongoerr.CodeOf(err) != mongoerr.InvalidOptions {
		t.Fatalf("multi update: %v", err)
	}
	_, _, err = x.RetryableDelete(ctx, sessNS, DeleteSpec{Filter: doc(t, bson.D{})}, stmt(1, 21))
	if mongoerr.CodeOf(err) != mongoerr.InvalidOptions {
		t.Fatalf("limit-0 delete: %v", err)
	}
	// An older txnNumber after a newer one.
	if _, _, err := x.RetryableUpdate(ctx, sessNS, UpdateSpec{Filter: doc(t, bson.D{{Key: "_id", Value: 0}}), Update: inc}, stmt(2, 0)); err != nil {
		t.Fatal(err)
	}
	_, _, err = x.RetryableUpdate(ctx, sessNS, UpdateSpec{Filter: doc(t, bson.D{{Key: "_id", Value: 0}}), Update: inc}, stmt(1, 0))
	if mongoerr.CodeOf(err) != mongoerr.TransactionTooOld {
		t.Fatalf("old txnNumber: %v", err)
	}
}

// TestRetryableWriteErrorNotRecorded: a statement that fails is executed
// again by its retry.
func TestRetryableWriteErrorNotRecorded(t *testing.T) {
	ctx := context.Background()
	eng := openEngine(t)
	x := New(eng)
	load(t, eng, sessNS, 1, func(i int) bson.D { return bson.D{{Key: "_id", Value: i}, {Key: "n", Value: "text"}} })
	spec := UpdateSpec{Filter: doc(t, bson.D{{Key: "_id", Value: 0}}), Update: doc(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})}
	if _, _, err := x.RetryableUpdate(ctx, sessNS, spec, stmt(1, 0)); err == nil {
		t.Fatal("$inc of a string succeeded")
	}
	if _, ok, _ := eng.LookupStatement(stmt(1, 0)); ok {
		t.Fatal("failed statement recorded")
	}
	if _, err := eng.Replace(ctx, sessNS, getV(t, eng, 0).Lookup("_id"), doc(t, bson.D{{Key: "_id", Value: 0}, {Key: "n", Value: 1}})); err != nil {
		t.Fatal(err)
	}
	res, _, err := x.RetryableUpdate(ctx, sessNS, spec, stmt(1, 0))
	if err != nil || res.Modified != 1 {
		t.Fatalf("retry after the error: %+v %v", res, err)
	}
}

// TestConcurrentRetriesOfOneStatement: concurrent retries of one $inc
// increment once and all answer the same.
func TestConcurrentRetriesOfOneStatement(t *testing.T) {
	ctx := context.Background()
	eng := openEngine(t)
	x := New(eng)
	load(t, eng, sessNS, 1, func(i int) bson.D { return bson.D{{Key: "_id", Value: i}, {Key: "n", Value: 0}} })
	spec := FindAndModifySpec{Filter: doc(t, bson.D{{Key: "_id", Value: 0}}), Update: doc(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}), New: true}
	const n = 12
	res := make([]FindAndModifyResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], _, errs[i] = x.RetryableFindAndModify(ctx, sessNS, spec, stmt(1, 0))
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !reflect.DeepEqual(res[i], res[0]) {
			t.Fatalf("retry %d: %+v %v, first %+v", i, res[i], errs[i], res[0])
		}
	}
	if v := getV(t, eng, 0).Lookup("n").Int32(); v != 1 || res[0].Value.Lookup("n").Int32() != 1 {
		t.Fatalf("n = %d, answer %s", v, res[0].Value)
	}
}
