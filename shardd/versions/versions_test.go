package versions

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/catalog/catalogtest"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/pkg/shardversion"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

// One etcd for the package; each test has its own catalog prefix.
var testCli *clientv3.Client

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "versions-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := catalogtest.Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testCli, err = srv.Client()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testCli.Close()
	srv.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func raw(t testing.TB, d any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const ns = "db.c"

// cluster is a catalog with shards s1 and s2, database db on s1 and db.c
// sharded on {k: 1} (one chunk 1|0 on s1), plus a real shardd of s1 (a
// Server over a real store, served on 127.0.0.1) checking versions with
// a Checker over the catalog.
type cluster struct {
	cat *catalog.Catalog
	chk *Checker
	cli *shardclient.Client
	pc  shardpb.ShardClient
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	ctx := ctxT(t)
	cat := catalog.New(testCli, catalog.WithPrefix(catalogtest.Prefix(t)))
	for _, s := range []string{"s1", "s2"} {
		if _, err := cat.AddShard(ctx, s, []catalog.Member{{Name: s + "-a", Addr: "127.0.0.1:1"}}, catalog.ShardActive); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cat.CreateDatabaseOn(ctx, "db", "s1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cat.ShardCollection(ctx, ns, catalog.ShardOptions{Key: catalog.ShardKey{{Field: "k"}}}); err != nil {
		t.Fatal(err)
	}
	chk, err := New(Options{Catalog: cat, Shard: "s1", Logger: logging.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(chk.Close) // after the shardd stopped
	m := servertest.Start(t, func(e *storage.Engine) (*server.Server, error) {
		return server.New(server.Options{Engine: e, Logger: logging.Nop(), Versions: chk})
	}, servertest.Options{})
	return &cluster{cat: cat, chk: chk, cli: m.Client, pc: shardpb.NewShardClient(m.Client.Conn())}
}

// shardVersion is the catalog's current version of shard for ns.
func (c *cluster) shardVersion(t *testing.T, shard string) catalog.CollVersion {
	t.Helper()
	cm, err := c.cat.OpenChunkMap(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	v, err := cm.ShardVersion(ns, shard)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (c *cluster) chunks(t *testing.T) []catalog.Chunk {
	t.Helper()
	coll, err := c.cat.GetCollection(ctxT(t), ns)
	if err != nil {
		t.Fatal(err)
	}
	chs, _, err := c.cat.ListChunks(ctxT(t), coll.UUID)
	if err != nil {
		t.Fatal(err)
	}
	return chs
}

// splitAndMigrate splits db.c at k=100 and moves [100, MaxKey) to s2: s1
// keeps [MinKey, 100) as the control chunk at 2|1, s2 gets 2|0.
func (c *cluster) splitAndMigrate(t *testing.T) {
	t.Helper()
	ctx := ctxT(t)
	chs := c.chunks(t)
	if _, err := c.cat.SplitChunk(ctx, ns, chs[0], raw(t, bson.D{{Key: "k", Value: 100}})); err != nil {
		t.Fatal(err)
	}
	coll, err := c.cat.GetCollection(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	chs = c.chunks(t)
	if _, err := c.cat.CommitMigration(ctx, ns, chs[1], "s1", "s2", coll.CollVersion()); err != nil {
		t.Fatal(err)
	}
}

// call is one kind of data request sent with version v (nil: none).
type call struct {
	name string
	run  func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error
}

// bdoc marshals a document of the test's own (always valid).
func bdoc(d bson.D) []byte {
	b, err := bson.Marshal(d)
	if err != nil {
		panic(err)
	}
	return b
}

var doc1 = bdoc(bson.D{{Key: "k", Value: 1}})

// calls are every data request of the Shard service that carries a
// version, sent as the router sends them.
var calls = []call{
	{"insert", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.pc.Insert(ctx, &shardpb.InsertRequest{Ns: ns, Documents: [][]byte{doc1}, Ordered: true, ShardVersion: v})
		return rpcerr.Error(err)
	}},
	{"update", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.cli.Update(ctx, ns, []shardclient.UpdateStatement{{Filter: doc1, Update: bdoc(bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})}},
			shardclient.WriteOptions{Ordered: true, ShardVersion: v})
		return err
	}},
	{"delete", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.cli.Delete(ctx, ns, []shardclient.DeleteStatement{{Filter: bdoc(bson.D{{Key: "k", Value: -1}}), Limit: 1}},
			shardclient.WriteOptions{Ordered: true, ShardVersion: v})
		return err
	}},
	{"findAndModify", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.cli.FindAndModify(ctx, ns, shardclient.FindAndModify{Filter: doc1, Update: bdoc(bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}), WriteOptions: shardclient.WriteOptions{ShardVersion: v}})
		return err
	}},
	{"find", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.cli.FindAll(ctx, ns, shardclient.Find{ShardVersion: v})
		return err
	}},
	{"explain", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.cli.Explain(ctx, ns, shardclient.Find{ShardVersion: v})
		return err
	}},
	// Count, Distinct and Aggregate take the version from the context
	// (shardclient.WithShardVersion), as the router sends them.
	{"count", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.cli.Count(shardclient.WithShardVersion(ctx, v), ns, nil, 0, 0)
		return err
	}},
	{"distinct", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.cli.Distinct(shardclient.WithShardVersion(ctx, v), ns, "k", nil)
		return err
	}},
	{"aggregate", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.cli.AggregateShardPart(shardclient.WithShardVersion(ctx, v), ns, []bson.Raw{bdoc(bson.D{{Key: "$match", Value: bson.D{}}})}, nil)
		return err
	}},
	{"createIndexes", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.pc.CreateIndexes(ctx, &shardpb.CreateIndexesRequest{Ns: ns, ShardVersion: v,
			Specs: [][]byte{bdoc(bson.D{{Key: "key", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "name", Value: "x_1"}})}})
		return rpcerr.Error(err)
	}},
	{"dropIndexes", func(ctx context.Context, c *cluster, ns string, v *shardpb.ShardVersion) error {
		_, err := c.pc.DropIndexes(ctx, &shardpb.DropIndexesRequest{Ns: ns, Names: []string{"no_such_index"}, ShardVersion: v})
		err = rpcerr.Error(err)
		if mongoerr.HasCode(err, mongoerr.IndexNotFound) || mongoerr.HasCode(err, mongoerr.NamespaceNotFound) {
			return nil // it ran: the version was accepted
		}
		return err
	}},
}

// wantStale asserts err is StaleConfig from s1 with the given versions.
func wantStale(t *testing.T, what string, err error, ns string, received, wanted catalog.CollVersion) {
	t.Helper()
	if mongoerr.CodeOf(err) != mongoerr.StaleConfig {
		t.Fatalf("%s: want StaleConfig, got %v", what, err)
	}
	info, ok := shardversion.InfoOf(err)
	if !ok {
		t.Fatalf("%s: StaleConfig without errInfo: %v", what, err)
	}
	want := shardversion.StaleInfo{NS: ns, Received: received, Wanted: wanted, ShardID: "s1"}
	if info != want {
		t.Fatalf("%s: errInfo %+v, want %+v", what, info, want)
	}
}

func TestVersionsAfterSplitAndMigration(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	v1 := c.shardVersion(t, "s1")
	if v1.Major != 1 || v1.Minor != 0 {
		t.Fatalf("initial version of s1 %v", v1)
	}
	for _, k := range calls {
		if err := k.run(ctx, c, ns, shardversion.Proto(v1)); err != nil {
			t.Fatalf("%s with the current version: %v", k.name, err)
		}
	}

	// A split bumps minor only: the router that missed it still targets
	// right, and is served.
	if _, err := c.cat.SplitChunk(ctx, ns, c.chunks(t)[0], raw(t, bson.D{{Key: "k", Value: 100}})); err != nil {
		t.Fatal(err)
	}
	if err := c.chk.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v := c.shardVersion(t, "s1"); v.Major != 1 || v.Minor == 0 {
		t.Fatalf("after the split s1 is at %v", v)
	}
	for _, k := range calls {
		if err := k.run(ctx, c, ns, shardversion.Proto(v1)); err != nil {
			t.Fatalf("%s with the pre-split version: %v", k.name, err)
		}
	}

	// A migration bumps major on the donor (control chunk). The donor
	// catches up before it lets writes go on (the migration protocol);
	// Refresh stands for that.
	coll, err := c.cat.GetCollection(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.cat.CommitMigration(ctx, ns, c.chunks(t)[1], "s1", "s2", coll.CollVersion()); err != nil {
		t.Fatal(err)
	}
	if err := c.chk.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	v2 := c.shardVersion(t, "s1")
	if v2.Major != 2 || v2.Minor != 1 || v2.Epoch != v1.Epoch {
		t.Fatalf("after the migration s1 is at %v", v2)
	}
	for _, k := range calls {
		err := k.run(ctx, c, ns, shardversion.Proto(v1))
		wantStale(t, k.name+" with the pre-migration version", err, ns, v1, v2)
	}
	for _, k := range calls {
		if err := k.run(ctx, c, ns, shardversion.Proto(v2)); err != nil {
			t.Fatalf("%s with the current version: %v", k.name, err)
		}
	}

	// The router thinks db.c is unsharded: refused, with what the shard wants.
	err = calls[0].run(ctx, c, ns, shardversion.Proto(catalog.CollVersion{}))
	wantStale(t, "UNSHARDED on a sharded collection", err, ns, catalog.CollVersion{}, v2)

	// Unsharded collections: UNSHARDED is served, a version is refused.
	for _, k := range calls {
		if err := k.run(ctx, c, "db.plain", shardversion.Proto(catalog.CollVersion{})); err != nil {
			t.Fatalf("%s on an unsharded collection: %v", k.name, err)
		}
	}
	err = calls[4].run(ctx, c, "db.plain", shardversion.Proto(v2))
	wantStale(t, "a version on an unsharded collection", err, "db.plain", v2, catalog.CollVersion{})

	// Unversioned requests (direct clients, tools) are not checked.
	for _, k := range calls {
		if err := k.run(ctx, c, ns, nil); err != nil {
			t.Fatalf("%s without a version: %v", k.name, err)
		}
	}

	// movePrimary: an unsharded collection lives on its database's primary
	// shard, so once the primary moved, UNSHARDED is stale on s1 (a router
	// that missed the move retries at the new primary).
	d, err := c.cat.GetDatabase(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.cat.SetPrimaryShard(ctx, "db", "s2", d.ModRevision); err != nil {
		t.Fatal(err)
	}
	if err := c.chk.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range calls {
		err := k.run(ctx, c, "db.plain", shardversion.Proto(catalog.CollVersion{}))
		wantStale(t, k.name+" UNSHARDED after movePrimary", err, "db.plain", catalog.CollVersion{}, catalog.CollVersion{})
	}
	if _, err := c.cat.SetPrimaryShard(ctx, "db", "s1", 0); err != nil {
		t.Fatal(err)
	}
	if err := c.chk.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	// Dropped: the router's version of the old collection is refused.
	if err := c.cat.DropCollection(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := c.chk.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	err = calls[4].run(ctx, c, ns, shardversion.Proto(v2))
	wantStale(t, "a version of a dropped collection", err, ns, v2, catalog.CollVersion{})
	if err := calls[4].run(ctx, c, ns, shardversion.Proto(catalog.CollVersion{})); err != nil {
		t.Fatalf("UNSHARDED after the drop: %v", err)
	}
}

// TestNewerRouterIsServedByLaggingShard: a router that already saw a
// migration targets the donor with the new version while the donor's
// watch has not delivered the commit yet. The donor catches up with the
// catalog instead of refusing, and serves the request.
func TestNewerRouterIsServedByLaggingShard(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	old, err := c.cat.OpenChunkMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old.Close() // frozen before the migration: the lagging view
	c.splitAndMigrate(t)
	v2 := c.shardVersion(t, "s1")
	live, err := c.cat.OpenChunkMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lag := &laggingMap{old: old, live: live}
	c.chk.rt.Store(&routingRef{r: lag, close: live.Close})

	if view, err := c.chk.view(lag, ns); err != nil || shardversion.Matches(v2, view) {
		t.Fatalf("the lagging view %+v (%v) must disagree with the router's %v", view, err, v2)
	}
	// A read: refused by the lagging view, so the shard catches up first.
	before := c.chk.Refreshes()
	if err := calls[4].run(ctx, c, ns, shardversion.Proto(v2)); err != nil {
		t.Fatalf("find from the newer router: %v", err)
	}
	if !lag.caughtUp.Load() || c.chk.Refreshes() != before+1 {
		t.Fatalf("caught up %v after %d refreshes, want one", lag.caughtUp.Load(), c.chk.Refreshes()-before)
	}
	for _, k := range calls {
		if err := k.run(ctx, c, ns, shardversion.Proto(v2)); err != nil {
			t.Fatalf("%s from the newer router: %v", k.name, err)
		}
	}
}

// TestWriteCatchesUpWhenBothLag: the router and the shard both missed a
// migration, so their old versions agree. A write is still refused (it
// catches up before it is decided); a read is served from the lagging
// view (the window the migration's critical section closes, see
// docs/design/shard-versions.md).
func TestWriteCatchesUpWhenBothLag(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	v1 := c.shardVersion(t, "s1")
	old, err := c.cat.OpenChunkMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	c.splitAndMigrate(t)
	v2 := c.shardVersion(t, "s1")
	live, err := c.cat.OpenChunkMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lag := &laggingMap{old: old, live: live}
	c.chk.rt.Store(&routingRef{r: lag, close: live.Close})

	if err := calls[4].run(ctx, c, ns, shardversion.Proto(v1)); err != nil {
		t.Fatalf("find with the old version on the lagging shard: %v", err)
	}
	if lag.caughtUp.Load() {
		t.Fatal("a matching read caught up")
	}
	err = calls[0].run(ctx, c, ns, shardversion.Proto(v1))
	wantStale(t, "insert with the old version on the lagging shard", err, ns, v1, v2)
	if !lag.caughtUp.Load() {
		t.Fatal("the write did not catch up")
	}
}

// laggingMap answers from a chunk map frozen at an older revision until
// the checker waits for a revision, then from the live one: a shard whose
// watch is behind the catalog.
type laggingMap struct {
	old, live *catalog.ChunkMap
	caughtUp  atomic.Bool
}

func (m *laggingMap) Collection(ns string) (catalog.Collection, bool) {
	if m.caughtUp.Load() {
		return m.live.Collection(ns)
	}
	return m.old.Collection(ns)
}

func (m *laggingMap) Database(name string) (catalog.Database, bool) {
	if m.caughtUp.Load() {
		return m.live.Database(name)
	}
	return m.old.Database(name)
}

func (m *laggingMap) ShardVersion(ns, shard string) (catalog.CollVersion, error) {
	if m.caughtUp.Load() {
		return m.live.ShardVersion(ns, shard)
	}
	return m.old.ShardVersion(ns, shard)
}

func (m *laggingMap) WaitForRevision(ctx context.Context, rev int64) error {
	if err := m.live.WaitForRevision(ctx, rev); err != nil {
		return err
	}
	m.caughtUp.Store(true)
	return nil
}

// TestConcurrentStaleRequests: a burst of requests from a stale router
// all get StaleConfig, sharing catch-ups with the catalog.
func TestConcurrentStaleRequests(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	v1 := c.shardVersion(t, "s1")
	c.splitAndMigrate(t)
	if err := c.chk.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	v2 := c.shardVersion(t, "s1")
	before := c.chk.Refreshes()
	const n = 32
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.chk.Check(ctx, ns, shardversion.Proto(v1), i%2 == 0)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		wantStale(t, fmt.Sprintf("request %d", i), err, ns, v1, v2)
	}
	if r := c.chk.Refreshes() - before; r < 1 || r > n {
		t.Fatalf("%d catch-ups for %d stale requests", r, n)
	}
	t.Logf("%d catch-ups for %d concurrent stale requests", c.chk.Refreshes()-before, n)
}

// TestUnreachableCatalog: without the config servers a versioned request
// fails with NotYetInitialized within the open timeout; unversioned ones
// never need them.
func TestUnreachableCatalog(t *testing.T) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	chk, err := New(Options{Catalog: catalog.New(cli), Shard: "s1", Logger: logging.Nop(), OpenTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer chk.Close()
	ctx := ctxT(t)
	if err := chk.Check(ctx, ns, nil, true); err != nil {
		t.Fatalf("unversioned: %v", err)
	}
	start := time.Now()
	err = chk.Check(ctx, ns, shardversion.Proto(catalog.CollVersion{}), false)
	if mongoerr.CodeOf(err) != mongoerr.NotYetInitialized {
		t.Fatalf("want NotYetInitialized, got %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	chk.Close()
	if err := chk.Check(ctx, ns, shardversion.Proto(catalog.CollVersion{}), false); mongoerr.CodeOf(err) != mongoerr.ShutdownInProgress {
		t.Fatalf("after Close: %v", err)
	}
}

// BenchmarkCheck: a matching read (two map lookups) and a write (one
// catch-up with the catalog, here an in-process etcd).
func BenchmarkCheck(b *testing.B) {
	ctx := context.Background()
	cat := catalog.New(testCli, catalog.WithPrefix(catalogtest.Prefix(b)))
	if _, err := cat.AddShard(ctx, "s1", []catalog.Member{{Name: "s1-a", Addr: "127.0.0.1:1"}}, catalog.ShardActive); err != nil {
		b.Fatal(err)
	}
	if _, err := cat.CreateDatabaseOn(ctx, "db", "s1"); err != nil {
		b.Fatal(err)
	}
	coll, _, err := cat.ShardCollection(ctx, ns, catalog.ShardOptions{Key: catalog.ShardKey{{Field: "k"}}})
	if err != nil {
		b.Fatal(err)
	}
	chk, err := New(Options{Catalog: cat, Shard: "s1", Logger: logging.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer chk.Close()
	v := shardversion.Proto(coll.CollVersion())
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			if err := chk.Check(ctx, ns, v, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			if err := chk.Check(ctx, ns, v, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("write-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := chk.Check(ctx, ns, v, true); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// With the member's term, a write to a sharded collection whose version
// matches is decided from the view once the checker caught up in the
// current term; a released critical section (Invalidate) or a new term
// makes the next write catch up again, and UNSHARDED writes always do.
func TestWritesTrustTheViewWithinATerm(t *testing.T) {
	c := newCluster(t)
	ctx := ctxT(t)
	var term atomic.Uint64
	term.Store(3)
	chk, err := New(Options{Catalog: c.cat, Shard: "s1", Logger: logging.Nop(), Term: term.Load})
	if err != nil {
		t.Fatal(err)
	}
	defer chk.Close()
	v := shardversion.Proto(c.shardVersion(t, "s1"))
	write := func(ns string, v *shardpb.ShardVersion) {
		t.Helper()
		if err := chk.Check(ctx, ns, v, true); err != nil {
			t.Fatalf("write to %s: %v", ns, err)
		}
	}
	wantRefreshes := func(what string, n int64) {
		t.Helper()
		if got := chk.Refreshes(); got != n {
			t.Fatalf("%s: %d catch-ups with the catalog, want %d", what, got, n)
		}
	}
	write(ns, v)
	wantRefreshes("first write of the term", 1)
	write(ns, v)
	write(ns, v)
	wantRefreshes("later matching writes", 1)
	chk.Invalidate()
	write(ns, v)
	wantRefreshes("the write after a released critical section", 2)
	write(ns, v)
	wantRefreshes("then", 2)
	term.Store(4)
	write(ns, v)
	wantRefreshes("the first write of a new term", 3)
	unsharded := shardversion.Proto(catalog.CollVersion{})
	write("db.plain", unsharded)
	write("db.plain", unsharded)
	wantRefreshes("UNSHARDED writes", 5)
	// Reads never catch up when they match.
	if err := chk.Check(ctx, ns, v, false); err != nil {
		t.Fatal(err)
	}
	wantRefreshes("a matching read", 5)
}
