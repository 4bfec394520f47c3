package balancer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/catalog/catalogtest"
)

var testEtcd *catalogtest.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "balancer-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testEtcd, err = catalogtest.Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testEtcd.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newClient returns a client of the test etcd closed at the end of the
// test (closing twice is harmless).
func newClient(t *testing.T) *clientv3.Client {
	t.Helper()
	// The crash test closes a client under live calls; its retry warnings
	// are noise.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{testEtcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// must(f())(t) returns f's value or fails the test with its error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func members(shard string) []catalog.Member {
	return []catalog.Member{{Name: shard + "a", Addr: "127.0.0.1:1"}}
}

// commitMover is the fake data copy: no documents move, it only commits
// as the Mover contract says a migration must: the planned chunk as
// planned (its ModRevision catches any split or move since the plan)
// against the collection version read just before the commit, read again
// when another migration of the collection committed in between.
type commitMover struct {
	cat   *catalog.Catalog
	moves atomic.Int64
}

func (m *commitMover) Move(ctx context.Context, mig Migration) error {
	var err error
	for range 5 {
		var coll catalog.Collection
		coll, err = m.cat.GetCollection(ctx, mig.NS)
		if err != nil {
			return err
		}
		if coll.Epoch != mig.Version.Epoch {
			return fmt.Errorf("%s was re-created since planned: %w", mig.NS, catalog.ErrStale)
		}
		_, err = m.cat.CommitMigration(ctx, mig.NS, mig.Chunk, mig.From, mig.To, coll.CollVersion())
		if err == nil {
			m.moves.Add(1)
			return nil
		}
		if !errors.Is(err, catalog.ErrConflict) {
			return err
		}
	}
	return err
}

// setupCluster adds the first initial shards, creates hashed collections
// with the given chunk counts (spread over those shards), then adds the
// other shards, empty.
func setupCluster(t *testing.T, cat *catalog.Catalog, colls map[string]int, initial int, shards ...string) {
	t.Helper()
	ctx := testCtx(t)
	for _, s := range shards[:initial] {
		must(cat.AddShard(ctx, s, members(s), catalog.ShardActive))(t)
	}
	for ns, n := range colls {
		db, _, _ := catalog.SplitNS(ns)
		must(cat.EnsureDatabase(ctx, db, nil))(t)
		coll, _, err := cat.ShardCollection(ctx, ns, catalog.ShardOptions{Key: catalog.ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: n})
		if err != nil {
			t.Fatal(err)
		}
		_ = coll
	}
	for _, s := range shards[initial:] {
		must(cat.AddShard(ctx, s, members(s), catalog.ShardActive))(t)
	}
}

// explainNow plans on the catalog's current state.
func explainNow(t *testing.T, src CatalogSource) Explanation {
	st, set, err := src.Read(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return Explain(st, set)
}

type runner struct {
	b    *Balancer
	stop context.CancelFunc
	done chan error
}

func start(t *testing.T, opts Options) *runner {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{b: b, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() { r.halt(t) })
	return r
}

// halt cancels Run and waits for it.
func (r *runner) halt(t *testing.T) {
	r.stop()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunConvergesAndDrains(t *testing.T) {
	ctx := testCtx(t)
	cat := catalog.New(newClient(t), catalog.WithPrefix(catalogtest.Prefix(t)))
	setupCluster(t, cat, map[string]int{"db.a": 24, "db.b": 9}, 2, "rs0", "rs1", "rs2", "rs3")
	set := catalog.DefaultBalancerSettings()
	set.Threshold, set.MaxConcurrent = 2, 4
	if err := cat.SetBalancerSettings(ctx, set); err != nil {
		t.Fatal(err)
	}
	src := CatalogSource{Catalog: cat}
	// The first round moves two chunks of db.a in parallel (rs0 -> rs2,
	// rs1 -> rs3).
	if ex := explainNow(t, src); ex.Verdict != VerdictMoving || ex.Planned != 2 || ex.Collections[0].Planned != 2 {
		t.Fatalf("setup does not plan two parallel moves of db.a: %s", ex)
	}
	mover := &commitMover{cat: cat}
	r := start(t, Options{ID: "router-a", Elector: cat, Source: src, Mover: mover,
		Interval: 50 * time.Millisecond, LeaseTTL: time.Second, Logger: zerolog.Nop()})

	eventually(t, 20*time.Second, "balanced after adding shards", func() bool {
		return explainNow(t, src).Verdict == VerdictBalanced
	})
	st := r.b.Status()
	// Migrations of one collection ran in parallel; each plan entry was
	// still committable when it ran.
	if len(st.LastErrors) != 0 {
		t.Fatalf("failed moves: %+v", st.LastErrors)
	}
	if !st.Leader || st.Mode != "full" || st.Rounds == 0 || st.Moved == 0 || st.Moved > mover.moves.Load() {
		t.Fatalf("status %+v (mover committed %d)", st, mover.moves.Load())
	}
	if leader := must(cat.BalancerLeader(ctx))(t); leader != "router-a" {
		t.Fatalf("leader %q", leader)
	}
	for _, c := range explainNow(t, src).Collections {
		for _, l := range c.Loads {
			if l.Chunks == 0 {
				t.Fatalf("%s: shard %s got nothing: %+v", c.NS, l.Shard, c.Loads)
			}
		}
	}

	// removeShard's first step: everything leaves rs1.
	must(cat.MarkDraining(ctx, "rs1"))(t)
	r.b.Wake()
	eventually(t, 20*time.Second, "rs1 drained", func() bool {
		u := must(cat.GetShardUsage(ctx, "rs1"))(t)
		return len(u.Collections) == 0
	})
	eventually(t, 20*time.Second, "balanced after draining", func() bool {
		return explainNow(t, src).Verdict == VerdictBalanced
	})
	if errs := r.b.Status().LastErrors; len(errs) != 0 {
		t.Fatalf("failed moves: %+v", errs)
	}

	// Stopping the balancer shows in the status.
	set.Enabled = false
	if err := cat.SetBalancerSettings(ctx, set); err != nil {
		t.Fatal(err)
	}
	r.b.Wake()
	eventually(t, 10*time.Second, "mode off", func() bool {
		s := r.b.Status()
		return s.Mode == "off" && s.LastExplanation.Verdict == VerdictDisabled
	})
}

// failMover fails every move.
type failMover struct{ calls atomic.Int64 }

func (f *failMover) Move(ctx context.Context, m Migration) error {
	f.calls.Add(1)
	return fmt.Errorf("recipient %s unreachable: %w", m.To, errors.ErrUnsupported)
}

func TestRunRecordsErrors(t *testing.T) {
	cat := catalog.New(newClient(t), catalog.WithPrefix(catalogtest.Prefix(t)))
	setupCluster(t, cat, map[string]int{"db.a": 6}, 1, "rs0", "rs1")
	fm := &failMover{}
	r := start(t, Options{ID: "router-a", Elector: cat, Source: CatalogSource{Catalog: cat}, Mover: fm,
		Interval: 20 * time.Millisecond, LeaseTTL: time.Second, Logger: zerolog.Nop()})
	eventually(t, 10*time.Second, "failed moves recorded", func() bool {
		s := r.b.Status()
		return len(s.LastErrors) >= 3 && s.Rounds >= 3
	})
	s := r.b.Status()
	if s.Moved != 0 || len(s.LastErrors) > MaxLastErrors {
		t.Fatalf("status %+v", s)
	}
	e := s.LastErrors[len(s.LastErrors)-1]
	if e.Migration.NS != "db.a" || e.Migration.From != "rs0" || e.Migration.To != "rs1" || e.At.IsZero() {
		t.Fatalf("last error %+v", e)
	}
	if want := "recipient rs1 unreachable"; !bytes.Contains([]byte(e.Err), []byte(want)) {
		t.Fatalf("error %q lacks %q", e.Err, want)
	}
	if s.LastExplanation.Verdict != VerdictMoving {
		t.Fatalf("explanation %s", s.LastExplanation)
	}
}

// blockingMover blocks every move until its context ends, so the test can
// see in-flight migrations and that losing leadership cancels them.
type blockingMover struct{ started atomic.Int64 }

func (b *blockingMover) Move(ctx context.Context, m Migration) error {
	b.started.Add(1)
	<-ctx.Done()
	return fmt.Errorf("migration aborted: %w", context.Cause(ctx))
}

func TestLeadershipHandover(t *testing.T) {
	prefix := catalogtest.Prefix(t)
	catA := catalog.New(newClient(t), catalog.WithPrefix(prefix))
	catB := catalog.New(newClient(t), catalog.WithPrefix(prefix))
	setupCluster(t, catA, map[string]int{"db.a": 8}, 1, "rs0", "rs1", "rs2")
	ctx := testCtx(t)

	moverA := &blockingMover{}
	a := start(t, Options{ID: "router-a", Elector: catA, Source: CatalogSource{Catalog: catA}, Mover: moverA,
		Interval: 20 * time.Millisecond, LeaseTTL: time.Second, Logger: zerolog.Nop()})
	eventually(t, 10*time.Second, "a leads with a migration in flight", func() bool {
		s := a.b.Status()
		return s.Leader && s.InRound && len(s.InFlight) == 1
	})
	moverB := &commitMover{cat: catB}
	b := start(t, Options{ID: "router-b", Elector: catB, Source: CatalogSource{Catalog: catB}, Mover: moverB,
		Interval: 20 * time.Millisecond, LeaseTTL: time.Second, Logger: zerolog.Nop()})
	// b campaigns but runs no round while a leads.
	if leader := must(catB.BalancerLeader(ctx))(t); leader != "router-a" {
		t.Fatalf("leader %q", leader)
	}
	if s := b.b.Status(); s.Leader || s.Rounds != 0 || s.InRound {
		t.Fatalf("follower status %+v", s)
	}

	// a stops (its context is cancelled): its migration is cancelled, it
	// resigns, and b takes over and balances.
	a.halt(t)
	if s := a.b.Status(); s.Leader || s.InRound || len(s.InFlight) != 0 || len(s.LastErrors) != 1 {
		t.Fatalf("stopped leader status %+v", s)
	}
	eventually(t, 5*time.Second, "b leads", func() bool { return b.b.Status().Leader })
	eventually(t, 20*time.Second, "b balances", func() bool {
		return explainNow(t, CatalogSource{Catalog: catB}).Verdict == VerdictBalanced
	})
	if leader := must(catB.BalancerLeader(ctx))(t); leader != "router-b" {
		t.Fatalf("leader %q", leader)
	}
}

func TestLeaderCrashTakeover(t *testing.T) {
	prefix := catalogtest.Prefix(t)
	cliA := newClient(t)
	catA := catalog.New(cliA, catalog.WithPrefix(prefix))
	catB := catalog.New(newClient(t), catalog.WithPrefix(prefix))
	setupCluster(t, catB, map[string]int{"db.a": 8}, 1, "rs0", "rs1")

	a := start(t, Options{ID: "router-a", Elector: catA, Source: CatalogSource{Catalog: catA}, Mover: &blockingMover{},
		Interval: 20 * time.Millisecond, LeaseTTL: time.Second, RetryDelay: 50 * time.Millisecond, Logger: zerolog.Nop()})
	eventually(t, 10*time.Second, "a leads", func() bool { return a.b.Status().Leader })
	b := start(t, Options{ID: "router-b", Elector: catB, Source: CatalogSource{Catalog: catB}, Mover: &commitMover{cat: catB},
		Interval: 20 * time.Millisecond, LeaseTTL: time.Second, Logger: zerolog.Nop()})

	// a's process "dies": its etcd connection goes away without resigning,
	// so its lease has to expire before b can lead.
	crashed := time.Now()
	cliA.Close()
	eventually(t, 10*time.Second, "b leads after a's lease expires", func() bool { return b.b.Status().Leader })
	t.Logf("takeover after %s", time.Since(crashed).Round(time.Millisecond))
	eventually(t, 5*time.Second, "a knows it lost", func() bool { return !a.b.Status().Leader })
	eventually(t, 20*time.Second, "b balances", func() bool {
		return explainNow(t, CatalogSource{Catalog: catB}).Verdict == VerdictBalanced
	})
}

func TestNewValidates(t *testing.T) {
	cat := catalog.New(newClient(t), catalog.WithPrefix(catalogtest.Prefix(t)))
	src := CatalogSource{Catalog: cat}
	for _, o := range []Options{
		{Elector: cat, Source: src, Mover: &failMover{}},
		{ID: "r", Source: src, Mover: &failMover{}},
		{ID: "r", Elector: cat, Mover: &failMover{}},
		{ID: "r", Elector: cat, Source: src},
		{ID: "r", Elector: cat, Source: src, Mover: &failMover{}, Interval: -1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	b := must(New(Options{ID: "r", Elector: cat, Source: src, Mover: &failMover{}}))(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	eventually(t, 5*time.Second, "leads", func() bool { return b.Status().Leader })
	if err := b.Run(ctx); err == nil {
		t.Fatal("second Run accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
