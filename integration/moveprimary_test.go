package integration

import (
	"context"
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
)

// TestMovePrimary moves a database's primary, with an unsharded
// collection of 5,000 documents and a secondary index, through router A
// while the history checker writes and reads the same collection through
// router B, whose cache still names the old primary. Afterwards nothing
// acknowledged is lost or duplicated, the documents and the index are on
// the new primary only, and config.databases and config.changelog show
// the move.
func TestMovePrimary(t *testing.T) {
	rc := newRouterCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const (
		db, collName = "mp", "plain"
		ns           = db + "." + collName
		bulk         = 5000
	)
	from, to := rc.shards[0], rc.shards[1]
	cliA, cliB := rc.clients[0], rc.clients[1]
	runAdmin(t, ctx, cliA, bson.D{{Key: "enableSharding", Value: db}, {Key: "primaryShard", Value: from}})
	opts := options.Collection().SetWriteConcern(writeconcern.Majority()).SetReadPreference(readpref.Primary())
	collA := cliA.Database(db).Collection(collName, opts)
	collB := cliB.Database(db).Collection(collName, opts)
	for start := 0; start < bulk; start += 1000 {
		docs := make([]any, 1000)
		for i := range docs {
			v := start + i
			docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("%s%05d", migBulkPrefix, v)}, {Key: "v", Value: v}, {Key: "pad", Value: strings.Repeat("p", 100)}}
		}
		if _, err := collA.InsertMany(ctx, docs, unorderedInsert); err != nil {
			t.Fatalf("load: %v", err)
		}
	}
	if _, err := collA.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "v", Value: 1}}}); err != nil {
		t.Fatalf("create index: %v", err)
	}
	// Router B reads once, so its cache names the old primary.
	if n, err := collB.CountDocuments(ctx, bson.D{}); err != nil || n != bulk {
		t.Fatalf("count through router B before the move: %d, %v", n, err)
	}

	storeB := migStore{checker.NewMongoStore(collB)}
	storeA := migStore{checker.NewMongoStore(collA)}
	var (
		hist   *checker.History
		runErr error
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		hist, runErr = checker.Run(ctx, storeB, checker.Workload{
			Writers: 4, Readers: 2, Duration: 8 * time.Second, KeyPrefix: "mp", OpTimeout: 20 * time.Second,
		})
	}()
	harness.Eventually(t, 20*time.Second, func() error {
		n, err := collA.CountDocuments(ctx, bson.D{{Key: "writer", Value: bson.D{{Key: "$exists", Value: true}}}})
		if err != nil || n < 50 {
			return fmt.Errorf("%d checker documents, %v", n, err)
		}
		return nil
	})
	start := time.Now()
	rep := runAdmin(t, ctx, cliA, bson.D{{Key: "movePrimary", Value: db}, {Key: "to", Value: to}})
	t.Logf("movePrimary took %v: %s", time.Since(start).Round(time.Millisecond), rep)
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
	crep := checker.VerifyViews(ctx, hist, viewA, viewB)
	crep.Scenario, crep.Faults = "movePrimary under load, stale router", "1 movePrimary"
	t.Log(crep.String())
	if !crep.OK() {
		t.Fatalf("history check failed:\n%s", crep)
	}

	want := int64(bulk + len(viewA.IDs))
	for i, coll := range []*mongo.Collection{collA, collB} {
		ids, err := scanIDs(ctx, coll, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			t.Fatalf("scan through router %d: %v", i, err)
		}
		if int64(len(ids)) != want {
			t.Fatalf("scan through router %d: %d documents, want %d", i, len(ids), want)
		}
	}
	if n := rc.countOnShard(t, ctx, to, ns, bson.D{}); n != want {
		t.Fatalf("%d documents on the new primary %s, want %d", n, to, want)
	}
	harness.Eventually(t, 30*time.Second, func() error {
		if n := rc.countOnShard(t, ctx, from, ns, bson.D{}); n != 0 {
			return fmt.Errorf("%d documents left on the old primary %s", n, from)
		}
		return nil
	})
	// The index came along.
	specs, err := collB.Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatalf("listIndexes: %v", err)
	}
	if len(specs) != 2 {
		t.Fatalf("indexes after the move: %v, want _id_ and v_1", specs)
	}
	var dbDoc bson.Raw
	if err := cliB.Database("config").Collection("databases").FindOne(ctx, bson.D{{Key: "_id", Value: db}}).Decode(&dbDoc); err != nil {
		t.Fatalf("config.databases: %v", err)
	}
	if got := dbDoc.Lookup("primary").StringValue(); got != to {
		t.Fatalf("config.databases primary %q, want %q", got, to)
	}
	n, err := cliA.Database("config").Collection("changelog").CountDocuments(ctx, bson.D{{Key: "what", Value: "movePrimary.commit"}, {Key: "ns", Value: db}})
	if err != nil || n != 1 {
		t.Fatalf("config.changelog movePrimary.commit entries: %d, %v", n, err)
	}
}
