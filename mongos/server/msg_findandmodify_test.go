package server

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

// The in-memory fakeShard of data_test.go does not serve these commands;
// the tests of findAndModify, distinct, the index commands and explain
// run against real shardd servers (startDataCluster).

func errNotInFake() error { return mongoerr.New(mongoerr.IllegalOperation, "not in the fake") }

func (f *fakeShard) FindAndModify(context.Context, string, shardclient.FindAndModify) (*shardclient.FindAndModifyResult, error) {
	return nil, errNotInFake()
}
func (f *fakeShard) Distinct(context.Context, string, string, bson.Raw) ([]bson.RawValue, error) {
	return nil, errNotInFake()
}
func (f *fakeShard) Explain(context.Context, string, shardclient.Find) (bson.Raw, error) {
	return nil, errNotInFake()
}
func (f *fakeShard) CreateIndexes(context.Context, string, ...bson.Raw) (*shardclient.CreateIndexesResult, error) {
	return nil, errNotInFake()
}
func (f *fakeShard) DropIndexes(context.Context, string, ...string) (int, error) {
	return 0, errNotInFake()
}
func (f *fakeShard) DropIndexByKey(context.Context, string, bson.Raw) (int, error) {
	return 0, errNotInFake()
}
func (f *fakeShard) ListIndexes(context.Context, string) ([]bson.Raw, error) {
	return nil, errNotInFake()
}

// dataCommandNames are the commands (and aliases) of findAndModify,
// distinct, the index commands and explain, for TestListCommands.
var dataCommandNames = []string{"createIndexes", "deleteIndexes", "distinct", "dropIndexes", "explain",
	"findAndModify", "findandmodify", "listIndexes"}

// dataCluster is a router in front of real components, all in this
// process: an etcd config server (catalogtest), two shardd servers over
// Pebble stores on real gRPC listeners, a ClusterBackend and the official
// Go driver. Database "db" has:
//
//   - db.u: unsharded (on the database's primary shard);
//   - db.h: sharded on {k: "hashed"}, 4 chunks over both shards;
//   - db.r: sharded on {k: 1}, k < 0 on the primary shard, k >= 0 on the
//     other.
type dataCluster struct {
	cat     *catalog.Catalog
	primary string                         // db's primary shard
	other   string                         // the other shard
	direct  map[string]*shardclient.Client // straight to each shard
	client  *mongo.Client
	db      *mongo.Database
	b       *ClusterBackend
}

func startDataCluster(t *testing.T) *dataCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	etcd, cat := startCatalog(t)
	addrs, direct := serveShards(t, "s0", "s1")
	dc := &dataCluster{cat: cat, direct: direct}
	for _, name := range []string{"s0", "s1"} {
		if _, err := dc.cat.AddShard(ctx, name, []catalog.Member{{Name: name + "-a", Addr: addrs[name]}}, catalog.ShardActive); err != nil {
			t.Fatal(err)
		}
	}
	d, err := dc.cat.CreateDatabase(ctx, "db", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc.primary, dc.other = d.PrimaryShard, "s1"
	if dc.primary == "s1" {
		dc.other = "s0"
	}
	if _, _, err := dc.cat.ShardCollection(ctx, "db.h", catalog.ShardOptions{Key: catalog.ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: 4}); err != nil {
		t.Fatal(err)
	}
	coll, chunks, err := dc.cat.ShardCollection(ctx, "db.r", catalog.ShardOptions{Key: catalog.ShardKey{{Field: "k"}}})
	if err != nil {
		t.Fatal(err)
	}
	split, err := dc.cat.SplitChunk(ctx, "db.r", chunks[0], doc(t, bson.D{{Key: "k", Value: 0}}))
	if err != nil {
		t.Fatal(err)
	}
	if coll, err = dc.cat.GetCollection(ctx, "db.r"); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.cat.CommitMigration(ctx, "db.r", split[1], dc.primary, dc.other, catalog.CollVersion{Epoch: coll.Epoch, Version: coll.Version}); err != nil {
		t.Fatal(err)
	}
	dc.b, dc.client = startRouter(t, etcd, logging.Nop())
	waitFor(t, "the router's routing metadata", 20*time.Second, func() bool {
		rt, err := dc.b.Routing()
		if err != nil {
			return false
		}
		h, _ := rt.ShardsFor("db.h")
		r, _ := rt.ShardsFor("db.r")
		return len(h) == 2 && len(r) == 2
	})
	dc.db = dc.client.Database("db")
	return dc
}

// shardDocs returns how many documents of ns each shard holds (straight
// from the shards).
func (dc *dataCluster) shardDocs(t *testing.T, ns string, filter bson.D) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for name, c := range dc.direct {
		n, err := c.Count(context.Background(), ns, doc(t, filter), 0, 0)
		if err != nil && !mongoerr.HasCode(err, mongoerr.NamespaceNotFound) {
			t.Fatal(err)
		}
		out[name] = n
	}
	return out
}

// runCmd runs a command through the driver and returns its raw reply or
// error.
func (dc *dataCluster) runCmd(ctx context.Context, cmd bson.D) (bson.Raw, error) {
	return dc.db.RunCommand(ctx, cmd).Raw()
}

func TestFindAndModify(t *testing.T) {
	dc := startDataCluster(t)
	ctx := testCtx(t)
	for _, coll := range []string{"u", "h", "r"} {
		t.Run(coll, func(t *testing.T) {
			c := dc.db.Collection(coll)
			var docs []any
			for k := -5; k < 5; k++ {
				docs = append(docs, bson.D{{Key: "_id", Value: k}, {Key: "k", Value: k}, {Key: "n", Value: 0}, {Key: "a", Value: bson.A{1, 2, 3}}})
			}
			if _, err := c.InsertMany(ctx, docs); err != nil {
				t.Fatal(err)
			}
			// findOneAndUpdate, returning the new document.
			var got bson.M
			err := c.FindOneAndUpdate(ctx, bson.D{{Key: "k", Value: 3}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 5}}}},
				options.FindOneAndUpdate().SetReturnDocument(options.After).SetProjection(bson.D{{Key: "n", Value: 1}})).Decode(&got)
			if err != nil || got["n"] != int32(5) || got["_id"] != int32(3) || len(got) != 2 {
				t.Fatalf("findOneAndUpdate: %v %v", got, err)
			}
			// The raw reply: lastErrorObject and the old document.
			r, err := dc.runCmd(ctx, bson.D{{Key: "findAndModify", Value: coll}, {Key: "query", Value: bson.D{{Key: "k", Value: -2}}},
				{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a.$[e]", Value: 0}}}}},
				{Key: "arrayFilters", Value: bson.A{bson.D{{Key: "e", Value: bson.D{{Key: "$gte", Value: 2}}}}}}})
			if err != nil {
				t.Fatal(err)
			}
			if r.Lookup("lastErrorObject", "n").Int32() != 1 || !r.Lookup("lastErrorObject", "updatedExisting").Boolean() ||
				r.Lookup("value", "n").Int32() != 0 {
				t.Fatalf("findAndModify: %s", r)
			}
			if err := c.FindOne(ctx, bson.D{{Key: "k", Value: -2}}).Decode(&got); err != nil || !slices.Equal(toInts(got["a"]), []int64{1, 0, 0}) {
				t.Fatalf("arrayFilters: %v %v", got, err)
			}
			// No match: value null, n 0.
			r, err = dc.runCmd(ctx, bson.D{{Key: "findandmodify", Value: coll}, {Key: "query", Value: bson.D{{Key: "k", Value: 100}}},
				{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}})
			if err != nil || r.Lookup("value").Type != bson.TypeNull || r.Lookup("lastErrorObject", "n").Int32() != 0 ||
				r.Lookup("lastErrorObject", "updatedExisting").Boolean() {
				t.Fatalf("no match: %s %v", r, err)
			}
			// Upsert: lastErrorObject.upserted, the new document.
			r, err = dc.runCmd(ctx, bson.D{{Key: "findAndModify", Value: coll}, {Key: "query", Value: bson.D{{Key: "k", Value: 7}}},
				{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "_id", Value: 7}, {Key: "n", Value: 1}}}}},
				{Key: "upsert", Value: true}, {Key: "new", Value: true}})
			if err != nil || r.Lookup("lastErrorObject", "upserted").Int32() != 7 || r.Lookup("lastErrorObject", "updatedExisting").Boolean() ||
				r.Lookup("value", "k").Int32() != 7 {
				t.Fatalf("upsert: %s %v", r, err)
			}
			// Remove with a sort: lastErrorObject has n only.
			r, err = dc.runCmd(ctx, bson.D{{Key: "findAndModify", Value: coll}, {Key: "query", Value: bson.D{{Key: "k", Value: 4}}},
				{Key: "sort", Value: bson.D{{Key: "n", Value: -1}}}, {Key: "remove", Value: true}})
			if err != nil || r.Lookup("value", "_id").Int32() != 4 || r.Lookup("lastErrorObject", "n").Int32() != 1 {
				t.Fatalf("remove: %s %v", r, err)
			}
			if _, err := r.Lookup("lastErrorObject").Document().LookupErr("updatedExisting"); err == nil {
				t.Fatalf("remove reply has updatedExisting: %s", r)
			}
			if n, _ := c.CountDocuments(ctx, bson.D{}); n != 10 {
				t.Fatalf("%d documents, want 10", n)
			}
			// The document went to the shard owning k (ranged: 7 >= 0).
			if coll == "r" {
				if n := dc.shardDocs(t, "db.r", bson.D{{Key: "k", Value: 7}}); n[dc.other] != 1 || n[dc.primary] != 0 {
					t.Fatalf("upserted document on %v", n)
				}
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		cases := []struct {
			name string
			cmd  bson.D
			code int32
		}{
			{"no shard key, hashed", bson.D{{Key: "findAndModify", Value: "h"}, {Key: "query", Value: bson.D{{Key: "n", Value: 0}}},
				{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}}, 61},
			{"range on a hashed key", bson.D{{Key: "findAndModify", Value: "h"}, {Key: "query", Value: bson.D{{Key: "k", Value: bson.D{{Key: "$gt", Value: 0}}}}},
				{Key: "remove", Value: true}}, 61},
			{"by _id only, ranged", bson.D{{Key: "findAndModify", Value: "r"}, {Key: "query", Value: bson.D{{Key: "_id", Value: 1}}},
				{Key: "remove", Value: true}}, 61},
			{"range across both shards", bson.D{{Key: "findAndModify", Value: "r"}, {Key: "query", Value: bson.D{{Key: "k", Value: bson.D{{Key: "$gt", Value: -3}}}}},
				{Key: "remove", Value: true}}, 61},
			{"upsert with a range inside one shard", bson.D{{Key: "findAndModify", Value: "r"}, {Key: "query", Value: bson.D{{Key: "k", Value: bson.D{{Key: "$gt", Value: 50}}}}},
				{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}, {Key: "upsert", Value: true}}, 61},
			{"$set of another shard key value", bson.D{{Key: "findAndModify", Value: "r"}, {Key: "query", Value: bson.D{{Key: "k", Value: 1}}},
				{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "k", Value: -1}}}}}}, 66},
			{"$inc of a hashed shard key", bson.D{{Key: "findAndModify", Value: "h"}, {Key: "query", Value: bson.D{{Key: "k", Value: 1}}},
				{Key: "update", Value: bson.D{{Key: "$inc", Value: bson.D{{Key: "k", Value: 1}}}}}}, 66},
			{"$unset of a shard key", bson.D{{Key: "findAndModify", Value: "h"}, {Key: "query", Value: bson.D{{Key: "k", Value: 1}}},
				{Key: "update", Value: bson.D{{Key: "$unset", Value: bson.D{{Key: "k", Value: ""}}}}}}, 66},
			{"replacement without the shard key", bson.D{{Key: "findAndModify", Value: "r"}, {Key: "query", Value: bson.D{{Key: "k", Value: 1}}},
				{Key: "update", Value: bson.D{{Key: "x", Value: 1}}}}, 66},
			{"upsert that sets another key", bson.D{{Key: "findAndModify", Value: "r"}, {Key: "query", Value: bson.D{{Key: "k", Value: -30}}},
				{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "k", Value: 30}}}}}, {Key: "upsert", Value: true}}, 66},
			{"update and remove", bson.D{{Key: "findAndModify", Value: "u"}, {Key: "remove", Value: true},
				{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}}, 9},
			{"neither", bson.D{{Key: "findAndModify", Value: "u"}, {Key: "query", Value: bson.D{}}}, 9},
			{"remove and new", bson.D{{Key: "findAndModify", Value: "u"}, {Key: "remove", Value: true}, {Key: "new", Value: true}}, 9},
			{"query not a document", bson.D{{Key: "findAndModify", Value: "u"}, {Key: "query", Value: 1}, {Key: "remove", Value: true}}, 14},
			{"bad update operator", bson.D{{Key: "findAndModify", Value: "u"}, {Key: "query", Value: bson.D{{Key: "k", Value: 1}}},
				{Key: "update", Value: bson.D{{Key: "$bogus", Value: bson.D{{Key: "x", Value: 1}}}}}}, 9},
		}
		for _, tc := range cases {
			_, err := dc.runCmd(ctx, tc.cmd)
			var ce mongo.CommandError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Errorf("%s: got %v, want code %d", tc.name, err, tc.code)
			}
		}
		// Setting the key to the value it has, or a replacement that keeps
		// it, is fine.
		for _, u := range []bson.D{{{Key: "$set", Value: bson.D{{Key: "k", Value: 1.0}, {Key: "m", Value: 1}}}}, {{Key: "k", Value: 1}, {Key: "m", Value: 2}}} {
			r, err := dc.runCmd(ctx, bson.D{{Key: "findAndModify", Value: "h"}, {Key: "query", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "update", Value: u}, {Key: "new", Value: true}})
			if err != nil || r.Lookup("value", "k").AsInt64() != 1 {
				t.Errorf("update %v keeping the key: %s %v", u, r, err)
			}
		}
		if n := dc.shardDocs(t, "db.r", bson.D{{Key: "k", Value: -1}}); n[dc.primary] != 1 || n[dc.other] != 0 {
			t.Errorf("k: -1 on %v", n)
		}
		// A range on the ranged key that stays inside one chunk is fine
		// without upsert (one shard), as in MongoDB since SERVER-44422.
		if _, err := dc.runCmd(ctx, bson.D{{Key: "findAndModify", Value: "r"}, {Key: "query", Value: bson.D{{Key: "k", Value: bson.D{{Key: "$gt", Value: 50}}}}},
			{Key: "remove", Value: true}}); err != nil {
			t.Errorf("one-shard range: %v", err)
		}
	})

	t.Run("duplicate key", func(t *testing.T) {
		for _, coll := range []string{"u", "r"} {
			c := dc.db.Collection(coll)
			if _, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "k", Value: 1}, {Key: "n", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
				t.Fatalf("%s: createIndex: %v", coll, err)
			}
			// k: 1 has n: 0 already; setting the k: 1 document's n to 0 again
			// is no conflict, inserting another (1, 0) by upsert is.
			err := c.FindOneAndUpdate(ctx, bson.D{{Key: "k", Value: 1}, {Key: "n", Value: 99}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 0}}}}, options.FindOneAndUpdate().SetUpsert(true)).Err()
			var ce mongo.CommandError
			if !errors.As(err, &ce) || ce.Code != 11000 || !mongo.IsDuplicateKeyError(err) {
				t.Fatalf("%s: upsert of a duplicate: %v", coll, err)
			}
		}
	})
}

// toInts returns the integers of a decoded array.
func toInts(v any) []int64 {
	a, _ := v.(bson.A)
	out := make([]int64, len(a))
	for i, x := range a {
		switch n := x.(type) {
		case int32:
			out[i] = int64(n)
		case int64:
			out[i] = n
		}
	}
	return out
}

// checkFamShardKey refuses updates that could change a shard key, from
// the command alone.
func TestCheckFamShardKey(t *testing.T) {
	key := catalog.ShardKey{{Field: "a.b"}, {Field: "c"}}
	filter := bson.D{{Key: "a.b", Value: 1}, {Key: "c", Value: "x"}}
	cases := []struct {
		update bson.D
		ok     bool
	}{
		{bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 1}, {Key: "a.d", Value: 2}}}}, true},
		{bson.D{{Key: "$set", Value: bson.D{{Key: "a.b", Value: 1.0}, {Key: "c", Value: "x"}}}}, true},
		{bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "c", Value: "x"}}}}, true},
		{bson.D{{Key: "$set", Value: bson.D{{Key: "a.b", Value: 2}}}}, false},
		{bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}}}}, false}, // parent path
		{bson.D{{Key: "$set", Value: bson.D{{Key: "c.z", Value: 1}}}}, false},                          // child path
		{bson.D{{Key: "$inc", Value: bson.D{{Key: "c", Value: 0}}}}, false},
		{bson.D{{Key: "$rename", Value: bson.D{{Key: "n", Value: "c"}}}}, false},
		{bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: int64(1)}}}, {Key: "c", Value: "x"}, {Key: "n", Value: 1}}, true},
		{bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}, {Key: "n", Value: 1}}, false},
	}
	for _, tc := range cases {
		u := doc(t, tc.update)
		err := checkFamShardKey(key, doc(t, filter), bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: u})
		if (err == nil) != tc.ok || (err != nil && mongoerr.CodeOf(err) != mongoerr.ImmutableField) {
			t.Errorf("%v: %v", tc.update, err)
		}
	}
	// Without an equality on a key field, a replacement cannot be checked.
	err := checkFamShardKey(key, doc(t, bson.D{{Key: "a.b", Value: 1}}), bson.RawValue{Type: bson.TypeEmbeddedDocument,
		Value: doc(t, bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}, {Key: "c", Value: "x"}})})
	if mongoerr.CodeOf(err) != mongoerr.ImmutableField {
		t.Errorf("replacement without equality on c: %v", err)
	}
}
