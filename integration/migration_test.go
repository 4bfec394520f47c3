package integration

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/psdb/psdb/integration/checker"
	"github.com/psdb/psdb/integration/harness"
)

// migBulkPrefix starts the _id of every bulk-loaded document; the
// checker's documents start with its KeyPrefix.
const migBulkPrefix = "bulk-"

// migStore is the checker's MongoStore whose scans leave out the
// bulk-loaded documents (the checker reports every _id its history did
// not write as unexpected); the test checks those itself.
type migStore struct {
	*checker.MongoStore
}

func (s migStore) ScanIDs(ctx context.Context) ([]string, error) {
	all, err := s.MongoStore.ScanIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, id := range all {
		if !strings.HasPrefix(id, migBulkPrefix) {
			out = append(out, id)
		}
	}
	return out, nil
}

// TestMigration is issue 7's end-to-end migration test on real processes
// (1 config server, 2 shards x 3 members, 2 routers): a hashed collection
// split into four chunks on one shard and loaded with 10,000 documents;
// two chunks move to the other shard with moveChunk through router A
// while the history checker inserts and increments counters through
// router B (whose routing cache goes stale) and a reader scans through
// B. Afterwards nothing acknowledged is lost, nothing is duplicated, a
// full scan and a count through either router agree with what was
// inserted, config.chunks shows the moves and the donor kept no orphan.
func TestMigration(t *testing.T) {
	rc := newRouterCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const (
		db, collName = "mig", "docs"
		ns           = db + "." + collName
		bulk         = 10000
	)
	donor, recipient := rc.shards[0], rc.shards[1]
	cliA, cliB := rc.clients[0], rc.clients[1]

	// One chunk on the donor, split into four at hash values -2^62, 0, 2^62.
	runAdmin(t, ctx, cliA, bson.D{{Key: "enableSharding", Value: db}, {Key: "primaryShard", Value: donor}})
	shardCollectionVia(t, ctx, cliA, ns, bson.D{{Key: "_id", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 1})
	points := []int64{math.MinInt64 / 2, 0, math.MaxInt64/2 + 1}
	for _, p := range points {
		runAdmin(t, ctx, cliA, bson.D{{Key: "split", Value: ns}, {Key: "middle", Value: bson.D{{Key: "_id", Value: p}}}})
	}
	if got := rc.chunkShards(t, ctx, ns); got[donor] != 4 || len(got) != 1 {
		t.Fatalf("chunks per shard before the load: %v, want 4 on %s", got, donor)
	}
	rc.flush(t, ctx)

	opts := options.Collection().SetWriteConcern(writeconcern.Majority()).SetReadPreference(readpref.Primary())
	collA := cliA.Database(db).Collection(collName, opts)
	collB := cliB.Database(db).Collection(collName, opts)

	// The bulk load, through router A, in unordered batches.
	loadStart := time.Now()
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
	t.Logf("loaded %d documents in %v", bulk, time.Since(loadStart).Round(time.Millisecond))
	if n := rc.countOnShard(t, ctx, donor, ns, bson.D{}); n != bulk {
		t.Fatalf("%d documents on the donor %s after the load, want %d", n, donor, bulk)
	}

	// The checker's load goes through router B, which does not run the
	// moves and so routes by a stale cache until a shard refuses it. It
	// ends by its Duration, not by a cancel: a cancelled insert can still
	// land after the views are collected, and the counts below are exact.
	storeB := migStore{checker.NewMongoStore(collB)}
	storeA := migStore{checker.NewMongoStore(collA)}
	const workFor = 12 * time.Second
	workCtx, stopWork := context.WithCancel(ctx)
	var (
		hist   *checker.History
		runErr error
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		hist, runErr = checker.Run(workCtx, storeB, checker.Workload{
			Writers: 4, Readers: 2, Duration: workFor, KeyPrefix: "mig", OpTimeout: 20 * time.Second,
		})
	}()
	defer func() { stopWork(); <-done }()
	checkerDocs := func() int64 {
		n, err := collA.CountDocuments(ctx, bson.D{{Key: "writer", Value: bson.D{{Key: "$exists", Value: true}}}})
		if err != nil {
			return -1
		}
		return n
	}
	waitCheckerDocs := func(atLeast int64) {
		harness.Eventually(t, 20*time.Second, func() error {
			if n := checkerDocs(); n < atLeast {
				return fmt.Errorf("%d checker documents so far, want %d", n, atLeast)
			}
			return nil
		})
	}
	waitCheckerDocs(50)

	// A reader scans the bulk documents through router B during the moves:
	// every successful scan returns each of them exactly once.
	readCtx, stopReads := context.WithCancel(ctx)
	var (
		readWG          sync.WaitGroup
		scans, scanErrs atomic.Int64
		badMu           sync.Mutex
		badScan         string
		bulkFilter      = bson.D{{Key: "v", Value: bson.D{{Key: "$gte", Value: 0}}}}
		idOnly          = options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}})
	)
	readWG.Go(func() {
		for readCtx.Err() == nil {
			ids, err := scanIDs(readCtx, collB, bulkFilter, idOnly)
			if err != nil {
				if readCtx.Err() == nil {
					scanErrs.Add(1)
					t.Logf("scan through router B: %v", err)
				}
				continue
			}
			scans.Add(1)
			if msg := checkBulk(ids, bulk); msg != "" {
				badMu.Lock()
				if badScan == "" {
					badScan = msg
				}
				badMu.Unlock()
			}
		}
	})
	stopReader := func() { stopReads(); readWG.Wait() }
	defer stopReader()

	// Two chunks move through router A: [MinKey, -2^62) and [0, 2^62).
	moved := [][2]any{{bson.MinKey{}, points[0]}, {points[1], points[2]}}
	for i, b := range moved {
		before := checkerDocs()
		start := time.Now()
		runAdmin(t, ctx, cliA, bson.D{{Key: "moveChunk", Value: ns},
			{Key: "bounds", Value: bson.A{bson.D{{Key: "_id", Value: b[0]}}, bson.D{{Key: "_id", Value: b[1]}}}},
			{Key: "to", Value: recipient}, {Key: "_waitForDelete", Value: true}})
		t.Logf("moved chunk %d of 2 to %s in %v", i+1, recipient, time.Since(start).Round(time.Millisecond))
		// The writers keep going after the move.
		waitCheckerDocs(before + 20)
	}
	stopReader()
	select {
	case <-done:
		t.Fatalf("the checker's workload ended before the moves did: raise workFor (%v)", workFor)
	default:
	}
	<-done
	if runErr != nil {
		t.Fatal(runErr)
	}
	if scans.Load() == 0 {
		t.Fatalf("no scan through router B succeeded during the moves (%d failed)", scanErrs.Load())
	}
	t.Logf("%d scans through router B during the moves, %d failed", scans.Load(), scanErrs.Load())
	if badScan != "" {
		t.Fatalf("a scan through router B during the moves: %s", badScan)
	}

	// The checker's documents, seen through both routers.
	viewA, err := checker.Collect(ctx, "router A", storeA, hist)
	if err != nil {
		t.Fatal(err)
	}
	viewB, err := checker.Collect(ctx, "router B", storeB, hist)
	if err != nil {
		t.Fatal(err)
	}
	rep := checker.VerifyViews(ctx, hist, viewA, viewB)
	rep.Scenario, rep.Faults = "migration: 2 moveChunk, stale router", "2 moves"
	t.Log(rep.String())
	if !rep.OK() {
		t.Fatalf("history check failed:\n%s", rep)
	}
	if len(rep.Acked) < 100 {
		t.Fatalf("only %d inserts acknowledged", len(rep.Acked))
	}

	// Full scans and counts through each router: each bulk _id once, and
	// the count is every document the scan found.
	for i, coll := range []*mongo.Collection{collA, collB} {
		ids, err := scanIDs(ctx, coll, bson.D{}, idOnly)
		if err != nil {
			t.Fatalf("full scan through router %d: %v", i, err)
		}
		var bulkIDs []string
		for _, id := range ids {
			if strings.HasPrefix(id, migBulkPrefix) {
				bulkIDs = append(bulkIDs, id)
			}
		}
		if msg := checkBulk(bulkIDs, bulk); msg != "" {
			t.Fatalf("full scan through router %d: %s", i, msg)
		}
		want := int64(bulk + len(viewA.IDs))
		if len(ids) != int(want) {
			inView := map[string]bool{}
			for _, id := range viewA.IDs {
				inView[id] = true
			}
			seen := map[string]int{}
			var extra []string
			for _, id := range ids {
				seen[id]++
				if !strings.HasPrefix(id, migBulkPrefix) && (!inView[id] || seen[id] > 1) {
					extra = append(extra, fmt.Sprintf("%s(x%d)", id, seen[id]))
				}
			}
			t.Fatalf("full scan through router %d: %d documents, want %d; not in router A's view or repeated: %v",
				i, len(ids), want, extra[:min(len(extra), 20)])
		}
		n, err := coll.CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatalf("count through router %d: %v", i, err)
		}
		if n != want {
			t.Fatalf("count through router %d: %d, want %d (%d bulk + %d checker)", i, n, want, bulk, len(viewA.IDs))
		}
	}

	// config.chunks through router A: the two moved chunks on the
	// recipient, the other two on the donor.
	cur, err := cliA.Database("config").Collection("chunks").Find(ctx, bson.D{{Key: "ns", Value: ns}})
	if err != nil {
		t.Fatalf("find config.chunks: %v", err)
	}
	var chunks []bson.Raw
	if err := cur.All(ctx, &chunks); err != nil {
		t.Fatalf("read config.chunks: %v", err)
	}
	if len(chunks) != 4 {
		t.Fatalf("config.chunks holds %d chunks of %s, want 4: %v", len(chunks), ns, chunks)
	}
	for _, ch := range chunks {
		minV := ch.Lookup("min", "_id")
		isMoved := minV.Type == bson.TypeMinKey
		if n, ok := minV.AsInt64OK(); ok && n == points[1] {
			isMoved = true
		}
		want := donor
		if isMoved {
			want = recipient
		}
		if got := ch.Lookup("shard").StringValue(); got != want {
			t.Fatalf("config.chunks: chunk %s on %s, want %s", ch, got, want)
		}
	}

	// _waitForDelete: the donor kept no orphan, so the shards together
	// hold exactly the documents the routers see.
	onDonor := rc.countOnShard(t, ctx, donor, ns, bson.D{})
	onRecipient := rc.countOnShard(t, ctx, recipient, ns, bson.D{})
	if total := int64(bulk + len(viewA.IDs)); onDonor+onRecipient != total || onRecipient == 0 {
		t.Fatalf("documents on the shards: %d on %s + %d on %s, want %d in all with some on each", onDonor, donor, onRecipient, recipient, total)
	}
	t.Logf("documents after the moves: %d on %s, %d on %s", onDonor, donor, onRecipient, recipient)
}

// scanIDs returns the string _id of every document of coll matching
// filter, duplicates included.
func scanIDs(ctx context.Context, coll *mongo.Collection, filter bson.D, o *options.FindOptionsBuilder) ([]string, error) {
	cur, err := coll.Find(ctx, filter, o)
	if err != nil {
		return nil, fmt.Errorf("find in %s: %w", coll.Name(), err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = cur.Close(cctx)
	}()
	var ids []string
	for cur.Next(ctx) {
		ids = append(ids, cur.Current.Lookup("_id").String())
		if s, ok := cur.Current.Lookup("_id").StringValueOK(); ok {
			ids[len(ids)-1] = s
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("scan %s: %w", coll.Name(), err)
	}
	return ids, nil
}

// checkBulk says what is wrong with a scan of the bulk documents: ""
// when it holds each of the n once.
func checkBulk(ids []string, n int) string {
	seen := make(map[string]int, len(ids))
	var dups []string
	for _, id := range ids {
		seen[id]++
		if seen[id] == 2 {
			dups = append(dups, id)
		}
	}
	var missing []string
	for i := range n {
		if id := fmt.Sprintf("%s%05d", migBulkPrefix, i); seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	if len(dups) == 0 && len(missing) == 0 && len(seen) == n {
		return ""
	}
	return fmt.Sprintf("%d ids, %d distinct, want %d; duplicated %v; missing %v",
		len(ids), len(seen), n, dups[:min(len(dups), 10)], missing[:min(len(missing), 10)])
}
