package storage

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func multikeyOf(t *testing.T, specs []IndexSpec, name string) bool {
	t.Helper()
	for _, s := range specs {
		if s.Name == name {
			return s.Multikey
		}
	}
	t.Fatalf("no index %s in %v", name, specs)
	return false
}

// TestMultikeyFlag checks when an index becomes multikey (the first
// document with more than one key, by insert, replace or index build),
// that the flag survives a restart, that a snapshot taken before the
// change keeps the old flag, and that user input cannot set it.
func TestMultikeyFlag(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openDir(t, dir, Options{NoSync: true})
	const ns = "db.c"
	insertOK(t, e, ns, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "b", Value: bson.A{1, 2}}})
	if _, err := e.CreateIndex(ctx, ns, IndexSpec{Key: []IndexKeyPart{{Field: "a"}}, Multikey: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateIndex(ctx, ns, IndexSpec{Key: []IndexKeyPart{{Field: "b"}}}); err != nil {
		t.Fatal(err)
	}
	specs, _ := e.ListIndexes(ns)
	if multikeyOf(t, specs, "a_1") || !multikeyOf(t, specs, "b_1") {
		t.Fatalf("after build: %+v", specs)
	}
	// A single-element array is one key: not multikey.
	insertOK(t, e, ns, bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: bson.A{7}}})
	specs, _ = e.ListIndexes(ns)
	if multikeyOf(t, specs, "a_1") {
		t.Fatal("a one-element array made the index multikey")
	}
	before, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if _, err := e.Replace(ctx, ns, rv(t, 1), mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{3, 4}}})); err != nil {
		t.Fatal(err)
	}
	specs, _ = e.ListIndexes(ns)
	if !multikeyOf(t, specs, "a_1") {
		t.Fatal("replace with an array did not make a_1 multikey")
	}
	old, _ := before.ListIndexes(ns)
	if multikeyOf(t, old, "a_1") {
		t.Fatal("a snapshot from before the array document sees the new flag")
	}
	mustValid(t, e, ns)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDir(t, dir, Options{NoSync: true})
	specs, _ = e.ListIndexes(ns)
	if !multikeyOf(t, specs, "a_1") || !multikeyOf(t, specs, "b_1") {
		t.Fatalf("flags lost across restart: %+v", specs)
	}
}
