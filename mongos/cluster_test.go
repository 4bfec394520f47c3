package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/shardclient"
)

// startCluster boots 1 config server, 2 shards of 1 member and 1 router
// as real processes and returns a driver client of the router, once the
// router has loaded the routing metadata.
func startCluster(t *testing.T) (*harness.Cluster, *mongo.Client) {
	t.Helper()
	c := harness.NewCluster(t, harness.WithShards(2), harness.WithMembers(1), harness.WithRouters(1))
	uri := "mongodb://" + c.Config().Routers[0].Addr + "/?directConnection=true"
	cli, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(20 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Disconnect(context.Background()) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cli.ListDatabaseNames(ctx, bson.D{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("router never connected to the cluster: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
	return c, cli
}

func TestClusterCRUD(t *testing.T) {
	c, cli := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	coll := cli.Database("app").Collection("people")

	// InsertMany 500 documents into an unsharded collection.
	var docs []any
	for i := range 500 {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "n", Value: i}, {Key: "g", Value: i % 5}})
	}
	res, err := coll.InsertMany(ctx, docs)
	if err != nil || len(res.InsertedIDs) != 500 {
		t.Fatalf("InsertMany: %v", err)
	}
	// CountDocuments is an aggregate ($match, $group) on one shard.
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 500 {
		t.Fatalf("CountDocuments: %d %v", n, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{{Key: "g", Value: 3}}); err != nil || n != 100 {
		t.Fatalf("CountDocuments g=3: %d %v", n, err)
	}

	// A duplicate in an ordered batch stops it; unordered continues.
	_, err = coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1000}}, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 1001}}})
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || len(bwe.WriteErrors) != 1 || bwe.WriteErrors[0].Code != 11000 || bwe.WriteErrors[0].Index != 1 {
		t.Fatalf("ordered duplicate: %v", err)
	}
	if n := count(ctx, t, coll, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: 1000}}}}); n != 1 {
		t.Fatalf("ordered batch went on after the error: %d docs >= 1000", n)
	}
	_, err = coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "_id", Value: 1001}}}, options.InsertMany().SetOrdered(false))
	if !errors.As(err, &bwe) || len(bwe.WriteErrors) != 1 || bwe.WriteErrors[0].Index != 0 {
		t.Fatalf("unordered duplicate: %v", err)
	}
	if _, err := coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: 1000}}}}); err != nil {
		t.Fatal(err)
	}

	// Find with filter, sort and limit, over several batches (getMore).
	cur, err := coll.Find(ctx, bson.D{{Key: "g", Value: 2}}, options.Find().SetSort(bson.D{{Key: "n", Value: -1}}).SetLimit(70).SetBatchSize(15))
	if err != nil {
		t.Fatal(err)
	}
	var got []struct{ N int }
	if err := cur.All(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 70 || got[0].N != 497 || got[69].N != 497-69*5 {
		t.Fatalf("find: %d docs, first %v", len(got), got[:min(3, len(got))])
	}
	// A cursor closed early is killed.
	cur, err = coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(10))
	if err != nil || !cur.Next(ctx) {
		t.Fatalf("find: %v", err)
	}
	if err := cur.Close(ctx); err != nil {
		t.Fatalf("killCursors: %v", err)
	}

	// Updates and deletes.
	ur, err := coll.UpdateOne(ctx, bson.D{{Key: "g", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "one", Value: true}}}})
	if err != nil || ur.MatchedCount != 1 || ur.ModifiedCount != 1 {
		t.Fatalf("UpdateOne: %+v %v", ur, err)
	}
	ur, err = coll.UpdateMany(ctx, bson.D{{Key: "g", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "many", Value: true}}}})
	if err != nil || ur.MatchedCount != 100 || ur.ModifiedCount != 100 {
		t.Fatalf("UpdateMany: %+v %v", ur, err)
	}
	ur, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "new"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "g", Value: 9}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil || ur.UpsertedID != "new" {
		t.Fatalf("upsert: %+v %v", ur, err)
	}
	dr, err := coll.DeleteOne(ctx, bson.D{{Key: "g", Value: 9}})
	if err != nil || dr.DeletedCount != 1 {
		t.Fatalf("DeleteOne: %+v %v", dr, err)
	}
	dr, err = coll.DeleteMany(ctx, bson.D{{Key: "g", Value: 4}})
	if err != nil || dr.DeletedCount != 100 {
		t.Fatalf("DeleteMany: %+v %v", dr, err)
	}
	if n := count(ctx, t, coll, bson.D{}); n != 400 {
		t.Fatalf("count: %d, want 400", n)
	}
	if n, err := coll.EstimatedDocumentCount(ctx); err != nil || n != 400 {
		t.Fatalf("EstimatedDocumentCount: %d %v", n, err)
	}

	// Concurrent first inserts into new databases: each is created once.
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			_, err := cli.Database(fmt.Sprint("par", i%4)).Collection("c").InsertOne(ctx, bson.D{{Key: "i", Value: i}})
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent insert: %v", err)
		}
	}
	for i := range 4 {
		if n := count(ctx, t, cli.Database(fmt.Sprint("par", i)).Collection("c"), bson.D{}); n != 2 {
			t.Fatalf("par%d: %d documents, want 2", i, n)
		}
	}

	// Listings, create, drop.
	if err := cli.Database("app").CreateCollection(ctx, "empty"); err != nil {
		t.Fatalf("create: %v", err)
	}
	dbs, err := cli.ListDatabaseNames(ctx, bson.D{})
	if err != nil || !slices.Contains(dbs, "app") {
		t.Fatalf("ListDatabaseNames: %v %v", dbs, err)
	}
	names, err := cli.Database("app").ListCollectionNames(ctx, bson.D{})
	if err != nil || !slices.Equal(names, []string{"empty", "people"}) {
		t.Fatalf("ListCollectionNames: %v %v", names, err)
	}
	if err := coll.Drop(ctx); err != nil {
		t.Fatalf("drop: %v", err)
	}
	names, err = cli.Database("app").ListCollectionNames(ctx, bson.D{})
	if err != nil || !slices.Equal(names, []string{"empty"}) {
		t.Fatalf("after drop: %v %v", names, err)
	}

	testSharded(ctx, t, c, cli)
}

// testSharded shards a collection through the catalog (hashed key, 4
// chunks over the 2 shards), inserts 1000 documents through the router and
// checks that both shards hold some and that scatter-gather finds return
// every document once, in order, with skip and limit.
func testSharded(ctx context.Context, t *testing.T, c *harness.Cluster, cli *mongo.Client) {
	t.Helper()
	cat := catalog.New(c.EtcdClient(t))
	if _, err := cat.EnsureDatabase(ctx, "sh", nil); err != nil {
		t.Fatal(err)
	}
	key := catalog.ShardKey{{Field: "k", Hashed: true}}
	if _, _, err := cat.ShardCollection(ctx, "sh.c", catalog.ShardOptions{Key: key, NumInitialChunks: 4}); err != nil {
		t.Fatal(err)
	}
	coll := cli.Database("sh").Collection("c")
	// The router's chunk map follows the catalog by watch: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "nokey", Value: 1}})
		var we mongo.WriteException
		if errors.As(err, &we) && len(we.WriteErrors) == 1 && we.WriteErrors[0].Code == 61 {
			break
		}
		if err == nil {
			_, _ = coll.DeleteMany(ctx, bson.D{{Key: "nokey", Value: 1}})
		}
		if time.Now().After(deadline) {
			t.Fatalf("insert without shard key: %v, want ShardKeyNotFound", err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
	var docs []any
	for i := range 1000 {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "k", Value: fmt.Sprint("key", i)}, {Key: "n", Value: i}})
	}
	if _, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
		t.Fatal(err)
	}
	shards, _, err := cat.ListShards(ctx)
	if err != nil || len(shards) != 2 {
		t.Fatalf("shards: %v %v", shards, err)
	}
	total := int64(0)
	for _, sh := range shards {
		sc, err := shardclient.Dial(ctx, sh.Members[0].Addr)
		if err != nil {
			t.Fatal(err)
		}
		n, err := sc.Count(ctx, "sh.c", nil, 0, 0)
		sc.Close()
		if err != nil || n == 0 {
			t.Fatalf("shard %s holds %d documents (%v), want some", sh.Name, n, err)
		}
		total += n
	}
	if total != 1000 {
		t.Fatalf("shards hold %d documents, want 1000", total)
	}

	cases := []struct {
		name        string
		skip, limit int64
		batch       int32
		want        []int // first, last; count
		count       int
	}{
		{name: "all sorted", batch: 64, count: 1000, want: []int{0, 999}},
		{name: "skip and limit", skip: 100, limit: 250, batch: 40, count: 250, want: []int{100, 349}},
		{name: "skip only", skip: 990, batch: 3, count: 10, want: []int{990, 999}},
	}
	for _, tc := range cases {
		o := options.Find().SetSort(bson.D{{Key: "n", Value: 1}}).SetBatchSize(tc.batch)
		if tc.skip > 0 {
			o.SetSkip(tc.skip)
		}
		if tc.limit > 0 {
			o.SetLimit(tc.limit)
		}
		cur, err := coll.Find(ctx, bson.D{}, o)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []struct{ N int }
		if err := cur.All(ctx, &got); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(got) != tc.count || got[0].N != tc.want[0] || got[len(got)-1].N != tc.want[1] {
			t.Fatalf("%s: %d docs", tc.name, len(got))
		}
		for i := 1; i < len(got); i++ {
			if got[i].N != got[i-1].N+1 {
				t.Fatalf("%s: out of order or duplicated at %d: %d after %d", tc.name, i, got[i].N, got[i-1].N)
			}
		}
	}
	if n := count(ctx, t, coll, bson.D{{Key: "n", Value: bson.D{{Key: "$lt", Value: 500}}}}); n != 500 {
		t.Fatalf("count over shards: %d", n)
	}
	testShardedAggregate(ctx, t, coll)
	// A targeted find by the full shard key, and a single-document delete
	// without it.
	var one bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "k", Value: "key7"}}).Decode(&one); err != nil || one["n"] != int32(7) {
		t.Fatalf("targeted find: %v %v", one, err)
	}
	dr, err := coll.DeleteOne(ctx, bson.D{{Key: "n", Value: bson.D{{Key: "$gte", Value: 0}}}})
	if err != nil || dr.DeletedCount != 1 {
		t.Fatalf("DeleteOne without shard key: %+v %v", dr, err)
	}
	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(ctx, t, coll, bson.D{}); n != 0 {
		t.Fatalf("after drop: %d", n)
	}
}

// testShardedAggregate runs aggregations over the hashed collection of
// testSharded (documents n = 0..999): the shards run the shard part and the
// router merges ($group partial/final, sorted merge, $limit).
func testShardedAggregate(ctx context.Context, t *testing.T, coll *mongo.Collection) {
	t.Helper()
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 1000 {
		t.Fatalf("CountDocuments over shards: %d %v", n, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{{Key: "n", Value: bson.D{{Key: "$lt", Value: 300}}}}); err != nil || n != 300 {
		t.Fatalf("CountDocuments n<300 over shards: %d %v", n, err)
	}
	want := map[int64]int64{}
	for n := range int64(1000) {
		want[n%4] += n
	}
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "$mod", Value: bson.A{"$n", 4}}}}, {Key: "total", Value: bson.D{{Key: "$sum", Value: "$n"}}}}}},
		{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
	})
	if err != nil {
		t.Fatalf("aggregate $group: %v", err)
	}
	var groups []struct {
		ID    int64 `bson:"_id"`
		Total int64
	}
	if err := cur.All(ctx, &groups); err != nil {
		t.Fatalf("aggregate $group: %v", err)
	}
	if len(groups) != 4 {
		t.Fatalf("aggregate $group: %d groups, want 4", len(groups))
	}
	for i, g := range groups {
		if g.ID != int64(i) || g.Total != want[g.ID] {
			t.Fatalf("group %d: %+v, want _id %d total %d", i, g, i, want[int64(i)])
		}
	}
	cur, err = coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$sort", Value: bson.D{{Key: "n", Value: -1}}}},
		{{Key: "$limit", Value: 7}},
	}, options.Aggregate().SetBatchSize(3))
	if err != nil {
		t.Fatalf("aggregate $sort $limit: %v", err)
	}
	var top []struct{ N int }
	if err := cur.All(ctx, &top); err != nil {
		t.Fatalf("aggregate $sort $limit: %v", err)
	}
	if len(top) != 7 {
		t.Fatalf("aggregate $sort $limit: %d docs, want 7", len(top))
	}
	for i, d := range top {
		if d.N != 999-i {
			t.Fatalf("aggregate $sort $limit: doc %d is %d, want %d", i, d.N, 999-i)
		}
	}
}

// count runs the count command.
func count(ctx context.Context, t *testing.T, coll *mongo.Collection, filter bson.D) int64 {
	t.Helper()
	var r struct{ N int64 }
	err := coll.Database().RunCommand(ctx, bson.D{{Key: "count", Value: coll.Name()}, {Key: "query", Value: filter}}).Decode(&r)
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	return r.N
}

// latencies collects per-operation latencies of a benchmark and reports
// their percentiles as metrics (p50-µs, p99-µs, p999-µs).
type latencies struct{ d []time.Duration }

func (l *latencies) add(d time.Duration) { l.d = append(l.d, d) }

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	at := func(q float64) float64 { return float64(l.d[int(q*float64(len(l.d)-1))].Microseconds()) }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(at(0.999), "p999-µs")
}

// BenchmarkCluster measures point inserts and finds through the router
// against the same operations sent straight to the shard's gRPC API (the
// router's overhead), and a sorted scatter-gather find over 2 shards, on
// real processes (1 config server, 2 shards x 1 member, 1 router).
func BenchmarkCluster(b *testing.B) {
	c := harness.NewCluster(b, harness.WithShards(2), harness.WithMembers(1), harness.WithRouters(1))
	ctx := context.Background()
	cli, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + c.Config().Routers[0].Addr + "/?directConnection=true"))
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Disconnect(ctx)
	coll := cli.Database("bench").Collection("c")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: -1}}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("router not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
	cat := catalog.New(c.EtcdClient(b))
	d, err := cat.GetDatabase(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	sh, err := cat.GetShard(ctx, d.PrimaryShard)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := shardclient.Dial(ctx, sh.Members[0].Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()

	next := 0
	b.Run("router/insertOne", func(b *testing.B) {
		lat := &latencies{}
		for b.Loop() {
			start := time.Now()
			next++
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: next}, {Key: "v", Value: "x"}}); err != nil {
				b.Fatal(err)
			}
			lat.add(time.Since(start))
		}
		lat.report(b)
	})
	b.Run("shard/insert", func(b *testing.B) {
		lat := &latencies{}
		for b.Loop() {
			start := time.Now()
			next++
			raw, _ := bson.Marshal(bson.D{{Key: "_id", Value: next}, {Key: "v", Value: "x"}})
			if _, err := sc.Insert(ctx, "bench.c", []bson.Raw{raw}, shardclient.WriteOptions{Ordered: true}); err != nil {
				b.Fatal(err)
			}
			lat.add(time.Since(start))
		}
		lat.report(b)
	})
	b.Run("router/findOne", func(b *testing.B) {
		i := 0
		lat := &latencies{}
		for b.Loop() {
			start := time.Now()
			i = i%next + 1
			if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: i}}).Err(); err != nil {
				b.Fatal(err)
			}
			lat.add(time.Since(start))
		}
		lat.report(b)
	})
	b.Run("shard/find", func(b *testing.B) {
		i := 0
		lat := &latencies{}
		for b.Loop() {
			start := time.Now()
			i = i%next + 1
			flt, _ := bson.Marshal(bson.D{{Key: "_id", Value: i}})
			if _, err := sc.Find(ctx, "bench.c", shardclient.Find{Filter: flt, Limit: 1, SingleBatch: true}); err != nil {
				b.Fatal(err)
			}
			lat.add(time.Since(start))
		}
		lat.report(b)
	})

	// Scatter-gather: 2000 documents of a hashed collection over 2 shards,
	// read back sorted.
	if _, _, err := cat.ShardCollection(ctx, "bench.h", catalog.ShardOptions{Key: catalog.ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: 4}); err != nil {
		b.Fatal(err)
	}
	hc := cli.Database("bench").Collection("h")
	var docs []any
	for i := range 2000 {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "k", Value: i}, {Key: "n", Value: 2000 - i}})
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		// The router's chunk map shows the sharded collection once an
		// insert without the shard key is refused (61).
		_, err := hc.InsertOne(ctx, bson.D{{Key: "probe", Value: true}})
		var we mongo.WriteException
		if errors.As(err, &we) && len(we.WriteErrors) == 1 && we.WriteErrors[0].Code == 61 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
	if _, err := hc.InsertMany(ctx, docs); err != nil {
		b.Fatal(err)
	}
	b.Run("router/scatterGatherSorted2000", func(b *testing.B) {
		for b.Loop() {
			cur, err := hc.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "n", Value: 1}}).SetBatchSize(500))
			if err != nil {
				b.Fatal(err)
			}
			var got []bson.Raw
			// A probe inserted before the router saw the collection
			// sharded may add a document or two.
			if err := cur.All(ctx, &got); err != nil || len(got) < 2000 {
				b.Fatalf("%d docs, %v", len(got), err)
			}
		}
	})
}
