package server

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

	"github.com/psdb/psdb/pkg/catalog"
)

// adminCluster is a router over real parts in this process: an embedded
// etcd as config server, one shardd gRPC server (real Pebble store) per
// shard, the ClusterBackend and the wire server, and a Go driver client.
type adminCluster struct {
	cat    *catalog.Catalog
	cli    *mongo.Client
	admin  *mongo.Database
	shards []string // shard names s0, s1, ...
	addrs  []string // their gRPC addresses
}

func startAdminCluster(t *testing.T, nShards int) *adminCluster {
	t.Helper()
	etcd, cat := startCatalog(t)
	ac := &adminCluster{cat: cat}
	var specs []catalog.ShardSpec
	for i := range nShards {
		name := fmt.Sprintf("s%d", i)
		addr := serveShardd(t)
		ac.shards, ac.addrs = append(ac.shards, name), append(ac.addrs, addr)
		specs = append(specs, catalog.ShardSpec{Name: name, Members: []catalog.MemberSpec{{Name: name + "a", Addr: addr}}})
	}
	ctx := testCtx(t)
	if err := ac.cat.Bootstrap(ctx, "admin-test", specs); err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger()
	b, cli := startRouter(t, etcd, log)
	ac.cli = cli
	ac.admin = ac.cli.Database("admin")
	waitFor(t, "the router to load the catalog", 20*time.Second, func() bool {
		_, err := b.Routing()
		return err == nil
	})
	return ac
}

// run runs an admin command and decodes the reply.
func (ac *adminCluster) run(t *testing.T, cmd bson.D) (bson.M, error) {
	t.Helper()
	var out bson.M
	err := ac.admin.RunCommand(testCtx(t), cmd).Decode(&out)
	return out, err
}

func (ac *adminCluster) mustRun(t *testing.T, cmd bson.D) bson.M {
	t.Helper()
	out, err := ac.run(t, cmd)
	if err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
	return out
}

func (ac *adminCluster) find(t *testing.T, coll string, filter any, opts ...options.Lister[options.FindOptions]) []bson.M {
	t.Helper()
	ctx := testCtx(t)
	cur, err := ac.cli.Database("config").Collection(coll).Find(ctx, filter, opts...)
	if err != nil {
		t.Fatalf("find config.%s: %v", coll, err)
	}
	var out []bson.M
	if err := cur.All(ctx, &out); err != nil {
		t.Fatalf("find config.%s: %v", coll, err)
	}
	return out
}

func TestAdminShardCollectionAndConfigDB(t *testing.T) {
	ac := startAdminCluster(t, 2)
	ctx := testCtx(t)

	// enableSharding with a chosen primary; again is a no-op; another
	// primary for an existing database is refused.
	ac.mustRun(t, bson.D{{Key: "enableSharding", Value: "app"}, {Key: "primaryShard", Value: "s1"}})
	ac.mustRun(t, bson.D{{Key: "enableSharding", Value: "app"}, {Key: "primaryShard", Value: "s1"}})
	ac.mustRun(t, bson.D{{Key: "enableSharding", Value: "app"}})
	_, err := ac.run(t, bson.D{{Key: "enableSharding", Value: "app"}, {Key: "primaryShard", Value: "s0"}})
	wantCommandError(t, err, 48)
	_, err = ac.run(t, bson.D{{Key: "enableSharding", Value: "other"}, {Key: "primaryShard", Value: "nope"}})
	wantCommandError(t, err, 70) // ShardNotFound
	ac.mustRun(t, bson.D{{Key: "enableSharding", Value: "plain"}})

	// Hashed with numInitialChunks: 6 chunks, alternating from the primary.
	rep := ac.mustRun(t, bson.D{{Key: "shardCollection", Value: "app.h"}, {Key: "key", Value: bson.D{{Key: "k", Value: "hashed"}}}, {Key: "numInitialChunks", Value: 6}})
	if rep["collectionsharded"] != "app.h" {
		t.Fatalf("shardCollection reply %v", rep)
	}
	chunks := ac.find(t, "chunks", bson.D{{Key: "ns", Value: "app.h"}}, options.Find().SetSort(bson.D{{Key: "min", Value: 1}}))
	if len(chunks) != 6 {
		t.Fatalf("config.chunks of app.h: %d docs, want 6: %v", len(chunks), chunks)
	}
	perShard := map[any]int{}
	for i, ch := range chunks {
		perShard[ch["shard"]]++
		lm, ok := ch["lastmod"].(bson.Timestamp)
		if !ok || lm.T != 1 || lm.I != uint32(i) {
			t.Fatalf("chunk %d lastmod %v, want Timestamp(1, %d)", i, ch["lastmod"], i)
		}
		if _, ok := ch["uuid"].(bson.Binary); !ok {
			t.Fatalf("chunk uuid %T, want a BSON UUID", ch["uuid"])
		}
	}
	if perShard["s0"] != 3 || perShard["s1"] != 3 || chunks[0]["shard"] != "s1" {
		t.Fatalf("chunk placement %v (first on %v), want 3 per shard starting at the primary s1", perShard, chunks[0]["shard"])
	}
	if mn := asM(chunks[0]["min"])["k"]; mn != (bson.MinKey{}) {
		t.Fatalf("first chunk min %v", chunks[0]["min"])
	}

	// Ranged and unique: one chunk on the primary and a unique shard-key
	// index there.
	ac.mustRun(t, bson.D{{Key: "shardCollection", Value: "app.r"}, {Key: "key", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "unique", Value: true}})
	colls := ac.find(t, "collections", bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if len(colls) != 2 || colls[0]["_id"] != "app.h" || colls[1]["_id"] != "app.r" {
		t.Fatalf("config.collections %v", colls)
	}
	if k := asM(colls[1]["key"]); k["x"] != int32(1) || colls[1]["unique"] != true || colls[1]["noBalance"] != false {
		t.Fatalf("config.collections app.r %v", colls[1])
	}
	if k := asM(colls[0]["key"]); k["k"] != "hashed" || colls[0]["unique"] != false {
		t.Fatalf("config.collections app.h %v", colls[0])
	}
	if _, ok := colls[0]["lastmodEpoch"].(bson.ObjectID); !ok {
		t.Fatalf("lastmodEpoch %T", colls[0]["lastmodEpoch"])
	}
	rchunks := ac.find(t, "chunks", bson.D{{Key: "uuid", Value: colls[1]["uuid"]}})
	if len(rchunks) != 1 || rchunks[0]["shard"] != "s1" {
		t.Fatalf("config.chunks of app.r %v", rchunks)
	}
	r := ac.cli.Database("app").Collection("r")
	if _, err := r.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 5}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: 5}}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("duplicate shard key in a unique sharded collection: %v", err)
	}

	// Idempotent with the same key; errors as MongoDB's.
	ac.mustRun(t, bson.D{{Key: "shardCollection", Value: "app.r"}, {Key: "key", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "unique", Value: true}})
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code int32
	}{
		{"other key", bson.D{{Key: "shardCollection", Value: "app.r"}, {Key: "key", Value: bson.D{{Key: "y", Value: 1}}}}, 23},
		{"bad key value", bson.D{{Key: "shardCollection", Value: "app.b"}, {Key: "key", Value: bson.D{{Key: "a", Value: "text"}}}}, 2},
		{"empty key", bson.D{{Key: "shardCollection", Value: "app.b"}, {Key: "key", Value: bson.D{}}}, 2},
		{"missing key", bson.D{{Key: "shardCollection", Value: "app.b"}}, 40414},
		{"unique hashed", bson.D{{Key: "shardCollection", Value: "app.b"}, {Key: "key", Value: bson.D{{Key: "a", Value: "hashed"}}}, {Key: "unique", Value: true}}, 72},
		{"numInitialChunks ranged", bson.D{{Key: "shardCollection", Value: "app.b"}, {Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "numInitialChunks", Value: 4}}, 72},
		{"bad namespace", bson.D{{Key: "shardCollection", Value: "nodot"}, {Key: "key", Value: bson.D{{Key: "a", Value: 1}}}}, 73},
		{"config db", bson.D{{Key: "shardCollection", Value: "config.x"}, {Key: "key", Value: bson.D{{Key: "a", Value: 1}}}}, 20},
		{"collation", bson.D{{Key: "shardCollection", Value: "app.b"}, {Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "collation", Value: bson.D{{Key: "locale", Value: "fr"}}}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ac.run(t, tc.cmd)
			wantCommandError(t, err, tc.code)
		})
	}
	// Admin commands run against the admin database only.
	err = ac.cli.Database("app").RunCommand(ctx, bson.D{{Key: "shardCollection", Value: "app.z"}, {Key: "key", Value: bson.D{{Key: "a", Value: 1}}}}).Err()
	wantCommandError(t, err, 13)

	// A non-empty collection sharded on a hashed key keeps one chunk on
	// its primary (its data stays there); numInitialChunks is refused.
	pre := ac.cli.Database("app").Collection("pre")
	if _, err := pre.InsertMany(ctx, []any{bson.D{{Key: "k", Value: 1}}, bson.D{{Key: "k", Value: 2}}}); err != nil {
		t.Fatal(err)
	}
	_, err = ac.run(t, bson.D{{Key: "shardCollection", Value: "app.pre"}, {Key: "key", Value: bson.D{{Key: "k", Value: "hashed"}}}, {Key: "numInitialChunks", Value: 4}})
	wantCommandError(t, err, 72)
	ac.mustRun(t, bson.D{{Key: "shardCollection", Value: "app.pre"}, {Key: "key", Value: bson.D{{Key: "k", Value: "hashed"}}}})
	if pc := ac.find(t, "chunks", bson.D{{Key: "ns", Value: "app.pre"}}); len(pc) != 1 || pc[0]["shard"] != "s1" {
		t.Fatalf("chunks of a non-empty hashed collection %v", pc)
	}
	if n, err := pre.CountDocuments(ctx, bson.D{}); err != nil || n != 2 {
		t.Fatalf("documents after sharding: %d %v", n, err)
	}

	// The documents mongosh's sh.status() reads.
	dbs := ac.find(t, "databases", bson.D{}, options.Find().SetSort(bson.D{{Key: "name", Value: 1}}))
	if len(dbs) != 2 || dbs[0]["_id"] != "app" || dbs[0]["primary"] != "s1" || dbs[0]["partitioned"] != true || dbs[1]["_id"] != "plain" || dbs[1]["partitioned"] != false {
		t.Fatalf("config.databases %v", dbs)
	}
	if v := asM(dbs[0]["version"]); v == nil || v["lastMod"] != int32(1) {
		t.Fatalf("config.databases version %v", dbs[0]["version"])
	}
	var version bson.M
	if err := ac.cli.Database("config").Collection("version").FindOne(ctx, bson.D{}).Decode(&version); err != nil {
		t.Fatal(err)
	}
	if version["currentVersion"] != int32(6) || version["minCompatibleVersion"] != int32(5) {
		t.Fatalf("config.version %v", version)
	}
	if _, ok := version["clusterId"].(bson.ObjectID); !ok {
		t.Fatalf("config.version clusterId %T", version["clusterId"])
	}
	shards := ac.find(t, "shards", bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if len(shards) != 2 || shards[0]["_id"] != "s0" || shards[0]["host"] != "s0/"+ac.addrs[0] || shards[0]["state"] != int32(1) {
		t.Fatalf("config.shards %v", shards)
	}
	var bal bson.M
	if err := ac.cli.Database("config").Collection("settings").FindOne(ctx, bson.D{{Key: "_id", Value: "balancer"}}).Decode(&bal); err != nil {
		t.Fatal(err)
	}
	if bal["stopped"] != false || bal["mode"] != "full" {
		t.Fatalf("config.settings balancer %v", bal)
	}
	// config.mongos lists the registered routers.
	reg, err := ac.cat.RegisterRouter(ctx, "mongos0", "127.0.0.1:27017", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	mongos := ac.find(t, "mongos", bson.D{}, options.Find().SetSort(bson.D{{Key: "ping", Value: -1}}).SetLimit(1))
	if len(mongos) != 1 || mongos[0]["_id"] != "127.0.0.1:27017" || mongos[0]["mongoVersion"] != ServerVersion {
		t.Fatalf("config.mongos %v", mongos)
	}
	if _, ok := mongos[0]["ping"].(bson.DateTime); !ok {
		t.Fatalf("config.mongos ping %T", mongos[0]["ping"])
	}
	// sh.status()'s chunk summary pipeline, and its reads of the
	// collections PSDB serves empty.
	cur, err := ac.cli.Database("config").Collection("chunks").Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "uuid", Value: colls[0]["uuid"]}}, bson.D{{Key: "ns", Value: "app.h"}}}}}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$shard"}, {Key: "cnt", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
		{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}, {Key: "shard", Value: "$_id"}, {Key: "nChunks", Value: "$cnt"}}}},
		{{Key: "$sort", Value: bson.D{{Key: "shard", Value: 1}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var summary []bson.M
	if err := cur.All(ctx, &summary); err != nil {
		t.Fatal(err)
	}
	if len(summary) != 2 || summary[0]["shard"] != "s0" || summary[0]["nChunks"] != int32(3) || summary[1]["nChunks"] != int32(3) {
		t.Fatalf("chunk summary %v", summary)
	}
	// sh.status() per database: collections by an _id regex; recent
	// routers grouped by version; failed migrations from the changelog.
	if cs := ac.find(t, "collections", bson.D{{Key: "_id", Value: bson.Regex{Pattern: `^app\.`}}}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})); len(cs) != 3 || cs[2]["_id"] != "app.r" {
		t.Fatalf("config.collections by regex: %v", cs)
	}
	for _, tc := range []struct {
		coll     string
		pipeline mongo.Pipeline
		want     int
	}{
		{"mongos", mongo.Pipeline{
			{{Key: "$match", Value: bson.D{{Key: "ping", Value: bson.D{{Key: "$gt", Value: time.Now().Add(-time.Minute)}}}}}},
			{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$mongoVersion"}, {Key: "num", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
			{{Key: "$sort", Value: bson.D{{Key: "num", Value: -1}}}},
		}, 1},
		{"changelog", mongo.Pipeline{
			{{Key: "$match", Value: bson.D{{Key: "what", Value: "moveChunk.from"}, {Key: "$or", Value: bson.A{
				bson.D{{Key: "details.errmsg", Value: bson.D{{Key: "$exists", Value: true}}}},
				bson.D{{Key: "details.note", Value: bson.D{{Key: "$ne", Value: "success"}}}}}}}}},
			{{Key: "$group", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "msg", Value: "$details.errmsg"}}}, {Key: "count", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
			{{Key: "$project", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "$ifNull", Value: bson.A{"$_id.msg", "aborted"}}}}, {Key: "count", Value: "$count"}}}},
		}, 0},
	} {
		cur, err := ac.cli.Database("config").Collection(tc.coll).Aggregate(ctx, tc.pipeline)
		if err != nil {
			t.Fatalf("aggregate config.%s: %v", tc.coll, err)
		}
		var got []bson.M
		if err := cur.All(ctx, &got); err != nil || len(got) != tc.want {
			t.Fatalf("aggregate config.%s: %v %v, want %d documents", tc.coll, got, err, tc.want)
		}
	}
	for _, c := range []string{"locks", "tags", "changelog", "actionlog"} {
		if docs := ac.find(t, c, bson.D{}); len(docs) != 0 {
			t.Fatalf("config.%s: %v", c, docs)
		}
	}
	if n, err := ac.cli.Database("config").Collection("chunks").CountDocuments(ctx, bson.D{{Key: "shard", Value: "s0"}}); err != nil || n != 3 {
		t.Fatalf("count config.chunks on s0: %d %v", n, err)
	}
	// Many batches: getMore over a generated cursor.
	all := ac.find(t, "chunks", bson.D{}, options.Find().SetBatchSize(2))
	if len(all) != 8 {
		t.Fatalf("config.chunks has %d docs, want 8", len(all))
	}
	if st := ac.mustRun(t, bson.D{{Key: "balancerStatus", Value: 1}}); st["mode"] != "full" || st["inBalancerRound"] != false {
		t.Fatalf("balancerStatus %v", st)
	}
	ac.mustRun(t, bson.D{{Key: "balancerStop", Value: 1}})
	if st := ac.mustRun(t, bson.D{{Key: "balancerStatus", Value: 1}}); st["mode"] != "off" {
		t.Fatalf("balancerStatus after balancerStop %v", st)
	}
	if bs, err := ac.cat.GetBalancerSettings(ctx); err != nil || bs.Enabled {
		t.Fatalf("balancer settings after balancerStop %+v %v", bs, err)
	}
	if err := ac.cli.Database("config").Collection("settings").FindOne(ctx, bson.D{{Key: "_id", Value: "balancer"}}).Decode(&bal); err != nil || bal["stopped"] != true || bal["mode"] != "off" {
		t.Fatalf("config.settings balancer after balancerStop %v %v", bal, err)
	}
	ac.mustRun(t, bson.D{{Key: "balancerStart", Value: 1}})
	if st := ac.mustRun(t, bson.D{{Key: "balancerStatus", Value: 1}}); st["mode"] != "full" {
		t.Fatalf("balancerStatus after balancerStart %v", st)
	}

	// Writes to config.* are refused; listings show the config database.
	_, err = ac.cli.Database("config").Collection("chunks").InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
	wantCommandError(t, err, 73)
	names, err := ac.cli.ListDatabaseNames(ctx, bson.D{})
	if err != nil || !slices.Contains(names, "config") || !slices.Contains(names, "app") {
		t.Fatalf("listDatabases %v %v", names, err)
	}
	cnames, err := ac.cli.Database("config").ListCollectionNames(ctx, bson.D{})
	if err != nil || !slices.Contains(cnames, "chunks") || !slices.Contains(cnames, "shards") {
		t.Fatalf("config listCollections %v %v", cnames, err)
	}

	if f := ac.mustRun(t, bson.D{{Key: "flushRouterConfig", Value: 1}}); f["flushed"] != true {
		t.Fatalf("flushRouterConfig %v", f)
	}
	if m := ac.mustRun(t, bson.D{{Key: "getShardMap", Value: 1}}); asM(m["map"])["s1"] != "s1/"+ac.addrs[1] {
		t.Fatalf("getShardMap %v", m)
	}
}

func TestAdminShardLifecycle(t *testing.T) {
	ac := startAdminCluster(t, 2)
	ctx := testCtx(t)

	list := func() []bson.M {
		t.Helper()
		var out []bson.M
		for _, s := range ac.mustRun(t, bson.D{{Key: "listShards", Value: 1}})["shards"].(bson.A) {
			out = append(out, asM(s))
		}
		return out
	}
	if l := list(); len(l) != 2 || l[1]["_id"] != "s1" || l[1]["host"] != "s1/"+ac.addrs[1] || l[1]["state"] != int32(1) {
		t.Fatalf("listShards %v", l)
	}

	// addShard registers a shard; the same again succeeds; another host
	// under a taken name does not.
	rep := ac.mustRun(t, bson.D{{Key: "addShard", Value: "rs9/127.0.0.1:1,127.0.0.1:2"}})
	if rep["shardAdded"] != "rs9" {
		t.Fatalf("addShard %v", rep)
	}
	ac.mustRun(t, bson.D{{Key: "addShard", Value: "rs9/127.0.0.1:2,127.0.0.1:1"}})
	_, err := ac.run(t, bson.D{{Key: "addShard", Value: "rs9/127.0.0.1:3"}})
	wantCommandError(t, err, 96)
	_, err = ac.run(t, bson.D{{Key: "addShard", Value: "rs9/"}})
	wantCommandError(t, err, 9)
	rep = ac.mustRun(t, bson.D{{Key: "addShard", Value: "127.0.0.1:4"}, {Key: "memberNames", Value: bson.A{"n4"}}})
	if rep["shardAdded"] != "shard0000" {
		t.Fatalf("addShard without a set name %v", rep)
	}
	sh, err := ac.cat.GetShard(ctx, "rs9")
	if err != nil || len(sh.Members) != 2 || sh.Members[0].Name != "rs9a" || sh.Members[1].Addr != "127.0.0.1:2" {
		t.Fatalf("rs9 in the catalog: %+v %v", sh, err)
	}
	if sh, err := ac.cat.GetShard(ctx, "shard0000"); err != nil || sh.Members[0].Name != "n4" {
		t.Fatalf("shard0000 in the catalog: %+v %v", sh, err)
	}
	if l := list(); len(l) != 4 {
		t.Fatalf("listShards after addShard %v", l)
	}

	// An empty shard is removed at once.
	for _, name := range []string{"rs9", "shard0000"} {
		rep = ac.mustRun(t, bson.D{{Key: "removeShard", Value: name}})
		if rep["state"] != "completed" || rep["msg"] != "removeshard completed successfully" || rep["shard"] != name {
			t.Fatalf("removeShard of empty %s: %v", name, rep)
		}
	}
	if l := list(); len(l) != 2 {
		t.Fatalf("listShards after removing %v", l)
	}
	_, err = ac.run(t, bson.D{{Key: "removeShard", Value: "rs9"}})
	wantCommandError(t, err, 70)

	// A shard that is a primary and owns chunks drains: started, then
	// ongoing with what remains, then completed once it is empty.
	ac.mustRun(t, bson.D{{Key: "enableSharding", Value: "app"}, {Key: "primaryShard", Value: "s1"}})
	ac.mustRun(t, bson.D{{Key: "shardCollection", Value: "app.h"}, {Key: "key", Value: bson.D{{Key: "k", Value: "hashed"}}}, {Key: "numInitialChunks", Value: 4}})
	rep = ac.mustRun(t, bson.D{{Key: "removeShard", Value: "s1"}})
	if rep["state"] != "started" || rep["msg"] != "draining started successfully" || rep["shard"] != "s1" ||
		!slices.Equal(rep["dbsToMove"].(bson.A), bson.A{"app"}) || rep["note"] == nil {
		t.Fatalf("removeShard started: %v", rep)
	}
	l := list()
	if l[1]["draining"] != true || l[0]["draining"] != nil {
		t.Fatalf("listShards while draining %v", l)
	}
	rep = ac.mustRun(t, bson.D{{Key: "removeShard", Value: "s1"}})
	rem := asM(rep["remaining"])
	if rep["state"] != "ongoing" || rep["msg"] != "draining ongoing" || rem["chunks"] != int64(2) || rem["dbs"] != int64(1) || rem["jumboChunks"] != int64(0) {
		t.Fatalf("removeShard ongoing: %v", rep)
	}
	// The last active shard cannot be removed.
	_, err = ac.run(t, bson.D{{Key: "removeShard", Value: "s0"}})
	wantCommandError(t, err, 20)

	// Do what the balancer and movePrimary will do, then it completes.
	for {
		coll, err := ac.cat.GetCollection(ctx, "app.h")
		if err != nil {
			t.Fatal(err)
		}
		chunks, _, err := ac.cat.ListChunks(ctx, coll.UUID)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(chunks, func(ch catalog.Chunk) bool { return ch.Shard == "s1" })
		if i < 0 {
			break
		}
		if _, err := ac.cat.CommitMigration(ctx, "app.h", chunks[i], "s1", "s0", coll.CollVersion()); err != nil {
			t.Fatal(err)
		}
	}
	d, err := ac.cat.GetDatabase(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.cat.SetPrimaryShard(ctx, "app", "s0", d.ModRevision); err != nil {
		t.Fatal(err)
	}
	rep = ac.mustRun(t, bson.D{{Key: "removeShard", Value: "s1"}})
	if rep["state"] != "completed" {
		t.Fatalf("removeShard after draining: %v", rep)
	}
	if _, err := ac.cat.GetShard(ctx, "s1"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("s1 still in the catalog: %v", err)
	}
	if l := list(); len(l) != 1 || l[0]["_id"] != "s0" {
		t.Fatalf("listShards at the end %v", l)
	}
	// Admin-only, type-checked.
	err = ac.cli.Database("app").RunCommand(ctx, bson.D{{Key: "listShards", Value: 1}}).Err()
	wantCommandError(t, err, 13)
	_, err = ac.run(t, bson.D{{Key: "removeShard", Value: 1}})
	wantCommandError(t, err, 14)
}

// asM returns a nested document decoded into bson.M (the driver decodes
// nested documents as bson.D), or nil.
func asM(v any) bson.M {
	switch d := v.(type) {
	case bson.M:
		return d
	case bson.D:
		m := bson.M{}
		for _, e := range d {
			m[e.Key] = e.Value
		}
		return m
	}
	return nil
}

// adminCommandNames are the commands (and aliases) of the admin files.
var adminCommandNames = []string{"addShard", "addshard", "balancerStart", "balancerStatus", "balancerStop", "configureFailPoint", "enableSharding", "enablesharding",
	"flushRouterConfig", "flushrouterconfig", "getShardMap", "listShards", "listshards", "moveChunk", "movechunk", "movePrimary", "moveprimary",
	"removeShard", "removeshard", "replSetGetStatus", "replSetStepDown", "shardCollection", "shardcollection", "split"}

// withAdminCommands adds adminCommandNames to a sorted command list.
func withAdminCommands(want []string) []string {
	out := append(slices.Clone(want), adminCommandNames...)
	slices.Sort(out)
	return out
}

// A backend without catalog access answers the admin commands and config
// reads with CommandNotSupported; without a backend, NotYetInitialized.
func TestAdminWithoutCatalog(t *testing.T) {
	s := newServer(Options{Backend: newFakeBackend()})
	for _, cmd := range []bson.D{
		{{Key: "listShards", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "find", Value: "chunks"}, {Key: "$db", Value: "config"}},
	} {
		reply, err := s.dispatch(&ConnInfo{ID: 1}, "", doc(t, cmd), false)
		if err != nil {
			t.Fatal(err)
		}
		if ok, code, msg := replyCode(t, reply); ok || code != 115 {
			t.Fatalf("%v: ok %v code %d %s", cmd, ok, code, msg)
		}
	}
	s = newServer(Options{})
	reply, err := s.dispatch(&ConnInfo{ID: 1}, "", doc(t, bson.D{{Key: "shardCollection", Value: "a.b"}, {Key: "key", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "$db", Value: "admin"}}), false)
	if err != nil {
		t.Fatal(err)
	}
	if ok, code, msg := replyCode(t, reply); ok || code != 94 {
		t.Fatalf("without a backend: ok %v code %d %s", ok, code, msg)
	}
}
