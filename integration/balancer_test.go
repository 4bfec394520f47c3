package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/psdb/psdb/integration/checker"
	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/config"
)

// The balancer's end-to-end tests (issue 7) on real processes: shards
// joining a loaded cluster, a shard drained and removed, the balancer's
// leader router killed. Every test runs the history checker through the
// router while chunks move and checks afterwards that every acknowledged
// write is there exactly once.

// balancerOptions are the options of every balancer test: the balancer
// on, a round every second, chunks split past chunkSize.
func balancerOptions(chunkSize config.Size, opts ...harness.Option) []harness.Option {
	return append([]harness.Option{harness.WithBalancer(), harness.WithEdit(func(c *config.Cluster) {
		c.Sharding.BalancerInterval = time.Second
		if chunkSize > 0 {
			c.Sharding.ChunkSize = chunkSize
		}
	})}, opts...)
}

// majorityColl is the collection options of the tests' clients.
var majorityColl = options.Collection().SetWriteConcern(writeconcern.Majority()).SetReadPreference(readpref.Primary())

// removeUnused removes shards that own nothing; their processes keep
// running, so each is a running replica set not yet in the cluster.
func removeUnused(t *testing.T, ctx context.Context, rc *routerCluster, shards ...string) {
	t.Helper()
	for _, s := range shards {
		var rep bson.Raw
		harness.Eventually(t, 30*time.Second, func() error {
			var err error
			rep, err = tryAdmin(ctx, rc.clients[0], bson.D{{Key: "removeShard", Value: s}})
			return err
		})
		if st, _ := rep.Lookup("state").StringValueOK(); st != "completed" {
			t.Fatalf("removeShard %s of a shard owning nothing: %s", s, rep)
		}
	}
}

// TestBalancerAddShards is issue 7's first test (3 shards of 1 member, 1
// router, two of the shards removed at first): 100,000 documents in a
// hashed collection on one shard (chunks of 1 MiB, so the balancer's
// split pass cuts it into many chunks), then a second and a third
// running replica set added with addShard while the history checker
// writes and reads and a reader scans the bulk documents through the
// router. After each addShard the balancer evens out the chunk counts
// (threshold 2); then nothing acknowledged is lost or duplicated, the
// shards together hold each document once, and config.changelog and
// balancerStatus show the migrations. It logs the figures of
// docs/BENCHMARKS.md (load time, convergence times, migration
// throughput, critical sections).
func TestBalancerAddShards(t *testing.T) {
	c := harness.NewCluster(t, balancerOptions(config.MiB, harness.WithShards(3), harness.WithMembers(1), harness.WithRouters(1))...)
	rc := newBalancerCluster(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	const (
		db, collName = "bal", "docs"
		ns           = db + "." + collName
		bulk         = 100000
	)
	first, second, third := rc.shards[0], rc.shards[1], rc.shards[2]
	cli := rc.clients[0]
	removeUnused(t, ctx, rc, second, third)
	if got := rc.activeShards(t, ctx); len(got) != 1 || got[0] != first {
		t.Fatalf("active shards after removing %s and %s: %v", second, third, got)
	}

	runAdmin(t, ctx, cli, bson.D{{Key: "enableSharding", Value: db}, {Key: "primaryShard", Value: first}})
	shardCollectionVia(t, ctx, cli, ns, bson.D{{Key: "_id", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 1})
	coll := cli.Database(db).Collection(collName, majorityColl)
	loadTook := loadBulk(t, ctx, coll, bulk, 56)
	t.Logf("loaded %d documents (~100 B) in %v (%.0f docs/s)", bulk, loadTook.Round(time.Millisecond), bulk/loadTook.Seconds())
	// ~10 MB in chunks of at most 1 MiB: the split pass (once per
	// balancer interval) cuts the collection into at least 8 chunks
	// before any shard is added.
	harness.Eventually(t, 30*time.Second, func() error {
		if n := rc.chunkShards(t, ctx, ns)[first]; n < 8 {
			return fmt.Errorf("%d chunks of %s after the load, want at least 8", n, ns)
		}
		return nil
	})

	store := migStore{checker.NewMongoStore(coll)}
	work := startGatedWorkload(t, ctx, store, "bal", 4, 2)
	writerDocs := bson.D{{Key: "writer", Value: bson.D{{Key: "$exists", Value: true}}}}
	waitMore(t, ctx, coll, writerDocs, 50, 30*time.Second)
	reader := startBulkReader(t, ctx, coll, bulk)

	var converge []string
	for _, s := range []string{second, third} {
		added := time.Now()
		rc.addShardVia(t, ctx, cli, s)
		took := rc.waitBalanced(t, ctx, cli, ns, 100*time.Second)
		st, err := readBalancerStatus(ctx, cli)
		if err != nil {
			t.Fatal(err)
		}
		counts := rc.chunkShards(t, ctx, ns)
		// How much of the convergence was spent copying.
		var moves, moving int64
		for _, e := range readChangelog(t, ctx, cli) {
			if e.What == "moveChunk.commit" && !e.Time.Before(added) {
				moves++
				moving += e.detailInt("totalMillis")
			}
		}
		converge = append(converge, fmt.Sprintf("%s: %v (%d migrations, %v of them migrating)", s, took.Round(time.Millisecond),
			moves, time.Duration(moving)*time.Millisecond))
		t.Logf("added %s: balanced %v after addShard with %d migrations taking %v in all; chunks per shard %v, %d migrations and %d splits so far",
			s, took.Round(time.Millisecond), moves, time.Duration(moving)*time.Millisecond, counts, st.Moved, st.Splits)
		// The writers keep going after the moves.
		waitMore(t, ctx, coll, writerDocs, 20, 30*time.Second)
	}
	reader.stop()
	hist := work.stop()
	view := verifyWorkload(t, ctx, store, hist, "balancer: 2 addShard under load", "2 addShard")
	total := verifyScan(t, ctx, coll, bulk, view)

	// The shards together hold each document once, once the donors'
	// range deletions (asynchronous) are done.
	active := rc.activeShards(t, ctx)
	if len(active) != 3 {
		t.Fatalf("active shards at the end: %v", active)
	}
	var perShard []string
	harness.Eventually(t, 60*time.Second, func() error {
		var sum int64
		perShard = perShard[:0]
		for _, s := range active {
			n := rc.countOnShard(t, ctx, s, ns, bson.D{})
			if n == 0 {
				return fmt.Errorf("no document on %s", s)
			}
			sum += n
			perShard = append(perShard, fmt.Sprintf("%s=%d", s, n))
		}
		if sum != total {
			return fmt.Errorf("documents on the shards %v sum to %d, want %d", perShard, sum, total)
		}
		return nil
	})
	t.Logf("documents per shard: %s (total %d)", strings.Join(perShard, " "), total)

	// The history and the balancer's status.
	log := readChangelog(t, ctx, cli)
	commits, aborted := checkMoveHistory(t, log)
	adds := map[string]bool{}
	splits := 0
	for _, e := range log {
		switch e.What {
		case "addShard":
			n, _ := e.Details.Lookup("name").StringValueOK()
			adds[n] = true
		case "split", "multi-split":
			splits++
		}
	}
	if !adds[second] || !adds[third] {
		t.Errorf("config.changelog has no addShard entry for %s or %s: %v", second, third, adds)
	}
	if len(commits) == 0 {
		t.Fatalf("config.changelog has no moveChunk.commit")
	}
	for _, e := range aborted {
		t.Logf("aborted migration: %s", e.Details)
	}
	st, err := readBalancerStatus(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if st.Moved == 0 || st.Mode != "full" {
		t.Fatalf("balancerStatus after the moves: mode %q, migrationsSucceeded %d", st.Mode, st.Moved)
	}
	checkBalancerErrors(t, st, aborted)
	if len(st.Jumbo) > 0 {
		t.Errorf("jumbo chunks in a hashed collection: %v", st.Jumbo)
	}
	t.Logf("FIGURES addShard: load %d docs in %v; convergence after addShard %s; %d split entries, chunksSplit %d; "+
		"%d aborted migrations; %s",
		bulk, loadTook.Round(time.Millisecond), strings.Join(converge, ", "), splits, st.Splits, len(aborted), moveFigures(commits))
}

// TestBalancerRemoveShard is issue 7's second test (2 shards of 3
// members, 1 router): removeShard of a shard that owns chunks of a hashed collection and is the primary of
// their database, which also holds an unsharded collection, while the
// history checker writes and reads both collections through the router.
// The balancer drains the chunks (removeShard reports "started", then
// "ongoing" with the remaining chunks), movePrimary moves the database
// with its unsharded collection, the last removeShard reports
// "completed" and the shard's processes are stopped. Afterwards nothing
// acknowledged is lost or duplicated, every document of both
// collections is readable through the router, config.shards no longer
// lists the shard and config.databases names the new primary.
func TestBalancerRemoveShard(t *testing.T) {
	c := harness.NewCluster(t, balancerOptions(0, harness.WithShards(2), harness.WithMembers(3), harness.WithRouters(1))...)
	rc := newBalancerCluster(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	const (
		db                 = "rm"
		hashedName, plainN = "hashed", "plain"
		bulkHashed         = 20000
		bulkPlain          = 5000
	)
	keep, gone := rc.shards[0], rc.shards[1]
	cli := rc.clients[0]
	harness.Eventually(t, 30*time.Second, func() error {
		_, err := tryAdmin(ctx, cli, bson.D{{Key: "enableSharding", Value: db}, {Key: "primaryShard", Value: gone}})
		return err
	})
	shardCollectionVia(t, ctx, cli, db+"."+hashedName, bson.D{{Key: "_id", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 8})
	hashed := cli.Database(db).Collection(hashedName, majorityColl)
	plain := cli.Database(db).Collection(plainN, majorityColl)
	loadBulk(t, ctx, hashed, bulkHashed, 100)
	loadBulk(t, ctx, plain, bulkPlain, 100)
	before := rc.chunkShards(t, ctx, db+"."+hashedName)
	if before[keep] == 0 || before[gone] == 0 {
		t.Fatalf("chunks of %s.%s per shard %v: want some on %s and %s", db, hashedName, before, keep, gone)
	}
	if n := rc.countOnShard(t, ctx, gone, db+"."+plainN, bson.D{}); n != bulkPlain {
		t.Fatalf("%d documents of the unsharded collection on its primary %s, want %d", n, gone, bulkPlain)
	}

	storeH, storeP := migStore{checker.NewMongoStore(hashed)}, migStore{checker.NewMongoStore(plain)}
	workH := startGatedWorkload(t, ctx, storeH, "rmh", 3, 2)
	workP := startGatedWorkload(t, ctx, storeP, "rmp", 2, 1)
	writerDocs := bson.D{{Key: "writer", Value: bson.D{{Key: "$exists", Value: true}}}}
	waitMore(t, ctx, hashed, writerDocs, 30, 30*time.Second)
	waitMore(t, ctx, plain, writerDocs, 30, 30*time.Second)
	readerH := startBulkReader(t, ctx, hashed, bulkHashed)

	start := time.Now()
	rep := runAdmin(t, ctx, cli, bson.D{{Key: "removeShard", Value: gone}})
	if st, _ := rep.Lookup("state").StringValueOK(); st != "started" {
		t.Fatalf("first removeShard %s: %s, want state started", gone, rep)
	}
	t.Logf("removeShard %s: %s", gone, rep)
	harness.Eventually(t, 60*time.Second, func() error {
		rep, err := tryAdmin(ctx, cli, bson.D{{Key: "removeShard", Value: gone}})
		if err != nil {
			return err
		}
		if st, _ := rep.Lookup("state").StringValueOK(); st != "ongoing" {
			return fmt.Errorf("removeShard while the database is still on the shard: %s, want state ongoing", rep)
		}
		chunks, _ := rep.Lookup("remaining", "chunks").AsInt64OK()
		dbs, _ := rep.Lookup("remaining", "dbs").AsInt64OK()
		if chunks != 0 || dbs != 1 {
			return fmt.Errorf("remaining %d chunks and %d dbs: %s", chunks, dbs, rep)
		}
		return nil
	})
	drained := time.Since(start)
	if got := rc.chunkShards(t, ctx, db+"."+hashedName); got[gone] != 0 || got[keep] != before[keep]+before[gone] {
		t.Fatalf("chunks after the drain %v, want all %d on %s", got, before[keep]+before[gone], keep)
	}
	// The writers keep going after the drain.
	waitMore(t, ctx, hashed, writerDocs, 20, 30*time.Second)

	mpStart := time.Now()
	var mp bson.Raw
	harness.Eventually(t, 30*time.Second, func() error {
		var err error
		mp, err = tryAdmin(ctx, cli, bson.D{{Key: "movePrimary", Value: db}, {Key: "to", Value: keep}})
		return err
	})
	mpTook := time.Since(mpStart)
	rep = runAdmin(t, ctx, cli, bson.D{{Key: "removeShard", Value: gone}})
	if st, _ := rep.Lookup("state").StringValueOK(); st != "completed" {
		t.Fatalf("removeShard %s after the drain and movePrimary: %s, want state completed", gone, rep)
	}
	t.Logf("removeShard %s: drained in %v, movePrimary in %v (%s), completed %v after the first removeShard",
		gone, drained.Round(time.Millisecond), mpTook.Round(time.Millisecond), mp, time.Since(start).Round(time.Millisecond))

	// Its processes stop; the workload goes on without them.
	for _, p := range c.ByRole(config.RoleShard, gone) {
		p.Stop()
	}
	waitMore(t, ctx, hashed, writerDocs, 20, 30*time.Second)
	waitMore(t, ctx, plain, writerDocs, 20, 30*time.Second)
	readerH.stop()
	histH, histP := workH.stop(), workP.stop()

	viewH := verifyWorkload(t, ctx, storeH, histH, "removeShard under load: sharded collection", "drain, movePrimary, stop")
	viewP := verifyWorkload(t, ctx, storeP, histP, "removeShard under load: unsharded collection", "drain, movePrimary, stop")
	totalH := verifyScan(t, ctx, hashed, bulkHashed, viewH)
	totalP := verifyScan(t, ctx, plain, bulkPlain, viewP)
	if n := rc.countOnShard(t, ctx, keep, db+"."+hashedName, bson.D{}); n != totalH {
		t.Fatalf("%d documents of %s on %s, want all %d", n, hashedName, keep, totalH)
	}
	if n := rc.countOnShard(t, ctx, keep, db+"."+plainN, bson.D{}); n != totalP {
		t.Fatalf("%d documents of %s on %s, want all %d", n, plainN, keep, totalP)
	}

	// The catalog, as the router shows it.
	cur, err := cli.Database("config").Collection("shards").Find(ctx, bson.D{})
	if err != nil {
		t.Fatalf("find config.shards: %v", err)
	}
	var shards []bson.Raw
	if err := cur.All(ctx, &shards); err != nil {
		t.Fatalf("read config.shards: %v", err)
	}
	if len(shards) != 1 || shards[0].Lookup("_id").StringValue() != keep {
		t.Fatalf("config.shards after removeShard %s: %v, want only %s", gone, shards, keep)
	}
	var dbDoc bson.Raw
	if err := cli.Database("config").Collection("databases").FindOne(ctx, bson.D{{Key: "_id", Value: db}}).Decode(&dbDoc); err != nil {
		t.Fatalf("config.databases: %v", err)
	}
	if got := dbDoc.Lookup("primary").StringValue(); got != keep {
		t.Fatalf("config.databases primary of %s: %q, want %q", db, got, keep)
	}
	log := readChangelog(t, ctx, cli)
	commits, aborted := checkMoveHistory(t, log)
	drains, removed := 0, false
	for _, e := range commits {
		if e.Details.Lookup("from").StringValue() == gone {
			drains++
		}
	}
	for _, e := range log {
		if e.What == "removeShard" && e.Details.Lookup("shard").StringValue() == gone {
			removed = true
		}
	}
	if drains != before[gone] || !removed {
		t.Fatalf("config.changelog: %d moveChunk.commit off %s (want %d), removeShard entry %t", drains, gone, before[gone], removed)
	}
	st, err := readBalancerStatus(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	checkBalancerErrors(t, st, aborted)
	t.Logf("FIGURES removeShard: %d chunks drained in %v; movePrimary of %d+%d documents in %v; %s",
		before[gone], drained.Round(time.Millisecond), bulkPlain, len(viewP.IDs), mpTook.Round(time.Millisecond), moveFigures(commits))
}

// TestBalancerFailover (2 shards of 1 member, 2 routers) kills the
// balancer's leading router while the history checker writes and reads
// through the other router and a newly added shard waits for chunks:
// between migrations (idle), and in the middle of one, held after its
// clone phase by the moveChunkHangAfterPhase fail point (inClone). The
// other router takes the balancer's lead within the election lease and
// balances the collection, and nothing acknowledged is lost or
// duplicated.
func TestBalancerFailover(t *testing.T) {
	for _, tc := range []struct {
		name         string
		midMigration bool
	}{{"idle", false}, {"inClone", true}} {
		t.Run(tc.name, func(t *testing.T) { testBalancerFailover(t, tc.midMigration) })
	}
}

func testBalancerFailover(t *testing.T, midMigration bool) {
	c := harness.NewCluster(t, balancerOptions(0, harness.WithShards(2), harness.WithMembers(1), harness.WithRouters(2),
		harness.WithRouterArgs("--enable-test-commands"))...)
	rc := newBalancerCluster(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	const (
		db, collName = "fo", "docs"
		ns           = db + "." + collName
		bulk         = 20000
	)
	first, second := rc.shards[0], rc.shards[1]
	removeUnused(t, ctx, rc, second)
	runAdmin(t, ctx, rc.clients[0], bson.D{{Key: "enableSharding", Value: db}, {Key: "primaryShard", Value: first}})
	shardCollectionVia(t, ctx, rc.clients[0], ns, bson.D{{Key: "_id", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 8})
	loadBulk(t, ctx, rc.clients[0].Database(db).Collection(collName, majorityColl), bulk, 100)

	// Which router leads, and the other one.
	var leader string
	harness.Eventually(t, 30*time.Second, func() error {
		st, err := readBalancerStatus(ctx, rc.clients[0])
		if err != nil {
			return err
		}
		if leader = st.Leader; leader == "" {
			return fmt.Errorf("no balancer leader yet")
		}
		return nil
	})
	li := -1
	for i, r := range rc.routers {
		if r.Name() == leader {
			li = i
		}
	}
	if li < 0 {
		t.Fatalf("balancerStatus names %q as the leader, not one of the routers", leader)
	}
	si := 1 - li
	survivor, cliL, cliS := rc.routers[si].Name(), rc.clients[li], rc.clients[si]

	coll := cliS.Database(db).Collection(collName, majorityColl)
	store := migStore{checker.NewMongoStore(coll)}
	work := startGatedWorkload(t, ctx, store, "fo", 3, 2)
	writerDocs := bson.D{{Key: "writer", Value: bson.D{{Key: "$exists", Value: true}}}}
	waitMore(t, ctx, coll, writerDocs, 30, 30*time.Second)
	reader := startBulkReader(t, ctx, coll, bulk)

	if midMigration {
		// The leader starts a migration to the new shard and hangs after
		// its clone; then it dies.
		runAdmin(t, ctx, cliL, bson.D{{Key: "configureFailPoint", Value: "moveChunkHangAfterPhase"}, {Key: "mode", Value: "alwaysOn"},
			{Key: "data", Value: bson.D{{Key: "phase", Value: "clone"}}}})
		rc.addShardVia(t, ctx, cliS, second)
		harness.Eventually(t, 30*time.Second, func() error {
			rep, err := tryAdmin(ctx, cliL, bson.D{{Key: "configureFailPoint", Value: "moveChunkHangAfterPhase"}})
			if err != nil {
				return err
			}
			if n, _ := rep.Lookup("count").AsInt64OK(); n < 1 {
				return fmt.Errorf("the leader's migration has not reached the fail point: %s", rep)
			}
			return nil
		})
	}
	rc.routers[li].Kill()
	killed := time.Now()
	var takeover time.Duration
	harness.Eventually(t, 15*time.Second, func() error {
		st, err := readBalancerStatus(ctx, cliS)
		if err != nil {
			return err
		}
		if st.Leader != survivor {
			return fmt.Errorf("balancer leader %q, want %s", st.Leader, survivor)
		}
		takeover = time.Since(killed)
		return nil
	})
	t.Logf("%s killed (in a migration's clone phase: %t); %s leads the balancer %v later", leader, midMigration, survivor, takeover.Round(time.Millisecond))
	if !midMigration {
		rc.addShardVia(t, ctx, cliS, second)
	}
	took := rc.waitBalanced(t, ctx, cliS, ns, 60*time.Second)
	t.Logf("balanced %v after the takeover: chunks per shard %v", took.Round(time.Millisecond), rc.chunkShards(t, ctx, ns))
	waitMore(t, ctx, coll, writerDocs, 20, 30*time.Second)
	reader.stop()
	hist := work.stop()
	scenario := "balancer leader SIGKILL between migrations"
	if midMigration {
		scenario = "balancer leader SIGKILL after a migration's clone"
	}
	view := verifyWorkload(t, ctx, store, hist, scenario, "1 router kill")
	total := verifyScan(t, ctx, coll, bulk, view)
	harness.Eventually(t, 60*time.Second, func() error {
		a, b := rc.countOnShard(t, ctx, first, ns, bson.D{}), rc.countOnShard(t, ctx, second, ns, bson.D{})
		if a+b != total || a == 0 || b == 0 {
			return fmt.Errorf("documents on the shards: %d on %s + %d on %s, want %d with some on each", a, first, b, second, total)
		}
		return nil
	})

	log := readChangelog(t, ctx, cliS)
	commits, aborted := checkMoveHistory(t, log, leader)
	bySurvivor := 0
	for _, e := range commits {
		if e.Server == survivor {
			bySurvivor++
		}
	}
	if bySurvivor == 0 {
		t.Fatalf("no migration committed by %s after the takeover", survivor)
	}
	st, err := readBalancerStatus(ctx, cliS)
	if err != nil {
		t.Fatal(err)
	}
	checkBalancerErrors(t, st, aborted)
	t.Logf("FIGURES failover: takeover %v after SIGKILL of the leader, balanced %v later; %s",
		takeover.Round(time.Millisecond), took.Round(time.Millisecond), moveFigures(commits))
}
