package storage

import (
	"bytes"
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

var testLSID = bson.Raw(mustMarshal(bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{7}, 16)}}}))

func stmtW(t testing.TB, txn int64, id int32, res bson.D) StmtWrite {
	t.Helper()
	w := StmtWrite{Statement: Statement{LSID: testLSID, TxnNumber: txn, StmtID: id}}
	if res != nil {
		w.Result = mustDoc(t, res)
	}
	return w
}

func oplogLen(t testing.TB, e *Engine) int {
	t.Helper()
	ens, err := e.ReadOplog(OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(ens)
}

func countDocs(t testing.TB, e *Engine, ns string) int64 {
	t.Helper()
	r := mustValid(t, e, ns)
	return r.NRecords
}

// sessionKeys returns how many statement records the store holds.
func sessionKeys(t testing.TB, e *Engine) int {
	t.Helper()
	n := 0
	err := scanRange(context.Background(), e.db, []byte{prefixSession}, []byte{prefixSession + 1}, func(_, _ []byte) error {
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAppendNoop(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{})
	if err := e.SetTerm(ctx, 4); err != nil {
		t.Fatal(err)
	}
	msg := mustDoc(t, bson.D{{Key: "msg", Value: "new primary"}})
	at, err := e.AppendNoop(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if at.Term != 4 || at.Index != 1 || e.LastOpTime() != at {
		t.Fatalf("noop at %s, last %s", at, e.LastOpTime())
	}
	at2, err := e.AppendNoop(ctx, nil)
	if err != nil || at2.Index != 2 {
		t.Fatalf("second noop at %s: %v", at2, err)
	}
	ens, err := e.ReadOplog(OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ens) != 2 || ens[0].Op != OpNoop || !bytes.Equal(ens[0].Doc, msg) || ens[0].Stmt != nil || !bytes.Equal(ens[1].Doc, emptyDoc) {
		t.Fatalf("oplog %+v", ens)
	}
	if _, err := e.AppendNoop(ctx, bson.Raw("junk")); mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Fatalf("bad message: %v", err)
	}

	// A secondary stores the entries and changes nothing else.
	s := openTest(t, Options{})
	if err := s.ApplyOplog(ctx, ens); err != nil {
		t.Fatal(err)
	}
	if s.LastOpTime() != at2 || s.Term() != 4 || len(s.cat.Load().byNS) != 0 {
		t.Fatalf("secondary last %s term %d", s.LastOpTime(), s.Term())
	}
	got, _ := s.ReadOplog(OpTime{}, 0)
	if !reflect.DeepEqual(got, ens) {
		t.Fatalf("secondary oplog %+v, want %+v", got, ens)
	}
	bad := ens[1]
	bad.Index, bad.ID = 3, rv(t, 1)
	if err := s.ApplyOplog(ctx, []OplogEntry{bad}); mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Fatalf("noop with _id: %v", err)
	}
}

// TestOplogStatementEncoding: entries with a statement encode as
// bson.Marshal(oplogRecord) does and round-trip; entries without one are
// unchanged.
func TestOplogStatementEncoding(t *testing.T) {
	wall := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w := stmtW(t, 9, 0, bson.D{{Key: "n", Value: int64(1)}})
	for _, o := range []OplogEntry{
		{Term: 1, Index: 2, Op: OpInsert, NS: "db.c", ID: rv(t, 7), Doc: mustDoc(t, bson.D{{Key: "_id", Value: 7}}), Wall: wall, Stmt: &w},
		{Term: 1, Index: 3, Op: OpNoop, Doc: stmtNoopMsg, Wall: wall, Stmt: &StmtWrite{Statement: Statement{LSID: []byte{1}, TxnNumber: 1 << 40, StmtID: 77}}},
		{Term: 1, Index: 4, Op: OpDelete, NS: "db.c", ID: rv(t, "x"), Wall: wall},
	} {
		rec := oplogRecord{Term: int64(o.Term), Index: int64(o.Index), Op: o.Op, NS: o.NS, ID: o.ID, Doc: o.Doc, Wall: o.Wall}
		if o.Stmt != nil {
			id := o.Stmt.StmtID
			rec.LSID, rec.Txn, rec.Stmt, rec.Res = o.Stmt.LSID, o.Stmt.TxnNumber, &id, o.Stmt.result()
		}
		got := EncodeOplogEntry(o)
		if want := marshalRecord(rec); !bytes.Equal(got, want) {
			t.Fatalf("entry\n got %v\nwant %v", bson.Raw(got), bson.Raw(want))
		}
		back, err := DecodeOplogEntry(got)
		if err != nil {
			t.Fatal(err)
		}
		if o.Stmt != nil && o.Stmt.Result == nil {
			o.Stmt = &StmtWrite{Statement: o.Stmt.Statement, Result: emptyDoc}
		}
		if !reflect.DeepEqual(back, o) {
			t.Fatalf("round trip\n got %+v\nwant %+v", back, o)
		}
	}
	// Partial statement fields are refused.
	id := int32(1)
	partial := marshalRecord(oplogRecord{Term: 1, Index: 1, Op: OpNoop, Doc: emptyDoc, Wall: wall, LSID: []byte{1}, Stmt: &id})
	if _, err := DecodeOplogEntry(partial); mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Fatalf("partial statement: %v", err)
	}
}

func TestRetryableInsert(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{NoSync: true})
	docs := make([]bson.Raw, 4)
	stmts := make([]StmtWrite, 4)
	for i := range docs {
		docs[i] = mustDoc(t, bson.D{{Key: "_id", Value: i}})
		stmts[i] = stmtW(t, 1, int32(i), nil)
	}
	// Statements 0 and 1 run first (a batch cut short).
	first, err := e.Insert(ctx, testNS, docs[:2], WriteOptions{Ordered: true, Stmts: stmts[:2]})
	if err != nil {
		t.Fatal(err)
	}
	entries := oplogLen(t, e) // create + 2 inserts
	// The retry of the whole batch writes only 2 and 3.
	res, err := e.Insert(ctx, testNS, docs, WriteOptions{Ordered: true, Stmts: stmts})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("doc %d: %v", i, r.Err)
		}
		if retried := r.Retried != nil; retried != (i < 2) {
			t.Fatalf("doc %d retried=%v", i, retried)
		}
		if i < 2 && r.OpTime != first[i].OpTime {
			t.Fatalf("doc %d: recorded optime %s, first %s", i, r.OpTime, first[i].OpTime)
		}
	}
	if n := oplogLen(t, e); n != entries+2 {
		t.Fatalf("%d oplog entries, want %d", n, entries+2)
	}
	// A full retry writes nothing.
	res, err = e.Insert(ctx, testNS, docs, WriteOptions{Ordered: true, Stmts: stmts})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.Retried == nil {
			t.Fatalf("doc %d: %+v", i, r)
		}
	}
	if n := oplogLen(t, e); n != entries+2 || countDocs(t, e, testNS) != 4 || sessionKeys(t, e) != 4 {
		t.Fatalf("%d entries, %d docs, %d records", n, countDocs(t, e, testNS), sessionKeys(t, e))
	}
	// A failed statement is not recorded: its retry runs again.
	dup := []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: 0}})}
	res, _ = e.Insert(ctx, testNS, dup, WriteOptions{Ordered: true, Stmts: []StmtWrite{stmtW(t, 1, 9, nil)}})
	wantCode(t, res[0].Err, mongoerr.DuplicateKey)
	if _, ok, _ := e.LookupStatement(stmtW(t, 1, 9, nil).Statement); ok {
		t.Fatal("failed statement recorded")
	}
	// The statement count must match the documents.
	if _, err := e.Insert(ctx, testNS, docs, WriteOptions{Stmts: stmts[:1]}); mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Fatalf("mismatched statements: %v", err)
	}
}

func TestRetryableReplaceDeleteRecord(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{NoSync: true})
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}, bson.D{{Key: "_id", Value: 2}})
	base := oplogLen(t, e)

	w := stmtW(t, 5, 0, bson.D{{Key: "n", Value: int64(1)}, {Key: "nModified", Value: int64(1)}})
	out, err := e.ReplaceStatement(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 2}}), w)
	if err != nil || !out.Written || out.Retried || !bytes.Equal(out.Record.Result, w.Result) || out.Record.OpTime != e.LastOpTime() {
		t.Fatalf("replace: %+v %v", out, err)
	}
	again, err := e.ReplaceStatement(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 3}}), w)
	if err != nil || !again.Retried || again.Written || !reflect.DeepEqual(again.Record, out.Record) {
		t.Fatalf("retried replace: %+v %v", again, err)
	}
	if d, _, _ := e.Get(testNS, rv(t, 1)); d.Lookup("v").Int32() != 2 {
		t.Fatalf("retry wrote: %s", d)
	}
	ens, _ := e.ReadOplog(OpTime{}, 0)
	if last := ens[len(ens)-1]; last.Op != OpUpdate || last.Stmt == nil || last.Stmt.StmtID != 0 || !bytes.Equal(last.Stmt.Result, w.Result) {
		t.Fatalf("entry does not carry the record: %+v", last)
	}

	d := stmtW(t, 5, 1, bson.D{{Key: "n", Value: int64(1)}})
	if out, err := e.DeleteStatement(ctx, testNS, rv(t, 2), d); err != nil || !out.Written {
		t.Fatalf("delete: %+v %v", out, err)
	}
	if out, err := e.DeleteStatement(ctx, testNS, rv(t, 2), d); err != nil || !out.Retried {
		t.Fatalf("retried delete: %+v %v", out, err)
	}
	// A missing document writes and records nothing.
	if out, err := e.DeleteStatement(ctx, testNS, rv(t, 99), stmtW(t, 5, 2, nil)); err != nil || out.Written || out.Retried {
		t.Fatalf("delete of nothing: %+v %v", out, err)
	}
	// A statement that wrote nothing records through a no-op entry.
	nw := stmtW(t, 5, 2, bson.D{{Key: "n", Value: int64(0)}})
	rec, retried, err := e.RecordStatement(ctx, nw)
	if err != nil || retried || rec.OpTime != e.LastOpTime() {
		t.Fatalf("record: %+v %v %v", rec, retried, err)
	}
	if rec2, retried, err := e.RecordStatement(ctx, nw); err != nil || !retried || !reflect.DeepEqual(rec2, rec) {
		t.Fatalf("record again: %+v %v %v", rec2, retried, err)
	}
	ens, _ = e.ReadOplog(OpTime{}, 0)
	if n := len(ens); n != base+3 || ens[n-1].Op != OpNoop || ens[n-1].Stmt == nil {
		t.Fatalf("%d entries (want %d), last %+v", n, base+3, ens[n-1])
	}
	if got, ok, err := e.LookupStatement(nw.Statement); err != nil || !ok || !reflect.DeepEqual(got, rec) {
		t.Fatalf("lookup: %+v %v %v", got, ok, err)
	}
	mustValid(t, e, testNS)
}

func TestTransactionTooOld(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{NoSync: true})
	other := StmtWrite{Statement: Statement{LSID: []byte("other"), TxnNumber: 1}}
	for _, w := range []StmtWrite{stmtW(t, 2, 0, nil), stmtW(t, 2, 1, nil), other} {
		if _, _, err := e.RecordStatement(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := e.LookupStatement(stmtW(t, 1, 0, nil).Statement)
	wantCode(t, err, mongoerr.TransactionTooOld)
	_, _, err = e.RecordStatement(ctx, stmtW(t, 1, 5, nil))
	wantCode(t, err, mongoerr.TransactionTooOld)
	_, err = e.ReplaceStatement(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "_id", Value: 1}}), stmtW(t, 1, 5, nil))
	wantCode(t, err, mongoerr.TransactionTooOld)
	res, err := e.Insert(ctx, testNS, []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: 1}})}, WriteOptions{Stmts: []StmtWrite{stmtW(t, 1, 0, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, res[0].Err, mongoerr.TransactionTooOld)

	// A newer txnNumber drops the older one's records, not other sessions'.
	if n := sessionKeys(t, e); n != 3 {
		t.Fatalf("%d records", n)
	}
	if _, _, err := e.RecordStatement(ctx, stmtW(t, 3, 0, nil)); err != nil {
		t.Fatal(err)
	}
	if n := sessionKeys(t, e); n != 2 {
		t.Fatalf("%d records after txn 3, want 2", n)
	}
	_, _, err = e.LookupStatement(stmtW(t, 2, 1, nil).Statement)
	wantCode(t, err, mongoerr.TransactionTooOld)
	if _, ok, err := e.LookupStatement(other.Statement); err != nil || !ok {
		t.Fatalf("other session: %v %v", ok, err)
	}
	// Malformed statements.
	for _, s := range []Statement{{TxnNumber: 1}, {LSID: testLSID}, {LSID: testLSID, TxnNumber: 1, StmtID: -1}} {
		_, _, err := e.LookupStatement(s)
		wantCode(t, err, mongoerr.BadValue)
	}
}

// TestConcurrentRetries: of many concurrent executions of one statement,
// exactly one writes.
func TestConcurrentRetries(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{NoSync: true})
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}})
	base := oplogLen(t, e)
	w := stmtW(t, 1, 0, bson.D{{Key: "n", Value: int64(1)}})
	const n = 16
	var wg sync.WaitGroup
	outs := make([]StmtOutcome, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc := mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "by", Value: i}})
			outs[i], errs[i] = e.ReplaceStatement(ctx, testNS, rv(t, 1), doc, w)
		}()
	}
	wg.Wait()
	written := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if outs[i].Written {
			written++
		} else if !outs[i].Retried || outs[i].Record.OpTime != e.LastOpTime() {
			t.Fatalf("outcome %+v", outs[i])
		}
	}
	if written != 1 || oplogLen(t, e) != base+1 {
		t.Fatalf("%d writers, %d entries (want 1, %d)", written, oplogLen(t, e), base+1)
	}
}

// TestSessionRecordsSurviveRestart: records are ordinary Pebble keys.
func TestSessionRecordsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openDir(t, dir, Options{})
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}})
	w := stmtW(t, 1, 0, bson.D{{Key: "n", Value: int64(1)}})
	out, err := e.DeleteStatement(ctx, testNS, rv(t, 1), w)
	if err != nil || !out.Written {
		t.Fatalf("%+v %v", out, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDir(t, dir, Options{})
	got, ok, err := e.LookupStatement(w.Statement)
	if err != nil || !ok || !reflect.DeepEqual(got, out.Record) {
		t.Fatalf("after restart: %+v %v %v", got, ok, err)
	}
	if again, err := e.DeleteStatement(ctx, testNS, rv(t, 1), w); err != nil || !again.Retried {
		t.Fatalf("retry after restart: %+v %v", again, err)
	}
	// Dropping the collection keeps the records.
	if err := e.DropCollection(ctx, testNS); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := e.LookupStatement(w.Statement); !ok {
		t.Fatal("record dropped with the collection")
	}
}

// TestApplyReplaysRecords is the failover case: a secondary that applied
// the primary's entries answers a retry from its own store, and drops old
// txnNumbers as the primary did.
func TestApplyReplaysRecords(t *testing.T) {
	ctx := context.Background()
	p := openTest(t, Options{NoSync: true})
	s := openTest(t, Options{NoSync: true})
	insertOK(t, p, testNS, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}})
	ins, err := p.Insert(ctx, testNS, []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: 3}})}, WriteOptions{Stmts: []StmtWrite{stmtW(t, 1, 0, nil)}})
	if err != nil || ins[0].Err != nil {
		t.Fatal(err, ins)
	}
	upd := stmtW(t, 1, 1, bson.D{{Key: "n", Value: int64(1)}})
	if _, err := p.ReplaceStatement(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}), upd); err != nil {
		t.Fatal(err)
	}
	del := stmtW(t, 1, 2, bson.D{{Key: "n", Value: int64(1)}})
	if _, err := p.DeleteStatement(ctx, testNS, rv(t, 2), del); err != nil {
		t.Fatal(err)
	}
	noop := stmtW(t, 1, 3, bson.D{{Key: "n", Value: int64(0)}})
	if _, _, err := p.RecordStatement(ctx, noop); err != nil {
		t.Fatal(err)
	}
	other := StmtWrite{Statement: Statement{LSID: []byte("old"), TxnNumber: 1}}
	if _, _, err := p.RecordStatement(ctx, other); err != nil {
		t.Fatal(err)
	}
	other.TxnNumber = 2
	if _, _, err := p.RecordStatement(ctx, other); err != nil {
		t.Fatal(err)
	}
	ens, err := p.ReadOplog(OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Applied in two batches, the second re-applying part of the first.
	if err := s.ApplyOplog(ctx, ens[:4]); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyOplog(ctx, ens[2:]); err != nil {
		t.Fatal(err)
	}
	for _, w := range []StmtWrite{stmtW(t, 1, 0, nil), upd, del, noop, other} {
		want, ok, err := p.LookupStatement(w.Statement)
		if err != nil || !ok {
			t.Fatal(err)
		}
		got, ok, err := s.LookupStatement(w.Statement)
		if err != nil || !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("stmt %d on the secondary: %+v %v %v, primary %+v", w.StmtID, got, ok, err, want)
		}
	}
	if a, b := sessionKeys(t, p), sessionKeys(t, s); a != b || a != 5 {
		t.Fatalf("records: primary %d, secondary %d, want 5", a, b)
	}
	// The secondary, promoted, answers retries without writing.
	if err := s.SetTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	last := s.LastOpTime()
	if out, err := s.ReplaceStatement(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 9}}), upd); err != nil || !out.Retried {
		t.Fatalf("retry on the new primary: %+v %v", out, err)
	}
	res, err := s.Insert(ctx, testNS, []bson.Raw{mustDoc(t, bson.D{{Key: "_id", Value: 3}})}, WriteOptions{Stmts: []StmtWrite{stmtW(t, 1, 0, nil)}})
	if err != nil || res[0].Err != nil || res[0].Retried == nil || res[0].OpTime != ins[0].OpTime {
		t.Fatalf("insert retry on the new primary: %+v %v", res, err)
	}
	if s.LastOpTime() != last {
		t.Fatal("a retry wrote on the new primary")
	}
	mustValid(t, s, testNS)
}

// FuzzDecodeOplogEntry: DecodeOplogEntry never panics, answers BadValue
// for what it refuses, and what it accepts re-encodes to an entry that
// decodes the same.
func FuzzDecodeOplogEntry(f *testing.F) {
	wall := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w := StmtWrite{Statement: Statement{LSID: testLSID, TxnNumber: 3, StmtID: 2}, Result: mustMarshal(bson.D{{Key: "n", Value: int64(1)}})}
	for _, o := range []OplogEntry{
		{Term: 1, Index: 1, Op: OpInsert, NS: "db.c", ID: bson.RawValue{Type: bson.TypeInt32, Value: []byte{1, 0, 0, 0}}, Doc: mustMarshal(bson.D{{Key: "_id", Value: 1}}), Wall: wall, Stmt: &w},
		{Term: 2, Index: 5, Op: OpNoop, Doc: stmtNoopMsg, Wall: wall, Stmt: &w},
		{Term: 2, Index: 6, Op: OpNoop, Doc: emptyDoc, Wall: wall},
		{Term: 3, Index: 7, Op: OpCommand, NS: "db.$cmd", Doc: mustMarshal(bson.D{{Key: "drop", Value: "c"}}), Wall: wall},
	} {
		f.Add(EncodeOplogEntry(o))
	}
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := DecodeOplogEntry(b)
		if err != nil {
			if mongoerr.CodeOf(err) != mongoerr.BadValue {
				t.Fatalf("refused with %v", err)
			}
			return
		}
		back, err := DecodeOplogEntry(EncodeOplogEntry(o))
		if err != nil {
			t.Fatalf("re-encoded entry refused: %v", err)
		}
		if !reflect.DeepEqual(back.Stmt, o.Stmt) || back.OpTime() != o.OpTime() || back.Op != o.Op || !bytes.Equal(back.Doc, o.Doc) {
			t.Fatalf("round trip %+v → %+v", o, back)
		}
	})
}
