package server

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/migrate"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

func migMember(t *testing.T) *servertest.Member[*Server] {
	t.Helper()
	return servertest.Start(t, func(e *storage.Engine) (*Server, error) {
		return New(Options{Engine: e, Logger: logging.Nop()})
	}, servertest.Options{})
}

// migRangeDocs returns the documents of r in eng, by encoded _id.
func migRangeDocs(t *testing.T, eng *storage.Engine, r migrate.Range) map[string]bson.Raw {
	t.Helper()
	snap, err := eng.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	out := map[string]bson.Raw{}
	if _, err := r.Scan(context.Background(), snap, func(d bson.Raw) error {
		out[d.Lookup("_id").String()] = d
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func migSameDocs(t *testing.T, what string, want, got map[string]bson.Raw) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d documents, want %d", what, len(got), len(want))
	}
	for id, d := range want {
		if !bytes.Equal(got[id], d) {
			t.Fatalf("%s: _id %s is %s, want %s", what, id, got[id], d)
		}
	}
}

// migWriter runs random inserts, updates (some moving documents across
// the range's bound), deletes and findAndModify removes on the donor
// through its Shard service until ctx ends. Writes blocked by a critical
// section wait; errors other than the end of ctx fail the test.
func migWriter(ctx context.Context, t *testing.T, cli *shardclient.Client, ns, field string, seed uint64, wg *sync.WaitGroup, ops *int64, mu *sync.Mutex) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(seed, 7))
	for ctx.Err() == nil {
		id := rng.IntN(3000)
		var err error
		switch rng.IntN(4) {
		case 0:
			_, err = cli.Insert(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: id}, {Key: field, Value: rng.IntN(3000)}, {Key: "w", Value: seed}})}, shardclient.WriteOptions{})
		case 1:
			_, err = cli.Update(ctx, ns, []shardclient.UpdateStatement{{Filter: raw(t, bson.D{{Key: "_id", Value: id}}),
				Update: raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: field, Value: rng.IntN(3000)}, {Key: "u", Value: rng.Int()}}}})}}, shardclient.WriteOptions{})
		case 2:
			_, err = cli.Delete(ctx, ns, []shardclient.DeleteStatement{{Filter: raw(t, bson.D{{Key: "_id", Value: id}}), Limit: 1}}, shardclient.WriteOptions{})
		case 3:
			_, err = cli.FindAndModify(ctx, ns, shardclient.FindAndModify{Filter: raw(t, bson.D{{Key: "_id", Value: id}}), Remove: true})
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t.Errorf("writer: %v", err)
			return
		}
		mu.Lock()
		*ops++
		mu.Unlock()
	}
}

// A range migrates from a donor to a recipient (real Pebble, real gRPC)
// while writers change the donor: clone, catch-up, critical section (the
// range's writes wait, others do not), drain; the recipient's documents
// of the range then equal the donor's, deletes during the clone are not
// resurrected, the recipient's oplog replays them on a secondary, and the
// donor's range deletion removes exactly the range.
func TestMigrateRange(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		key         bson.D
		min, max    bson.D
		index       bool
	}{
		{"ranged", "a", bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 1000}}, bson.D{{Key: "a", Value: 2000}}, true},
		{"rangedNoIndex", "a", bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 1000}}, bson.D{{Key: "a", Value: 2000}}, false},
		{"hashed", "h", bson.D{{Key: "h", Value: "hashed"}}, bson.D{{Key: "h", Value: int64(0)}}, bson.D{{Key: "h", Value: bson.MaxKey{}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testMigrateRange(t, tc.field, tc.key, tc.min, tc.max, tc.index)
		})
	}
}

func testMigrateRange(t *testing.T, field string, key, min, max bson.D, index bool) {
	ctx := ctxT(t)
	const ns, other = "db.c", "db.other"
	donor, rec := migMember(t), migMember(t)
	r, err := migrate.NewRange(ns, raw(t, key), raw(t, min), raw(t, max))
	if err != nil {
		t.Fatal(err)
	}
	if index {
		if _, err := donor.Engine.CreateIndex(ctx, ns, storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: field}}}); err != nil {
			t.Fatal(err)
		}
	}
	var docs []bson.Raw
	for i := range 2000 {
		docs = append(docs, raw(t, bson.D{{Key: "_id", Value: i}, {Key: field, Value: i}}))
	}
	if _, err := donor.Client.Insert(ctx, ns, docs, shardclient.WriteOptions{Ordered: true}); err != nil {
		t.Fatal(err)
	}
	mig := shardpb.NewMigrationClient(donor.Client.Conn())
	rc := migrate.NewRecipient(rec.Engine, mig, r)
	if err := rc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Deleted after the snapshot: cloned, then deleted by the mods.
	var gone []int
	for i := range 2000 {
		if r.Contains(docs[i]) && len(gone) < 20 {
			gone = append(gone, i)
			if _, err := donor.Engine.Delete(ctx, ns, bson.RawValue{Type: bson.TypeInt32, Value: raw(t, bson.D{{Key: "v", Value: int32(i)}}).Lookup("v").Value}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var ops int64
	var opsMu sync.Mutex
	for w := range 3 {
		wg.Add(1)
		go migWriter(wctx, t, donor.Client, ns, field, uint64(w+1), &wg, &ops, &opsMu)
	}
	defer func() { stopWriters(); wg.Wait() }()
	opsAt := func() int64 { opsMu.Lock(); defer opsMu.Unlock(); return ops }

	if err := rc.Clone(ctx); err != nil {
		t.Fatal(err)
	}
	if rc.ClonedDocs == 0 {
		t.Fatal("nothing cloned")
	}
	// Let the writers run during the catch-up.
	for start := opsAt(); opsAt() < start+200; {
		if _, _, err := rc.TransferOnce(ctx, 50); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.CatchUp(ctx, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := mig.EnterCriticalSection(ctx, &shardpb.CriticalSectionRequest{SessionId: rc.Session(), TimeoutMs: 20000}); err != nil {
		t.Fatal(err)
	}
	if err := rc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// Inside the critical section: writes to the range wait, others run.
	var inDoc, outDoc bson.Raw
	for i := 5000; inDoc == nil || outDoc == nil; i++ {
		d := raw(t, bson.D{{Key: "_id", Value: i}, {Key: field, Value: i % 3000}})
		if r.Contains(d) && inDoc == nil {
			inDoc = d
		} else if !r.Contains(d) && outDoc == nil {
			outDoc = d
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = donor.Client.Insert(short, ns, []bson.Raw{inDoc}, shardclient.WriteOptions{})
	cancel()
	if err == nil {
		t.Fatal("an insert into the range ran during the critical section")
	}
	if _, err := donor.Client.Insert(ctx, ns, []bson.Raw{outDoc}, shardclient.WriteOptions{}); err != nil {
		t.Fatalf("an insert outside the range: %v", err)
	}
	if _, err := donor.Client.Update(ctx, other, []shardclient.UpdateStatement{{Filter: raw(t, bson.D{}), Update: raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}), Upsert: true}}, shardclient.WriteOptions{}); err != nil {
		t.Fatalf("an update of another collection: %v", err)
	}
	if err := rc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	want := migRangeDocs(t, donor.Engine, r)
	migSameDocs(t, "recipient after the drain", want, migRangeDocs(t, rec.Engine, r))
	for _, i := range gone {
		if _, ok, _ := rec.Engine.Get(ns, bson.RawValue{Type: bson.TypeInt32, Value: raw(t, bson.D{{Key: "v", Value: int32(i)}}).Lookup("v").Value}); ok {
			t.Fatalf("_id %d deleted during the migration is on the recipient", i)
		}
	}
	// Nothing outside the range reached the recipient.
	snap, _ := rec.Engine.Snapshot()
	it, _ := snap.ScanIDRange(ns, storage.IDRange{}, false)
	for it.Next() {
		if !r.Contains(it.Doc()) {
			t.Fatalf("recipient holds %s, outside the range", it.Doc())
		}
	}
	_ = it.Close()
	_ = snap.Close()
	if res, err := rec.Engine.Validate(ctx, ns); err != nil || !res.Valid {
		t.Fatalf("recipient validate: %+v %v", res, err)
	}
	// The recipient's secondaries: its oplog replays to the same range.
	entries, err := rec.Engine.ReadOplog(storage.OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	sec := servertest.OpenStore(t, "", storage.Options{})
	if err := sec.ApplyOplog(ctx, entries); err != nil {
		t.Fatal(err)
	}
	migSameDocs(t, "recipient's secondary", want, migRangeDocs(t, sec, r))

	if _, err := mig.LeaveCriticalSection(ctx, &shardpb.LeaveCriticalSectionRequest{SessionId: rc.Session(), Committed: true}); err != nil {
		t.Fatal(err)
	}
	if err := rc.End(ctx); err != nil {
		t.Fatal(err)
	}
	stopWriters()
	wg.Wait()
	if t.Failed() {
		return
	}
	// A cancelled call may still be running on the server: wait until no
	// write to ns is.
	deadline := time.Now().Add(5 * time.Second)
	for donor.Server.migration.crit.Running(ns) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("writes to the donor still running 5 s after the writers stopped")
		}
		time.Sleep(time.Millisecond)
	}
	// Range deletion on the donor: exactly the range.
	outside := func() map[string]bson.Raw {
		snap, _ := donor.Engine.Snapshot()
		defer snap.Close()
		it, _ := snap.ScanIDRange(ns, storage.IDRange{}, false)
		defer it.Close()
		m := map[string]bson.Raw{}
		for it.Next() {
			if !r.Contains(it.Doc()) {
				m[it.ID().String()] = it.Doc()
			}
		}
		return m
	}
	keep := outside()
	inRange := len(migRangeDocs(t, donor.Engine, r))
	rep, err := mig.DeleteRange(ctx, &shardpb.DeleteRangeRequest{Range: r.Proto(), Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetDeleted() != int64(inRange) || len(migRangeDocs(t, donor.Engine, r)) != 0 {
		t.Fatalf("range deletion deleted %d of %d", rep.GetDeleted(), inRange)
	}
	migSameDocs(t, "donor outside the range", keep, outside())
	t.Logf("cloned %d docs, %d mods applied, %d writer ops, %d range docs", rc.ClonedDocs, rc.ModsApplied, opsAt(), len(want))
}

// Session errors: unknown session, overlapping migrations, transfer
// before the clone; an aborted recipient drops what it copied.
func TestMigrationSessionErrors(t *testing.T) {
	ctx := ctxT(t)
	donor, rec := migMember(t), migMember(t)
	const ns = "db.c"
	var docs []bson.Raw
	for i := range 100 {
		docs = append(docs, raw(t, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: i}}))
	}
	if _, err := donor.Client.Insert(ctx, ns, docs, shardclient.WriteOptions{Ordered: true}); err != nil {
		t.Fatal(err)
	}
	mig := shardpb.NewMigrationClient(donor.Client.Conn())
	r, err := migrate.NewRange(ns, raw(t, bson.D{{Key: "a", Value: 1}}), raw(t, bson.D{{Key: "a", Value: 10}}), raw(t, bson.D{{Key: "a", Value: 50}}))
	if err != nil {
		t.Fatal(err)
	}
	code := func(err error) mongoerr.Code { return mongoerr.CodeOf(rpcerr.Error(err)) }
	if _, err := mig.TransferMods(ctx, &shardpb.TransferModsRequest{SessionId: "nope"}); code(err) != mongoerr.NoSuchSession {
		t.Fatalf("unknown session: %v", err)
	}
	rc := migrate.NewRecipient(rec.Engine, mig, r)
	if err := rc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := mig.TransferMods(ctx, &shardpb.TransferModsRequest{SessionId: rc.Session()}); code(err) != mongoerr.IllegalOperation {
		t.Fatalf("transfer before clone: %v", err)
	}
	r2, _ := migrate.NewRange(ns, raw(t, bson.D{{Key: "a", Value: 1}}), raw(t, bson.D{{Key: "a", Value: 40}}), raw(t, bson.D{{Key: "a", Value: 60}}))
	if _, err := mig.StartMigration(ctx, &shardpb.StartMigrationRequest{Range: r2.Proto()}); code(err) != mongoerr.ConflictingOperationInProgress {
		t.Fatalf("overlapping migration: %v", err)
	}
	if err := rc.Clone(ctx); err != nil {
		t.Fatal(err)
	}
	if rc.ClonedDocs != 40 {
		t.Fatalf("cloned %d, want 40", rc.ClonedDocs)
	}
	// A second clone of the same session is refused; the recipient's
	// documents are replaced, not duplicated, by a new session's clone.
	if err := rc.Clone(ctx); code(errors.Unwrap(err)) != mongoerr.IllegalOperation && code(err) != mongoerr.IllegalOperation {
		t.Fatalf("second clone: %v", err)
	}
	_ = rc.End(ctx)
	// An orphan of the range the donor does not have (an earlier aborted
	// migration's copy) does not survive a new migration's start.
	if _, err := rec.Engine.PutDocuments(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: 9999}, {Key: "a", Value: 20}})}); err != nil {
		t.Fatal(err)
	}
	rc2 := migrate.NewRecipient(rec.Engine, mig, r)
	if err := rc2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc2.Clone(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := rec.Engine.Stats(ns); st.Count != 40 {
		t.Fatalf("recipient holds %d after a retried clone, want 40", st.Count)
	}
	n, err := rc2.Abort(ctx)
	if err != nil || n != 40 {
		t.Fatalf("abort: %d %v", n, err)
	}
	if st, _ := rec.Engine.Stats(ns); st.Count != 0 {
		t.Fatalf("recipient holds %d after the abort", st.Count)
	}
	if _, err := mig.TransferMods(ctx, &shardpb.TransferModsRequest{SessionId: rc2.Session()}); code(err) != mongoerr.NoSuchSession {
		t.Fatalf("after end: %v", err)
	}
}

// BenchmarkMigrateRange: one migration of 20 000 documents of ~110 bytes
// (ranged key with an index) over loopback gRPC: start, clone, drain in a
// critical section, end. Reports documents/s, MB/s and the critical
// section's duration (enter to leave, with an empty drain).
func BenchmarkMigrateRange(b *testing.B) {
	ctx := context.Background()
	donor := servertest.Start(b, func(e *storage.Engine) (*Server, error) {
		return New(Options{Engine: e, Logger: logging.Nop()})
	}, servertest.Options{})
	const ns, n = "db.c", 20000
	if _, err := donor.Engine.CreateIndex(ctx, ns, storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "a"}}}); err != nil {
		b.Fatal(err)
	}
	pad := bytes.Repeat([]byte("x"), 64)
	for i := 0; i < n; i += 1000 {
		var docs []bson.Raw
		for j := i; j < i+1000; j++ {
			docs = append(docs, raw(b, bson.D{{Key: "_id", Value: j}, {Key: "a", Value: j}, {Key: "pad", Value: string(pad)}}))
		}
		if _, err := donor.Client.Insert(ctx, ns, docs, shardclient.WriteOptions{Ordered: true}); err != nil {
			b.Fatal(err)
		}
	}
	r, err := migrate.NewRange(ns, raw(b, bson.D{{Key: "a", Value: 1}}), raw(b, bson.D{{Key: "a", Value: bson.MinKey{}}}), raw(b, bson.D{{Key: "a", Value: bson.MaxKey{}}}))
	if err != nil {
		b.Fatal(err)
	}
	mig := shardpb.NewMigrationClient(donor.Client.Conn())
	var crit time.Duration
	var bytesMoved int64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		rec := servertest.OpenStore(b, "", storage.Options{})
		b.StartTimer()
		rc := migrate.NewRecipient(rec, mig, r)
		if err := rc.Start(ctx); err != nil {
			b.Fatal(err)
		}
		if err := rc.Clone(ctx); err != nil {
			b.Fatal(err)
		}
		if err := rc.CatchUp(ctx, 0); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := mig.EnterCriticalSection(ctx, &shardpb.CriticalSectionRequest{SessionId: rc.Session()}); err != nil {
			b.Fatal(err)
		}
		if err := rc.Drain(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := mig.LeaveCriticalSection(ctx, &shardpb.LeaveCriticalSectionRequest{SessionId: rc.Session()}); err != nil {
			b.Fatal(err)
		}
		crit += time.Since(start)
		if err := rc.End(ctx); err != nil {
			b.Fatal(err)
		}
		if rc.ClonedDocs != n {
			b.Fatalf("cloned %d", rc.ClonedDocs)
		}
		bytesMoved += rc.ClonedBytes
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(n*b.N)/sec, "docs/s")
	b.ReportMetric(float64(bytesMoved)/sec/1e6, "MB/s")
	b.ReportMetric(float64(crit.Microseconds())/float64(b.N), "crit-µs")
}
