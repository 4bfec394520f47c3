package storage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func insertN(t *testing.T, e *Engine, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		insertOK(t, e, testNS, bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: fmt.Sprintf("%0100d", i)}})
	}
}

func firstOp(t *testing.T, e *Engine) OpTime {
	t.Helper()
	f, ok, err := e.FirstOpTime()
	if err != nil || !ok {
		t.Fatalf("FirstOpTime: %v %v", ok, err)
	}
	return f
}

func TestTruncateOplog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openDir(t, dir, Options{})
	insertN(t, e, 0, 10) // entries 1 (create) .. 11
	at := func(i uint64) OpTime { return OpTime{Term: 1, Index: i} }
	n, err := e.TruncateOplog(ctx, at(5))
	if err != nil || n != 4 {
		t.Fatalf("TruncateOplog before 5: %d %v", n, err)
	}
	if f := firstOp(t, e); f != at(5) {
		t.Fatalf("first %v", f)
	}
	// The newest removed entry is still "held": a puller there resumes.
	for i, want := range map[uint64]bool{0: true, 3: false, 4: true, 5: true, 11: true, 12: false} {
		if ok, err := e.HasOplogEntry(at(i)); err != nil || ok != want {
			t.Errorf("HasOplogEntry(%d) = %v %v, want %v", i, ok, err, want)
		}
	}
	if n, err := e.TruncateOplog(ctx, at(3)); err != nil || n != 0 {
		t.Fatalf("truncate before the start: %d %v", n, err)
	}
	// Never the newest entry.
	if n, err := e.TruncateOplog(ctx, OpTime{Term: 5, Index: 100}); err != nil || n != 6 {
		t.Fatalf("truncate everything: %d %v", n, err)
	}
	if log := readAll(t, e); len(log) != 1 || log[0].OpTime() != at(11) || e.LastOpTime() != at(11) {
		t.Fatalf("oplog %+v last %v", log, e.LastOpTime())
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDir(t, dir, Options{})
	if ok, _ := e.HasOplogEntry(at(10)); !ok || firstOp(t, e) != at(11) {
		t.Fatal("oplog base lost on restart")
	}
	mustValid(t, e, testNS)
}

func TestApplyRetention(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	insertN(t, e, 0, 20) // entries 1 .. 21
	now := time.Now()
	if n, err := e.ApplyRetention(ctx, RetentionPolicy{MaxEntries: 50}, now); err != nil || n != 0 {
		t.Fatalf("under the bound: %d %v", n, err)
	}
	// Young entries are kept whatever the size.
	if n, err := e.ApplyRetention(ctx, RetentionPolicy{MaxEntries: 5, MinRetention: time.Hour}, now); err != nil || n != 0 {
		t.Fatalf("min retention: %d %v", n, err)
	}
	if n, err := e.ApplyRetention(ctx, RetentionPolicy{MaxEntries: 5, MinRetention: time.Hour}, now.Add(2*time.Hour)); err != nil || n != 16 {
		t.Fatalf("old entries over the bound: %d %v", n, err)
	}
	if f := firstOp(t, e); f.Index != 17 {
		t.Fatalf("first %v", f)
	}
	// By size, as Pebble estimates it on disk (flushed tables).
	insertN(t, e, 100, 200)
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	n, err := e.ApplyRetention(ctx, RetentionPolicy{MaxBytes: 4 << 10}, now)
	if err != nil || n == 0 {
		t.Fatalf("by size: %d %v", n, err)
	}
	if left := len(readAll(t, e)); left >= 205 || left < 1 {
		t.Fatalf("%d entries left after size retention", left)
	}
	// However small the target, the newest entry stays.
	for range 20 {
		if _, err := e.ApplyRetention(ctx, RetentionPolicy{MaxBytes: 1}, now); err != nil {
			t.Fatal(err)
		}
	}
	if log := readAll(t, e); len(log) < 1 || log[len(log)-1].OpTime() != e.LastOpTime() {
		t.Fatalf("newest entry removed: %d left", len(log))
	}
}
