package integration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
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
	"github.com/psdb/psdb/pkg/conformance"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// TestRouter is issue 6's end-to-end suite: real processes (1 config
// server, 2 shards x 3 members, 2 routers) driven by the official Go
// driver through the routers. The subtests share one cluster and run in
// order; the disruptive ones (a stale router, a router restart, a
// primary SIGKILL) come last, and each leaves the cluster serving.
func TestRouter(t *testing.T) {
	rc := newRouterCluster(t)
	t.Run("CRUD", func(t *testing.T) { testRouterCRUD(t, rc) })
	t.Run("RegisteredRouters", func(t *testing.T) { testRouterRegistered(t, rc) })
	t.Run("ReplSetGetStatus", func(t *testing.T) { testRouterReplSetStatus(t, rc) })
	t.Run("ShardKeyImmutable", func(t *testing.T) { testRouterShardKeyImmutable(t, rc) })
	t.Run("Conformance", func(t *testing.T) { testRouterConformance(t, rc) })
	t.Run("SortSkipLimit", func(t *testing.T) { testRouterSortSkipLimit(t, rc) })
	t.Run("ManyBatches", func(t *testing.T) { testRouterManyBatches(t, rc) })
	t.Run("UniqueIndexes", func(t *testing.T) { testRouterUniqueIndexes(t, rc) })
	t.Run("WriteErrors", func(t *testing.T) { testRouterWriteErrors(t, rc) })
	t.Run("Mongosh", func(t *testing.T) { testRouterMongosh(t, rc) })
	t.Run("StaleRouter", func(t *testing.T) { testRouterStale(t, rc) })
	t.Run("RouterRestart", func(t *testing.T) { testRouterRestart(t, rc) })
	t.Run("PrimaryKill", func(t *testing.T) { testRouterPrimaryKill(t, rc) })
}

// testRouterRegistered: both routers registered themselves, so
// config.mongos (what sh.status() lists as active mongoses) names them.
func testRouterRegistered(t *testing.T, rc *routerCluster) {
	harness.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		n, err := rc.clients[0].Database("config").Collection("mongos").CountDocuments(ctx, bson.D{})
		if err != nil {
			return err
		}
		if n != int64(len(rc.routers)) {
			return fmt.Errorf("config.mongos holds %d routers, want %d", n, len(rc.routers))
		}
		return nil
	})
}

// testRouterReplSetStatus: replSetGetStatus through the router shows each
// shard with one healthy primary and two healthy secondaries following it.
func testRouterReplSetStatus(t *testing.T, rc *routerCluster) {
	harness.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var out struct {
			Shards map[string]struct {
				Set     string `bson:"set"`
				Term    int64  `bson:"term"`
				Members []struct {
					Name           string  `bson:"name"`
					Health         float64 `bson:"health"`
					StateStr       string  `bson:"stateStr"`
					SyncSourceHost string  `bson:"syncSourceHost"`
				} `bson:"members"`
			} `bson:"shards"`
		}
		if err := rc.clients[1].Database("admin").RunCommand(ctx, bson.D{{Key: "replSetGetStatus", Value: 1}}).Decode(&out); err != nil {
			return err
		}
		if len(out.Shards) != len(rc.shards) {
			return fmt.Errorf("%d shards in %+v", len(out.Shards), out)
		}
		for name, sh := range out.Shards {
			primary, secondaries := "", 0
			for _, m := range sh.Members {
				switch {
				case m.Health == 1 && m.StateStr == "PRIMARY":
					primary = m.Name
				case m.Health == 1 && m.StateStr == "SECONDARY":
					secondaries++
				}
			}
			if sh.Set != name || sh.Term < 1 || primary == "" || secondaries != 2 {
				return fmt.Errorf("shard %s: %+v", name, sh)
			}
			for _, m := range sh.Members {
				if m.StateStr == "SECONDARY" && m.SyncSourceHost != primary {
					return fmt.Errorf("shard %s: %s syncs from %q, primary is %s", name, m.Name, m.SyncSourceHost, primary)
				}
			}
		}
		return nil
	})
}

// testRouterShardKeyImmutable: an update that would change a document's
// shard key is refused with ImmutableField (66) and changes nothing; other
// fields of the same document update normally.
func testRouterShardKeyImmutable(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a := rc.clients[0]
	for _, c := range []struct {
		ns  string
		key bson.D
	}{{"imm.ranged", bson.D{{Key: "k", Value: 1}}}, {"imm.hashed", bson.D{{Key: "k", Value: "hashed"}}}} {
		shardCollectionVia(t, ctx, a, c.ns, c.key)
		coll := a.Database("imm").Collection(c.ns[len("imm."):])
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: 5}, {Key: "v", Value: 0}}); err != nil {
			t.Fatal(err)
		}
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "k", Value: 5}}, bson.D{{Key: "$set", Value: bson.D{{Key: "k", Value: 600}}}})
		var we mongo.WriteException
		if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != int(mongoerr.ImmutableField) {
			t.Fatalf("%s: update of the shard key: %v, want ImmutableField", c.ns, err)
		}
		_, err = coll.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$inc", Value: bson.D{{Key: "k", Value: 1}}}})
		if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != int(mongoerr.ImmutableField) {
			t.Fatalf("%s: multi update of the shard key: %v, want ImmutableField", c.ns, err)
		}
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "k", Value: 5}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 1}}}}); err != nil {
			t.Fatalf("%s: update of another field: %v", c.ns, err)
		}
		var got struct{ K, V int }
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Decode(&got); err != nil || got.K != 5 || got.V != 1 {
			t.Fatalf("%s: document now %+v (%v), want k 5, v 1", c.ns, got, err)
		}
	}
}

// testRouterCRUD runs the same CRUD script on an unsharded, a hashed and
// a ranged collection, writing through one router and reading through
// both, and checks where the documents landed.
func testRouterCRUD(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a := rc.clients[0]
	shardCollectionVia(t, ctx, a, "crud.hashed", bson.D{{Key: "k", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 4})
	shardCollectionVia(t, ctx, a, "crud.ranged", bson.D{{Key: "k", Value: 1}})
	// Ranged: k < 500 on the primary shard, k >= 500 on the other one,
	// while the collection is still empty (no migration needed).
	_, first := rc.chunkAt(t, ctx, "crud.ranged", bson.D{{Key: "k", Value: 0}})
	other := rc.shards[0]
	if other == first.Shard {
		other = rc.shards[1]
	}
	rc.split(t, ctx, "crud.ranged", bson.D{{Key: "k", Value: 500}})
	rc.moveChunk(t, ctx, "crud.ranged", bson.D{{Key: "k", Value: 500}}, other)
	rc.flush(t, ctx)
	if got := rc.chunkShards(t, ctx, "crud.hashed"); len(got) != 2 {
		t.Fatalf("hashed collection's chunks on %v, want both shards", got)
	}

	for _, name := range []string{"plain", "hashed", "ranged"} {
		t.Run(name, func(t *testing.T) {
			ns := "crud." + name
			coll := a.Database("crud").Collection(name)
			collB := rc.clients[1].Database("crud").Collection(name)
			const n = 1000
			res, err := coll.InsertMany(ctx, intDocs(0, n))
			if err != nil || len(res.InsertedIDs) != n {
				t.Fatalf("InsertMany: %v", err)
			}
			// Placement, straight on the shards' primaries.
			var total int64
			perShard := map[string]int64{}
			for _, s := range rc.shards {
				perShard[s] = rc.countOnShard(t, ctx, s, ns, bson.D{})
				total += perShard[s]
			}
			if total != n {
				t.Fatalf("shards hold %v documents, want %d in all", perShard, n)
			}
			switch name {
			case "hashed":
				for s, c := range perShard {
					if c == 0 {
						t.Fatalf("hashed: shard %s holds nothing: %v", s, perShard)
					}
				}
			case "ranged":
				if perShard[first.Shard] != 500 || perShard[other] != 500 {
					t.Fatalf("ranged: %v, want 500 on each (k < 500 on %s)", perShard, first.Shard)
				}
				if c := rc.countOnShard(t, ctx, other, ns, bson.D{{Key: "k", Value: bson.D{{Key: "$lt", Value: 500}}}}); c != 0 {
					t.Fatalf("ranged: %d documents with k < 500 on %s", c, other)
				}
			}
			// Point reads through both routers.
			for _, c := range []*mongo.Collection{coll, collB} {
				var d struct{ K, G int }
				if err := c.FindOne(ctx, bson.D{{Key: "k", Value: 123}}).Decode(&d); err != nil || d.K != 123 || d.G != 123%7 {
					t.Fatalf("FindOne k=123: %+v %v", d, err)
				}
				if err := c.FindOne(ctx, bson.D{{Key: "k", Value: n + 5}}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
					t.Fatalf("FindOne of a missing key: %v", err)
				}
			}
			// A range read crossing the ranged split point, sorted.
			cur, err := collB.Find(ctx, bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: 450}, {Key: "$lt", Value: 550}}}},
				options.Find().SetSort(bson.D{{Key: "k", Value: 1}}))
			if err != nil {
				t.Fatal(err)
			}
			if got := intField(t, ctx, cur, "k"); !slices.Equal(got, intSeq(450, 100, 1)) {
				t.Fatalf("range read: %v", got)
			}
			if c, err := collB.CountDocuments(ctx, bson.D{{Key: "g", Value: 3}}); err != nil || c != int64(countWhere(n, func(v int) bool { return v%7 == 3 })) {
				t.Fatalf("CountDocuments g=3: %d %v", c, err)
			}
			var vals []int
			if err := coll.Distinct(ctx, "g", bson.D{}).Decode(&vals); err != nil || !slices.Equal(sortedInts(vals), intSeq(0, 7, 1)) {
				t.Fatalf("distinct g: %v %v", vals, err)
			}
			// Updates: one by shard key, many by another field, an upsert
			// carrying the shard key, findAndModify by shard key.
			ur, err := coll.UpdateOne(ctx, bson.D{{Key: "k", Value: 5}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: "five"}}}})
			if err != nil || ur.MatchedCount != 1 || ur.ModifiedCount != 1 {
				t.Fatalf("UpdateOne: %+v %v", ur, err)
			}
			g1 := int64(countWhere(n, func(v int) bool { return v%7 == 1 }))
			ur, err = coll.UpdateMany(ctx, bson.D{{Key: "g", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "m", Value: 1}}}})
			if err != nil || ur.MatchedCount != g1 || ur.ModifiedCount != g1 {
				t.Fatalf("UpdateMany: %+v %v, want %d", ur, err, g1)
			}
			ur, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: n}, {Key: "k", Value: n}}, bson.D{{Key: "$set", Value: bson.D{{Key: "g", Value: 100}}}},
				options.UpdateOne().SetUpsert(true))
			if err != nil || ur.UpsertedCount != 1 {
				t.Fatalf("upsert: %+v %v", ur, err)
			}
			var fam struct{ K, M int }
			if err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "k", Value: 8}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "m", Value: 10}}}},
				options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&fam); err != nil || fam.K != 8 || fam.M != 11 {
				t.Fatalf("findAndModify k=8: %+v %v", fam, err)
			}
			if c, err := collB.CountDocuments(ctx, bson.D{{Key: "m", Value: bson.D{{Key: "$gte", Value: 1}}}}); err != nil || c != g1 {
				t.Fatalf("count m >= 1 through the other router: %d %v, want %d", c, err, g1)
			}
			if err := collB.FindOne(ctx, bson.D{{Key: "k", Value: 5}, {Key: "x", Value: "five"}}).Err(); err != nil {
				t.Fatalf("UpdateOne not visible through the other router: %v", err)
			}
			// Deletes: one by shard key, many by another field.
			dr, err := coll.DeleteOne(ctx, bson.D{{Key: "k", Value: 7}})
			if err != nil || dr.DeletedCount != 1 {
				t.Fatalf("DeleteOne: %+v %v", dr, err)
			}
			g2 := int64(countWhere(n, func(v int) bool { return v%7 == 2 }))
			dr, err = coll.DeleteMany(ctx, bson.D{{Key: "g", Value: 2}})
			if err != nil || dr.DeletedCount != g2 {
				t.Fatalf("DeleteMany: %+v %v, want %d", dr, err, g2)
			}
			want := int64(n) + 1 - 1 - g2
			if c, err := collB.CountDocuments(ctx, bson.D{}); err != nil || c != want {
				t.Fatalf("count after deletes: %d %v, want %d", c, err, want)
			}
			// Grouping merged across shards.
			cur, err = collB.Aggregate(ctx, mongo.Pipeline{
				{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$g"}, {Key: "c", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
				{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
			})
			if err != nil {
				t.Fatal(err)
			}
			var groups []struct {
				ID int `bson:"_id"`
				C  int
			}
			if err := cur.All(ctx, &groups); err != nil {
				t.Fatal(err)
			}
			var got, wantGroups []string
			for _, g := range groups {
				got = append(got, fmt.Sprintf("%d:%d", g.ID, g.C))
			}
			for g := range 7 {
				c := countWhere(n, func(v int) bool { return v%7 == g && v != 7 })
				if g != 2 {
					wantGroups = append(wantGroups, fmt.Sprintf("%d:%d", g, c))
				}
			}
			wantGroups = append(wantGroups, "100:1")
			if !slices.Equal(got, wantGroups) {
				t.Fatalf("$group: %v, want %v", got, wantGroups)
			}
			if name != "plain" {
				// A sharded collection refuses a document without its key.
				_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "nokey"}})
				if serverCode(err) != int(mongoerr.ShardKeyNotFound) {
					t.Fatalf("insert without the shard key: %v, want 61", err)
				}
			}
		})
	}
}

func countWhere(n int, f func(int) bool) int {
	c := 0
	for v := range n {
		if f(v) {
			c++
		}
	}
	return c
}

// routerTarget plays conformance cases through a router against a
// collection sharded on {_id: "hashed"} over both shards: Reset empties
// it (deleteMany) and inserts the case's documents; Run sends the case's
// command.
type routerTarget struct {
	ctx  context.Context
	coll *mongo.Collection
}

func (r *routerTarget) Reset(docs []bson.Raw) error {
	if _, err := r.coll.DeleteMany(r.ctx, bson.D{}); err != nil {
		return fmt.Errorf("empty %s: %w", r.coll.Name(), err)
	}
	if len(docs) == 0 {
		return nil
	}
	in := make([]any, len(docs))
	for i, d := range docs {
		in[i] = d
	}
	if _, err := r.coll.InsertMany(r.ctx, in); err != nil {
		return fmt.Errorf("insert the case's documents: %w", err)
	}
	return nil
}

// codeErr turns a driver error into a *mongoerr.Error with the server's
// code, which conformance.Check reads.
func codeErr(err error) error {
	if err == nil {
		return nil
	}
	if c := serverCode(err); c != 0 {
		return mongoerr.Wrap(err, mongoerr.Code(c), "%s", err.Error())
	}
	return err
}

func orEmpty(d bson.Raw) any {
	if d == nil {
		return bson.D{}
	}
	return d
}

func (r *routerTarget) Run(c conformance.Case) ([]bson.Raw, error) {
	db := r.coll.Database()
	switch c.Op {
	case "find":
		// The find command as the case states it (the driver's Find would
		// turn a negative limit into singleBatch).
		cmd := bson.D{{Key: "find", Value: r.coll.Name()}, {Key: "filter", Value: orEmpty(c.Filter)}}
		if c.Projection != nil {
			cmd = append(cmd, bson.E{Key: "projection", Value: c.Projection})
		}
		if c.Sort != nil {
			cmd = append(cmd, bson.E{Key: "sort", Value: c.Sort})
		}
		if c.Skip != 0 {
			cmd = append(cmd, bson.E{Key: "skip", Value: c.Skip})
		}
		if c.Limit != 0 {
			cmd = append(cmd, bson.E{Key: "limit", Value: c.Limit})
		}
		cur, err := db.RunCommandCursor(r.ctx, append(cmd, bson.E{Key: "batchSize", Value: 3}))
		if err != nil {
			return nil, codeErr(err)
		}
		return drainRaw(r.ctx, cur)
	case "count":
		cmd := bson.D{{Key: "count", Value: r.coll.Name()}, {Key: "query", Value: orEmpty(c.Filter)}}
		if c.Skip != 0 {
			cmd = append(cmd, bson.E{Key: "skip", Value: c.Skip})
		}
		if c.Limit != 0 {
			cmd = append(cmd, bson.E{Key: "limit", Value: c.Limit})
		}
		raw, err := db.RunCommand(r.ctx, cmd).Raw()
		if err != nil {
			return nil, codeErr(err)
		}
		return []bson.Raw{marshalDoc(bson.D{{Key: "n", Value: raw.Lookup("n")}})}, nil
	case "distinct":
		raw, err := db.RunCommand(r.ctx, bson.D{{Key: "distinct", Value: r.coll.Name()}, {Key: "key", Value: c.Key}, {Key: "query", Value: orEmpty(c.Filter)}}).Raw()
		if err != nil {
			return nil, codeErr(err)
		}
		return []bson.Raw{marshalDoc(bson.D{{Key: "values", Value: raw.Lookup("values")}})}, nil
	case "update", "delete":
		var cmd bson.D
		if c.Op == "update" {
			st := bson.D{{Key: "q", Value: orEmpty(c.Filter)}, {Key: "u", Value: c.Update}, {Key: "upsert", Value: c.Upsert}, {Key: "multi", Value: c.Multi}}
			if len(c.ArrayFilters) > 0 {
				st = append(st, bson.E{Key: "arrayFilters", Value: c.ArrayFilters})
			}
			cmd = bson.D{{Key: "update", Value: r.coll.Name()}, {Key: "updates", Value: bson.A{st}}}
		} else {
			limit := 1
			if c.Multi {
				limit = 0
			}
			cmd = bson.D{{Key: "delete", Value: r.coll.Name()}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: orEmpty(c.Filter)}, {Key: "limit", Value: limit}}}}}
		}
		raw, err := db.RunCommand(r.ctx, cmd).Raw()
		if err != nil {
			return nil, codeErr(err)
		}
		if wes, ok := raw.Lookup("writeErrors").ArrayOK(); ok {
			vals, _ := wes.Values()
			if len(vals) > 0 {
				we := vals[0].Document()
				code, _ := we.Lookup("code").AsInt64OK()
				msg, _ := we.Lookup("errmsg").StringValueOK()
				return nil, mongoerr.New(mongoerr.Code(code), "%s", msg)
			}
		}
		return r.all()
	case "aggregate":
		pipe := bson.A{}
		for _, st := range c.Pipeline {
			pipe = append(pipe, st)
		}
		cur, err := r.coll.Aggregate(r.ctx, pipe)
		if err != nil {
			return nil, codeErr(err)
		}
		return drainRaw(r.ctx, cur)
	}
	return nil, fmt.Errorf("unknown op %q", c.Op)
}

// all returns the collection in _id order (keys.Compare, as the node
// target does).
func (r *routerTarget) all() ([]bson.Raw, error) {
	cur, err := r.coll.Find(r.ctx, bson.D{})
	if err != nil {
		return nil, codeErr(err)
	}
	docs, err := drainRaw(r.ctx, cur)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(docs, func(i, j int) bool {
		return keys.Compare(docs[i].Lookup("_id"), docs[j].Lookup("_id")) < 0
	})
	return docs, nil
}

func drainRaw(ctx context.Context, cur *mongo.Cursor) ([]bson.Raw, error) {
	defer cur.Close(ctx)
	var out []bson.Raw
	for cur.Next(ctx) {
		out = append(out, slices.Clone(cur.Current))
	}
	return out, codeErr(cur.Err())
}

func marshalDoc(d bson.D) bson.Raw {
	b, err := bson.Marshal(d)
	if err != nil {
		panic(err)
	}
	return b
}

// shardedDifferences lists the corpus cases whose answer on a sharded
// collection differs from one node's, by MongoDB's own rules, with the
// reason; the suite checks that the router gives MongoDB's sharded answer
// (61 ShardKeyNotFound) for them. Every one is a single-document upsert
// whose filter lacks the shard key (_id here): a mongos cannot know which
// shard the inserted document would belong to, and MongoDB 7 refuses it
// ("must include the full shard key in the filter" for upsert: true).
var shardedDifferences = map[string]string{
	"update.json/upsert _id from update goes first":                   "sharded: upsert without the shard key in its filter",
	"update.json/upsert does not insert when a document matches":      "sharded: upsert without the shard key in its filter (refused before matching)",
	"update.json/upsert path matched twice":                           "sharded: upsert without the shard key in its filter (refused before the update is checked)",
	"update.json/same dollar-prefixed update on an existing document": "sharded: upsert without the shard key in its filter (refused before the update is checked)",
}

// hasIDEquality reports whether a filter pins _id by equality at the top
// level ({_id: v} with v not an operator document, or {_id: {$eq: v}}).
func hasIDEquality(filter bson.Raw) bool {
	v, err := filter.LookupErr("_id")
	if err != nil {
		return false
	}
	d, ok := v.DocumentOK()
	if !ok {
		return v.Type != bson.TypeRegex
	}
	first, err := d.IndexErr(0)
	if err != nil || len(first.Key()) == 0 || first.Key()[0] != '$' {
		return true
	}
	_, err = d.LookupErr("$eq")
	return err == nil
}

// testRouterConformance runs the whole query corpus (the one
// shardd/executor's TestConformance runs on one node) through router A
// against a collection sharded on a hashed _id over both shards.
func testRouterConformance(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	shardCollectionVia(t, ctx, rc.clients[0], "conf.c", bson.D{{Key: "_id", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 4})
	if got := rc.chunkShards(t, ctx, "conf.c"); len(got) != 2 {
		t.Fatalf("conformance collection's chunks on %v, want both shards", got)
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cases, err := conformance.Load(filepath.Join(root, "pkg", "conformance", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	for i := range cases {
		c := &cases[i]
		reason, ok := shardedDifferences[c.File+"/"+c.Name]
		if !ok {
			continue
		}
		listed++
		if c.Op != "update" || !c.Upsert || c.Multi || hasIDEquality(c.Filter) {
			t.Fatalf("%s/%s is listed as an upsert without the shard key but is not one", c.File, c.Name)
		}
		c.ExpectedError, c.Notes = int32(mongoerr.ShardKeyNotFound), reason
	}
	if listed != len(shardedDifferences) {
		t.Fatalf("shardedDifferences names cases the corpus does not have: %v", shardedDifferences)
	}
	target := &routerTarget{ctx: ctx, coll: rc.clients[0].Database("conf").Collection("c")}
	conformance.RunAll(t, cases, target)
}

// testRouterSortSkipLimit checks sorted scatter-gather finds with skip
// and limit over a hashed collection against the answer computed here.
func testRouterSortSkipLimit(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	shardCollectionVia(t, ctx, rc.clients[0], "sorts.h", bson.D{{Key: "k", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 4})
	const n = 2000
	if _, err := rc.clients[0].Database("sorts").Collection("h").InsertMany(ctx, intDocs(0, n), unorderedInsert); err != nil {
		t.Fatal(err)
	}
	for _, s := range rc.shards {
		if c := rc.countOnShard(t, ctx, s, "sorts.h", bson.D{}); c == 0 || c == n {
			t.Fatalf("shard %s holds %d of %d documents: not a scatter-gather", s, c, n)
		}
	}
	all := intSeq(0, n, 1)
	byGThenKDesc := slices.Clone(all)
	sort.SliceStable(byGThenKDesc, func(i, j int) bool {
		a, b := byGThenKDesc[i], byGThenKDesc[j]
		if a%7 != b%7 {
			return a%7 < b%7
		}
		return a > b
	})
	window := func(v []int, skip, limit int) []int {
		if skip >= len(v) {
			return nil
		}
		v = v[skip:]
		if limit > 0 && limit < len(v) {
			v = v[:limit]
		}
		return v
	}
	desc := slices.Clone(all)
	slices.Reverse(desc)
	cases := []struct {
		name        string
		filter      bson.D
		sort        bson.D
		skip, limit int
		want        []int
	}{
		{"k asc skip 100 limit 50", bson.D{}, bson.D{{Key: "k", Value: 1}}, 100, 50, window(all, 100, 50)},
		{"k desc limit 7", bson.D{}, bson.D{{Key: "k", Value: -1}}, 0, 7, window(desc, 0, 7)},
		{"s desc skip 1990", bson.D{}, bson.D{{Key: "s", Value: -1}}, 1990, 0, window(desc, 1990, 0)},
		{"g asc k desc skip 280 limit 300", bson.D{}, bson.D{{Key: "g", Value: 1}, {Key: "k", Value: -1}}, 280, 300, window(byGThenKDesc, 280, 300)},
		{"filtered k asc skip 3 limit 4", bson.D{{Key: "g", Value: 5}}, bson.D{{Key: "k", Value: 1}}, 3, 4, []int{26, 33, 40, 47}},
		{"skip past the end", bson.D{}, bson.D{{Key: "k", Value: 1}}, n + 10, 5, nil},
		{"limit larger than the result", bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: n - 3}}}}, bson.D{{Key: "k", Value: 1}}, 0, 100, intSeq(n-3, 3, 1)},
	}
	for i, cli := range rc.clients {
		coll := cli.Database("sorts").Collection("h")
		for _, tc := range cases {
			o := options.Find().SetSort(tc.sort).SetBatchSize(64)
			if tc.skip > 0 {
				o.SetSkip(int64(tc.skip))
			}
			if tc.limit > 0 {
				o.SetLimit(int64(tc.limit))
			}
			cur, err := coll.Find(ctx, tc.filter, o)
			if err != nil {
				t.Fatalf("router %d %s: %v", i, tc.name, err)
			}
			if got := intField(t, ctx, cur, "k"); !slices.Equal(got, tc.want) {
				t.Errorf("router %d %s: got %d docs %v, want %d %v", i, tc.name, len(got), headInts(got), len(tc.want), headInts(tc.want))
			}
		}
		// The same through aggregate: $sort, $skip, $limit merged.
		cur, err := coll.Aggregate(ctx, mongo.Pipeline{
			{{Key: "$sort", Value: bson.D{{Key: "k", Value: -1}}}},
			{{Key: "$skip", Value: 5}},
			{{Key: "$limit", Value: 10}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := intField(t, ctx, cur, "k"); !slices.Equal(got, window(desc, 5, 10)) {
			t.Errorf("router %d aggregate $sort/$skip/$limit: %v", i, got)
		}
	}
}

func headInts(v []int) []int { return v[:min(len(v), 10)] }

// testRouterManyBatches reads thousands of documents spread over both
// shards in small batches (many getMores), sorted and unsorted, through
// both routers, and abandons a cursor half way.
func testRouterManyBatches(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	shardCollectionVia(t, ctx, rc.clients[0], "batches.h", bson.D{{Key: "k", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 4})
	const n = 3000
	if _, err := rc.clients[0].Database("batches").Collection("h").InsertMany(ctx, intDocs(0, n), unorderedInsert); err != nil {
		t.Fatal(err)
	}
	for i, cli := range rc.clients {
		coll := cli.Database("batches").Collection("h")
		// Unsorted: every document once.
		cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(10))
		if err != nil {
			t.Fatal(err)
		}
		if got := sortedInts(intField(t, ctx, cur, "k")); !slices.Equal(got, intSeq(0, n, 1)) {
			t.Fatalf("router %d: unsorted scan returned %d documents, want %d distinct", i, len(got), n)
		}
		// Sorted merge over many batches.
		cur, err = coll.Find(ctx, bson.D{{Key: "g", Value: bson.D{{Key: "$ne", Value: 3}}}}, options.Find().SetSort(bson.D{{Key: "s", Value: -1}}).SetBatchSize(50))
		if err != nil {
			t.Fatal(err)
		}
		var want []int
		for v := n - 1; v >= 0; v-- {
			if v%7 != 3 {
				want = append(want, v)
			}
		}
		if got := intField(t, ctx, cur, "k"); !slices.Equal(got, want) {
			t.Fatalf("router %d: sorted scan: %d documents, first %v, want %d first %v", i, len(got), headInts(got), len(want), headInts(want))
		}
		// Aggregation cursor over many batches.
		cur, err = coll.Aggregate(ctx, mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "g", Value: 0}}}}, {{Key: "$project", Value: bson.D{{Key: "k", Value: 1}}}}},
			options.Aggregate().SetBatchSize(13))
		if err != nil {
			t.Fatal(err)
		}
		if got := sortedInts(intField(t, ctx, cur, "k")); len(got) != countWhere(n, func(v int) bool { return v%7 == 0 }) {
			t.Fatalf("router %d: aggregate cursor returned %d documents", i, len(got))
		}
		// A cursor abandoned after a few batches is killed; the next one
		// still works.
		cur, err = coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(10))
		if err != nil {
			t.Fatal(err)
		}
		for range 25 {
			if !cur.Next(ctx) {
				t.Fatalf("router %d: cursor ended early: %v", i, cur.Err())
			}
		}
		if err := cur.Close(ctx); err != nil {
			t.Fatalf("router %d: killCursors: %v", i, err)
		}
	}
	// A getMore on the router that does not own the cursor fails cleanly
	// with CursorNotFound (43), as between two mongos.
	a := rc.clients[0].Database("batches")
	raw, err := a.RunCommand(ctx, bson.D{{Key: "find", Value: "h"}, {Key: "batchSize", Value: 5}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	id := raw.Lookup("cursor", "id").Int64()
	if id == 0 {
		t.Fatal("find of 3000 documents with batchSize 5 returned no cursor")
	}
	err = rc.clients[1].Database("batches").RunCommand(ctx, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "h"}}).Err()
	if serverCode(err) != int(mongoerr.CursorNotFound) {
		t.Fatalf("getMore of router A's cursor on router B: %v, want 43", err)
	}
	if err := a.RunCommand(ctx, bson.D{{Key: "killCursors", Value: "h"}, {Key: "cursors", Value: bson.A{id}}}).Err(); err != nil {
		t.Fatal(err)
	}
}

// testRouterUniqueIndexes: unique indexes on unsharded and sharded
// collections, and the duplicate-key error (11000) through the router.
func testRouterUniqueIndexes(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a := rc.clients[0]
	// Unsharded: any unique index.
	plain := a.Database("uniq").Collection("plain")
	if _, err := plain.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "email", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "email", Value: "a@x"}}); err != nil {
		t.Fatal(err)
	}
	_, err := plain.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}, {Key: "email", Value: "a@x"}})
	if !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("unsharded unique email: %v, want 11000", err)
	}
	// Ranged on k with chunks on both shards (k < 0 on one, k >= 0 on
	// the other) and a unique shard key.
	shardCollectionVia(t, ctx, a, "uniq.r", bson.D{{Key: "k", Value: 1}}, bson.E{Key: "unique", Value: true})
	_, first := rc.chunkAt(t, ctx, "uniq.r", bson.D{{Key: "k", Value: 0}})
	other := rc.shards[0]
	if other == first.Shard {
		other = rc.shards[1]
	}
	rc.split(t, ctx, "uniq.r", bson.D{{Key: "k", Value: 0}})
	rc.moveChunk(t, ctx, "uniq.r", bson.D{{Key: "k", Value: 0}}, other)
	rc.flush(t, ctx)
	r := a.Database("uniq").Collection("r")
	// The catalog move copied nothing (PSDB has no migration yet, which
	// would copy the indexes): build the unique shard-key index on every
	// shard owning chunks, as createIndexes does.
	if _, err := r.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "k", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
		t.Fatalf("unique {k: 1}: %v", err)
	}
	// A unique index must be prefixed by the shard key.
	_, err = r.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "u", Value: 1}}, Options: options.Index().SetUnique(true)})
	if serverCode(err) != int(mongoerr.CannotCreateIndex) {
		t.Fatalf("unique index not prefixed by the shard key: %v, want 67", err)
	}
	if _, err := r.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "k", Value: 1}, {Key: "u", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
		t.Fatalf("unique {k, u}: %v", err)
	}
	// The index exists on both shards (a shard owning chunks builds it).
	var names []string
	cur, err := r.Indexes().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for cur.Next(ctx) {
		names = append(names, cur.Current.Lookup("name").StringValue())
	}
	if !slices.Contains(names, "k_1_u_1") {
		t.Fatalf("listIndexes: %v", names)
	}
	for _, k := range []int{-5, 5} { // one on each shard
		if _, err := r.InsertOne(ctx, bson.D{{Key: "_id", Value: k}, {Key: "k", Value: k}, {Key: "u", Value: 1}}); err != nil {
			t.Fatal(err)
		}
		// Same shard key, other _id: the unique shard key index refuses it.
		_, err := r.InsertOne(ctx, bson.D{{Key: "_id", Value: k * 100}, {Key: "k", Value: k}, {Key: "u", Value: 2}})
		if !mongo.IsDuplicateKeyError(err) {
			t.Fatalf("duplicate shard key k=%d: %v, want 11000", k, err)
		}
		// Same _id on the same shard.
		_, err = r.InsertOne(ctx, bson.D{{Key: "_id", Value: k}, {Key: "k", Value: k + 1}, {Key: "u", Value: 3}})
		if !mongo.IsDuplicateKeyError(err) {
			t.Fatalf("duplicate _id k=%d: %v, want 11000", k, err)
		}
		// An update that creates a duplicate of {k, u}.
		if _, err := r.InsertOne(ctx, bson.D{{Key: "_id", Value: k*10 + 1}, {Key: "k", Value: k + 1}, {Key: "u", Value: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := r.CountDocuments(ctx, bson.D{}); err != nil || n != 4 {
		t.Fatalf("count: %d %v, want 4", n, err)
	}
	// The same unique index through the other router sees the same data.
	_, err = rc.clients[1].Database("uniq").Collection("r").InsertOne(ctx, bson.D{{Key: "_id", Value: 99}, {Key: "k", Value: 5}, {Key: "u", Value: 7}})
	if !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("duplicate through router B: %v, want 11000", err)
	}
	// findAndModify upsert hitting the unique index.
	err = r.FindOneAndUpdate(ctx, bson.D{{Key: "k", Value: -5}, {Key: "u", Value: 9}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}},
		options.FindOneAndUpdate().SetUpsert(true)).Err()
	if !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("findAndModify upsert duplicating the shard key: %v, want 11000", err)
	}
}

// testRouterWriteErrors: batches with duplicates on an unsharded and a
// hashed collection: an ordered batch stops at the first error, an
// unorderedInsert one runs everything else; n and the writeErrors' indexes are
// MongoDB's.
func testRouterWriteErrors(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	shardCollectionVia(t, ctx, rc.clients[0], "werr.hashed", bson.D{{Key: "k", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 4})
	for _, name := range []string{"plain", "hashed"} {
		t.Run(name, func(t *testing.T) {
			db := rc.clients[0].Database("werr")
			coll := db.Collection(name)
			// Existing: 0..9.
			if _, err := coll.InsertMany(ctx, intDocs(0, 10)); err != nil {
				t.Fatal(err)
			}
			docs := func(ids ...int) bson.A {
				out := bson.A{}
				for _, id := range ids {
					out = append(out, bson.D{{Key: "_id", Value: id}, {Key: "k", Value: id}})
				}
				return out
			}
			// Ordered: 100, 101, 3 (dup), 102, 5 (dup), 103 → n 2, one
			// error at index 2, nothing after it written.
			raw := writeCmd(t, ctx, db, bson.D{{Key: "insert", Value: name}, {Key: "documents", Value: docs(100, 101, 3, 102, 5, 103)}, {Key: "ordered", Value: true}})
			checkWriteReply(t, "ordered insert", raw, 2, []int{2})
			if c := countIDs(t, ctx, coll, 100, 101, 102, 103); c != 2 {
				t.Fatalf("ordered insert wrote %d of 100..103, want 2", c)
			}
			// Unordered: 200, 3 (dup), 201, 202, 5 (dup), 203, 200 (dup
			// inside the batch) → n 4, errors at 1, 4, 6.
			raw = writeCmd(t, ctx, db, bson.D{{Key: "insert", Value: name}, {Key: "documents", Value: docs(200, 3, 201, 202, 5, 203, 200)}, {Key: "ordered", Value: false}})
			checkWriteReply(t, "unorderedInsert insert", raw, 4, []int{1, 4, 6})
			if c := countIDs(t, ctx, coll, 200, 201, 202, 203); c != 4 {
				t.Fatalf("unorderedInsert insert wrote %d of 200..203, want 4", c)
			}
			// The driver's view of the same: BulkWriteException with the
			// indexes of the batch.
			_, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 300}, {Key: "k", Value: 300}}, bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: 1}}, bson.D{{Key: "_id", Value: 301}, {Key: "k", Value: 301}}},
				options.InsertMany().SetOrdered(false))
			if idx, codes := writeErrorIndexes(err); !slices.Equal(idx, []int{1}) || !slices.Equal(codes, []int{11000}) {
				t.Fatalf("driver unorderedInsert InsertMany: %v (indexes %v codes %v)", err, idx, codes)
			}
			_, err = coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 400}, {Key: "k", Value: 400}}, bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: 2}}, bson.D{{Key: "_id", Value: 401}, {Key: "k", Value: 401}}})
			if idx, codes := writeErrorIndexes(err); !slices.Equal(idx, []int{1}) || !slices.Equal(codes, []int{11000}) {
				t.Fatalf("driver ordered InsertMany: %v (indexes %v codes %v)", err, idx, codes)
			}
			if c := countIDs(t, ctx, coll, 300, 301, 400, 401); c != 3 {
				t.Fatalf("driver batches wrote %d of 300, 301, 400, 401, want 3", c)
			}
			// Update batches: the second statement fails ($inc of a
			// string, 14 TypeMismatch).
			ups := bson.A{
				bson.D{{Key: "q", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}}},
				bson.D{{Key: "q", Value: bson.D{{Key: "k", Value: 2}}}, {Key: "u", Value: bson.D{{Key: "$inc", Value: bson.D{{Key: "s", Value: 1}}}}}},
				bson.D{{Key: "q", Value: bson.D{{Key: "k", Value: 4}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}}},
			}
			raw = writeCmd(t, ctx, db, bson.D{{Key: "update", Value: name}, {Key: "updates", Value: ups}, {Key: "ordered", Value: true}})
			checkWriteReply(t, "ordered update", raw, 1, []int{1})
			if c, _ := coll.CountDocuments(ctx, bson.D{{Key: "a", Value: 1}}); c != 1 {
				t.Fatalf("ordered update: %d documents updated, want 1", c)
			}
			raw = writeCmd(t, ctx, db, bson.D{{Key: "update", Value: name}, {Key: "updates", Value: ups}, {Key: "ordered", Value: false}})
			checkWriteReply(t, "unorderedInsert update", raw, 2, []int{1})
			if c, _ := coll.CountDocuments(ctx, bson.D{{Key: "a", Value: 1}}); c != 2 {
				t.Fatalf("unorderedInsert update: %d documents updated, want 2", c)
			}
		})
	}
}

// writeCmd runs a write command and returns its reply, write errors
// included (the driver reports those as a WriteException next to the
// reply); any other error fails the test.
func writeCmd(t *testing.T, ctx context.Context, db *mongo.Database, cmd bson.D) bson.Raw {
	t.Helper()
	raw, err := db.RunCommand(ctx, cmd).Raw()
	var we mongo.WriteException
	if err != nil && (!errors.As(err, &we) || raw == nil) {
		t.Fatalf("%s: %v", cmd[0].Key, err)
	}
	return raw
}

// checkWriteReply checks a write command's n and the indexes of its
// writeErrors.
func checkWriteReply(t *testing.T, what string, raw bson.Raw, n int, idx []int) {
	t.Helper()
	gotN, _ := raw.Lookup("n").AsInt64OK()
	var gotIdx []int
	if arr, ok := raw.Lookup("writeErrors").ArrayOK(); ok {
		vals, _ := arr.Values()
		for _, v := range vals {
			i, _ := v.Document().Lookup("index").AsInt64OK()
			gotIdx = append(gotIdx, int(i))
			if c, _ := v.Document().Lookup("code").AsInt64OK(); c == 0 {
				t.Errorf("%s: write error without a code: %s", what, v)
			}
		}
	}
	if int(gotN) != n || !slices.Equal(gotIdx, idx) {
		t.Fatalf("%s: n %d, writeErrors at %v; want n %d at %v\nreply: %s", what, gotN, gotIdx, n, idx, raw)
	}
}

func countIDs(t *testing.T, ctx context.Context, coll *mongo.Collection, ids ...int) int64 {
	t.Helper()
	n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// testRouterStale: router B keeps serving while the chunk map changes
// under it. Each round splits a ranged collection and moves the new
// (empty) chunk to the other shard in the catalog, then inserts into that
// chunk through router B. Three rounds in four send the inserts right
// after the change, racing B's catalog watch; the others freeze B (SIGSTOP) with
// the inserts waiting in its sockets, make the change, have router A
// write into the moved chunk, queue a find of those documents on B, and
// resume it. Every document must land on the shard the catalog says owns
// it, and reads through both routers must see them: a stale router must
// refresh (StaleConfig) and never write to, or read from, the old owner.
func testRouterStale(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a := rc.clients[0]
	const ns = "stale.r"
	shardCollectionVia(t, ctx, a, ns, bson.D{{Key: "k", Value: 1}})
	routerB := rc.routers[1]
	portB := portOf(t, routerB.Addr())
	// Requests sent while B is frozen must go out on established
	// connections (a new one would wait for B's handshake reply) so they
	// can be seen waiting in B's receive queues: one client per request,
	// each with a pooled connection from a ping.
	const conc = 10 // concurrent inserts per round
	clientsB := make([]*mongo.Client, conc+1)
	for i := range clientsB {
		clientsB[i] = rc.connect(t, routerB.Addr())
		if err := clientsB[i].Ping(ctx, readpref.Primary()); err != nil {
			t.Fatal(err)
		}
	}
	b := clientsB[conc] // the reader
	// queued waits until n requests wait in frozen router B's sockets
	// (where /proc/net/tcp is readable; elsewhere the race is looser).
	queued := func(n int) {
		t.Helper()
		if _, ok := tcpSockets(); !ok {
			return
		}
		harness.Eventually(t, 10*time.Second, func() error {
			if q := queuedAt(portB); q < n {
				return fmt.Errorf("%d requests queued at frozen router B, want %d", q, n)
			}
			return nil
		})
	}
	collB := b.Database("stale").Collection("r")
	// Warm router B's cache of the collection.
	if _, err := collB.InsertMany(ctx, intDocs(0, 100)); err != nil {
		t.Fatal(err)
	}
	if n, err := collB.CountDocuments(ctx, bson.D{}); err != nil || n != 100 {
		t.Fatalf("count through B: %d %v", n, err)
	}
	const rounds, per = 20, 50
	frozenRounds := 0
	for round := 1; round <= rounds; round++ {
		lo := round * 1000
		point := bson.D{{Key: "k", Value: lo}}
		_, ch := rc.chunkAt(t, ctx, ns, point)
		to := rc.shards[0]
		if ch.Shard == to {
			to = rc.shards[1]
		}
		// Rounds 1, 5, 9...: the change lands while B is frozen with the
		// inserts (and then a read) waiting in its sockets; the others: B
		// is not frozen, the inserts follow the catalog change at once
		// (the race that catches a stale router most often).
		frozen := round%4 == 1
		// Ten concurrent inserts of five documents each, on ten
		// connections: ten requests racing router B's watch.
		done := make(chan error, conc)
		send := func() {
			for i := range conc {
				go func() {
					_, err := clientsB[i].Database("stale").Collection("r").InsertMany(ctx, intDocs(lo+i*per/conc, per/conc))
					done <- err
				}()
			}
		}
		if frozen {
			frozenRounds++
			routerB.Pause()
			resumed := false
			resume := func() {
				if !resumed {
					resumed = true
					routerB.Resume()
				}
			}
			t.Cleanup(resume) // a failure below must not leave B frozen
			send()
			queued(conc)
			rc.split(t, ctx, ns, point)
			rc.moveChunk(t, ctx, ns, point, to)
			// A stale read too: router A (refreshed) writes ten documents
			// into the moved chunk, so they are on the new owner only,
			// and a find of them is queued on the frozen router B.
			runAdmin(t, ctx, a, bson.D{{Key: "flushRouterConfig", Value: 1}})
			if _, err := a.Database("stale").Collection("r").InsertMany(ctx, intDocs(lo+per, 10)); err != nil {
				t.Fatalf("round %d: insert through router A: %v", round, err)
			}
			read := make(chan []int, 1)
			go func() {
				cur, err := collB.Find(ctx, bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: lo + per}}}}, options.Find().SetSort(bson.D{{Key: "k", Value: 1}}))
				if err != nil {
					read <- []int{-1}
					return
				}
				defer cur.Close(ctx)
				var got []int
				for cur.Next(ctx) {
					got = append(got, int(cur.Current.Lookup("k").AsInt64()))
				}
				if cur.Err() != nil {
					got = append(got, -1)
				}
				read <- got
			}()
			queued(conc + 1)
			resume()
			if got := <-read; !slices.Equal(got, intSeq(lo+per, 10, 1)) {
				t.Errorf("round %d: stale router B's find of the moved chunk returned %v, want %v", round, got, intSeq(lo+per, 10, 1))
			}
		} else {
			rc.split(t, ctx, ns, point)
			rc.moveChunk(t, ctx, ns, point, to)
			send()
		}
		for range conc {
			if err := <-done; err != nil {
				t.Fatalf("round %d: insert through router B after the move: %v", round, err)
			}
		}
		rng := bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: lo}, {Key: "$lt", Value: lo + per}}}}
		// Reads through the stale router.
		if n, err := collB.CountDocuments(ctx, rng); err != nil || n != per {
			t.Errorf("round %d: router B counts %d documents in [%d, %d) (%v), want %d", round, n, lo, lo+per, err, per)
		}
		// Placement: on the new owner, not on the old one.
		if n := rc.countOnShard(t, ctx, to, ns, rng); n != per {
			t.Errorf("round %d: new owner %s holds %d documents of [%d, %d), want %d (router B wrote to the old owner %s)", round, to, n, lo, lo+per, per, ch.Shard)
		}
		if n := rc.countOnShard(t, ctx, ch.Shard, ns, rng); n != 0 {
			t.Errorf("round %d: old owner %s holds %d documents of the moved range [%d, %d)", round, ch.Shard, n, lo, lo+per)
		}
		// Router A, refreshed, sees them too.
		runAdmin(t, ctx, a, bson.D{{Key: "flushRouterConfig", Value: 1}})
		if n, err := a.Database("stale").Collection("r").CountDocuments(ctx, rng); err != nil || n != per {
			t.Errorf("round %d: router A counts %d documents in [%d, %d) (%v), want %d", round, n, lo, lo+per, err, per)
		}
	}
	want := int64(100 + rounds*per + frozenRounds*10)
	if n, err := collB.CountDocuments(ctx, bson.D{}); err != nil || n != want {
		t.Errorf("total through router B: %d %v, want %d", n, err, want)
	}
	rc.flush(t, ctx)
}

// testRouterRestart stops router B (SIGTERM) and later SIGKILLs router A
// while clients keep writing: a client of the other router and a client
// given both routers never fail; the restarted router serves again with
// everything written meanwhile.
func testRouterRestart(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	both := rc.connect(t, rc.routers[0].Addr(), rc.routers[1].Addr())
	shardCollectionVia(t, ctx, rc.clients[0], "restart.h", bson.D{{Key: "k", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 4})

	type writer struct {
		name string
		coll *mongo.Collection
		acks atomic.Int64
		errs atomic.Int64
		last atomic.Value // error
	}
	var next atomic.Int64
	run := func(wctx context.Context, w *writer, wg *sync.WaitGroup) {
		defer wg.Done()
		for wctx.Err() == nil {
			k := next.Add(1)
			octx, ocancel := context.WithTimeout(wctx, 10*time.Second)
			_, err := w.coll.InsertOne(octx, bson.D{{Key: "_id", Value: k}, {Key: "k", Value: k}, {Key: "by", Value: w.name}})
			ocancel()
			switch {
			case err == nil:
				w.acks.Add(1)
			case wctx.Err() != nil:
				return
			default:
				w.errs.Add(1)
				w.last.Store(err)
			}
		}
	}
	restart := func(t *testing.T, victim int, kill bool) {
		survivor := 1 - victim
		ws := []*writer{
			{name: "survivor", coll: rc.clients[survivor].Database("restart").Collection("h")},
			{name: "both", coll: both.Database("restart").Collection("h")},
		}
		wctx, wcancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, w := range ws {
			wg.Add(1)
			go run(wctx, w, &wg)
		}
		defer func() { wcancel(); wg.Wait() }()
		progress := func(min int64) {
			t.Helper()
			base := []int64{ws[0].acks.Load(), ws[1].acks.Load()}
			harness.Eventually(t, 30*time.Second, func() error {
				for i, w := range ws {
					if w.acks.Load()-base[i] < min {
						return fmt.Errorf("writer %s: %d acknowledged inserts since the last step (errors %d, last %v)", w.name, w.acks.Load()-base[i], w.errs.Load(), w.last.Load())
					}
				}
				return nil
			})
		}
		progress(20)
		p := rc.routers[victim]
		if kill {
			p.Kill()
		} else {
			p.Stop()
		}
		progress(50) // the survivor and the two-router client keep writing
		p.Start()
		// The victim's own client reconnects and sees everything written
		// while it was down.
		victimColl := rc.clients[victim].Database("restart").Collection("h")
		harness.Eventually(t, 30*time.Second, func() error {
			octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
			defer ocancel()
			k := next.Add(1)
			_, err := victimColl.InsertOne(octx, bson.D{{Key: "_id", Value: k}, {Key: "k", Value: k}, {Key: "by", Value: "victim"}})
			return err
		})
		progress(20)
		wcancel()
		wg.Wait()
		for _, w := range ws {
			if w.errs.Load() == 0 {
				continue
			}
			last, _ := w.last.Load().(error)
			why := ""
			if serverCode(last) == int(mongoerr.NotYetInitialized) {
				// The restarted router answered hello and ping before
				// its catalog connection was up; a driver given several
				// routers used it at once, and 94 is not retryable.
				why = " (the restarted router served data commands before it had connected to the config servers)"
			}
			t.Errorf("%s router %s: writer %s saw %d errors (last: %v)%s", map[bool]string{true: "killing", false: "stopping"}[kill], p.Name(), w.name, w.errs.Load(), last, why)
		}
		for i, cli := range rc.clients {
			coll := cli.Database("restart").Collection("h")
			var byWriter []struct {
				ID string `bson:"_id"`
				C  int64  `bson:"c"`
			}
			cur, err := coll.Aggregate(ctx, mongo.Pipeline{{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$by"}, {Key: "c", Value: bson.D{{Key: "$sum", Value: 1}}}}}}})
			if err != nil {
				t.Fatalf("router %d: %v", i, err)
			}
			if err := cur.All(ctx, &byWriter); err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, g := range byWriter {
				got[g.ID] = g.C
			}
			// Every acknowledged insert is there (an insert that failed may
			// be there too, hence >=).
			if got["survivor"] < ws[0].acks.Load() || got["both"] < ws[1].acks.Load() {
				t.Errorf("router %d sees %v, acknowledged survivor %d both %d", i, got, ws[0].acks.Load(), ws[1].acks.Load())
			}
		}
		if _, err := rc.clients[0].Database("restart").Collection("h").DeleteMany(ctx, bson.D{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("StopB", func(t *testing.T) { restart(t, 1, false) })
	t.Run("KillA", func(t *testing.T) { restart(t, 0, true) })
}

// testRouterPrimaryKill SIGKILLs the primary of a shard while the history
// checker inserts (retryable writes, w:"majority") and increments
// counters through both routers, restarts it, and checks that every
// acknowledged insert is present exactly once and nothing else is.
func testRouterPrimaryKill(t *testing.T, rc *routerCluster) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	both := rc.connect(t, rc.routers[0].Addr(), rc.routers[1].Addr())
	shardCollectionVia(t, ctx, rc.clients[0], "chk.history", bson.D{{Key: "_id", Value: "hashed"}}, bson.E{Key: "numInitialChunks", Value: 4})
	coll := both.Database("chk").Collection("history",
		options.Collection().SetWriteConcern(writeconcern.Majority()).SetReadPreference(readpref.Primary()))
	store := checker.NewMongoStore(coll)

	var (
		hist   *checker.History
		runErr error
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		hist, runErr = checker.Run(ctx, store, checker.Workload{
			Writers: 4, Readers: 2, Duration: 8 * time.Second, KeyPrefix: "kill", OpTimeout: 20 * time.Second,
		})
	}()
	// Let the load run, then kill the primary of the first shard.
	shard := rc.shards[0]
	harness.Eventually(t, 20*time.Second, func() error {
		if n := rc.countOnShard(t, ctx, shard, "chk.history", bson.D{}); n < 50 {
			return fmt.Errorf("%d documents on %s so far", n, shard)
		}
		return nil
	})
	victim := rc.primaryOf(t, shard)
	killedAt := time.Now()
	rc.c.Process(victim).Kill()
	var newPrimary string
	harness.Eventually(t, 30*time.Second, func() error {
		p, err := rc.cat.GetPrimary(ctx, shard)
		if err != nil {
			return err
		}
		if p.Member == victim {
			return fmt.Errorf("%s still holds the lease", victim)
		}
		newPrimary = p.Member
		return nil
	})
	t.Logf("killed primary %s of %s; %s took over after %v", victim, shard, newPrimary, time.Since(killedAt).Round(time.Millisecond))
	rc.c.Process(victim).StartNoWait()
	<-done
	if runErr != nil {
		t.Fatal(runErr)
	}
	view, err := checker.Collect(ctx, "routers", store, hist)
	if err != nil {
		t.Fatal(err)
	}
	rep := checker.VerifyViews(ctx, hist, view)
	rep.Scenario, rep.Faults = "router: shard primary SIGKILL", "1 kill"
	t.Log(rep.String())
	if !rep.OK() {
		t.Fatalf("history check failed:\n%s", rep)
	}
	if len(rep.Acked) < 100 {
		t.Fatalf("only %d inserts acknowledged", len(rep.Acked))
	}
	// The killed member comes back and the cluster serves both shards.
	rc.c.Process(victim).WaitHealthy(60 * time.Second)
	rc.waitReady(t)
}
