package repl_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/repl"
	"github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

// primary is a shardd member (servertest) over a real store, serving on a
// real port, with a progress tracker for its replica set (nil on a
// secondary).
type primary struct {
	eng  *storage.Engine
	prog *repl.Progress
	addr string
	m    *servertest.Member[*server.Server]
}

func openEngine(t testing.TB) *storage.Engine {
	t.Helper()
	return servertest.OpenStore(t, "", storage.Options{})
}

func startPrimary(t testing.TB, eng *storage.Engine, members []string) *primary {
	t.Helper()
	prog, err := repl.NewProgress(repl.ProgressOptions{Self: members[0], Members: members, SelfDurable: eng.LastOpTime, Term: eng.Term()})
	if err != nil {
		t.Fatal(err)
	}
	return serveMember(t, server.ReplicationOptions{Engine: eng, Progress: prog, MaxBatchEntries: 7}, prog)
}

// serveMember serves ro.Engine with a Replication service of ro on
// 127.0.0.1:0 until cleanup.
func serveMember(t testing.TB, ro server.ReplicationOptions, prog *repl.Progress) *primary {
	t.Helper()
	rs, err := server.NewReplication(ro)
	if err != nil {
		t.Fatal(err)
	}
	m := servertest.Start(t, func(e *storage.Engine) (*server.Server, error) {
		return server.New(server.Options{Engine: e, Replication: rs})
	}, servertest.Options{Engine: ro.Engine})
	return &primary{eng: ro.Engine, prog: prog, addr: m.Addr, m: m}
}

// serve serves again on addr (the previous address on a restart).
func (p *primary) serve(t testing.TB, addr string) {
	t.Helper()
	p.m.Serve(addr)
	p.addr = p.m.Addr
}

// stop cuts every call (streams included) and closes the listener.
func (p *primary) stop() { p.m.StopServing() }

// runPuller starts a puller for member into eng. stop cancels it and
// returns Run's error; finished is closed when Run has returned.
func runPuller(t testing.TB, member, source string, eng *storage.Engine) (stop func() error, finished <-chan struct{}) {
	t.Helper()
	pl, err := repl.NewPuller(repl.PullerOptions{Member: member, Source: source, Engine: eng, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fin := make(chan struct{})
	var runErr error
	go func() {
		defer close(fin)
		runErr = pl.Run(ctx)
	}()
	stop = func() error {
		cancel()
		<-fin
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop, fin
}

func doc(t testing.TB, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// state is a store's documents of ns, its oplog and last optime.
func state(t *testing.T, e *storage.Engine, ns string) string {
	t.Helper()
	s, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	it, err := s.ScanIDRange(ns, storage.IDRange{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for it.Next() {
		docs = append(docs, it.Doc().String())
	}
	if err := errors.Join(it.Err(), it.Close()); err != nil {
		t.Fatal(err)
	}
	log, err := e.ReadOplog(storage.OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(docs, len(log), log[len(log)-1].OpTime(), e.LastOpTime())
}

// waitEqual waits until the secondary's documents and oplog equal the
// primary's, then checks the oplogs entry for entry and the secondary's
// indexes and statistics.
func waitEqual(t *testing.T, p, s *storage.Engine, ns string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		want := p.LastOpTime()
		got, err := s.WaitDurable(waitCtx(t, 50*time.Millisecond), storage.OpTime{Term: want.Term, Index: want.Index - 1})
		if err == nil && got == want && state(t, s, ns) == state(t, p, ns) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("secondary did not catch up:\n got %s\nwant %s", state(t, s, ns), state(t, p, ns))
		}
	}
	pl, _ := p.ReadOplog(storage.OpTime{}, 0)
	sl, _ := s.ReadOplog(storage.OpTime{}, 0)
	if !reflect.DeepEqual(pl, sl) {
		t.Fatal("oplogs differ")
	}
	res, err := s.Validate(context.Background(), ns)
	if err != nil || !res.Valid {
		t.Fatalf("secondary Validate: %+v %v", res, err)
	}
	ps, _ := p.Stats(ns)
	ss, _ := s.Stats(ns)
	ps.StorageSize, ss.StorageSize = 0, 0
	if !reflect.DeepEqual(ps, ss) {
		t.Fatalf("stats differ: %+v vs %+v", ps, ss)
	}
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

const ns = "db.c"

func insert(t testing.TB, c *shardclient.Client, from, n int, wc *shardpb.WriteConcern) *shardclient.WriteResult {
	t.Helper()
	var docs []bson.Raw
	for i := from; i < from+n; i++ {
		docs = append(docs, doc(t, bson.D{{Key: "_id", Value: i}, {Key: "x", Value: i % 7}, {Key: "tags", Value: bson.A{i, "t"}}}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.Insert(ctx, ns, docs, shardclient.WriteOptions{Ordered: true, WriteConcern: wc})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.WriteErrors) > 0 || r.N != int64(n) {
		t.Fatalf("insert: %+v", r)
	}
	return r
}

// TestPullerReplicates: writes on a primary reach the secondary (data,
// oplog, indexes, stats); majority writes wait for it; a cut stream and a
// restarted primary server are caught up from; a stopped secondary makes
// majority writes time out with WriteConcernTimeout.
func TestPullerReplicates(t *testing.T) {
	ctx := waitCtx(t, 50*time.Second)
	pe, se := openEngine(t), openEngine(t)
	p := startPrimary(t, pe, []string{"p", "s1", "s2"})
	stopPuller, _ := runPuller(t, "s1", p.addr, se)

	c, err := shardclient.Dial(ctx, p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateIndexes(ctx, ns, doc(t, bson.D{{Key: "key", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "name", Value: "x_1"}}),
		doc(t, bson.D{{Key: "key", Value: bson.D{{Key: "tags", Value: 1}}}, {Key: "name", Value: "tags_1"}})); err != nil {
		t.Fatal(err)
	}
	// Default write concern (majority): acknowledged only once s1 (with the
	// primary, 2 of 3) holds the write.
	for i := 0; i < 40; i += 10 {
		r := insert(t, c, i, 10, &shardpb.WriteConcern{WtimeoutMs: 20000})
		if r.WriteConcernError != nil {
			t.Fatalf("majority insert: %v", r.WriteConcernError)
		}
		at := storage.OpTime{Term: r.OpTime.GetTerm(), Index: r.OpTime.GetIndex()}
		if got := se.LastOpTime(); got.Compare(at) < 0 {
			t.Fatalf("majority write acknowledged at %s, secondary only at %s", at, got)
		}
	}
	if _, err := c.Update(ctx, ns, []shardclient.UpdateStatement{{Filter: doc(t, bson.D{{Key: "x", Value: 3}}), Update: doc(t, bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: true}}}}), Multi: true}}, shardclient.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, ns, []shardclient.DeleteStatement{{Filter: doc(t, bson.D{{Key: "x", Value: 5}})}}, shardclient.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, pe, se, ns)

	// Cut the stream: the primary's server stops; writes go on locally;
	// the server comes back on the same address and the puller catches up.
	p.stop()
	for i := 100; i < 130; i++ {
		if _, err := pe.Insert(ctx, ns, []bson.Raw{doc(t, bson.D{{Key: "_id", Value: i}, {Key: "x", Value: 1}})}, storage.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p.serve(t, p.addr)
	waitEqual(t, pe, se, ns)
	insert(t, c, 200, 5, &shardpb.WriteConcern{WtimeoutMs: 20000}) // reports reach the restarted server
	waitEqual(t, pe, se, ns)

	// With the secondary stopped, a majority write times out (and stays
	// applied); w:1 does not wait.
	if err := stopPuller(); !errors.Is(err, context.Canceled) {
		t.Fatalf("puller stopped with %v", err)
	}
	start := time.Now()
	r := insert(t, c, 300, 1, &shardpb.WriteConcern{WMode: "majority", WtimeoutMs: 200})
	if mongoerr.CodeOf(r.WriteConcernError) != mongoerr.WriteConcernTimeout {
		t.Fatalf("majority write without a secondary: %v", r.WriteConcernError)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("timed out after %s, before the wtimeout", d)
	}
	if _, found, _ := pe.Get(ns, bson.RawValue{Type: bson.TypeInt32, Value: []byte{44, 1, 0, 0}}); !found {
		t.Fatal("the timed-out write is not applied on the primary")
	}
	if r := insert(t, c, 301, 1, &shardpb.WriteConcern{W: 1}); r.WriteConcernError != nil {
		t.Fatalf("w:1: %v", r.WriteConcernError)
	}
	if r := insert(t, c, 302, 1, &shardpb.WriteConcern{W: 4}); mongoerr.CodeOf(r.WriteConcernError) != mongoerr.UnsatisfiableWriteConcern {
		t.Fatalf("w:4 of 3 members: %v", r.WriteConcernError)
	}

	// A restarted puller catches up from where its store is.
	runPuller(t, "s1", p.addr, se)
	waitEqual(t, pe, se, ns)
}

// TestPullerSecondaryRefusesWrites: a member served without a progress
// tracker (a secondary) refuses writes with NotWritablePrimary and
// progress reports likewise, but serves its oplog to a chained puller.
func TestPullerChainedAndNotPrimary(t *testing.T) {
	ctx := waitCtx(t, 30*time.Second)
	pe, se, te := openEngine(t), openEngine(t), openEngine(t)
	p := startPrimary(t, pe, []string{"p", "s1", "s2"})
	runPuller(t, "s1", p.addr, se)

	sec := startSecondary(t, se, 0)

	sc, err := shardclient.Dial(ctx, sec.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	_, err = sc.Insert(ctx, ns, []bson.Raw{doc(t, bson.D{{Key: "_id", Value: 1}})}, shardclient.WriteOptions{})
	if mongoerr.CodeOf(err) != mongoerr.NotWritablePrimary {
		t.Fatalf("write on a secondary: %v", err)
	}
	if err := sc.CreateCollection(ctx, "db.other"); mongoerr.CodeOf(err) != mongoerr.NotWritablePrimary {
		t.Fatalf("DDL on a secondary: %v", err)
	}
	_, err = shardpb.NewReplicationClient(sc.Conn()).ReportProgress(ctx, &shardpb.ProgressRequest{Member: "s2"})
	if mongoerr.CodeOf(rpcErr(err)) != mongoerr.NotWritablePrimary {
		t.Fatalf("report to a secondary: %v", err)
	}

	// s2 pulls from s1 (chained); w:1 writes on the primary reach it.
	runPuller(t, "s2", sec.addr, te)
	pc, err := shardclient.Dial(ctx, p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	insert(t, pc, 0, 20, &shardpb.WriteConcern{W: 1})
	waitEqual(t, pe, te, ns)
}

// TestPullerDiverged: a secondary whose log holds an entry the primary's
// does not stops with ErrDiverged (the next step is a rollback).
func TestPullerDiverged(t *testing.T) {
	ctx := waitCtx(t, 30*time.Second)
	pe, se := openEngine(t), openEngine(t)
	if err := pe.SetTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := pe.Insert(ctx, ns, []bson.Raw{doc(t, bson.D{{Key: "_id", Value: 1}})}, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The secondary wrote on its own in term 1 (an old primary's unreplicated write).
	if _, err := se.Insert(ctx, ns, []bson.Raw{doc(t, bson.D{{Key: "_id", Value: 9}})}, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	p := startPrimary(t, pe, []string{"p", "s1"})
	stop, finished := runPuller(t, "s1", p.addr, se)
	select {
	case <-finished:
		if err := stop(); !errors.Is(err, repl.ErrDiverged) {
			t.Fatalf("Run: %v, want ErrDiverged", err)
		}
	case <-ctx.Done():
		t.Fatal("puller did not stop on divergence")
	}
}

func rpcErr(err error) error { return rpcerr.Error(err) }

// TestPullerTooStale: a secondary whose next entry the source no longer
// holds (oplog retention) stops with ErrTooStale (the next step is a
// resync).
func TestPullerTooStale(t *testing.T) {
	ctx := waitCtx(t, 30*time.Second)
	pe, se := openEngine(t), openEngine(t)
	for i := range 5 {
		if _, err := pe.Insert(ctx, ns, []bson.Raw{doc(t, bson.D{{Key: "_id", Value: i}})}, storage.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pe.TruncateOplogBefore(storage.OpTime{Term: 1, Index: 4}); err != nil {
		t.Fatal(err)
	}
	p := startPrimary(t, pe, []string{"p", "s1"})
	stop, finished := runPuller(t, "s1", p.addr, se)
	select {
	case <-finished:
		if err := stop(); !errors.Is(err, repl.ErrTooStale) {
			t.Fatalf("Run: %v, want ErrTooStale", err)
		}
	case <-ctx.Done():
		t.Fatal("puller did not stop")
	}
}
