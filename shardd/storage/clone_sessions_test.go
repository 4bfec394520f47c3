package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// sessionRaw returns every statement record key and value of the store.
func sessionRaw(t testing.TB, e *Engine) [][2][]byte {
	t.Helper()
	var out [][2][]byte
	err := scanRange(context.Background(), e.db, []byte{prefixSession}, []byte{prefixSession + 1}, func(k, v []byte) error {
		out = append(out, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lsidN is a session id in the driver's form {id: UUID}.
func lsidN(n int) []byte {
	u := make([]byte, 16)
	u[15] = byte(n)
	u[14] = byte(n >> 8)
	return mustMarshal(bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: u}}})
}

// retryCase is a recorded statement and the write that retries it.
type retryCase struct {
	name  string
	w     StmtWrite
	retry func(e *Engine) (StmtRecord, bool, error) // record, retried
}

// retryableHistory gives src every kind of statement record: the four
// statement kinds on testLSID (txn 1), a session whose txn 1 was dropped by
// txn 2, one session of 20 statements and many sessions of one each
// (4 + 1 + 20 + many records).

func retryableHistory(t *testing.T, src *Engine, many int) []retryCase {
	t.Helper()
	ctx := context.Background()
	insertOK(t, src, testNS, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}})
	ins := stmtW(t, 1, 0, nil)
	insDoc := mustDoc(t, bson.D{{Key: "_id", Value: 3}})
	insert := func(e *Engine) (StmtRecord, bool, error) {
		res, err := e.Insert(ctx, testNS, []bson.Raw{insDoc}, WriteOptions{Stmts: []StmtWrite{ins}})
		if err != nil || res[0].Err != nil {
			return StmtRecord{}, false, errors.Join(err, res[0].Err)
		}
		if res[0].Retried != nil {
			return *res[0].Retried, true, nil
		}
		return StmtRecord{OpTime: res[0].OpTime}, false, nil
	}
	upd := stmtW(t, 1, 1, bson.D{{Key: "n", Value: int64(1)}, {Key: "nModified", Value: int64(1)}})
	replace := func(e *Engine) (StmtRecord, bool, error) {
		out, err := e.ReplaceStatement(ctx, testNS, rv(t, 1), mustDoc(t, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}), upd)
		return out.Record, out.Retried, err
	}
	del := stmtW(t, 1, 2, bson.D{{Key: "n", Value: int64(1)}})
	remove := func(e *Engine) (StmtRecord, bool, error) {
		out, err := e.DeleteStatement(ctx, testNS, rv(t, 2), del)
		return out.Record, out.Retried, err
	}
	noop := stmtW(t, 1, 3, bson.D{{Key: "n", Value: int64(0)}})
	record := func(w StmtWrite) func(e *Engine) (StmtRecord, bool, error) {
		return func(e *Engine) (StmtRecord, bool, error) { return e.RecordStatement(ctx, w) }
	}
	cases := []retryCase{
		{"insert", ins, insert}, {"replace", upd, replace}, {"delete", del, remove}, {"noop", noop, record(noop)},
	}
	for _, c := range cases {
		if _, retried, err := c.retry(src); err != nil || retried {
			t.Fatalf("%s on the source: retried %v, %v", c.name, retried, err)
		}
	}
	old := StmtWrite{Statement: Statement{LSID: lsidN(1000), TxnNumber: 1}}
	if _, _, err := src.RecordStatement(ctx, old); err != nil {
		t.Fatal(err)
	}
	newer := StmtWrite{Statement: Statement{LSID: lsidN(1000), TxnNumber: 2, StmtID: 4}, Result: mustDoc(t, bson.D{{Key: "n", Value: int64(2)}})}
	if _, _, err := src.RecordStatement(ctx, newer); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, retryCase{"newer txn", newer, record(newer)})
	for i := range 20 {
		w := StmtWrite{Statement: Statement{LSID: lsidN(2000), TxnNumber: 7, StmtID: int32(i)}, Result: mustDoc(t, bson.D{{Key: "i", Value: i}})}
		if _, _, err := src.RecordStatement(ctx, w); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, retryCase{fmt.Sprint("long session ", i), w, record(w)})
	}
	for i := range many {
		w := StmtWrite{Statement: Statement{LSID: lsidN(i), TxnNumber: int64(1 + i%3), StmtID: int32(i % 5)}}
		d := mustDoc(t, bson.D{{Key: "_id", Value: fmt.Sprint("m", i)}})
		res, err := src.Insert(ctx, "db.many", []bson.Raw{d}, WriteOptions{Stmts: []StmtWrite{w}})
		if err != nil || res[0].Err != nil || res[0].Retried != nil {
			t.Fatal(err, res)
		}
		cases = append(cases, retryCase{fmt.Sprint("session ", i), w, func(e *Engine) (StmtRecord, bool, error) {
			res, err := e.Insert(ctx, "db.many", []bson.Raw{d}, WriteOptions{Stmts: []StmtWrite{w}})
			if err != nil || res[0].Err != nil || res[0].Retried == nil {
				return StmtRecord{}, false, errors.Join(err, res[0].Err)
			}
			return *res[0].Retried, true, nil
		}})
	}
	return cases
}

// TestInitialSyncCarriesSessions is the failover case after an initial
// sync: the clone holds the source's statement records byte for byte, and
// once writable it answers every retry with the first result, writing
// nothing; an older txnNumber is still refused.
func TestInitialSyncCarriesSessions(t *testing.T) {
	ctx := context.Background()
	src, dst := openTest(t, Options{NoSync: true}), openTest(t, Options{NoSync: true})
	cases := retryableHistory(t, src, 30)
	// dst's own records (a session the source does not know) must go.
	mine := StmtWrite{Statement: Statement{LSID: lsidN(9999), TxnNumber: 3}}
	if _, _, err := dst.RecordStatement(ctx, mine); err != nil {
		t.Fatal(err)
	}

	installs := 0
	at, _ := cloneInto(t, src, dst, 7, func() bool { installs++; return true })
	want := sessionRaw(t, src)
	if len(want) != 4+1+20+30 {
		t.Fatalf("source holds %d records", len(want))
	}
	if got := sessionRaw(t, dst); !reflect.DeepEqual(got, want) {
		t.Fatalf("clone's records differ: %d, source %d", len(got), len(want))
	}
	if _, ok, _ := dst.LookupStatement(mine.Statement); ok {
		t.Fatal("the member's own record survived the initial sync")
	}
	if got, want := dataState(t, dst), dataState(t, src); got != want {
		t.Fatalf("clone\n%s\nsource\n%s", got, want)
	}

	// Promoted: every retry answers the first execution's record.
	if err := dst.SetTerm(ctx, at.Term+1); err != nil {
		t.Fatal(err)
	}
	last := dst.LastOpTime()
	for _, c := range cases {
		first, ok, err := src.LookupStatement(c.w.Statement)
		if err != nil || !ok {
			t.Fatalf("%s: source record %v %v", c.name, ok, err)
		}
		rec, retried, err := c.retry(dst)
		if err != nil || !retried || !reflect.DeepEqual(rec, first) {
			t.Fatalf("%s retried on the clone: %+v retried %v %v, first %+v", c.name, rec, retried, err, first)
		}
	}
	if dst.LastOpTime() != last || oplogLen(t, dst) != 0 {
		t.Fatalf("a retry wrote on the clone: last %v (was %v), %d entries", dst.LastOpTime(), last, oplogLen(t, dst))
	}
	if got, want := dataState(t, dst), dataState(t, src); got != want {
		t.Fatalf("after retries\n%s\nsource\n%s", got, want)
	}
	_, _, err := dst.RecordStatement(ctx, StmtWrite{Statement: Statement{LSID: lsidN(1000), TxnNumber: 1}})
	wantCode(t, err, mongoerr.TransactionTooOld)
	if !reflect.DeepEqual(sessionRaw(t, dst), want) {
		t.Fatal("records changed by retries")
	}
}

// TestScanSessionsPages: pages respect both bounds, always hold a record,
// split a long session, and together give every record of the snapshot
// (and none written after it) in key order.
func TestScanSessionsPages(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{NoSync: true})
	snap0, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if page, next, err := snap0.ScanSessions(nil, 10, 1<<20); err != nil || page != nil || next != nil {
		t.Fatalf("empty store: %v %x %v", page, next, err)
	}
	_ = snap0.Close()
	retryableHistory(t, e, 12)
	want := sessionRaw(t, e)
	snap, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = snap.Close() }()
	// Written after the snapshot: not seen.
	if _, _, err := e.RecordStatement(ctx, StmtWrite{Statement: Statement{LSID: lsidN(5000), TxnNumber: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, bound := range []struct{ recs, bytes int }{{1, 1 << 20}, {7, 1 << 20}, {1000, 1 << 20}, {1000, 150}, {1000, 1}} {
		var (
			got   [][2][]byte
			after []byte
			pages int
			split bool
		)
		for {
			page, next, err := snap.ScanSessions(after, bound.recs, bound.bytes)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			n, size := 0, 0
			for _, rs := range page {
				size += len(rs.LSID)
				for _, r := range rs.Records {
					st := Statement{LSID: rs.LSID, TxnNumber: r.TxnNumber, StmtID: r.StmtID}
					got = append(got, [2][]byte{stmtKey(st), encodeStmtRecord(r.Record.OpTime, r.Record.Result)})
					n++
					size += 32 + len(r.Record.Result)
				}
			}
			if n == 0 || n > bound.recs || (n > 1 && size > bound.bytes) {
				t.Fatalf("bounds %+v: page of %d records, %d bytes", bound, n, size)
			}
			if next == nil {
				break
			}
			if len(page) > 0 && bytes.Equal(page[len(page)-1].LSID, lsidN(2000)) {
				split = true
			}
			after = next
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("bounds %+v: %d records in %d pages, want %d", bound, len(got), pages, len(want))
		}
		if bound.recs == 7 && (!split || pages != (len(want)+6)/7) {
			t.Fatalf("7 per page: %d pages, long session split %v", pages, split)
		}
	}
	if _, _, err := snap.ScanSessions([]byte("x"), 1, 1); err == nil {
		t.Fatal("a cursor outside the session records was accepted")
	}
}

func TestInstallSessionsRefused(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, Options{NoSync: true})
	good := []RefetchedSession{{LSID: lsidN(1), Records: []SessionRecord{{TxnNumber: 1, Record: StmtRecord{Result: emptyDoc, OpTime: OpTime{Term: 1, Index: 1}}}}}}
	if err := e.InstallSessions(ctx, good); !errors.Is(err, ErrNoInitialSync) {
		t.Fatalf("without a reset: %v", err)
	}
	if err := e.ResetForInitialSync(ctx); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]RefetchedSession{
		"no lsid":       {Records: good[0].Records},
		"txn 0":         {LSID: lsidN(1), Records: []SessionRecord{{TxnNumber: 0, Record: StmtRecord{Result: emptyDoc}}}},
		"negative stmt": {LSID: lsidN(1), Records: []SessionRecord{{TxnNumber: 1, StmtID: -1, Record: StmtRecord{Result: emptyDoc}}}},
		"bad result":    {LSID: lsidN(1), Records: []SessionRecord{{TxnNumber: 1, Record: StmtRecord{Result: bson.Raw{1, 2, 3}}}}},
	} {
		wantCode(t, e.InstallSessions(ctx, []RefetchedSession{good[0], bad}), mongoerr.BadValue)
		if sessionKeys(t, e) != 0 {
			t.Fatalf("%s: a refused page installed records", name)
		}
	}
	// Twice the same page: the same records.
	for range 2 {
		if err := e.InstallSessions(ctx, good); err != nil {
			t.Fatal(err)
		}
	}
	if got := sessionRaw(t, e); len(got) != 1 || oplogLen(t, e) != 0 {
		t.Fatalf("%d records, %d entries", len(got), oplogLen(t, e))
	}
}

// TestInitialSyncCrashDuringSessions: closed between two pages of
// records, the store reopens pending; the redone clone equals the source.
func TestInitialSyncCrashDuringSessions(t *testing.T) {
	dir := t.TempDir()
	src, dst := openTest(t, Options{NoSync: true}), openDir(t, dir, Options{})
	retryableHistory(t, src, 10)
	installs, limit := 0, 0
	// Count the installs of documents and collections first.
	probe := openTest(t, Options{NoSync: true})
	cloneInto(t, src, probe, 5, func() bool { limit++; return true })
	// 4 + 1 + 20 + 10 = 35 records: 7 pages of 5, the last 7 installs;
	// stop after the second page.
	if _, done := cloneInto(t, src, dst, 5, func() bool { installs++; return installs < limit-5 }); done {
		t.Fatal("clone was not interrupted")
	}
	if n := sessionKeys(t, dst); n != 10 {
		t.Fatalf("%d records installed before the crash, want 10", n)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	dst = openDir(t, dir, Options{})
	if !dst.InitialSyncPending() {
		t.Fatal("interrupted initial sync not reported after reopening")
	}
	cloneInto(t, src, dst, 5, nil)
	if !reflect.DeepEqual(sessionRaw(t, dst), sessionRaw(t, src)) || dataState(t, dst) != dataState(t, src) {
		t.Fatal("redone clone differs from the source")
	}
}
