package storage

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// logicalState is what a secondary must share with its primary: the
// catalog, every document, the statistics (except Pebble's on-disk size)
// and the oplog.
func logicalState(t *testing.T, e *Engine) string {
	t.Helper()
	s, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	var out []string
	for _, ci := range s.Collections() {
		specs, err := s.ListIndexes(ci.NS)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("coll %s indexes %+v", ci.NS, specs))
		it, err := s.ScanIDRange(ci.NS, IDRange{}, false)
		if err != nil {
			t.Fatal(err)
		}
		for it.Next() {
			out = append(out, "  "+it.Doc().String())
		}
		if err := errors.Join(it.Err(), it.Close()); err != nil {
			t.Fatal(err)
		}
		st, err := e.Stats(ci.NS)
		if err != nil {
			t.Fatal(err)
		}
		st.StorageSize = 0
		out = append(out, fmt.Sprintf("  stats %+v", st))
		mustValid(t, e, ci.NS)
	}
	log, err := e.ReadOplog(OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range log {
		out = append(out, fmt.Sprintf("op %s %s %s %s %s %d", o.OpTime(), o.Op, o.NS, o.ID, o.Doc, o.Wall.UnixMilli()))
	}
	out = append(out, "last "+e.LastOpTime().String())
	return fmt.Sprint(out)
}

// primaryHistory runs every kind of write on e.
func primaryHistory(t *testing.T, e *Engine) {
	t.Helper()
	ctx := context.Background()
	insertOK(t, e, "db.a", bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}, {Key: "tags", Value: bson.A{"p", "q"}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: 2}})
	if _, err := e.CreateIndex(ctx, "db.a", IndexSpec{Key: []IndexKeyPart{{Field: "x"}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateIndex(ctx, "db.a", IndexSpec{Key: []IndexKeyPart{{Field: "tags", Desc: true}}}); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, "db.a", bson.D{{Key: "_id", Value: 3}, {Key: "x", Value: 3}, {Key: "tags", Value: bson.A{"r"}}})
	if ok, err := e.Replace(ctx, "db.a", rv(t, 2), mustDoc(t, bson.D{{Key: "x", Value: 20}, {Key: "tags", Value: bson.A{"s", "t"}}})); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if ok, err := e.Delete(ctx, "db.a", rv(t, 1)); err != nil || !ok {
		t.Fatal(ok, err)
	}
	// x:1 is free again: the unique index must accept it.
	insertOK(t, e, "db.a", bson.D{{Key: "_id", Value: 4}, {Key: "x", Value: 1}})
	if err := e.CreateCollection(ctx, "db.b"); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, "db.b", bson.D{{Key: "_id", Value: "k"}})
	if err := e.DropIndex(ctx, "db.a", "tags_-1"); err != nil {
		t.Fatal(err)
	}
	if err := e.DropCollection(ctx, "db.b"); err != nil {
		t.Fatal(err)
	}
	insertOK(t, e, "db.b", bson.D{{Key: "_id", Value: "again"}})
	insertOK(t, e, "other.c", bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "v", Value: 1.5}})
}

func readAll(t *testing.T, e *Engine) []OplogEntry {
	t.Helper()
	log, err := e.ReadOplog(OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// TestApplyOplogReplicates replays a primary's whole history onto fresh
// secondaries in batches of several sizes, re-applies it, and checks the
// stores are logically equal (Validate clean), also after a restart.
func TestApplyOplogReplicates(t *testing.T) {
	ctx := context.Background()
	p := openTest(t, Options{NoSync: true})
	primaryHistory(t, p)
	log := readAll(t, p)
	want := logicalState(t, p)

	for _, batch := range []int{1, 3, len(log)} {
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(log); i += batch {
				if err := s.ApplyOplog(ctx, log[i:min(i+batch, len(log))]); err != nil {
					t.Fatalf("ApplyOplog(%d..): %v", i, err)
				}
			}
			if got := logicalState(t, s); got != want {
				t.Fatalf("secondary differs\n got %s\nwant %s", got, want)
			}
			// Re-applying what is already there writes nothing.
			before := rawState(t, s)
			for i := 0; i < len(log); i += batch {
				if err := s.ApplyOplog(ctx, log[i:min(i+batch, len(log))]); err != nil {
					t.Fatalf("re-apply (%d..): %v", i, err)
				}
			}
			if string(rawState(t, s)) != string(before) {
				t.Fatal("re-applying the same entries changed the store")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openDir(t, dir, Options{})
			if got := logicalState(t, s); got != want {
				t.Fatalf("after restart\n got %s\nwant %s", got, want)
			}
		})
	}
}

func entry(t *testing.T, term, index uint64, op, ns string, id any, doc bson.D) OplogEntry {
	e := OplogEntry{Term: term, Index: index, Op: op, NS: ns, Wall: time.UnixMilli(1_700_000_000_000).UTC()}
	if id != nil {
		e.ID = rv(t, id)
	}
	if doc != nil {
		e.Doc = mustDoc(t, doc)
	}
	return e
}

// TestApplyOplogIdempotentOps applies each kind of entry to a state where
// it is already (partly) in effect.
func TestApplyOplogIdempotentOps(t *testing.T) {
	ctx := context.Background()
	const ns = "db.t"
	d := func(id, x int) bson.D { return bson.D{{Key: "_id", Value: id}, {Key: "x", Value: x}} }
	setup := []OplogEntry{
		entry(t, 1, 1, OpCommand, "db.$cmd", nil, bson.D{{Key: "create", Value: "t"}}),
		entry(t, 1, 2, OpCommand, "db.$cmd", nil, bson.D{{Key: "createIndexes", Value: "t"},
			{Key: "spec", Value: bson.D{{Key: "key", Value: bson.D{{Key: "x", Value: int32(1)}}}, {Key: "name", Value: "x_1"}, {Key: "unique", Value: true}}}}),
		entry(t, 1, 3, OpInsert, ns, 1, d(1, 10)),
	}
	tests := []struct {
		name    string
		entry   OplogEntry
		wantDoc map[int]int // _id -> x after the entry; absent ids must be gone
		wantIdx []string
		wantErr error
	}{
		{"insert existing replaces", entry(t, 1, 4, OpInsert, ns, 1, d(1, 11)), map[int]int{1: 11}, []string{"_id_", "x_1"}, nil},
		{"insert new", entry(t, 2, 4, OpInsert, ns, 2, d(2, 20)), map[int]int{1: 10, 2: 20}, []string{"_id_", "x_1"}, nil},
		{"update missing inserts", entry(t, 1, 4, OpUpdate, ns, 5, d(5, 50)), map[int]int{1: 10, 5: 50}, []string{"_id_", "x_1"}, nil},
		{"update replaces", entry(t, 1, 4, OpUpdate, ns, 1, d(1, 12)), map[int]int{1: 12}, []string{"_id_", "x_1"}, nil},
		{"delete missing", entry(t, 1, 4, OpDelete, ns, 9, nil), map[int]int{1: 10}, []string{"_id_", "x_1"}, nil},
		{"delete from missing collection", entry(t, 1, 4, OpDelete, "db.none", 1, nil), map[int]int{1: 10}, []string{"_id_", "x_1"}, nil},
		{"delete", entry(t, 1, 4, OpDelete, ns, 1, nil), map[int]int{}, []string{"_id_", "x_1"}, nil},
		{"create existing", entry(t, 1, 4, OpCommand, "db.$cmd", nil, bson.D{{Key: "create", Value: "t"}}), map[int]int{1: 10}, []string{"_id_", "x_1"}, nil},
		{"drop missing", entry(t, 1, 4, OpCommand, "db.$cmd", nil, bson.D{{Key: "drop", Value: "none"}}), map[int]int{1: 10}, []string{"_id_", "x_1"}, nil},
		{"createIndexes existing", setup[1], map[int]int{1: 10}, []string{"_id_", "x_1"}, nil},
		{"dropIndexes missing", entry(t, 1, 4, OpCommand, "db.$cmd", nil, bson.D{{Key: "dropIndexes", Value: "t"}, {Key: "index", Value: "nope"}}), map[int]int{1: 10}, []string{"_id_", "x_1"}, nil},
		{"dropIndexes", entry(t, 1, 4, OpCommand, "db.$cmd", nil, bson.D{{Key: "dropIndexes", Value: "t"}, {Key: "index", Value: "x_1"}}), map[int]int{1: 10}, []string{"_id_"}, nil},
		{"unique conflict is divergence", entry(t, 1, 4, OpInsert, ns, 2, d(2, 10)), map[int]int{1: 10}, []string{"_id_", "x_1"}, ErrOplogDiverged},
		{"gap", entry(t, 1, 5, OpInsert, ns, 2, d(2, 20)), map[int]int{1: 10}, []string{"_id_", "x_1"}, ErrOplogGap},
		{"term goes back", entry(t, 0, 4, OpInsert, ns, 2, d(2, 20)), map[int]int{1: 10}, []string{"_id_", "x_1"}, ErrOplogDiverged},
		{"different entry at a known index", entry(t, 2, 3, OpInsert, ns, 2, d(2, 20)), map[int]int{1: 10}, []string{"_id_", "x_1"}, ErrOplogDiverged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := openTest(t, Options{NoSync: true})
			if err := e.ApplyOplog(ctx, setup); err != nil {
				t.Fatal(err)
			}
			before := rawState(t, e)
			err := e.ApplyOplog(ctx, []OplogEntry{tc.entry})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				if string(rawState(t, e)) != string(before) {
					t.Fatal("a refused batch changed the store")
				}
			} else if err != nil {
				t.Fatal(err)
			} else if e.LastOpTime() != tc.entry.OpTime() && tc.entry.Index == 4 {
				t.Fatalf("last %s, want %s", e.LastOpTime(), tc.entry.OpTime())
			}
			got := map[int]int{}
			s, _ := e.Snapshot()
			it, err := s.ScanIDRange(ns, IDRange{}, false)
			if err != nil {
				t.Fatal(err)
			}
			for it.Next() {
				got[int(it.ID().Int32())] = int(it.Doc().Lookup("x").Int32())
			}
			_ = it.Close()
			_ = s.Close()
			if !reflect.DeepEqual(got, tc.wantDoc) {
				t.Fatalf("docs %v, want %v", got, tc.wantDoc)
			}
			specs, err := e.ListIndexes(ns)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, sp := range specs {
				names = append(names, sp.Name)
			}
			if !reflect.DeepEqual(names, tc.wantIdx) {
				t.Fatalf("indexes %v, want %v", names, tc.wantIdx)
			}
			mustValid(t, e, ns)
		})
	}
}

func TestApplyOplogBadEntries(t *testing.T) {
	ctx := context.Background()
	bad := []OplogEntry{
		entry(t, 1, 1, "x", "db.t", 1, bson.D{{Key: "_id", Value: 1}}),
		entry(t, 1, 1, OpInsert, "db.t", 1, bson.D{{Key: "a", Value: 1}}),           // _id not first
		entry(t, 1, 1, OpInsert, "db.t", 2, bson.D{{Key: "_id", Value: 1}}),         // _id mismatch
		entry(t, 1, 1, OpInsert, "nodot", 1, bson.D{{Key: "_id", Value: 1}}),        // bad namespace
		entry(t, 1, 1, OpDelete, "db.t", nil, nil),                                  // delete without _id
		entry(t, 1, 1, OpCommand, "db.t", nil, bson.D{{Key: "create", Value: "t"}}), // not $cmd
		entry(t, 1, 1, OpCommand, "db.$cmd", nil, bson.D{{Key: "renameCollection", Value: "t"}}),
		entry(t, 1, 1, OpCommand, "db.$cmd", nil, bson.D{{Key: "createIndexes", Value: "t"}}),
		entry(t, 1, 0, OpInsert, "db.t", 1, bson.D{{Key: "_id", Value: 1}}),
	}
	e := openTest(t, Options{NoSync: true})
	before := rawState(t, e)
	for i, en := range bad {
		if err := e.ApplyOplog(ctx, []OplogEntry{en}); err == nil || !isClientError(err) {
			t.Errorf("entry %d: err %v, want a BadValue", i, err)
		}
	}
	if string(rawState(t, e)) != string(before) {
		t.Fatal("refused entries changed the store")
	}
}

// TestApplyOplogTerm: a newer term in the entries becomes the engine's term
// and survives a restart.
func TestApplyOplogTerm(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ApplyOplog(ctx, []OplogEntry{entry(t, 7, 1, OpInsert, "db.t", 1, bson.D{{Key: "_id", Value: 1}})}); err != nil {
		t.Fatal(err)
	}
	if e.Term() != 7 {
		t.Fatalf("term %d, want 7", e.Term())
	}
	_ = e.Close()
	e = openDir(t, dir, Options{})
	if e.Term() != 7 || e.LastOpTime() != (OpTime{Term: 7, Index: 1}) {
		t.Fatalf("after restart term %d last %s", e.Term(), e.LastOpTime())
	}
	if err := e.SetTerm(ctx, 6); err == nil {
		t.Fatal("SetTerm went back")
	}
}

func TestWaitDurable(t *testing.T) {
	e := openTest(t, Options{NoSync: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := e.LastOpTime()
	got, err := e.WaitDurable(ctx, OpTime{})
	if err != nil || got != start {
		t.Fatalf("already durable: %s %v", got, err)
	}
	done := make(chan OpTime, 1)
	go func() {
		o, err := e.WaitDurable(ctx, start)
		if err != nil {
			t.Error(err)
		}
		done <- o
	}()
	res := insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}})
	if o := <-done; o.Compare(res[0].OpTime) < 0 {
		t.Fatalf("woke at %s before the insert's %s", o, res[0].OpTime)
	}
	// A cancelled wait returns the context's error; Close wakes waiters.
	short, cancelShort := context.WithCancel(ctx)
	cancelShort()
	if _, err := e.WaitDurable(short, e.LastOpTime()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	closed := make(chan error, 1)
	go func() { _, err := e.WaitDurable(ctx, e.LastOpTime()); closed <- err }()
	// Close must wake the waiter whether it is already waiting or not.
	_ = e.Close()
	if err := <-closed; !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
