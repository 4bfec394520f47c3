package storage

import (
	"bytes"
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// PutDocuments inserts or replaces with "i"/"u" entries, is idempotent,
// keeps indexes and statistics valid; a secondary applying the entries
// reaches the same state. DeleteDocuments deletes with "d" entries, only
// what match accepts.
func TestPutAndDeleteDocuments(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	const ns = "db.m"
	if _, err := e.CreateIndex(ctx, ns, IndexSpec{Key: []IndexKeyPart{{Field: "k"}}}); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, ns, bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: "old"}})
	before := e.LastOpTime()
	docs := []bson.Raw{
		mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: "new"}}),
		mustDoc(t, bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: bson.A{"x", "y"}}}),
		mustDoc(t, bson.D{{Key: "_id", Value: 3}, {Key: "k", Value: 3}}),
	}
	last, err := e.PutDocuments(ctx, ns, docs)
	if err != nil {
		t.Fatal(err)
	}
	if last.Index != before.Index+3 || e.LastOpTime() != last {
		t.Fatalf("last %s, engine %s, before %s", last, e.LastOpTime(), before)
	}
	entries, err := e.ReadOplog(before, 0)
	if err != nil {
		t.Fatal(err)
	}
	ops := ""
	for _, en := range entries {
		ops += en.Op
	}
	if ops != "uii" {
		t.Fatalf("oplog ops %q, want uii", ops)
	}
	// Idempotent: again, three "u" entries and the same documents.
	if _, err := e.PutDocuments(ctx, ns, docs); err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		got, ok, err := e.Get(ns, d.Lookup("_id"))
		if err != nil || !ok || !bytes.Equal(got, d) {
			t.Fatalf("get %s: %s %v %v", d.Lookup("_id"), got, ok, err)
		}
	}
	if st, _ := e.Stats(ns); st.Count != 3 {
		t.Fatalf("count %d, want 3", st.Count)
	}
	mustValid(t, e, ns)
	specs, _ := e.ListIndexes(ns)
	if !specs[1].Multikey {
		t.Fatal("multikey flag not set by a put document")
	}

	// A document without _id, or a bad one, writes nothing.
	state := rawState(t, e)
	_, err = e.PutDocuments(ctx, ns, []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: 9}}), mustDoc(t, bson.D{{Key: "k", Value: 1}})})
	wantCode(t, err, mongoerr.BadValue)
	if !bytes.Equal(state, rawState(t, e)) {
		t.Fatal("a refused put changed the store")
	}

	// DeleteDocuments: match refuses _id 3; 7 is missing.
	n, at, err := e.DeleteDocuments(ctx, ns, []bson.RawValue{rv(t, 1), rv(t, 3), rv(t, 7)}, func(d bson.Raw) bool {
		return d.Lookup("_id").Int32() != 3
	})
	if err != nil || n != 1 || at != e.LastOpTime() {
		t.Fatalf("delete: %d %s %v", n, at, err)
	}
	if n, at, err := e.DeleteDocuments(ctx, ns, []bson.RawValue{rv(t, 1)}, nil); err != nil || n != 0 || !at.IsZero() {
		t.Fatalf("delete again: %d %s %v", n, at, err)
	}
	if n, _, err := e.DeleteDocuments(ctx, "db.none", []bson.RawValue{rv(t, 1)}, nil); err != nil || n != 0 {
		t.Fatalf("delete from a missing collection: %d %v", n, err)
	}
	mustValid(t, e, ns)

	// A secondary applying the whole oplog has the same documents.
	all, err := e.ReadOplog(OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	sec := openTest(t, Options{})
	if err := sec.ApplyOplog(ctx, all); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{1, 2, 3} {
		a, _, _ := e.Get(ns, rv(t, id))
		b, _, _ := sec.Get(ns, rv(t, id))
		if !bytes.Equal(a, b) {
			t.Fatalf("_id %d: primary %s, secondary %s", id, a, b)
		}
	}
	mustValid(t, sec, ns)
}
