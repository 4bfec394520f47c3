package server

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/catalog/catalogtest"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/pkg/shardversion"
	shardserver "github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/storage"
	"github.com/psdb/psdb/shardd/versions"
)

// staleBackend is a router whose routing table missed every catalog change
// after it was frozen: Routing answers from a closed chunk map until the
// router refreshes (AdminBackend.Refresh, what a StaleConfig triggers).
// Everything else is the real ClusterBackend.
type staleBackend struct {
	*ClusterBackend
	frozen    Routing
	refreshed atomic.Bool
}

func (b *staleBackend) Routing() (Routing, error) {
	if !b.refreshed.Load() {
		return b.frozen, nil
	}
	return b.ClusterBackend.Routing()
}

func (b *staleBackend) Refresh(ctx context.Context) error {
	b.refreshed.Store(true)
	return b.ClusterBackend.Refresh(ctx)
}

// versionedCluster is a catalog (in-process etcd), two real shardd
// servers that check shard versions (shardd/versions), and db.r sharded
// on {k: 1} in one chunk on s0.
type versionedCluster struct {
	etcd     *catalogtest.Server
	cat      *catalog.Catalog
	checkers map[string]*versions.Checker
	direct   map[string]*shardclient.Client
}

func startVersionedCluster(t *testing.T) *versionedCluster {
	t.Helper()
	ctx := testCtx(t)
	etcd, err := catalogtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	ecli, err := etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ecli.Close() })
	vc := &versionedCluster{etcd: etcd, cat: catalog.New(ecli), checkers: map[string]*versions.Checker{}, direct: map[string]*shardclient.Client{}}
	for _, name := range []string{"s0", "s1"} {
		chk, err := versions.New(versions.Options{Catalog: vc.cat, Shard: name, Logger: logging.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		addr := serveVersionedShardd(t, chk)
		if _, err := vc.cat.AddShard(ctx, name, []catalog.Member{{Name: name + "-a", Addr: addr}}, catalog.ShardActive); err != nil {
			t.Fatal(err)
		}
		c, err := shardclient.Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		vc.checkers[name], vc.direct[name] = chk, c
	}
	if _, err := vc.cat.CreateDatabaseOn(ctx, "db", "s0"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vc.cat.ShardCollection(ctx, "db.r", catalog.ShardOptions{Key: catalog.ShardKey{{Field: "k"}}}); err != nil {
		t.Fatal(err)
	}
	return vc
}

func serveVersionedShardd(t *testing.T, chk *versions.Checker) string {
	t.Helper()
	eng, err := storage.Open(t.TempDir(), storage.Options{Logger: logging.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := shardserver.New(shardserver.Options{Engine: eng, Logger: logging.Nop(), Versions: chk})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := srv.NewGRPCServer()
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(ln) }()
	srv.SetServing(true)
	t.Cleanup(func() {
		g.Stop()
		<-done
		srv.Close()
		chk.Close()
		if err := eng.Close(); err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

// router starts a router over the cluster. frozen (when not nil) is the
// stale routing table it starts with.
func (vc *versionedCluster) router(t *testing.T, frozen Routing) (*mongo.Database, *staleBackend) {
	t.Helper()
	cb := NewClusterBackend([]string{vc.etcd.Endpoint}, logging.Nop())
	t.Cleanup(func() { cb.Close() })
	waitFor(t, "the router's routing metadata", 20*time.Second, func() bool {
		rt, err := cb.Routing()
		if err != nil {
			return false
		}
		c, ok := rt.Collection("db.r")
		return ok && c.Sharded
	})
	sb := &staleBackend{ClusterBackend: cb, frozen: frozen}
	if frozen == nil {
		sb.refreshed.Store(true)
	}
	_, addr := startServer(t, Options{Backend: sb})
	return connectDriver(t, addr).Database("db"), sb
}

// freeze returns a routing table frozen at the catalog's current state.
func (vc *versionedCluster) freeze(t *testing.T) *catalog.ChunkMap {
	t.Helper()
	cm, err := vc.cat.OpenChunkMap(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	cm.Close() // lookups keep answering from the state at close
	return cm
}

// migrate splits db.r at k = 0 and commits the move of [0, MaxKey) to s1
// (no documents are there yet). Both shards catch up with the commit
// before it returns, as a migration's critical section makes the donor do.
func (vc *versionedCluster) migrate(t *testing.T) {
	t.Helper()
	ctx := testCtx(t)
	coll, err := vc.cat.GetCollection(ctx, "db.r")
	if err != nil {
		t.Fatal(err)
	}
	chunks, _, err := vc.cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatal(err)
	}
	split, err := vc.cat.SplitChunk(ctx, "db.r", chunks[0], doc(t, bson.D{{Key: "k", Value: 0}}))
	if err != nil {
		t.Fatal(err)
	}
	if coll, err = vc.cat.GetCollection(ctx, "db.r"); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.cat.CommitMigration(ctx, "db.r", split[1], "s0", "s1", coll.CollVersion()); err != nil {
		t.Fatal(err)
	}
	for _, chk := range vc.checkers {
		if err := chk.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func (vc *versionedCluster) count(t *testing.T, shard string, filter bson.D) int64 {
	t.Helper()
	n, err := vc.direct[shard].Count(testCtx(t), "db.r", doc(t, filter), 0, 0)
	if err != nil && !mongoerr.HasCode(err, mongoerr.NamespaceNotFound) {
		t.Fatal(err)
	}
	return n
}

// TestStaleRouterNeverUsesTheWrongShard: routers that missed a migration
// write and read through the shards' StaleConfig, a refresh and a
// re-target, and never touch the shard that gave the chunk away.
func TestStaleRouterNeverUsesTheWrongShard(t *testing.T) {
	vc := startVersionedCluster(t)
	ctx := testCtx(t)
	frozenW, frozenR := vc.freeze(t), vc.freeze(t)
	frozen := make([]Routing, 4)
	for i := range frozen {
		frozen[i] = vc.freeze(t)
	}
	vc.migrate(t)

	// The stale router's own view still sends k = 7 to s0.
	if sh, _, err := targeting.ForInsert(frozenW, "db.r", doc(t, bson.D{{Key: "k", Value: 7}})); err != nil || sh != "s0" {
		t.Fatalf("the frozen table targets k=7 at %q (%v), want s0", sh, err)
	}
	db, sb := vc.router(t, frozenW)
	// One document per insert here; batches that split over both shards
	// after the refresh are TestStaleRouterResplitsWrites'.
	for i, k := range []int{7, -7} {
		if _, err := db.Collection("r").InsertOne(ctx, bson.D{{Key: "_id", Value: i + 1}, {Key: "k", Value: k}}); err != nil {
			t.Fatalf("insert k=%d through the stale router: %v", k, err)
		}
	}
	if !sb.refreshed.Load() {
		t.Fatal("the stale router was never told to refresh")
	}
	if got := vc.count(t, "s1", bson.D{{Key: "k", Value: 7}}); got != 1 {
		t.Fatalf("k=7 on s1 (its owner): %d documents, want 1", got)
	}
	if got := vc.count(t, "s0", bson.D{{Key: "k", Value: 7}}); got != 0 {
		t.Fatalf("k=7 written to s0, which gave the chunk away")
	}
	if got := vc.count(t, "s0", bson.D{{Key: "k", Value: -7}}); got != 1 {
		t.Fatalf("k=-7 on s0: %d documents, want 1", got)
	}

	// A second stale router reads k = 7 from its owner.
	db2, sb2 := vc.router(t, frozenR)
	var got bson.M
	if err := db2.Collection("r").FindOne(ctx, bson.D{{Key: "k", Value: 7}}).Decode(&got); err != nil {
		t.Fatalf("find through the second stale router: %v", err)
	}
	if got["_id"] != int32(1) || !sb2.refreshed.Load() {
		t.Fatalf("found %v (refreshed %v)", got, sb2.refreshed.Load())
	}
	n, err := db2.Collection("r").CountDocuments(ctx, bson.D{})
	if err != nil || n != 2 {
		t.Fatalf("count through the refreshed router: %d, %v", n, err)
	}

	// Each other command through its own stale router.
	k7 := bson.D{{Key: "k", Value: 7}}
	ops := []struct {
		name string
		run  func(db *mongo.Database) error
	}{
		{"update", func(db *mongo.Database) error {
			r, err := db.Collection("r").UpdateOne(ctx, k7, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
			if err == nil && r.ModifiedCount != 1 {
				t.Errorf("update modified %d", r.ModifiedCount)
			}
			return err
		}},
		{"distinct", func(db *mongo.Database) error {
			res := db.Collection("r").Distinct(ctx, "x", k7)
			var xs []int32
			if err := res.Decode(&xs); err != nil {
				return err
			}
			if len(xs) != 1 || xs[0] != 1 {
				t.Errorf("distinct x of k=7: %v", xs)
			}
			return nil
		}},
		{"aggregate", func(db *mongo.Database) error {
			cur, err := db.Collection("r").Aggregate(ctx, mongo.Pipeline{{{Key: "$match", Value: k7}}})
			if err != nil {
				return err
			}
			var docs []bson.M
			if err := cur.All(ctx, &docs); err != nil {
				return err
			}
			if len(docs) != 1 {
				t.Errorf("aggregate of k=7: %v", docs)
			}
			return nil
		}},
		{"delete", func(db *mongo.Database) error {
			r, err := db.Collection("r").DeleteOne(ctx, k7)
			if err == nil && r.DeletedCount != 1 {
				t.Errorf("delete removed %d", r.DeletedCount)
			}
			return err
		}},
	}
	for i, op := range ops {
		db, sb := vc.router(t, frozen[i])
		if err := op.run(db); err != nil {
			t.Fatalf("%s through a stale router: %v", op.name, err)
		}
		if !sb.refreshed.Load() {
			t.Fatalf("%s: the stale router was never told to refresh", op.name)
		}
	}
	if got := vc.count(t, "s1", k7); got != 0 {
		t.Fatalf("k=7 still on s1 after the delete")
	}

	// A request with the pre-migration version reaches s0 and is refused
	// with what s0 wants.
	_, err = vc.direct["s0"].FindAll(ctx, "db.r", shardclient.Find{ShardVersion: shardversion.Proto(mustShardVersion(t, frozenR, "s0"))})
	info, ok := shardversion.InfoOf(err)
	if mongoerr.CodeOf(err) != mongoerr.StaleConfig || !ok || info.ShardID != "s0" || info.Wanted.Major != 2 {
		t.Fatalf("old version on s0: %v (info %+v)", err, info)
	}
}

func mustShardVersion(t *testing.T, rt Routing, shard string) catalog.CollVersion {
	t.Helper()
	v, err := rt.ShardVersion("db.r", shard)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestStaleRouterResplitsWrites: routers that missed a migration send
// batches whose statements, after the refresh, belong to both shards.
// The router re-targets the refused statements and sends each shard its
// part, keeping ordered and unordered semantics and the client's
// statement indexes; findAndModify and the index commands refresh and
// retry too.
func TestStaleRouterResplitsWrites(t *testing.T) {
	vc := startVersionedCluster(t)
	ctx := testCtx(t)
	frozen := make([]Routing, 7)
	for i := range frozen {
		frozen[i] = vc.freeze(t)
	}
	vc.migrate(t) // k >= 0 now lives on s1
	// A document on s1 that the batches below collide with.
	fresh, _ := vc.router(t, nil)
	if _, err := fresh.Collection("r").InsertOne(ctx, bson.D{{Key: "_id", Value: 100}, {Key: "k", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	stale := func(i int) *mongo.Collection {
		db, sb := vc.router(t, frozen[i])
		t.Cleanup(func() {
			if !sb.refreshed.Load() {
				t.Errorf("stale router %d was never told to refresh", i)
			}
		})
		return db.Collection("r")
	}
	at := func(shard string, id int) int64 { return vc.count(t, shard, bson.D{{Key: "_id", Value: id}}) }
	placed := func(id int, shard string) {
		t.Helper()
		other := map[string]string{"s0": "s1", "s1": "s0"}[shard]
		if at(shard, id) != 1 || at(other, id) != 0 {
			t.Fatalf("_id %d: %d on %s, %d on %s; want it on %s only", id, at(shard, id), shard, at(other, id), other, shard)
		}
	}
	absent := func(id int) {
		t.Helper()
		if at("s0", id) != 0 || at("s1", id) != 0 {
			t.Fatalf("_id %d was written", id)
		}
	}
	dupAt := func(err error, want ...int) {
		t.Helper()
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || len(bwe.WriteErrors) != len(want) {
			t.Fatalf("want write errors at %v, got %v", want, err)
		}
		for k, we := range bwe.WriteErrors {
			if we.Index != want[k] || we.Code != int(mongoerr.DuplicateKey) {
				t.Fatalf("write error %d: index %d code %d, want index %d code 11000 (%v)", k, we.Index, we.Code, want[k], err)
			}
		}
	}

	// A 2-document InsertMany (a retryable write: the driver sends lsid
	// and txnNumber) that the stale router sends to s0 whole.
	if _, err := stale(0).InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: -1}},
		bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: 1}},
	}); err != nil {
		t.Fatalf("InsertMany through a stale router: %v", err)
	}
	placed(1, "s0")
	placed(2, "s1")

	// Ordered: statement 2 collides on s1; statement 1 ran on s0,
	// statements 3 and 4 (one per shard) never ran.
	_, err := stale(1).InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: 10}, {Key: "k", Value: -10}},
		bson.D{{Key: "_id", Value: 11}, {Key: "k", Value: 11}},
		bson.D{{Key: "_id", Value: 100}, {Key: "k", Value: 3}},
		bson.D{{Key: "_id", Value: 12}, {Key: "k", Value: -12}},
		bson.D{{Key: "_id", Value: 13}, {Key: "k", Value: 13}},
	})
	dupAt(err, 2)
	placed(10, "s0")
	placed(11, "s1")
	absent(12)
	absent(13)

	// Unordered: the same shape; everything but the collision runs.
	_, err = stale(2).InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: 20}, {Key: "k", Value: -20}},
		bson.D{{Key: "_id", Value: 21}, {Key: "k", Value: 21}},
		bson.D{{Key: "_id", Value: 100}, {Key: "k", Value: 3}},
		bson.D{{Key: "_id", Value: 22}, {Key: "k", Value: -22}},
		bson.D{{Key: "_id", Value: 23}, {Key: "k", Value: 23}},
	}, options.InsertMany().SetOrdered(false))
	dupAt(err, 2)
	placed(20, "s0")
	placed(21, "s1")
	placed(22, "s0")
	placed(23, "s1")

	// An ordered update batch over both shards with an upsert: counts
	// summed, the upsert reported at its client index.
	set := bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}
	res, err := stale(3).BulkWrite(ctx, []mongo.WriteModel{
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "k", Value: -1}}).SetUpdate(set),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "k", Value: 1}}).SetUpdate(set),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "k", Value: 30}}).SetUpdate(set).SetUpsert(true),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "k", Value: -10}}).SetUpdate(set),
	})
	if err != nil {
		t.Fatalf("update batch through a stale router: %v", err)
	}
	if res.MatchedCount != 3 || res.ModifiedCount != 3 || res.UpsertedCount != 1 || res.UpsertedIDs[2] == nil {
		t.Fatalf("update batch: %+v", res)
	}
	if got := vc.count(t, "s1", bson.D{{Key: "k", Value: 30}, {Key: "x", Value: 1}}); got != 1 {
		t.Fatalf("upserted k=30 on s1: %d", got)
	}

	// findAndModify of a document that moved to s1.
	var got bson.M
	if err := stale(4).FindOneAndUpdate(ctx, bson.D{{Key: "k", Value: 11}}, bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: 2}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&got); err != nil {
		t.Fatalf("findAndModify through a stale router: %v", err)
	}
	if got["_id"] != int32(11) || got["y"] != int32(2) {
		t.Fatalf("findAndModify returned %v", got)
	}

	// createIndexes reaches s1, which the stale router did not know owns
	// chunks; dropIndexes removes it from both.
	if _, err := stale(5).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "x", Value: 1}}, Options: options.Index().SetName("x_1")}); err != nil {
		t.Fatalf("createIndexes through a stale router: %v", err)
	}
	hasX := func(shard string) bool {
		specs, err := vc.direct[shard].ListIndexes(ctx, "db.r")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			if n, _ := s.Lookup("name").StringValueOK(); n == "x_1" {
				return true
			}
		}
		return false
	}
	if !hasX("s0") || !hasX("s1") {
		t.Fatalf("index x_1 on s0 %v, on s1 %v; want both", hasX("s0"), hasX("s1"))
	}
	if err := stale(6).Indexes().DropOne(ctx, "x_1"); err != nil {
		t.Fatalf("dropIndexes through a stale router: %v", err)
	}
	if hasX("s0") || hasX("s1") {
		t.Fatalf("index x_1 left on s0 %v, on s1 %v", hasX("s0"), hasX("s1"))
	}
}
