package repl_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/repl"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

const nsB = "db.b"

func openEngineAt(t testing.TB, dir string) *storage.Engine {
	t.Helper()
	return servertest.OpenStore(t, dir, storage.Options{})
}

func rawID(t testing.TB, x any) bson.RawValue {
	t.Helper()
	return doc(t, bson.D{{Key: "v", Value: x}}).Lookup("v")
}

func put(t testing.TB, e *storage.Engine, ns string, docs ...bson.D) {
	t.Helper()
	raws := make([]bson.Raw, len(docs))
	for i, d := range docs {
		raws[i] = doc(t, d)
	}
	res, err := e.Insert(context.Background(), ns, raws, storage.WriteOptions{Ordered: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}

func repl1(t testing.TB, e *storage.Engine, ns string, id any, d bson.D) {
	t.Helper()
	if ok, err := e.Replace(context.Background(), ns, rawID(t, id), doc(t, d)); err != nil || !ok {
		t.Fatalf("Replace %v: %v %v", id, ok, err)
	}
}

func del1(t testing.TB, e *storage.Engine, ns string, id any) {
	t.Helper()
	if ok, err := e.Delete(context.Background(), ns, rawID(t, id)); err != nil || !ok {
		t.Fatalf("Delete %v: %v %v", id, ok, err)
	}
}

// fullState is everything a member must share with its source after a
// rollback and catch-up: per collection the index specs, the documents,
// every index scanned in order (keys and _ids), the statistics and a clean
// Validate; the oplog entry for entry; the last optime and the term.
func fullState(t *testing.T, e *storage.Engine) string {
	t.Helper()
	s, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	var b strings.Builder
	for _, ci := range s.Collections() {
		specs, err := s.ListIndexes(ci.NS)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "coll %s %+v\n", ci.NS, specs)
		for _, sp := range specs {
			it, err := s.ScanIndex(ci.NS, sp.Name, nil, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			for it.Next() {
				fmt.Fprintf(&b, "  %s %x %s %s\n", sp.Name, it.IndexKey(), it.ID(), it.Doc())
			}
			if err := errors.Join(it.Err(), it.Close()); err != nil {
				t.Fatal(err)
			}
		}
		st, err := e.Stats(ci.NS)
		if err != nil {
			t.Fatal(err)
		}
		st.StorageSize = 0
		fmt.Fprintf(&b, "  stats %+v\n", st)
		res, err := e.Validate(context.Background(), ci.NS)
		if err != nil || !res.Valid {
			t.Fatalf("Validate %s: %+v %v", ci.NS, res, err)
		}
	}
	log, err := e.ReadOplog(storage.OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range log {
		b.Write(storage.EncodeOplogEntry(o))
	}
	fmt.Fprintf(&b, "\nlast %s term %d", e.LastOpTime(), e.Term())
	return b.String()
}

// waitCaughtUp waits until s's last optime is p's.
func waitCaughtUp(t *testing.T, p, s *storage.Engine) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for s.LastOpTime() != p.LastOpTime() {
		want := p.LastOpTime()
		_, _ = s.WaitDurable(waitCtx(t, 50*time.Millisecond), storage.OpTime{Term: want.Term, Index: want.Index - 1})
		if time.Now().After(deadline) {
			t.Fatalf("member at %s, source at %s", s.LastOpTime(), p.LastOpTime())
		}
	}
}

// sharedPrefix replicates a common history from a into b with a real
// Puller over gRPC, then stops both.
func sharedPrefix(t *testing.T, a, b *storage.Engine, history func()) {
	t.Helper()
	history()
	p := startPrimary(t, a, []string{"a", "b"})
	stop, _ := runPuller(t, "b", p.addr, b)
	waitCaughtUp(t, a, b)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("puller: %v", err)
	}
	p.stop()
	if fullState(t, a) != fullState(t, b) {
		t.Fatal("prefix differs")
	}
}

// rollbackFile splits a rollback file into its documents.
func rollbackFile(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for len(b) >= 4 {
		n := int(binary.LittleEndian.Uint32(b))
		if n < 5 || n > len(b) {
			t.Fatalf("%s: bad length %d", name, n)
		}
		out = append(out, bson.Raw(b[:n]).String())
		b = b[n:]
	}
	if len(b) != 0 {
		t.Fatalf("%s: %d trailing bytes", name, len(b))
	}
	return out
}

// TestRollbackRejoin: an old primary with unreplicated writes rejoins a
// new primary that wrote other things at the same indexes; its puller
// stops with ErrDiverged, Rollback brings it to the new primary's history
// (rollback files hold its own versions), a new puller catches up, and
// the two stores are equal in every respect, also after a restart.
func TestRollbackRejoin(t *testing.T) {
	ctx := waitCtx(t, 60*time.Second)
	oldDir, dataDir := t.TempDir(), t.TempDir()
	oe, ne := openEngineAt(t, oldDir), openEngine(t)
	sharedPrefix(t, oe, ne, func() {
		put(t, oe, ns,
			bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}, {Key: "tags", Value: bson.A{"a", "b"}}},
			bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: 2}},
			bson.D{{Key: "_id", Value: 3}, {Key: "x", Value: 3}},
			bson.D{{Key: "_id", Value: 4}, {Key: "x", Value: 4}},
			bson.D{{Key: "_id", Value: 5}, {Key: "x", Value: 5}})
		for _, spec := range []storage.IndexSpec{
			{Key: []storage.IndexKeyPart{{Field: "x"}}, Unique: true},
			{Key: []storage.IndexKeyPart{{Field: "tags"}}},
		} {
			if _, err := oe.CreateIndex(ctx, ns, spec); err != nil {
				t.Fatal(err)
			}
		}
		put(t, oe, nsB, bson.D{{Key: "_id", Value: "k"}, {Key: "v", Value: 1}})
	})
	common := oe.LastOpTime()
	// The old primary's w:1 writes that never replicated (term 1).
	repl1(t, oe, ns, 1, bson.D{{Key: "x", Value: 100}, {Key: "tags", Value: bson.A{"o1", "o2"}}})
	repl1(t, oe, ns, 3, bson.D{{Key: "x", Value: 30}})
	del1(t, oe, ns, 2)
	put(t, oe, ns, bson.D{{Key: "_id", Value: 10}, {Key: "x", Value: 2}, {Key: "by", Value: "old"}})
	put(t, oe, nsB, bson.D{{Key: "_id", Value: "o"}})
	if _, _, err := oe.RecordStatement(ctx, stmtW(t, "s1", 1)); err != nil {
		t.Fatal(err)
	}
	oldVersions := map[string][]string{
		ns: {
			doc(t, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 100}, {Key: "tags", Value: bson.A{"o1", "o2"}}}).String(),
			doc(t, bson.D{{Key: "_id", Value: 3}, {Key: "x", Value: 30}}).String(),
			doc(t, bson.D{{Key: "_id", Value: 10}, {Key: "x", Value: 2}, {Key: "by", Value: "old"}}).String(),
		},
		nsB: {doc(t, bson.D{{Key: "_id", Value: "o"}}).String()},
	}

	// The new primary (term 2): same _ids, swapped unique keys, deletes,
	// new _ids.
	if err := ne.SetTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	repl1(t, ne, ns, 1, bson.D{{Key: "x", Value: 200}, {Key: "tags", Value: bson.A{"n1", "n2", "n3"}}})
	repl1(t, ne, ns, 4, bson.D{{Key: "x", Value: -4}})
	repl1(t, ne, ns, 5, bson.D{{Key: "x", Value: 4}})
	repl1(t, ne, ns, 4, bson.D{{Key: "x", Value: 5}})
	del1(t, ne, ns, 3)
	put(t, ne, ns, bson.D{{Key: "_id", Value: 10}, {Key: "x", Value: 3}, {Key: "by", Value: "new"}},
		bson.D{{Key: "_id", Value: 11}, {Key: "x", Value: 11}})
	if out, err := ne.ReplaceStatement(ctx, nsB, rawID(t, "k"), doc(t, bson.D{{Key: "v", Value: 2}}), stmtW(t, "s2", 3)); err != nil || !out.Written {
		t.Fatal(out, err)
	}
	if ne.LastOpTime().Index <= oe.LastOpTime().Index {
		t.Fatal("the new primary should be ahead in indexes too")
	}

	p := startPrimary(t, ne, []string{"new", "old"})
	stop, finished := runPuller(t, "old", p.addr, oe)
	<-finished
	if err := stop(); !errors.Is(err, repl.ErrDiverged) {
		t.Fatalf("puller: %v, want ErrDiverged", err)
	}

	last, err := repl.Rollback(ctx, repl.RollbackOptions{Member: "old", Source: p.addr, Engine: oe, DataDir: dataDir, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if tail, _ := oe.ReadOplog(common, 0); len(tail) == 0 || tail[0].Term != 2 {
		t.Fatalf("entries after the common point %s: %v", common, tail)
	}
	if last != ne.LastOpTime() || oe.LastOpTime() != last {
		t.Fatalf("Rollback returned %s, member at %s, source at %s", last, oe.LastOpTime(), ne.LastOpTime())
	}
	if got, want := fullState(t, oe), fullState(t, ne); got != want {
		t.Fatalf("after rollback:\n got %s\nwant %s", got, want)
	}
	// Retryable-write records follow: the old primary's is gone, the new
	// primary's is there.
	if _, found, err := oe.LookupStatement(stmtW(t, "s1", 1).Statement); err != nil || found {
		t.Fatalf("rolled-back statement record: %v %v", found, err)
	}
	if rec, found, err := oe.LookupStatement(stmtW(t, "s2", 3).Statement); err != nil || !found || rec.OpTime.Term != 2 {
		t.Fatalf("new primary's statement record: %+v %v %v", rec, found, err)
	}
	files, err := filepath.Glob(filepath.Join(dataDir, repl.RollbackDir, "*.bson"))
	if err != nil || len(files) != 2 {
		t.Fatalf("rollback files %v %v", files, err)
	}
	for _, f := range files {
		coll := ns
		if strings.HasPrefix(filepath.Base(f), nsB+".") {
			coll = nsB
		}
		if got := rollbackFile(t, f); !slices.Equal(got, oldVersions[coll]) {
			t.Fatalf("%s: %v, want %v", f, got, oldVersions[coll])
		}
	}

	// The member follows the new primary again.
	stop, _ = runPuller(t, "old", p.addr, oe)
	repl1(t, ne, ns, 5, bson.D{{Key: "x", Value: 55}})
	put(t, ne, ns, bson.D{{Key: "_id", Value: 12}, {Key: "x", Value: 4}, {Key: "tags", Value: bson.A{"z", "y"}}})
	waitCaughtUp(t, ne, oe)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("puller: %v", err)
	}
	want := fullState(t, ne)
	if got := fullState(t, oe); got != want {
		t.Fatalf("after catch-up:\n got %s\nwant %s", got, want)
	}
	// Everything is on disk.
	if err := oe.Close(); err != nil {
		t.Fatal(err)
	}
	oe = openEngineAt(t, oldDir)
	if got := fullState(t, oe); got != want {
		t.Fatalf("after restart:\n got %s\nwant %s", got, want)
	}
}

// TestRollbackResyncRequired: divergence with a catalog command, or with
// no common point, ends in ErrResyncRequired, and the store is unchanged.
func TestRollbackResyncRequired(t *testing.T) {
	ctx := waitCtx(t, 60*time.Second)
	cases := []struct {
		name     string
		old, new func(t *testing.T, e *storage.Engine)
		prefix   bool
		reason   string
	}{
		{"createIndexes on the old primary", func(t *testing.T, e *storage.Engine) {
			repl1(t, e, ns, 1, bson.D{{Key: "x", Value: 9}})
			if _, err := e.CreateIndex(ctx, ns, storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "x"}}}); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, e *storage.Engine) { repl1(t, e, ns, 1, bson.D{{Key: "x", Value: 8}}) }, true, "catalog command"},
		{"drop on the new primary", func(t *testing.T, e *storage.Engine) {
			repl1(t, e, ns, 1, bson.D{{Key: "x", Value: 9}})
		}, func(t *testing.T, e *storage.Engine) {
			if err := e.DropCollection(ctx, ns); err != nil {
				t.Fatal(err)
			}
		}, true, "catalog command"},
		{"create on the new primary", func(t *testing.T, e *storage.Engine) {
			repl1(t, e, ns, 1, bson.D{{Key: "x", Value: 9}})
		}, func(t *testing.T, e *storage.Engine) { put(t, e, nsB, bson.D{{Key: "_id", Value: 1}}) }, true, "catalog command"},
		{"no common point", func(t *testing.T, e *storage.Engine) {
			put(t, e, ns, bson.D{{Key: "_id", Value: 1}})
		}, func(t *testing.T, e *storage.Engine) { put(t, e, ns, bson.D{{Key: "_id", Value: 2}}) }, false, "no common point"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oe, ne := openEngine(t), openEngine(t)
			if c.prefix {
				sharedPrefix(t, oe, ne, func() { put(t, oe, ns, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}}) })
			}
			c.old(t, oe)
			if err := ne.SetTerm(ctx, 2); err != nil {
				t.Fatal(err)
			}
			c.new(t, ne)
			p := startPrimary(t, ne, []string{"new", "old"})
			before := fullState(t, oe)
			dataDir := t.TempDir()
			_, err := repl.Rollback(ctx, repl.RollbackOptions{Member: "old", Source: p.addr, Engine: oe, DataDir: dataDir, Logger: zerolog.Nop()})
			if !errors.Is(err, repl.ErrResyncRequired) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("Rollback: %v, want ErrResyncRequired (%s)", err, c.reason)
			}
			if fullState(t, oe) != before {
				t.Fatal("a refused rollback changed the store")
			}
			if _, err := os.Stat(filepath.Join(dataDir, repl.RollbackDir)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused rollback wrote files: %v", err)
			}
		})
	}
}

// TestRollbackStaleSource: a source in an older term than the member is
// refused (StaleTerm), not rolled back to.
func TestRollbackStaleSource(t *testing.T) {
	ctx := waitCtx(t, 30*time.Second)
	oe, ne := openEngine(t), openEngine(t)
	sharedPrefix(t, oe, ne, func() { put(t, oe, ns, bson.D{{Key: "_id", Value: 1}}) })
	if err := oe.SetTerm(ctx, 3); err != nil {
		t.Fatal(err)
	}
	put(t, oe, ns, bson.D{{Key: "_id", Value: 2}})
	put(t, ne, ns, bson.D{{Key: "_id", Value: 3}})
	p := startPrimary(t, ne, []string{"new", "old"})
	before := fullState(t, oe)
	_, err := repl.Rollback(ctx, repl.RollbackOptions{Member: "old", Source: p.addr, Engine: oe, DataDir: t.TempDir(), Logger: zerolog.Nop()})
	if mongoerr.CodeOf(err) != mongoerr.StaleTerm || errors.Is(err, repl.ErrResyncRequired) {
		t.Fatalf("Rollback: %v, want StaleTerm", err)
	}
	if fullState(t, oe) != before {
		t.Fatal("store changed")
	}
}

func stmtW(t testing.TB, lsid string, txn int64) storage.StmtWrite {
	return storage.StmtWrite{
		Statement: storage.Statement{LSID: doc(t, bson.D{{Key: "id", Value: lsid}}), TxnNumber: txn},
		Result:    doc(t, bson.D{{Key: "n", Value: 1}}),
	}
}
