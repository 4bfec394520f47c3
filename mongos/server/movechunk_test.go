package server

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/mongos/balancer"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	shardserver "github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/storage"
	"github.com/psdb/psdb/shardd/versions"
)

// moveWriter inserts single documents through the router until stopped and
// keeps the _ids whose insert was acknowledged. Stopping lets the insert
// in flight finish (a cancelled insert could still land after the check).
type moveWriter struct {
	stopped atomic.Bool
	done    chan struct{}
	mu      sync.Mutex
	acked   []int64
	errs    int
}

func startMoveWriter(ctx context.Context, coll *mongo.Collection, first int64, mkDoc func(id int64) bson.D) *moveWriter {
	w := &moveWriter{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for id := first; ctx.Err() == nil && !w.stopped.Load(); id++ {
			if _, err := coll.InsertOne(ctx, mkDoc(id)); err != nil {
				w.mu.Lock()
				w.errs++
				w.mu.Unlock()
				continue
			}
			w.mu.Lock()
			w.acked = append(w.acked, id)
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *moveWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *moveWriter) stop() []int64 {
	w.stopped.Store(true)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// idCounts reads every document of coll through the router: _id → times seen.
func idCounts(t *testing.T, ctx context.Context, coll *mongo.Collection) map[int64]int {
	t.Helper()
	cur, err := coll.Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	out := map[int64]int{}
	for _, d := range docs {
		out[d.Lookup("_id").AsInt64()]++
	}
	return out
}

// checkExactlyOnce fails unless every id of want is seen exactly once and
// no document is seen twice.
func checkExactlyOnce(t *testing.T, seen map[int64]int, want []int64) {
	t.Helper()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("_id %d seen %d times through the router", id, n)
		}
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("acknowledged _id %d seen %d times through the router", id, seen[id])
		}
	}
}

// chunkOwner returns the shard of the chunk of ns whose min is min.
func chunkOwner(t *testing.T, ctx context.Context, cat *catalog.Catalog, ns string, min bson.Raw) string {
	t.Helper()
	coll, err := cat.GetCollection(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	chunks, _, err := cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if bytes.Equal(c.Min, min) {
			return c.Shard
		}
	}
	t.Fatalf("no chunk of %s starts at %s", ns, min)
	return ""
}

func runAdmin(t *testing.T, ctx context.Context, db *mongo.Database, cmd bson.D) bson.Raw {
	t.Helper()
	res, err := db.Client().Database("admin").RunCommand(ctx, cmd).Raw()
	if err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
	return res
}

func adminErrCode(ctx context.Context, db *mongo.Database, cmd bson.D) int32 {
	err := db.Client().Database("admin").RunCommand(ctx, cmd).Err()
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return ce.Code
	}
	if err == nil {
		return 0
	}
	return -1
}

// A ranged and a hashed collection each move a chunk from s0 to s1 with
// moveChunk while a writer inserts into that chunk through the router:
// every acknowledged document is found exactly once, the catalog names the
// recipient, and the donor holds nothing of the range after the deletion
// (_waitForDelete). The balancer's Mover then moves the ranged chunk back.
func TestMoveChunk(t *testing.T) {
	vc := startVersionedCluster(t)
	ctx := testCtx(t)
	if _, _, err := vc.cat.ShardCollection(ctx, "db.h", catalog.ShardOptions{Key: catalog.ShardKey{{Field: "h", Hashed: true}}, NumInitialChunks: 2}); err != nil {
		t.Fatal(err)
	}
	db, sb := vc.router(t, nil)

	// Ranged: 3000 documents on s0, split at k = 1500, [1500, MaxKey) moves.
	r := db.Collection("r")
	docs := make([]any, 3000)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int64(i)}, {Key: "k", Value: int64(i)}, {Key: "pad", Value: "xxxxxxxxxxxxxxxxxxxxxxxx"}}
	}
	if _, err := r.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	runAdmin(t, ctx, db, bson.D{{Key: "split", Value: "db.r"}, {Key: "middle", Value: bson.D{{Key: "k", Value: int64(1500)}}}})

	// Errors first.
	for _, c := range []struct {
		cmd  bson.D
		code int32
	}{
		{bson.D{{Key: "moveChunk", Value: "db.r"}, {Key: "find", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "to", Value: "nope"}}, int32(mongoerr.ShardNotFound)},
		{bson.D{{Key: "moveChunk", Value: "db.u"}, {Key: "find", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "to", Value: "s1"}}, int32(mongoerr.NamespaceNotSharded)},
		{bson.D{{Key: "moveChunk", Value: "db.r"}, {Key: "find", Value: bson.D{{Key: "k", Value: 1}}}}, 40414},
		{bson.D{{Key: "moveChunk", Value: "db.r"}, {Key: "to", Value: "s1"}}, int32(mongoerr.BadValue)},
		{bson.D{{Key: "moveChunk", Value: "db.r"}, {Key: "find", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "to", Value: "s0"}}, 0}, // already there: no-op
		{bson.D{{Key: "moveChunk", Value: "db.r"}, {Key: "bounds", Value: bson.A{bson.D{{Key: "k", Value: 0}}, bson.D{{Key: "k", Value: 7}}}}, {Key: "to", Value: "s1"}}, int32(mongoerr.BadValue)},
	} {
		if got := adminErrCode(ctx, db, c.cmd); got != c.code {
			t.Errorf("%v: code %d, want %d", c.cmd, got, c.code)
		}
	}

	w := startMoveWriter(ctx, r, 100000, func(id int64) bson.D {
		return bson.D{{Key: "_id", Value: id}, {Key: "k", Value: id}}
	})
	waitFor(t, "the writer's first inserts", 10*time.Second, func() bool { return w.count() > 20 })
	rep := runAdmin(t, ctx, db, bson.D{{Key: "moveChunk", Value: "db.r"}, {Key: "find", Value: bson.D{{Key: "k", Value: int64(2000)}}},
		{Key: "to", Value: "s1"}, {Key: "_waitForDelete", Value: true}})
	if _, err := rep.LookupErr("millis"); err != nil {
		t.Errorf("moveChunk reply without millis: %s", rep)
	}
	n0 := w.count()
	waitFor(t, "inserts after the move", 10*time.Second, func() bool { return w.count() > n0+20 })
	acked := w.stop()
	want := append(acked, func() []int64 {
		ids := make([]int64, 3000)
		for i := range ids {
			ids[i] = int64(i)
		}
		return ids
	}()...)
	seen := idCounts(t, ctx, r)
	checkExactlyOnce(t, seen, want)
	if w.errs == 0 && len(seen) != len(want) {
		t.Errorf("the router sees %d documents, %d were acknowledged", len(seen), len(want))
	}
	inRange := 0 // an insert cancelled in flight may have landed: count what the router sees
	for id := range seen {
		if id >= 1500 {
			inRange++
		}
	}
	min1500 := doc(t, bson.D{{Key: "k", Value: int64(1500)}})
	if got := chunkOwner(t, ctx, vc.cat, "db.r", min1500); got != "s1" {
		t.Fatalf("chunk [1500, MaxKey) on %s after the move, want s1", got)
	}
	moved := doc(t, bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: int64(1500)}}}})
	if n, err := vc.direct["s0"].Count(ctx, "db.r", moved, 0, 0); err != nil || n != 0 {
		t.Fatalf("donor holds %d documents of the moved range (%v)", n, err)
	}
	if n, err := vc.direct["s1"].Count(ctx, "db.r", moved, 0, 0); err != nil || n != int64(inRange) {
		t.Fatalf("recipient holds %d documents of the moved range, the router sees %d (%v)", n, inRange, err)
	}

	// Hashed: 2000 documents; [MinKey, 0) is on s0 (round robin) and moves
	// by its bounds.
	h := db.Collection("h")
	docs = make([]any, 2000)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int64(i)}, {Key: "h", Value: int64(i)}}
	}
	if _, err := h.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	hmin := doc(t, bson.D{{Key: "h", Value: bson.MinKey{}}})
	if got := chunkOwner(t, ctx, vc.cat, "db.h", hmin); got != "s0" {
		t.Fatalf("hashed chunk [MinKey, 0) on %s, want s0", got)
	}
	hw := startMoveWriter(ctx, h, 100000, func(id int64) bson.D {
		return bson.D{{Key: "_id", Value: id}, {Key: "h", Value: rand.Int64()}}
	})
	waitFor(t, "the hashed writer's first inserts", 10*time.Second, func() bool { return hw.count() > 20 })
	runAdmin(t, ctx, db, bson.D{{Key: "moveChunk", Value: "db.h"},
		{Key: "bounds", Value: bson.A{bson.D{{Key: "h", Value: bson.MinKey{}}}, bson.D{{Key: "h", Value: int64(0)}}}},
		{Key: "to", Value: "s1"}, {Key: "_waitForDelete", Value: true}})
	n0 = hw.count()
	waitFor(t, "hashed inserts after the move", 10*time.Second, func() bool { return hw.count() > n0+20 })
	hacked := hw.stop()
	hwant := hacked
	for i := range 2000 {
		hwant = append(hwant, int64(i))
	}
	checkExactlyOnce(t, idCounts(t, ctx, h), hwant)
	if got := chunkOwner(t, ctx, vc.cat, "db.h", hmin); got != "s1" {
		t.Fatalf("hashed chunk on %s after the move, want s1", got)
	}
	if n, err := vc.direct["s0"].Count(ctx, "db.h", nil, 0, 0); err != nil || n != 0 {
		t.Fatalf("donor holds %d documents of db.h after giving away its only chunk (%v)", n, err)
	}

	// The balancer's Mover moves [1500, MaxKey) of db.r back to s0.
	coll, err := vc.cat.GetCollection(ctx, "db.r")
	if err != nil {
		t.Fatal(err)
	}
	chunks, _, err := vc.cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatal(err)
	}
	var back catalog.Chunk
	for _, c := range chunks {
		if bytes.Equal(c.Min, min1500) {
			back = c
		}
	}
	mv := &Mover{Backend: sb, Logger: logging.Nop()}
	if err := mv.Move(ctx, balancer.Migration{NS: "db.r", Chunk: back, From: "s1", To: "s0", Version: coll.CollVersion(), Reason: balancer.ReasonBalance}); err != nil {
		t.Fatal(err)
	}
	if got := chunkOwner(t, ctx, vc.cat, "db.r", min1500); got != "s0" {
		t.Fatalf("chunk on %s after the Mover, want s0", got)
	}
	checkExactlyOnce(t, idCounts(t, ctx, r), want)
}

// A migration whose commit conflicts (the chunk is split in the catalog
// just before the commit) aborts: the catalog still gives the range to
// the donor, the recipient dropped its copy, and every document is found
// exactly once through the router.
func TestMoveChunkAbort(t *testing.T) {
	vc := startVersionedCluster(t)
	ctx := testCtx(t)
	db, sb := vc.router(t, nil)
	r := db.Collection("r")
	docs := make([]any, 2000)
	want := make([]int64, len(docs))
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int64(i)}, {Key: "k", Value: int64(i)}}
		want[i] = int64(i)
	}
	if _, err := r.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	coll, err := vc.cat.GetCollection(ctx, "db.r")
	if err != nil {
		t.Fatal(err)
	}
	chunks, _, err := vc.cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 1 {
		t.Fatalf("%d chunks, want 1", len(chunks))
	}
	chunk := chunks[0]
	var hookErr error
	_, err = MoveChunk(ctx, sb, vc.cat, "db.r", coll.Key, chunk, coll.Epoch, "s1", MoveChunkOptions{
		Logger: logging.Nop(),
		beforeCommit: func() {
			_, hookErr = vc.cat.SplitChunk(ctx, "db.r", chunk, doc(t, bson.D{{Key: "k", Value: int64(1000)}}))
		},
	})
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if mongoerr.CodeOf(err) != mongoerr.ConflictingOperationInProgress {
		t.Fatalf("MoveChunk after a concurrent split: %v, want ConflictingOperationInProgress", err)
	}
	chunks, _, err = vc.cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if c.Shard != "s0" {
			t.Errorf("chunk %s moved by an aborted migration", c)
		}
	}
	if n, err := vc.direct["s1"].Count(ctx, "db.r", nil, 0, 0); err != nil || n != 0 {
		t.Fatalf("recipient kept %d documents of an aborted migration (%v)", n, err)
	}
	if n, err := vc.direct["s0"].Count(ctx, "db.r", nil, 0, 0); err != nil || n != 2000 {
		t.Fatalf("donor holds %d documents after an aborted migration, want 2000 (%v)", n, err)
	}
	checkExactlyOnce(t, idCounts(t, ctx, r), want)
	// The donor's critical section was released: writes go on.
	if _, err := r.InsertOne(ctx, bson.D{{Key: "_id", Value: int64(5000)}, {Key: "k", Value: int64(5000)}}); err != nil {
		t.Fatal(err)
	}
	// And a second attempt of the (now split) chunk succeeds.
	chunks, _, err = vc.cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatal(err)
	}
	coll, err = vc.cat.GetCollection(ctx, "db.r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MoveChunk(ctx, sb, vc.cat, "db.r", coll.Key, chunks[1], coll.Epoch, "s1", MoveChunkOptions{Logger: logging.Nop(), WaitForDelete: true}); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, idCounts(t, ctx, r), append(want, 5000))
	if n, err := vc.direct["s1"].Count(ctx, "db.r", nil, 0, 0); err != nil || n != 1001 {
		t.Fatalf("recipient holds %d documents, want 1001 (%v)", n, err)
	}
}

// addKillableShard serves one more versioned shardd, registers it as
// shard name and returns a function that kills its gRPC server (the
// member stops answering; its store closes at cleanup).
func (vc *versionedCluster) addKillableShard(t *testing.T, name string) (kill func()) {
	t.Helper()
	ctx := testCtx(t)
	chk, err := versions.New(versions.Options{Catalog: vc.cat, Shard: name, Logger: logging.Nop()})
	if err != nil {
		t.Fatal(err)
	}
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
	var once sync.Once
	kill = func() { once.Do(func() { g.Stop(); <-done }) }
	t.Cleanup(func() {
		kill()
		srv.Close()
		chk.Close()
		if err := eng.Close(); err != nil {
			t.Error(err)
		}
	})
	if _, err := vc.cat.AddShard(ctx, name, []catalog.Member{{Name: name + "-a", Addr: ln.Addr().String()}}, catalog.ShardActive); err != nil {
		t.Fatal(err)
	}
	return kill
}

// A recipient whose server dies after the clone aborts the migration: the
// catalog is unchanged, the donor's documents are all there, and the
// donor's session was ended (the same range then moves to another shard).
func TestMoveChunkRecipientDies(t *testing.T) {
	vc := startVersionedCluster(t)
	kill := vc.addKillableShard(t, "s2")
	ctx := testCtx(t)
	db, sb := vc.router(t, nil)
	r := db.Collection("r")
	docs := make([]any, 2000)
	want := make([]int64, len(docs))
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int64(i)}, {Key: "k", Value: int64(i)}}
		want[i] = int64(i)
	}
	if _, err := r.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	coll, err := vc.cat.GetCollection(ctx, "db.r")
	if err != nil {
		t.Fatal(err)
	}
	chunks, _, err := vc.cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatal(err)
	}
	w := startMoveWriter(ctx, r, 100000, func(id int64) bson.D { return bson.D{{Key: "_id", Value: id}, {Key: "k", Value: id}} })
	waitFor(t, "the writer's first inserts", 10*time.Second, func() bool { return w.count() > 20 })
	_, err = MoveChunk(ctx, sb, vc.cat, "db.r", coll.Key, chunks[0], coll.Epoch, "s2", MoveChunkOptions{
		Logger: logging.Nop(),
		afterPhase: func(phase string) {
			if phase == "clone" {
				kill()
			}
		},
	})
	if err == nil {
		t.Fatal("a migration to a recipient killed after the clone succeeded")
	}
	n0 := w.count()
	waitFor(t, "inserts after the abort", 10*time.Second, func() bool { return w.count() > n0+20 })
	acked := w.stop()
	after, _, err := vc.cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].Shard != "s0" || after[0].ModRevision != chunks[0].ModRevision {
		t.Fatalf("catalog changed by an aborted migration: %v", after)
	}
	checkExactlyOnce(t, idCounts(t, ctx, r), append(want, acked...))
	if _, err := MoveChunk(ctx, sb, vc.cat, "db.r", coll.Key, after[0], coll.Epoch, "s1", MoveChunkOptions{Logger: logging.Nop()}); err != nil {
		t.Fatalf("moving the range after an aborted migration: %v", err)
	}
	checkExactlyOnce(t, idCounts(t, ctx, r), append(want, acked...))
}
