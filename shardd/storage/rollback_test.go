package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// divergence builds two stores that share a prefix (by replication) and
// then diverge: old (term 1) takes local writes that never replicated,
// new (term 2) other writes at the same indexes, to the same _ids and to
// others. It returns the common point.
func divergence(t *testing.T, old, new *Engine) OpTime {
	t.Helper()
	ctx := context.Background()
	insertOK(t, old, "db.a",
		bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}, {Key: "tags", Value: bson.A{"p", "q"}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: 2}},
		bson.D{{Key: "_id", Value: 3}, {Key: "x", Value: 3}},
		bson.D{{Key: "_id", Value: 4}, {Key: "x", Value: 4}},
		bson.D{{Key: "_id", Value: 5}, {Key: "x", Value: 5}},
		bson.D{{Key: "_id", Value: 6}, {Key: "x", Value: 6}, {Key: "tags", Value: "z"}})
	if _, err := old.CreateIndex(ctx, "db.a", IndexSpec{Key: []IndexKeyPart{{Field: "x"}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.CreateIndex(ctx, "db.a", IndexSpec{Key: []IndexKeyPart{{Field: "tags"}}}); err != nil {
		t.Fatal(err)
	}
	insertOK(t, old, "db.b", bson.D{{Key: "_id", Value: "k"}, {Key: "v", Value: 1}})
	if err := new.ApplyOplog(ctx, readAll(t, old)); err != nil {
		t.Fatal(err)
	}
	common := old.LastOpTime()
	if new.LastOpTime() != common {
		t.Fatalf("prefix: new at %s, old at %s", new.LastOpTime(), common)
	}

	// The old primary's unreplicated writes (term 1).
	replace(t, old, "db.a", 1, bson.D{{Key: "x", Value: 100}, {Key: "tags", Value: bson.A{"old1", "old2"}}})
	replace(t, old, "db.a", 3, bson.D{{Key: "x", Value: 30}})
	del(t, old, "db.a", 2)
	insertOK(t, old, "db.a", bson.D{{Key: "_id", Value: 10}, {Key: "x", Value: 2}, {Key: "by", Value: "old"}})
	insertOK(t, old, "db.b", bson.D{{Key: "_id", Value: "o"}, {Key: "v", Value: 2}})
	replace(t, old, "db.b", "k", bson.D{{Key: "v", Value: -1}})

	// The new primary's writes (term 2), at the same indexes and beyond.
	if err := new.SetTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	replace(t, new, "db.a", 1, bson.D{{Key: "x", Value: 200}, {Key: "tags", Value: bson.A{"n1", "n2", "n3"}}})
	// 4 and 5 swap their unique keys.
	replace(t, new, "db.a", 4, bson.D{{Key: "x", Value: -4}})
	replace(t, new, "db.a", 5, bson.D{{Key: "x", Value: 4}})
	replace(t, new, "db.a", 4, bson.D{{Key: "x", Value: 5}})
	del(t, new, "db.a", 6)
	insertOK(t, new, "db.a", bson.D{{Key: "_id", Value: 10}, {Key: "x", Value: 6}, {Key: "by", Value: "new"}},
		bson.D{{Key: "_id", Value: 12}, {Key: "x", Value: 12}})
	insertOK(t, new, "db.b", bson.D{{Key: "_id", Value: "n"}})
	return common
}

func replace(t *testing.T, e *Engine, ns string, id any, d bson.D) {
	t.Helper()
	if ok, err := e.Replace(context.Background(), ns, rv(t, id), mustDoc(t, d)); err != nil || !ok {
		t.Fatalf("Replace %v: %v %v", id, ok, err)
	}
}

func del(t *testing.T, e *Engine, ns string, id any) {
	t.Helper()
	if ok, err := e.Delete(context.Background(), ns, rv(t, id)); err != nil || !ok {
		t.Fatalf("Delete %v: %v %v", id, ok, err)
	}
}

// plan asks src to plan old's rollback.
func plan(t *testing.T, old, src *Engine) RollbackPlan {
	t.Helper()
	tail, err := old.OplogTail(RollbackTailEntries, RollbackTailBytes)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = snap.Close() }()
	p, err := snap.PlanRollback(tail)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func inputOf(p RollbackPlan, dir string) RollbackInput {
	return RollbackInput{Common: p.Common, SnapshotOpTime: p.SnapshotOpTime, Entries: p.Entries, Docs: p.Docs, Sessions: p.Sessions, Dir: dir}
}

// readRollbackFile splits a rollback file into its documents.
func readRollbackFile(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatalf("%s: trailing %d bytes", name, len(b))
		}
		n := int(binary.LittleEndian.Uint32(b))
		if n < 5 || n > len(b) {
			t.Fatalf("%s: bad document length %d", name, n)
		}
		d := bson.Raw(b[:n])
		if err := d.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, d.String())
		b = b[n:]
	}
	return out
}

func TestRollback(t *testing.T) {
	ctx := context.Background()
	oldDir, dataDir := t.TempDir(), t.TempDir()
	old := openDir(t, oldDir, Options{})
	src := openTest(t, Options{NoSync: true})
	common := divergence(t, old, src)

	undoneWant := readAllAfter(t, old, common)
	p := plan(t, old, src)
	if !p.Found || p.Resync != "" || p.Common != common || p.SnapshotOpTime != src.LastOpTime() {
		t.Fatalf("plan: found %v resync %q common %s (want %s) snapshot %s (want %s)", p.Found, p.Resync, p.Common, common, p.SnapshotOpTime, src.LastOpTime())
	}
	if len(p.Entries) != int(src.LastOpTime().Index-common.Index) {
		t.Fatalf("plan: %d entries", len(p.Entries))
	}
	// Touched: a 1,3,2,10,4,5,6,12 and b o,k,n.
	if len(p.Docs) != 11 {
		t.Fatalf("plan: %d docs: %v", len(p.Docs), p.Docs)
	}
	res, err := old.RollbackTo(ctx, inputOf(p, filepath.Join(dataDir, "rollback")))
	if err != nil {
		t.Fatal(err)
	}
	if res.LastOpTime != src.LastOpTime() || len(res.Undone) != len(undoneWant) || res.Saved != 5 || len(res.Files) != 2 {
		t.Fatalf("result %+v", res)
	}
	want := logicalState(t, src)
	if got := logicalState(t, old); got != want {
		t.Fatalf("after rollback:\n got %s\nwant %s", got, want)
	}
	if old.Term() != 2 || old.LastOpTime() != src.LastOpTime() {
		t.Fatalf("term %d last %s", old.Term(), old.LastOpTime())
	}
	// The rollback files hold the old primary's versions of what its
	// divergent entries touched (deleted documents have none).
	files, err := filepath.Glob(filepath.Join(dataDir, "rollback", "*.bson"))
	if err != nil || len(files) != 2 {
		t.Fatalf("rollback files %v %v", files, err)
	}
	slices.Sort(files)
	if !strings.HasPrefix(filepath.Base(files[0]), "db.a.") || !strings.HasPrefix(filepath.Base(files[1]), "db.b.") {
		t.Fatalf("rollback file names %v", files)
	}
	gotA, gotB := readRollbackFile(t, files[0]), readRollbackFile(t, files[1])
	wantA := []string{
		mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 100}, {Key: "tags", Value: bson.A{"old1", "old2"}}}).String(),
		mustDoc(t, bson.D{{Key: "_id", Value: 3}, {Key: "x", Value: 30}}).String(),
		mustDoc(t, bson.D{{Key: "_id", Value: 10}, {Key: "x", Value: 2}, {Key: "by", Value: "old"}}).String(),
	}
	wantB := []string{
		mustDoc(t, bson.D{{Key: "_id", Value: "o"}, {Key: "v", Value: 2}}).String(),
		mustDoc(t, bson.D{{Key: "_id", Value: "k"}, {Key: "v", Value: -1}}).String(),
	}
	if !slices.Equal(gotA, wantA) || !slices.Equal(gotB, wantB) {
		t.Fatalf("rollback files:\n%v\n%v\nwant\n%v\n%v", gotA, gotB, wantA, wantB)
	}

	// The batch is durable and complete: a restart sees the same state.
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	old = openDir(t, oldDir, Options{})
	if got := logicalState(t, old); got != want {
		t.Fatalf("after restart:\n got %s\nwant %s", got, want)
	}
	// And the member follows the source again from P.
	replace(t, src, "db.a", 5, bson.D{{Key: "x", Value: 55}})
	insertOK(t, src, "db.a", bson.D{{Key: "_id", Value: 13}, {Key: "x", Value: 4}})
	more, err := src.ReadOplog(old.LastOpTime(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.ApplyOplog(ctx, more); err != nil {
		t.Fatal(err)
	}
	if got, want := logicalState(t, old), logicalState(t, src); got != want {
		t.Fatalf("after catching up:\n got %s\nwant %s", got, want)
	}
}

func readAllAfter(t *testing.T, e *Engine, after OpTime) []OplogEntry {
	t.Helper()
	out, err := e.ReadOplog(after, 0)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRollbackOnlyLocal: the source wrote nothing after the common point
// (P = C): the member just undoes its own entries, and its last optime
// goes back.
func TestRollbackOnlyLocal(t *testing.T) {
	ctx := context.Background()
	old := openTest(t, Options{})
	src := openTest(t, Options{NoSync: true})
	insertOK(t, old, testNS, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}})
	if err := src.ApplyOplog(ctx, readAll(t, old)); err != nil {
		t.Fatal(err)
	}
	common := old.LastOpTime()
	insertOK(t, old, testNS, bson.D{{Key: "_id", Value: 3}})
	del(t, old, testNS, 1)
	p := plan(t, old, src)
	if p.Common != common || len(p.Entries) != 0 || len(p.Docs) != 2 {
		t.Fatalf("plan %+v", p)
	}
	res, err := old.RollbackTo(ctx, inputOf(p, filepath.Join(t.TempDir(), "rollback")))
	if err != nil {
		t.Fatal(err)
	}
	if res.LastOpTime != common || old.LastOpTime() != common || res.Saved != 1 {
		t.Fatalf("result %+v, last %s", res, old.LastOpTime())
	}
	if got, want := logicalState(t, old), logicalState(t, src); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	// New writes continue from the common point.
	insertOK(t, src, testNS, bson.D{{Key: "_id", Value: 4}})
	if err := old.ApplyOplog(ctx, readAllAfter(t, src, common)); err != nil {
		t.Fatal(err)
	}
	if got, want := logicalState(t, old), logicalState(t, src); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// TestRollbackResync: catalog commands on either side and a missing common
// point are answered with a resync; RollbackTo refuses them too and
// writes nothing.
func TestRollbackResync(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (old, src *Engine) {
		old = openTest(t, Options{NoSync: true})
		src = openTest(t, Options{NoSync: true})
		insertOK(t, old, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}})
		if err := src.ApplyOplog(ctx, readAll(t, old)); err != nil {
			t.Fatal(err)
		}
		if err := src.SetTerm(ctx, 2); err != nil {
			t.Fatal(err)
		}
		return old, src
	}
	cases := []struct {
		name       string
		old, src   func(t *testing.T, e *Engine)
		wantReason string
	}{
		{"local createIndexes", func(t *testing.T, e *Engine) {
			if _, err := e.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "x"}}}); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, e *Engine) { replace(t, e, testNS, 1, bson.D{{Key: "x", Value: 2}}) }, "member's entries"},
		{"local implicit create", func(t *testing.T, e *Engine) {
			insertOK(t, e, "db.new", bson.D{{Key: "_id", Value: 1}})
		}, func(t *testing.T, e *Engine) { replace(t, e, testNS, 1, bson.D{{Key: "x", Value: 2}}) }, "member's entries"},
		{"source drop", func(t *testing.T, e *Engine) { replace(t, e, testNS, 1, bson.D{{Key: "x", Value: 3}}) },
			func(t *testing.T, e *Engine) {
				if err := e.DropCollection(ctx, testNS); err != nil {
					t.Fatal(err)
				}
			}, "sync source's entries"},
		{"source create", func(t *testing.T, e *Engine) { replace(t, e, testNS, 1, bson.D{{Key: "x", Value: 3}}) },
			func(t *testing.T, e *Engine) {
				if err := e.CreateCollection(ctx, "db.other"); err != nil {
					t.Fatal(err)
				}
			}, "sync source's entries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old, src := setup(t)
			c.old(t, old)
			c.src(t, src)
			p := plan(t, old, src)
			if !p.Found || !strings.Contains(p.Resync, c.wantReason) || p.Entries != nil || p.Docs != nil {
				t.Fatalf("plan %+v, want resync about %q", p, c.wantReason)
			}
			// RollbackTo refuses on its own, before writing anything.
			before := rawState(t, old)
			entries := readAllAfter(t, src, p.Common)
			dir := filepath.Join(t.TempDir(), "rollback")
			_, err := old.RollbackTo(ctx, RollbackInput{Common: p.Common, Entries: entries, Dir: dir})
			if !errors.Is(err, ErrRollbackImpossible) {
				t.Fatalf("RollbackTo: %v, want ErrRollbackImpossible", err)
			}
			if !bytes.Equal(rawState(t, old), before) {
				t.Fatal("a refused rollback changed the store")
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused rollback wrote files: %v", err)
			}
		})
	}
	t.Run("no common point", func(t *testing.T) {
		old := openTest(t, Options{NoSync: true})
		src := openTest(t, Options{NoSync: true})
		insertOK(t, old, testNS, bson.D{{Key: "_id", Value: 1}})
		if err := src.SetTerm(ctx, 2); err != nil {
			t.Fatal(err)
		}
		insertOK(t, src, testNS, bson.D{{Key: "_id", Value: 2}})
		p := plan(t, old, src)
		if p.Found || !strings.Contains(p.Resync, "no common point") {
			t.Fatalf("plan %+v", p)
		}
	})
	t.Run("too many entries", func(t *testing.T) {
		old, src := setup(t)
		replace(t, old, testNS, 1, bson.D{{Key: "x", Value: 3}})
		docs := make([]bson.Raw, RollbackMaxEntries+1)
		for i := range docs {
			docs[i] = mustDoc(t, bson.D{{Key: "_id", Value: 100 + i}})
		}
		if _, err := src.Insert(ctx, testNS, docs, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		p := plan(t, old, src)
		if !p.Found || !strings.Contains(p.Resync, "more than") {
			t.Fatalf("plan: found %v resync %q", p.Found, p.Resync)
		}
	})
}

// TestRollbackFileBeforeBatch: the rollback file is written before the
// batch; a batch that cannot be built (here: a refetched document that
// conflicts on a unique index with a document outside the rollback, which
// only a store that differs elsewhere can produce) writes nothing to the
// store, and the file stays for the operator.
func TestRollbackFileBeforeBatch(t *testing.T) {
	ctx := context.Background()
	old := openTest(t, Options{NoSync: true})
	src := openTest(t, Options{NoSync: true})
	insertOK(t, old, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}}, bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: 2}})
	if _, err := old.CreateIndex(ctx, testNS, IndexSpec{Key: []IndexKeyPart{{Field: "x"}}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	if err := src.ApplyOplog(ctx, readAll(t, old)); err != nil {
		t.Fatal(err)
	}
	replace(t, old, testNS, 1, bson.D{{Key: "x", Value: 10}})
	if err := src.SetTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	replace(t, src, testNS, 1, bson.D{{Key: "x", Value: 20}})
	p := plan(t, old, src)
	// Tamper: the source's version of 1 takes 2's unique key.
	p.Docs[0].Doc = mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 2}})
	before := rawState(t, old)
	dir := filepath.Join(t.TempDir(), "rollback")
	if _, err := old.RollbackTo(ctx, inputOf(p, dir)); !errors.Is(err, ErrOplogDiverged) {
		t.Fatalf("RollbackTo: %v, want ErrOplogDiverged", err)
	}
	if !bytes.Equal(rawState(t, old), before) {
		t.Fatal("a failed rollback changed the store")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.bson"))
	if len(files) != 1 {
		t.Fatalf("rollback files %v", files)
	}
	if got := readRollbackFile(t, files[0]); len(got) != 1 || got[0] != mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 10}}).String() {
		t.Fatalf("rollback file %v", got)
	}
	// A missing refetched document is refused too.
	p = plan(t, old, src)
	p.Docs = nil
	if _, err := old.RollbackTo(ctx, inputOf(p, dir)); err == nil || !strings.Contains(err.Error(), "did not send") {
		t.Fatalf("RollbackTo without docs: %v", err)
	}
	// The untampered rollback still works afterwards.
	if _, err := old.RollbackTo(ctx, inputOf(plan(t, old, src), dir)); err != nil {
		t.Fatal(err)
	}
	if got, want := logicalState(t, old), logicalState(t, src); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// rawPrefix returns the keys and values under a key prefix.
func rawPrefix(t *testing.T, e *Engine, prefix byte) string {
	t.Helper()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for ok := it.First(); ok; ok = it.Next() {
		fmt.Fprintf(&b, "%x=%x\n", it.Key(), it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRollbackSessions: retryable-write records follow the documents: the
// member's records written by its divergent entries (including the
// removal of an older txnNumber's) are replaced by the source's, and the
// source's records of its entries after the common point are added.
func TestRollbackSessions(t *testing.T) {
	ctx := context.Background()
	old := openTest(t, Options{NoSync: true})
	src := openTest(t, Options{NoSync: true})
	lsid := func(s string) []byte { return mustDoc(t, bson.D{{Key: "id", Value: s}}) }
	stmt := func(l string, txn int64, id int32, res string) StmtWrite {
		return StmtWrite{Statement: Statement{LSID: lsid(l), TxnNumber: txn, StmtID: id}, Result: mustDoc(t, bson.D{{Key: "r", Value: res}})}
	}
	replaceStmt := func(e *Engine, id int, x int, w StmtWrite) {
		t.Helper()
		out, err := e.ReplaceStatement(ctx, testNS, rv(t, id), mustDoc(t, bson.D{{Key: "x", Value: x}}), w)
		if err != nil || !out.Written {
			t.Fatalf("ReplaceStatement: %+v %v", out, err)
		}
	}
	insertOK(t, old, testNS, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "_id", Value: 3}})
	replaceStmt(old, 1, 1, stmt("a", 1, 0, "a1.0"))
	replaceStmt(old, 2, 1, stmt("d", 1, 0, "d1.0"))
	if err := src.ApplyOplog(ctx, readAll(t, old)); err != nil {
		t.Fatal(err)
	}
	// Old primary: session a moves to txn 2 (dropping txn 1's records),
	// session b records a no-op statement.
	replaceStmt(old, 2, 2, stmt("a", 2, 0, "a2.0"))
	if _, retried, err := old.RecordStatement(ctx, stmt("b", 1, 0, "b1.0")); err != nil || retried {
		t.Fatal(retried, err)
	}
	// New primary: session a gets another statement of txn 1, session c
	// deletes.
	if err := src.SetTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	replaceStmt(src, 3, 3, stmt("a", 1, 1, "a1.1"))
	if out, err := src.DeleteStatement(ctx, testNS, rv(t, 1), stmt("c", 7, 0, "c7.0")); err != nil || !out.Written {
		t.Fatal(out, err)
	}
	p := plan(t, old, src)
	if len(p.Sessions) != 3 {
		t.Fatalf("plan: %d sessions", len(p.Sessions))
	}
	res, err := old.RollbackTo(ctx, inputOf(p, filepath.Join(t.TempDir(), "rollback")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Sessions != 3 {
		t.Fatalf("result %+v", res)
	}
	if got, want := logicalState(t, old), logicalState(t, src); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	for _, prefix := range []byte{prefixOplog, prefixSession} {
		if got, want := rawPrefix(t, old, prefix), rawPrefix(t, src, prefix); got != want {
			t.Fatalf("prefix %c:\n got %s\nwant %s", prefix, got, want)
		}
	}
	// A retry of a rolled-back statement is not answered from a record;
	// a statement of the source's history is.
	if _, found, err := old.LookupStatement(stmt("b", 1, 0, "").Statement); err != nil || found {
		t.Fatalf("rolled-back statement: found %v %v", found, err)
	}
	if rec, found, err := old.LookupStatement(stmt("a", 1, 0, "").Statement); err != nil || !found || rec.Result.Lookup("r").StringValue() != "a1.0" {
		t.Fatalf("statement of the shared prefix: %+v %v %v", rec, found, err)
	}
	if rec, found, err := old.LookupStatement(stmt("c", 7, 0, "").Statement); err != nil || !found || rec.Result.Lookup("r").StringValue() != "c7.0" {
		t.Fatalf("statement of the source: %+v %v %v", rec, found, err)
	}
	// A missing session is refused.
	p.Sessions = p.Sessions[:2]
	if _, err := old.RollbackTo(ctx, inputOf(p, t.TempDir())); err == nil {
		t.Fatal("RollbackTo without a session's records succeeded")
	}
}

// TestRollbackCommonAtSourceBase: the common point is the newest entry the
// source's retention removed (its oplog base): it still counts as held.
func TestRollbackCommonAtSourceBase(t *testing.T) {
	ctx := context.Background()
	old := openTest(t, Options{NoSync: true})
	src := openTest(t, Options{NoSync: true})
	insertOK(t, old, testNS, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}})
	if err := src.ApplyOplog(ctx, readAll(t, old)); err != nil {
		t.Fatal(err)
	}
	common := old.LastOpTime()
	replace(t, old, testNS, 1, bson.D{{Key: "x", Value: "old"}})
	if err := src.SetTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	replace(t, src, testNS, 2, bson.D{{Key: "x", Value: "new"}})
	if n, err := src.TruncateOplog(ctx, src.LastOpTime()); err != nil || n != int(common.Index) {
		t.Fatalf("TruncateOplog: %d %v", n, err)
	}
	if held, err := src.HasOplogEntry(common); err != nil || !held {
		t.Fatalf("source base: %v %v", held, err)
	}
	p := plan(t, old, src)
	if !p.Found || p.Resync != "" || p.Common != common || len(p.Entries) != 1 {
		t.Fatalf("plan %+v", p)
	}
	if _, err := old.RollbackTo(ctx, inputOf(p, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if _, err := old.TruncateOplog(ctx, old.LastOpTime()); err != nil {
		t.Fatal(err)
	}
	if got, want := logicalState(t, old), logicalState(t, src); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}
