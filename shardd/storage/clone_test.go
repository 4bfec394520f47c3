package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// dataState is logicalState without the oplog and the last optime.
func dataState(t *testing.T, e *Engine) string {
	t.Helper()
	s := logicalState(t, e)
	s = s[:strings.Index(s, "last (")]
	if i := strings.Index(s, " op ("); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// sourceHistory is primaryHistory plus an index whose multikey flag stays
// set after the array that set it is gone, and an empty collection.
func sourceHistory(t *testing.T, e *Engine) {
	t.Helper()
	ctx := context.Background()
	primaryHistory(t, e)
	insertOK(t, e, "db.m", bson.D{{Key: "_id", Value: 1}, {Key: "m", Value: bson.A{1, 2}}}, bson.D{{Key: "_id", Value: 2}, {Key: "m", Value: 3}})
	if _, err := e.CreateIndex(ctx, "db.m", IndexSpec{Key: []IndexKeyPart{{Field: "m"}}, Sparse: true}); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.Delete(ctx, "db.m", rv(t, 1)); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := e.CreateCollection(ctx, "db.empty"); err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		insertOK(t, e, "db.many", bson.D{{Key: "_id", Value: i}, {Key: "v", Value: fmt.Sprint("v", i)}})
	}
}

// cloneInto runs an initial sync of dst from a snapshot of src, installing
// documents and statement records in batches of batch, and returns the snapshot's optime. stop,
// when not nil, is called after each install and ends the clone early
// (returning false) when it returns false.
func cloneInto(t *testing.T, src, dst *Engine, batch int, stop func() bool) (OpTime, bool) {
	t.Helper()
	ctx := context.Background()
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = snap.Close() }()
	at, err := snap.OpTime()
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.ResetForInitialSync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range snap.Collections() {
		specs, err := snap.ListIndexes(c.NS)
		if err != nil {
			t.Fatal(err)
		}
		// Through the wire form, as the server and InitialSync do.
		for i, s := range specs {
			if specs[i], err = DecodeIndexSpec(EncodeIndexSpec(s)); err != nil {
				t.Fatal(err)
			}
		}
		if err := dst.InstallCollection(ctx, c.NS, specs); err != nil {
			t.Fatal(err)
		}
		it, err := snap.ScanIDRange(c.NS, IDRange{}, false)
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.Raw
		flush := func() bool {
			if len(docs) == 0 {
				return true
			}
			if err := dst.InstallDocuments(ctx, c.NS, docs); err != nil {
				t.Fatal(err)
			}
			docs = nil
			return stop == nil || stop()
		}
		for it.Next() {
			docs = append(docs, it.Doc())
			if len(docs) == batch && !flush() {
				_ = it.Close()
				return at, false
			}
		}
		if err := errors.Join(it.Err(), it.Close()); err != nil {
			t.Fatal(err)
		}
		if !flush() {
			return at, false
		}
	}
	// Statement records, in pages of batch records, as the server sends.
	var after []byte
	for {
		page, next, err := snap.ScanSessions(after, batch, 4<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 0 {
			if err := dst.InstallSessions(ctx, page); err != nil {
				t.Fatal(err)
			}
			if stop != nil && !stop() {
				return at, false
			}
		}
		if next == nil {
			break
		}
		after = next
	}
	if err := dst.FinishInitialSync(ctx, at); err != nil {
		t.Fatal(err)
	}
	return at, true
}

// allKeys lists every Pebble key of the store.
func allKeys(t *testing.T, e *Engine) [][]byte {
	t.Helper()
	it, err := e.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, slices.Clone(it.Key()))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInitialSyncInstallsSnapshot(t *testing.T) {
	ctx := context.Background()
	src, dst := openTest(t, Options{}), openTest(t, Options{})
	sourceHistory(t, src)
	// dst has data of its own, a newer vote, and a key under a prefix this
	// file does not know (a future kind of data): all data must go.
	insertOK(t, dst, "db.a", bson.D{{Key: "_id", Value: 99}, {Key: "x", Value: "mine"}})
	insertOK(t, dst, "db.gone", bson.D{{Key: "_id", Value: 1}})
	if _, err := dst.Vote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := dst.db.Set([]byte("zfuture"), []byte("x"), pebble.Sync); err != nil {
		t.Fatal(err)
	}

	if err := dst.ResetForInitialSync(ctx); err != nil {
		t.Fatal(err)
	}
	if !dst.InitialSyncPending() || len(dst.ListCollections()) != 0 || !dst.LastOpTime().IsZero() || len(dst.stats) != 0 {
		t.Fatalf("after reset: pending %v, collections %v, last %v", dst.InitialSyncPending(), dst.ListCollections(), dst.LastOpTime())
	}
	allowed := append(slices.Clone(resetKeepKeys), metaKey(metaInitialSync), metaKey(metaLastOp))
	for _, k := range allKeys(t, dst) {
		if !slices.ContainsFunc(allowed, func(a []byte) bool { return bytes.Equal(a, k) }) {
			t.Errorf("key %q survived the reset", k)
		}
	}
	if dst.VotedTerm() != 1 {
		t.Fatalf("vote lost: %d", dst.VotedTerm())
	}
	if err := dst.ApplyOplog(ctx, readAll(t, src)[:1]); !errors.Is(err, ErrInitialSyncPending) {
		t.Fatalf("ApplyOplog during initial sync: %v", err)
	}

	at, _ := cloneInto(t, src, dst, 4, nil)
	if at != src.LastOpTime() {
		t.Fatalf("snapshot optime %v, source last %v", at, src.LastOpTime())
	}
	if got, want := dataState(t, dst), dataState(t, src); got != want {
		t.Fatalf("clone\n%s\nsource\n%s", got, want)
	}
	ix, _ := dst.ListIndexes("db.m")
	if len(ix) != 2 || !ix[1].Multikey {
		t.Fatalf("multikey flag not carried: %+v", ix)
	}
	checkSyncedAt := func(e *Engine) {
		t.Helper()
		if e.InitialSyncPending() || e.LastOpTime() != at || e.Term() < at.Term {
			t.Fatalf("pending %v last %v term %d, want last %v", e.InitialSyncPending(), e.LastOpTime(), e.Term(), at)
		}
		if log := readAll(t, e); len(log) != 0 {
			t.Fatalf("oplog after initial sync: %+v", log)
		}
		if ok, err := e.HasOplogEntry(at); err != nil || !ok {
			t.Fatalf("HasOplogEntry(snapshot) = %v, %v", ok, err)
		}
		if ok, _ := e.HasOplogEntry(OpTime{Term: at.Term, Index: at.Index - 1}); ok {
			t.Fatal("HasOplogEntry before the snapshot")
		}
		first, ok, err := e.FirstOpTime()
		if err != nil || !ok || first != (OpTime{Term: at.Term, Index: at.Index + 1}) {
			t.Fatalf("FirstOpTime = %v %v %v", first, ok, err)
		}
	}
	checkSyncedAt(dst)

	// The source goes on; its entries after the snapshot apply on the clone.
	insertOK(t, src, "db.a", bson.D{{Key: "_id", Value: 50}, {Key: "x", Value: 50}, {Key: "tags", Value: bson.A{"u", "v"}}})
	if err := src.DropCollection(ctx, "db.many"); err != nil {
		t.Fatal(err)
	}
	next, err := src.ReadOplog(at, 0)
	if err != nil || len(next) != 2 {
		t.Fatalf("source entries after the snapshot: %v %v", next, err)
	}
	if err := dst.ApplyOplog(ctx, next); err != nil {
		t.Fatal(err)
	}
	if got, want := dataState(t, dst), dataState(t, src); got != want {
		t.Fatalf("after catch-up\n%s\nsource\n%s", got, want)
	}
	if first, _, _ := dst.FirstOpTime(); first != next[0].OpTime() {
		t.Fatalf("FirstOpTime after catch-up %v", first)
	}
}

func TestInitialSyncAfterCatchUpRestart(t *testing.T) {
	dir := t.TempDir()
	src, dst := openTest(t, Options{}), openDir(t, dir, Options{})
	sourceHistory(t, src)
	at, _ := cloneInto(t, src, dst, 100, nil)
	want := dataState(t, src)
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	dst = openDir(t, dir, Options{})
	if dst.InitialSyncPending() || dst.LastOpTime() != at || dataState(t, dst) != want {
		t.Fatalf("after restart: pending %v last %v\n%s", dst.InitialSyncPending(), dst.LastOpTime(), dataState(t, dst))
	}
	if ok, _ := dst.HasOplogEntry(at); !ok {
		t.Fatal("snapshot optime not held after restart")
	}
}

// TestInitialSyncCrash: a store closed in the middle of a clone reopens
// with InitialSyncPending, refuses ApplyOplog, and a redone initial sync
// gives the source's state.
func TestInitialSyncCrash(t *testing.T) {
	ctx := context.Background()
	for _, crashAfter := range []int{0, 1, 3} {
		t.Run(fmt.Sprint("installs", crashAfter), func(t *testing.T) {
			dir := t.TempDir()
			src, dst := openTest(t, Options{}), openDir(t, dir, Options{})
			sourceHistory(t, src)
			insertOK(t, dst, "db.a", bson.D{{Key: "_id", Value: 99}})
			installs := 0
			if crashAfter == 0 {
				if err := dst.ResetForInitialSync(ctx); err != nil {
					t.Fatal(err)
				}
			} else if _, done := cloneInto(t, src, dst, 2, func() bool { installs++; return installs < crashAfter }); done {
				t.Fatal("clone was not interrupted")
			}
			if err := dst.Close(); err != nil {
				t.Fatal(err)
			}
			dst = openDir(t, dir, Options{})
			if !dst.InitialSyncPending() {
				t.Fatal("interrupted initial sync not reported after reopening")
			}
			if err := dst.ApplyOplog(ctx, readAll(t, src)[:1]); !errors.Is(err, ErrInitialSyncPending) {
				t.Fatalf("ApplyOplog on a partial clone: %v", err)
			}
			if n, err := dst.TruncateOplog(ctx, OpTime{Term: 9, Index: 9}); err != nil || n != 0 {
				t.Fatalf("TruncateOplog on a partial clone: %d %v", n, err)
			}
			cloneInto(t, src, dst, 3, nil)
			if got, want := dataState(t, dst), dataState(t, src); got != want {
				t.Fatalf("redone clone\n%s\nsource\n%s", got, want)
			}
			if err := dst.Close(); err != nil {
				t.Fatal(err)
			}
			dst = openDir(t, dir, Options{})
			if dst.InitialSyncPending() {
				t.Fatal("finished initial sync still pending after reopening")
			}
		})
	}
}

func TestInstallWithoutInitialSync(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if err := e.InstallCollection(ctx, "db.x", nil); !errors.Is(err, ErrNoInitialSync) {
		t.Fatalf("InstallCollection: %v", err)
	}
	if err := e.InstallDocuments(ctx, "db.x", []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: 1}})}); !errors.Is(err, ErrNoInitialSync) {
		t.Fatalf("InstallDocuments: %v", err)
	}
	if err := e.FinishInitialSync(ctx, OpTime{Term: 1, Index: 3}); !errors.Is(err, ErrNoInitialSync) {
		t.Fatalf("FinishInitialSync: %v", err)
	}
	if err := e.ResetForInitialSync(ctx); err != nil {
		t.Fatal(err)
	}
	err := e.InstallDocuments(ctx, "db.x", []bson.Raw{mustDoc(t, bson.D{{Key: "a", Value: 1}, {Key: "_id", Value: 1}})})
	wantCode(t, err, 2) // BadValue: _id not first
	if _, err := DecodeIndexSpec([]byte{1, 2}); err == nil {
		t.Fatal("DecodeIndexSpec accepted garbage")
	}
	// A snapshot of nothing: the member becomes an empty one at (1, 0).
	if err := e.FinishInitialSync(ctx, OpTime{Term: 1}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := e.FirstOpTime(); ok || e.LastOpTime() != (OpTime{Term: 1}) {
		t.Fatalf("empty clone: last %v", e.LastOpTime())
	}
}
