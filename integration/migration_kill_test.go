package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/psdb/psdb/integration/checker"
	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// migKillCase is one phase of TestMigrationKill: the fail point hangs the
// migration after hangAfter succeeded, so the donor primary is killed
// while the migration is about to run (is in) phase.
type migKillCase struct {
	phase, hangAfter string
}

// TestMigrationKill is issue 7's "donor primary SIGKILLed in each
// migration phase" test on real processes (1 config server, 2 shards x 3
// members, 2 routers with test commands). For each phase, on a fresh
// hashed collection (one chunk [MinKey, 0) of two on the donor, 3,000
// bulk documents), router A's moveChunk of [MinKey, 0) hangs on the
// moveChunkHangAfterPhase fail point after the phase before the one under
// test (after start: the clone; after clone: the catch-up; after
// enterCriticalSection: in the critical section; after commit: after the
// commit, before range deletion is scheduled and the section released),
// while the history checker writes (w:majority, retryable) and reads
// through router B. The donor's primary is SIGKILLed, the fail point
// turned off, moveChunk finishes (an error before the commit, success
// after it), the member restarts. Then: config.chunks gives the chunk to
// the shard moveChunk's answer implies, every acknowledged write is
// found exactly once through both routers, full scans hold each bulk
// document once (the other shard's orphans hidden), the donor's copy of a
// committed range is eventually deleted by its new primary, and a second
// moveChunk of the chunk succeeds (no critical section or session left
// stuck).
func TestMigrationKill(t *testing.T) {
	rc := newRouterCluster(t, harness.WithRouterArgs("--enable-test-commands"))
	for _, tc := range []migKillCase{
		{phase: "clone", hangAfter: "start"},
		{phase: "catchUp", hangAfter: "clone"},
		{phase: "criticalSection", hangAfter: "enterCriticalSection"},
		{phase: "afterCommit", hangAfter: "commit"},
		// The range deletion is recorded on the donor, which dies: its next
		// primary must run the recorded task by itself.
		{phase: "rangeDeletion", hangAfter: "scheduleRangeDeletion"},
	} {
		t.Run(tc.phase, func(t *testing.T) { migrationKill(t, rc, tc) })
	}
}

// failPointCount reads the times router cli's fail point was entered.
func failPointCount(ctx context.Context, cli *mongo.Client, name string) (int64, error) {
	raw, err := cli.Database("admin").RunCommand(ctx, bson.D{{Key: "configureFailPoint", Value: name}}).Raw()
	if err != nil {
		return 0, err
	}
	n, ok := raw.Lookup("count").AsInt64OK()
	if !ok {
		return 0, fmt.Errorf("configureFailPoint reply without a count: %s", raw)
	}
	return n, nil
}

func migrationKill(t *testing.T, rc *routerCluster, tc migKillCase) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const (
		bulk     = 3000
		collName = "docs"
		fp       = "moveChunkHangAfterPhase"
	)
	db := "mk_" + strings.ToLower(tc.phase)
	ns := db + "." + collName
	donor, recipient := rc.shards[0], rc.shards[1]
	cliA, cliB := rc.clients[0], rc.clients[1]
	bounds := bson.A{bson.D{{Key: "_id", Value: bson.MinKey{}}}, bson.D{{Key: "_id", Value: int64(0)}}}
	moveCmd := func(to string, wait bool) bson.D {
		return bson.D{{Key: "moveChunk", Value: ns}, {Key: "bounds", Value: bounds}, {Key: "to", Value: to}, {Key: "_waitForDelete", Value: wait}}
	}

	runAdmin(t, ctx, cliA, bson.D{{Key: "enableSharding", Value: db}, {Key: "primaryShard", Value: donor}})
	shardCollectionVia(t, ctx, cliA, ns, bson.D{{Key: "_id", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 1})
	runAdmin(t, ctx, cliA, bson.D{{Key: "split", Value: ns}, {Key: "middle", Value: bson.D{{Key: "_id", Value: int64(0)}}}})
	rc.flush(t, ctx)
	opts := options.Collection().SetWriteConcern(writeconcern.Majority()).SetReadPreference(readpref.Primary())
	collA := cliA.Database(db).Collection(collName, opts)
	collB := cliB.Database(db).Collection(collName, opts)
	for from := 0; from < bulk; from += 1000 {
		docs := make([]any, 1000)
		for i := range docs {
			v := from + i
			docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("%s%05d", migBulkPrefix, v)}, {Key: "v", Value: v},
				{Key: "pad", Value: strings.Repeat("x", 100)}}
		}
		if _, err := collA.InsertMany(ctx, docs, unorderedInsert); err != nil {
			t.Fatalf("bulk load at %d: %v", from, err)
		}
	}

	// The checker through router B, for a fixed duration (its counts are
	// exact only if no write is cancelled).
	storeA, storeB := migStore{checker.NewMongoStore(collA)}, migStore{checker.NewMongoStore(collB)}
	var (
		hist   *checker.History
		runErr error
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		hist, runErr = checker.Run(ctx, storeB, checker.Workload{
			Writers: 4, Readers: 2, Duration: 7 * time.Second, KeyPrefix: "mk" + tc.phase, OpTimeout: 20 * time.Second,
		})
	}()
	defer func() { cancel(); <-done }()
	harness.Eventually(t, 20*time.Second, func() error {
		n, err := collA.CountDocuments(ctx, bson.D{{Key: "writer", Value: bson.D{{Key: "$exists", Value: true}}}})
		if err != nil || n < 30 {
			return fmt.Errorf("%d checker documents so far (%v)", n, err)
		}
		return nil
	})

	// Hang router A's migration after tc.hangAfter.
	before := runAdmin(t, ctx, cliA, bson.D{{Key: "configureFailPoint", Value: fp}, {Key: "mode", Value: "alwaysOn"},
		{Key: "data", Value: bson.D{{Key: "phase", Value: tc.hangAfter}}}}).Lookup("count").AsInt64()
	released := false
	release := func() {
		if !released {
			runAdmin(t, context.WithoutCancel(ctx), cliA, bson.D{{Key: "configureFailPoint", Value: fp}, {Key: "mode", Value: "off"}})
			released = true
		}
	}
	defer release()
	moveErr := make(chan error, 1)
	go func() {
		moveErr <- cliA.Database("admin").RunCommand(ctx, moveCmd(recipient, false)).Err()
	}()
	harness.Eventually(t, 30*time.Second, func() error {
		n, err := failPointCount(ctx, cliA, fp)
		if err != nil {
			return err
		}
		if n <= before {
			select {
			case err := <-moveErr:
				moveErr <- err
				return fmt.Errorf("moveChunk ended before the fail point was entered: %v", err)
			default:
			}
			return fmt.Errorf("fail point entered %d times, want more than %d", n, before)
		}
		return nil
	})

	// The donor's primary dies; the migration goes on into tc.phase.
	victim := rc.primaryOf(t, donor)
	rc.c.Process(victim).Kill()
	killedAt := time.Now()
	release()
	var mErr error
	select {
	case mErr = <-moveErr:
	case <-ctx.Done():
		t.Fatalf("moveChunk did not finish after the kill in %s", tc.phase)
	}
	t.Logf("killed donor primary %s after phase %s; moveChunk ended %v later: %v",
		victim, tc.hangAfter, time.Since(killedAt).Round(time.Millisecond), mErr)
	harness.Eventually(t, 30*time.Second, func() error {
		p, err := rc.cat.GetPrimary(ctx, donor)
		if err != nil {
			return err
		}
		if p.Member == victim {
			return fmt.Errorf("%s still holds the lease", victim)
		}
		return nil
	})
	rc.c.Process(victim).Start()

	// Ownership: exactly one chunk [MinKey, 0), on the shard moveChunk's
	// answer names.
	_, ch := rc.chunkAt(t, ctx, ns, bson.D{{Key: "_id", Value: bson.MinKey{}}})
	if got := rc.chunkShards(t, ctx, ns); got[donor]+got[recipient] != 2 {
		t.Fatalf("chunks of %s per shard: %v, want 2 in all", ns, got)
	}
	owner := ch.Shard
	switch {
	case mErr == nil && owner != recipient:
		t.Fatalf("moveChunk succeeded but config.chunks gives %s to %s", ch, owner)
	case mErr != nil && strings.Contains(mErr.Error(), "outcome unknown"):
		t.Logf("commit outcome unknown; the catalog gives the chunk to %s", owner)
	case mErr != nil && owner != donor:
		t.Fatalf("moveChunk failed (%v) but config.chunks gives %s to %s", mErr, ch, owner)
	}
	postCommit := tc.hangAfter == "commit" || tc.hangAfter == "scheduleRangeDeletion"
	if postCommit && owner != recipient {
		t.Fatalf("killed after the commit, yet the chunk is on %s (moveChunk: %v)", owner, mErr)
	}
	if !postCommit && mErr == nil {
		t.Fatalf("moveChunk succeeded although the donor primary was killed before the commit (after %s)", tc.hangAfter)
	}
	nonOwner := recipient
	if owner == recipient {
		nonOwner = donor
	}

	<-done
	if runErr != nil {
		t.Fatal(runErr)
	}
	viewA, err := checker.Collect(ctx, "router A", storeA, hist)
	if err != nil {
		t.Fatal(err)
	}
	viewB, err := checker.Collect(ctx, "router B", storeB, hist)
	if err != nil {
		t.Fatal(err)
	}
	rep := checker.VerifyViews(ctx, hist, viewA, viewB)
	rep.Scenario, rep.Faults = "migration: donor primary SIGKILL in "+tc.phase, "1 kill"
	t.Log(rep.String())
	if !rep.OK() {
		t.Fatalf("history check failed:\n%s", rep)
	}
	if len(rep.Acked) < 50 {
		t.Fatalf("only %d inserts acknowledged", len(rep.Acked))
	}
	total := int64(bulk + len(viewA.IDs))
	checkScans := func(when string) {
		t.Helper()
		for i, coll := range []*mongo.Collection{collA, collB} {
			ids, err := scanIDs(ctx, coll, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
			if err != nil {
				t.Fatalf("%s: full scan through router %d: %v", when, i, err)
			}
			var bulkIDs []string
			for _, id := range ids {
				if strings.HasPrefix(id, migBulkPrefix) {
					bulkIDs = append(bulkIDs, id)
				}
			}
			if msg := checkBulk(bulkIDs, bulk); msg != "" {
				t.Fatalf("%s: full scan through router %d: %s", when, i, msg)
			}
			if int64(len(ids)) != total {
				t.Fatalf("%s: full scan through router %d: %d documents, want %d (%d bulk + %d checker)", when, i, len(ids), total, bulk, len(viewA.IDs))
			}
		}
	}
	checkScans("after the kill")
	// The non-owner's copy (the recipient's aborted copy, the donor's
	// range before its deletion) is hidden: the routers saw total; the
	// shards' unversioned counts say what each holds.
	onOwner := rc.countOnShard(t, ctx, owner, ns, bson.D{})
	onOther := rc.countOnShard(t, ctx, nonOwner, ns, bson.D{})
	t.Logf("after the kill: %d documents on %s, %d on %s, %d seen by the routers", onOwner, owner, onOther, nonOwner, total)

	// After a commit, the donor's new primary deletes the range: the
	// shards then hold exactly what the routers see.
	if owner == recipient {
		harness.Eventually(t, 30*time.Second, func() error {
			d := rc.countOnShard(t, ctx, donor, ns, bson.D{})
			r := rc.countOnShard(t, ctx, recipient, ns, bson.D{})
			if d+r != total {
				tasks := rc.countOnShard(t, ctx, donor, "config.rangeDeletions", bson.D{{Key: "ns", Value: ns}})
				return fmt.Errorf("range deletion on %s: %d documents on %s + %d on %s, want %d (the moved range still on the donor; %d range deletion tasks of %s recorded on its primary %s)",
					donor, d, donor, r, recipient, total, tasks, ns, rc.primaryOf(t, donor))
			}
			return nil
		})
	}

	// Not wedged: the chunk moves again, to the shard not holding it,
	// with _waitForDelete (a pending range deletion on the target refuses
	// the start with ConflictingOperationInProgress until it is done).
	harness.Eventually(t, 30*time.Second, func() error {
		err := cliA.Database("admin").RunCommand(ctx, moveCmd(nonOwner, true)).Err()
		if err != nil && serverCode(err) != int(mongoerr.ConflictingOperationInProgress) {
			t.Fatalf("moveChunk to %s after the kill: %v", nonOwner, err)
		}
		return err
	})
	if _, ch := rc.chunkAt(t, ctx, ns, bson.D{{Key: "_id", Value: bson.MinKey{}}}); ch.Shard != nonOwner {
		t.Fatalf("after the second move the chunk is on %s, want %s", ch.Shard, nonOwner)
	}
	rc.flush(t, ctx)
	checkScans("after the second move")
	d := rc.countOnShard(t, ctx, donor, ns, bson.D{})
	r := rc.countOnShard(t, ctx, recipient, ns, bson.D{})
	if d+r != total {
		t.Fatalf("after the second move (_waitForDelete): %d documents on %s + %d on %s, want %d", d, donor, r, recipient, total)
	}
	var ce mongo.CommandError
	if mErr != nil && !errors.As(mErr, &ce) {
		t.Fatalf("moveChunk's failure is not a command error: %v", mErr)
	}
}
