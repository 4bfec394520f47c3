package repl_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/repl"
	"github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/storage"
)

// storeData is every collection of a store: its indexes (with multikey
// flags), documents and statistics; Validate must be clean.
func storeData(t *testing.T, e *storage.Engine) string {
	t.Helper()
	s, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	var b strings.Builder
	for _, c := range s.Collections() {
		specs, err := s.ListIndexes(c.NS)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %+v\n", c.NS, specs)
		it, err := s.ScanIDRange(c.NS, storage.IDRange{}, false)
		if err != nil {
			t.Fatal(err)
		}
		for it.Next() {
			b.WriteString("  " + it.Doc().String() + "\n")
		}
		if err := errors.Join(it.Err(), it.Close()); err != nil {
			t.Fatal(err)
		}
		st, err := e.Stats(c.NS)
		if err != nil {
			t.Fatal(err)
		}
		st.StorageSize = 0
		fmt.Fprintf(&b, "  %+v\n", st)
		res, err := e.Validate(context.Background(), c.NS)
		if err != nil || !res.Valid {
			t.Fatalf("Validate %s: %+v %v", c.NS, res, err)
		}
	}
	return b.String()
}

// waitSame waits until s has applied everything p has and holds the same
// data, and checks that s's oplog is the tail of p's.
func waitSame(t *testing.T, p, s *storage.Engine) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for s.LastOpTime() != p.LastOpTime() {
		if time.Now().After(deadline) {
			t.Fatalf("member at %s, source at %s", s.LastOpTime(), p.LastOpTime())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, _ = s.WaitDurable(ctx, s.LastOpTime())
		cancel()
	}
	if got, want := storeData(t, s), storeData(t, p); got != want {
		t.Fatalf("stores differ:\nmember\n%s\nsource\n%s", got, want)
	}
	sl, err := s.ReadOplog(storage.OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(sl) > 0 {
		pl, err := p.ReadOplog(storage.OpTime{Term: sl[0].Term, Index: sl[0].Index - 1}, len(sl))
		if err != nil || !reflect.DeepEqual(pl, sl) {
			t.Fatalf("member's oplog is not the source's tail (%v)", err)
		}
	}
}

// history writes collections with unique, compound and multikey indexes,
// an empty collection and a dropped one on e.
func history(t *testing.T, e *storage.Engine, from, n int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; i++ {
		if err := insertLocal(e, ns, bson.D{{Key: "_id", Value: i}, {Key: "u", Value: i}, {Key: "x", Value: i}, {Key: "tags", Value: bson.A{i % 3, "t"}}}); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			if err := insertLocal(e, "db.other", bson.D{{Key: "_id", Value: fmt.Sprint("k", i)}, {Key: "a", Value: bson.D{{Key: "b", Value: i % 4}}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, spec := range []storage.IndexSpec{
		{Key: []storage.IndexKeyPart{{Field: "u"}}, Unique: true, Sparse: true},
		{Key: []storage.IndexKeyPart{{Field: "tags"}, {Field: "x", Desc: true}}},
	} {
		if _, err := e.CreateIndex(ctx, ns, spec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.CreateIndex(ctx, "db.other", storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "a.b"}}, Sparse: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"db.empty", "db.dropped"} {
		if err := e.CreateCollection(ctx, c); err != nil && mongoerr.CodeOf(err) != mongoerr.NamespaceExists {
			t.Fatal(err)
		}
	}
	_ = e.DropCollection(ctx, "db.dropped")
}

// insertLocal inserts one document on the store (the primary's local write).
func insertLocal(e *storage.Engine, ns string, d bson.D) error {
	b, err := bson.Marshal(d)
	if err != nil {
		return err
	}
	res, err := e.Insert(context.Background(), ns, []bson.Raw{b}, storage.WriteOptions{Ordered: true})
	if err == nil && len(res) == 1 {
		err = res[0].Err
	}
	return err
}

// rawDoc marshals d (usable off the test goroutine).
func rawDoc(d bson.D) bson.Raw {
	b, _ := bson.Marshal(d)
	return b
}

// idValue returns x as an _id value.
func idValue(x any) bson.RawValue {
	b, _ := bson.Marshal(bson.D{{Key: "v", Value: x}})
	return bson.Raw(b).Lookup("v")
}

// startSecondary serves e as a secondary (no progress tracker), with
// batches (and clone chunks) of at most batch entries (0: the default).
func startSecondary(t testing.TB, e *storage.Engine, batch int) *primary {
	t.Helper()
	return serveMember(t, server.ReplicationOptions{Engine: e, MaxBatchEntries: batch}, nil)
}

func initialSync(t *testing.T, member, source string, e *storage.Engine) storage.OpTime {
	t.Helper()
	at, err := repl.InitialSync(waitCtx(t, 20*time.Second), repl.InitialSyncOptions{Member: member, Source: source, Engine: e})
	if err != nil {
		t.Fatalf("InitialSync: %v", err)
	}
	if e.InitialSyncPending() || e.LastOpTime() != at {
		t.Fatalf("after InitialSync: pending %v, last %s, snapshot %s", e.InitialSyncPending(), e.LastOpTime(), at)
	}
	return at
}

// TestResyncAfterRetention: a lagging secondary whose next entry the
// primary's retention loop deleted gets ErrTooStale, resyncs with
// InitialSync, and a Puller catches up from the snapshot; majority writes
// then count it. A third member syncs from it (chained: its oplog starts
// after its snapshot).
func TestResyncAfterRetention(t *testing.T) {
	ctx := waitCtx(t, 60*time.Second)
	pe, se := openEngine(t), openEngine(t)
	history(t, pe, 0, 40)
	p := startPrimary(t, pe, []string{"p", "s1"})
	stop, _ := runPuller(t, "s1", p.addr, se)
	waitSame(t, pe, se)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("puller: %v", err)
	}
	lag := se.LastOpTime()

	// The primary goes on; its retention loop keeps the newest 10 entries.
	history(t, pe, 40, 60)
	rctx, rstop := context.WithCancel(ctx)
	rdone := make(chan error, 1)
	go func() {
		rdone <- repl.RunOplogRetention(rctx, repl.RetentionOptions{Engine: pe, Policy: storage.RetentionPolicy{MaxEntries: 10}, Interval: 5 * time.Millisecond})
	}()
	for {
		first, ok, err := pe.FirstOpTime()
		if err != nil {
			t.Fatal(err)
		}
		if ok && first.Index == pe.LastOpTime().Index-9 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("retention did not run")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rstop()
	if err := <-rdone; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunOplogRetention: %v", err)
	}

	// PullOplog: stale before the start, served from the newest removed entry.
	c, err := shardclient.Dial(ctx, p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := shardpb.NewReplicationClient(c.Conn())
	pull := func(after storage.OpTime) error {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := rc.PullOplog(sctx, &shardpb.PullOplogRequest{Member: "x", After: &shardpb.OpTime{Term: after.Term, Index: after.Index}})
		if err == nil {
			_, err = st.Recv()
		}
		return rpcErr(err)
	}
	first, _, _ := pe.FirstOpTime()
	if err := pull(lag); mongoerr.CodeOf(err) != mongoerr.RemoteOplogStale {
		t.Fatalf("pull from %s: %v, want RemoteOplogStale", lag, err)
	}
	if err := pull(storage.OpTime{Term: first.Term, Index: first.Index - 1}); err != nil {
		t.Fatalf("pull from the newest removed entry: %v", err)
	}

	stop, finished := runPuller(t, "s1", p.addr, se)
	select {
	case <-finished:
	case <-ctx.Done():
		t.Fatal("stale puller did not stop")
	}
	if err := stop(); !errors.Is(err, repl.ErrTooStale) {
		t.Fatalf("puller: %v, want ErrTooStale", err)
	}

	at := initialSync(t, "s1", p.addr, se)
	if at != pe.LastOpTime() {
		t.Fatalf("snapshot %s, primary at %s", at, pe.LastOpTime())
	}
	runPuller(t, "s1", p.addr, se)
	// Majority (2 of 2) needs s1's reports: it is a working secondary again.
	r := insert(t, c, 1000, 10, &shardpb.WriteConcern{WtimeoutMs: 15000})
	if r.WriteConcernError != nil {
		t.Fatalf("majority write after resync: %v", r.WriteConcernError)
	}
	waitSame(t, pe, se)

	// A third member clones the resynced one and pulls from it.
	te := openEngine(t)
	sec := startSecondary(t, se, 5)
	initialSync(t, "s2", sec.addr, te)
	runPuller(t, "s2", sec.addr, te)
	insert(t, c, 2000, 10, &shardpb.WriteConcern{WtimeoutMs: 15000})
	waitSame(t, pe, se)
	waitSame(t, se, te)
}

// TestInitialSyncUnderWrites: an empty member joins while the primary
// takes writes of every kind; after the clone a Puller catches up and the
// stores are equal.
func TestInitialSyncUnderWrites(t *testing.T) {
	ctx := waitCtx(t, 60*time.Second)
	pe, se := openEngine(t), openEngine(t)
	history(t, pe, 0, 300)
	p := startPrimary(t, pe, []string{"p", "s1"})

	wctx, wstop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var wrote int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			id := 300 + i
			if err := insertLocal(pe, ns, bson.D{{Key: "_id", Value: id}, {Key: "u", Value: id}, {Key: "x", Value: id}, {Key: "tags", Value: bson.A{i, "w"}}}); err != nil {
				t.Error(err)
				return
			}
			if _, err := pe.Replace(ctx, ns, idValue(i%300), rawDoc(bson.D{{Key: "u", Value: -i - 1}, {Key: "x", Value: i}, {Key: "tags", Value: bson.A{"r", i}}})); err != nil {
				t.Error(err)
				return
			}
			if _, err := pe.Delete(ctx, "db.other", idValue(fmt.Sprint("k", 5*(i%60)))); err != nil {
				t.Error(err)
				return
			}
			if i%50 == 10 {
				if _, err := pe.CreateIndex(ctx, fmt.Sprintf("db.new%d", i), storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "z"}}}); err != nil {
					t.Error(err)
					return
				}
			}
			wrote = i + 1
		}
	}()
	// Let writes run before and during the clone.
	for pe.LastOpTime().Index < 400 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	at := initialSync(t, "s1", p.addr, se)
	runPuller(t, "s1", p.addr, se)
	// Writes go on a little after the clone too.
	for pe.LastOpTime().Index < at.Index+50 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	wstop()
	wg.Wait()
	if t.Failed() {
		return
	}
	if at.Index >= pe.LastOpTime().Index {
		t.Fatalf("no write after the snapshot %s (last %s)", at, pe.LastOpTime())
	}
	waitSame(t, pe, se)
	t.Logf("snapshot at %s, %d write rounds, primary at %s", at, wrote, pe.LastOpTime())
}

// TestCloneFromUnfinishedMember: a member whose own initial sync is not
// finished refuses to be cloned (NotYetInitialized); InitialSync leaves
// the store pending.
func TestCloneFromUnfinishedMember(t *testing.T) {
	ctx := waitCtx(t, 20*time.Second)
	se, te := openEngine(t), openEngine(t)
	if err := se.ResetForInitialSync(ctx); err != nil {
		t.Fatal(err)
	}
	sec := startSecondary(t, se, 5)
	_, err := repl.InitialSync(ctx, repl.InitialSyncOptions{Member: "s2", Source: sec.addr, Engine: te})
	if mongoerr.CodeOf(err) != mongoerr.NotYetInitialized {
		t.Fatalf("InitialSync from an unfinished member: %v", err)
	}
	if !te.InitialSyncPending() {
		t.Fatal("failed initial sync not pending")
	}
}

// BenchmarkInitialSync clones 20 000 documents (two secondary indexes)
// over gRPC on the loopback; b.N clones.
func BenchmarkInitialSync(b *testing.B) {
	pe := openEngine(b)
	ctx := context.Background()
	const n = 20000
	for i := 0; i < n; i += 500 {
		var docs []bson.Raw
		for j := i; j < i+500; j++ {
			docs = append(docs, rawDoc(bson.D{{Key: "_id", Value: j}, {Key: "u", Value: j}, {Key: "x", Value: j % 100}, {Key: "pad", Value: strings.Repeat("p", 80)}}))
		}
		if _, err := pe.Insert(ctx, ns, docs, storage.WriteOptions{Ordered: true}); err != nil {
			b.Fatal(err)
		}
	}
	for _, spec := range []storage.IndexSpec{{Key: []storage.IndexKeyPart{{Field: "u"}}, Unique: true}, {Key: []storage.IndexKeyPart{{Field: "x"}}}} {
		if _, err := pe.CreateIndex(ctx, ns, spec); err != nil {
			b.Fatal(err)
		}
	}
	p := startSecondary(b, pe, 0)
	se := openEngine(b)
	b.ResetTimer()
	for range b.N {
		if _, err := repl.InitialSync(ctx, repl.InitialSyncOptions{Member: "s1", Source: p.addr, Engine: se}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "docs/s")
}
