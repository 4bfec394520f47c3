package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/catalog"
)

// TestFailoverRetryableInserts boots 1 config server, 2 shards of 3
// members and 1 router, runs a driver insert loop with retryable writes
// through the router and SIGKILLs the primary of the shard that holds the
// collection in the middle of it: every insert must be acknowledged once
// (no error reaches the driver, no duplicate key from a re-executed
// retry), and every acknowledged document must be there once after the
// failover. The router waits for the new primary and retries each
// interrupted insert with the same lsid and txnNumber.
func TestFailoverRetryableInserts(t *testing.T) {
	c := harness.NewCluster(t, harness.WithShards(2), harness.WithMembers(3), harness.WithRouters(1))
	uri := "mongodb://" + c.Config().Routers[0].Addr + "/?directConnection=true&retryWrites=true"
	cli, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(20 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Disconnect(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	coll := cli.Database("app").Collection("loop")
	harness.Eventually(t, 30*time.Second, func() error {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "first"}})
		if mongo.IsDuplicateKeyError(err) {
			return nil
		}
		return err
	})

	// The shard holding the (unsharded) collection and its primary.
	cat := catalog.New(c.EtcdClient(t))
	db, err := cat.GetDatabase(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	prim, err := cat.GetPrimary(ctx, db.PrimaryShard)
	if err != nil {
		t.Fatal(err)
	}

	// The loop: sequential InsertOne of {_id: i, seq: i}; it stops at the
	// first error or once told to (after enough inserts on the new primary).
	var (
		mu       sync.Mutex
		acked    []int
		slowest  time.Duration
		loopErr  error
		stop     = make(chan struct{})
		loopDone = make(chan struct{})
	)
	go func() {
		defer close(loopDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			start := time.Now()
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "seq", Value: i}})
			mu.Lock()
			slowest = max(slowest, time.Since(start))
			if err != nil {
				loopErr = err
				mu.Unlock()
				return
			}
			acked = append(acked, i)
			mu.Unlock()
		}
	}()
	defer func() { cancel(); <-loopDone }()
	ackedCount := func() (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked), loopErr
	}
	waitAcked := func(n int, what string) {
		t.Helper()
		harness.Eventually(t, 30*time.Second, func() error {
			got, err := ackedCount()
			if err != nil {
				return nil // reported below
			}
			if got < n {
				return errors.New(what)
			}
			return nil
		})
		if _, err := ackedCount(); err != nil {
			t.Fatalf("insert loop failed %s: %v", what, err)
		}
	}
	waitAcked(50, "before the kill")
	c.Process(prim.Member).Kill()
	killedAt, _ := ackedCount()
	t.Logf("killed primary %s of %s (term %d) after %d inserts", prim.Member, db.PrimaryShard, prim.Term, killedAt)
	waitAcked(killedAt+100, "after the kill")
	close(stop)
	<-loopDone
	n, err := ackedCount()
	if err != nil {
		t.Fatalf("insert loop: %v", err)
	}
	now, err := cat.GetPrimary(ctx, db.PrimaryShard)
	if err != nil || now.Member == prim.Member {
		t.Fatalf("primary after the kill: %+v, %v", now, err)
	}

	// The router, not luck, carried the inserts across: it logged a retry.
	if tail := c.Process(c.Config().Routers[0].Name).LogTail(5000); !strings.Contains(tail, "retrying after the failover") {
		t.Errorf("the router logged no retry; its log ends with:\n%s", tail)
	}

	// Every acknowledged insert is there, once.
	cur, err := coll.Find(ctx, bson.D{{Key: "seq", Value: bson.D{{Key: "$exists", Value: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		ID  int `bson:"_id"`
		Seq int `bson:"seq"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for _, d := range docs {
		seen[d.Seq]++
	}
	for _, i := range acked {
		if seen[i] != 1 {
			t.Errorf("acknowledged insert %d found %d times", i, seen[i])
		}
	}
	if len(docs) < n || len(docs) > n+1 {
		// At most the insert in flight when the loop stopped may be extra.
		t.Errorf("%d documents for %d acknowledged inserts", len(docs), n)
	}
	t.Logf("%d inserts acknowledged, new primary %s (term %d), slowest insert %s", n, now.Member, now.Term, slowest)

	// Reads with a secondary preference go to the surviving secondary.
	sec := coll.Database().Collection(coll.Name(), options.Collection().SetReadPreference(readpref.Secondary()))
	harness.Eventually(t, 20*time.Second, func() error {
		got, err := sec.CountDocuments(ctx, bson.D{{Key: "seq", Value: bson.D{{Key: "$lt", Value: n}}}})
		if err != nil {
			return err
		}
		if got != int64(n) {
			return errors.New("secondary behind")
		}
		return nil
	})
}
