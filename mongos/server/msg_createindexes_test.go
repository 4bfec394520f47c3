package server

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// indexNames lists a collection's index names through the router
// (listIndexes), in the order returned.
func indexNames(t *testing.T, c *mongo.Collection) []string {
	t.Helper()
	cur, err := c.Indexes().List(testCtx(t))
	if err != nil {
		t.Fatalf("listIndexes %s: %v", c.Name(), err)
	}
	var specs []bson.M
	if err := cur.All(testCtx(t), &specs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range specs {
		out = append(out, s["name"].(string))
	}
	return out
}

// TestIndexCommands covers createIndexes, listIndexes and dropIndexes on
// an unsharded, a hashed and a ranged collection: the index is built on
// every shard owning chunks (checked straight on the shards), listed
// through the router, enforced across the router (duplicate key), and
// dropped everywhere.
func TestIndexCommands(t *testing.T) {
	dc := startDataCluster(t)
	ctx := testCtx(t)
	for _, coll := range []string{"u", "h", "r"} {
		t.Run(coll, func(t *testing.T) {
			c := dc.db.Collection(coll)
			ns := "db." + coll
			r, err := dc.runCmd(ctx, bson.D{{Key: "createIndexes", Value: coll}, {Key: "indexes", Value: bson.A{
				bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "name", Value: "a_1"}},
				bson.D{{Key: "key", Value: bson.D{{Key: "k", Value: 1}, {Key: "b", Value: -1}}}, {Key: "name", Value: "kb"}, {Key: "unique", Value: true}},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			// {raw: {<shard connection string>: {numIndexesBefore, ...}}, ok}
			raw, err := r.Lookup("raw").Document().Elements()
			want := map[string]bool{dc.primary: true}
			if coll != "u" {
				want = map[string]bool{"s0": true, "s1": true}
			}
			if err != nil || len(raw) != len(want) {
				t.Fatalf("createIndexes reply %s", r)
			}
			for _, e := range raw {
				name, _, _ := strings.Cut(e.Key(), "/")
				d := e.Value().Document()
				if !want[name] || d.Lookup("numIndexesBefore").Int32() != 1 || d.Lookup("numIndexesAfter").Int32() != 3 ||
					!d.Lookup("createdCollectionAutomatically").Boolean() || d.Lookup("ok").Double() != 1 {
					t.Fatalf("createIndexes reply %s", r)
				}
			}
			// Built on each shard owning chunks.
			for sh := range want {
				specs, err := dc.direct[sh].ListIndexes(ctx, ns)
				if err != nil || len(specs) != 3 {
					t.Fatalf("%s on %s: %v %v", ns, sh, specs, err)
				}
			}
			// The driver's helper; again: nothing new (note).
			name, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}})
			if err != nil || name != "a_1" {
				t.Fatalf("CreateOne: %q %v", name, err)
			}
			if got := indexNames(t, c); !slices.Equal(got, []string{"_id_", "a_1", "kb"}) {
				t.Fatalf("listIndexes: %v", got)
			}
			// listIndexes with batchSize 1 goes through getMore.
			r, err = dc.runCmd(ctx, bson.D{{Key: "listIndexes", Value: coll}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: 1}}}})
			if err != nil || r.Lookup("cursor", "ns").StringValue() != "db.$cmd.listIndexes."+coll || r.Lookup("cursor", "id").Int64() == 0 {
				t.Fatalf("listIndexes batchSize 1: %s %v", r, err)
			}
			cur, err := c.Indexes().List(ctx, options.ListIndexes().SetBatchSize(1))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for cur.Next(ctx) {
				n++
			}
			if cur.Err() != nil || n != 3 {
				t.Fatalf("listIndexes over getMore: %d %v", n, cur.Err())
			}
			// The unique index holds across the router.
			if _, err := c.InsertOne(ctx, bson.D{{Key: "k", Value: 3}, {Key: "b", Value: 1}}); err != nil {
				t.Fatal(err)
			}
			_, err = c.InsertOne(ctx, bson.D{{Key: "k", Value: 3}, {Key: "b", Value: 1}})
			if !mongo.IsDuplicateKeyError(err) {
				t.Fatalf("duplicate insert: %v", err)
			}
			// dropIndexes by name, by key pattern, "*", alias deleteIndexes.
			r, err = dc.runCmd(ctx, bson.D{{Key: "dropIndexes", Value: coll}, {Key: "index", Value: "a_1"}})
			if err != nil || r.Lookup("nIndexesWas").Int32() != 3 {
				t.Fatalf("dropIndexes by name: %s %v", r, err)
			}
			if err := c.Indexes().DropOne(ctx, "kb"); err != nil {
				t.Fatal(err)
			}
			if got := indexNames(t, c); !slices.Equal(got, []string{"_id_"}) {
				t.Fatalf("after drops: %v", got)
			}
			if _, err := c.Indexes().CreateMany(ctx, []mongo.IndexModel{{Keys: bson.D{{Key: "x", Value: 1}}}, {Keys: bson.D{{Key: "y", Value: -1}}}, {Keys: bson.D{{Key: "z", Value: 1}}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := dc.runCmd(ctx, bson.D{{Key: "deleteIndexes", Value: coll}, {Key: "index", Value: bson.D{{Key: "y", Value: -1}}}}); err != nil {
				t.Fatalf("drop by key: %v", err)
			}
			if _, err := dc.runCmd(ctx, bson.D{{Key: "dropIndexes", Value: coll}, {Key: "index", Value: bson.A{"x_1"}}}); err != nil {
				t.Fatalf("drop a list: %v", err)
			}
			if got := indexNames(t, c); !slices.Equal(got, []string{"_id_", "z_1"}) {
				t.Fatalf("after drops: %v", got)
			}
			if err := c.Indexes().DropAll(ctx); err != nil {
				t.Fatal(err)
			}
			for sh := range want {
				if specs, err := dc.direct[sh].ListIndexes(ctx, ns); err != nil || len(specs) != 1 {
					t.Fatalf("%s on %s after DropAll: %v %v", ns, sh, specs, err)
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
			{"unique not prefixed by the shard key (ranged)", bson.D{{Key: "createIndexes", Value: "r"}, {Key: "indexes", Value: bson.A{
				bson.D{{Key: "key", Value: bson.D{{Key: "b", Value: 1}, {Key: "k", Value: 1}}}, {Key: "name", Value: "bk"}, {Key: "unique", Value: true}}}}}, 67},
			{"unique not prefixed by the shard key (hashed)", bson.D{{Key: "createIndexes", Value: "h"}, {Key: "indexes", Value: bson.A{
				bson.D{{Key: "key", Value: bson.D{{Key: "email", Value: 1}}}, {Key: "name", Value: "email_1"}, {Key: "unique", Value: true}}}}}, 67},
			{"no indexes field", bson.D{{Key: "createIndexes", Value: "u"}}, 40414},
			{"indexes not an array", bson.D{{Key: "createIndexes", Value: "u"}, {Key: "indexes", Value: 1}}, 14},
			{"empty indexes", bson.D{{Key: "createIndexes", Value: "u"}, {Key: "indexes", Value: bson.A{}}}, 2},
			{"spec without a key", bson.D{{Key: "createIndexes", Value: "u"}, {Key: "indexes", Value: bson.A{bson.D{{Key: "name", Value: "x"}}}}}, 9},
			{"unknown index name", bson.D{{Key: "dropIndexes", Value: "u"}, {Key: "index", Value: "nope_1"}}, 27},
			{"unknown index name, sharded", bson.D{{Key: "dropIndexes", Value: "h"}, {Key: "index", Value: "nope_1"}}, 27},
			{"unknown key pattern", bson.D{{Key: "dropIndexes", Value: "r"}, {Key: "index", Value: bson.D{{Key: "nope", Value: 1}}}}, 27},
			{"drop _id_", bson.D{{Key: "dropIndexes", Value: "u"}, {Key: "index", Value: "_id_"}}, 72},
			{"no index field", bson.D{{Key: "dropIndexes", Value: "u"}}, 40414},
			{"index of a bad type", bson.D{{Key: "dropIndexes", Value: "u"}, {Key: "index", Value: 3}}, 14},
			{"drop on a missing collection", bson.D{{Key: "dropIndexes", Value: "missing"}, {Key: "index", Value: "*"}}, 26},
			{"list a missing collection", bson.D{{Key: "listIndexes", Value: "missing"}}, 26},
			{"list in a missing database", bson.D{{Key: "listIndexes", Value: "missing"}}, 26},
		}
		for i, tc := range cases {
			db := dc.db
			if i == len(cases)-1 {
				db = dc.client.Database("nodb")
			}
			err := db.RunCommand(ctx, tc.cmd).Err()
			var ce mongo.CommandError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Errorf("%s: got %v, want code %d", tc.name, err, tc.code)
			}
		}
		// Unique indexes prefixed by the shard key, or starting with _id,
		// are fine on a sharded collection.
		for _, key := range []bson.D{{{Key: "k", Value: 1}, {Key: "c", Value: 1}}, {{Key: "_id", Value: 1}, {Key: "c", Value: 1}}} {
			if _, err := dc.db.Collection("h").Indexes().CreateOne(ctx, mongo.IndexModel{Keys: key, Options: options.Index().SetUnique(true)}); err != nil {
				t.Errorf("unique %v: %v", key, err)
			}
		}
	})
}

// checkUniqueIndex follows MongoDB's isUniqueIndexCompatible: the shard
// key's fields, in order, must prefix the index key (directions and
// hashing aside), or the key must start with _id.
func TestCheckUniqueIndex(t *testing.T) {
	hashed := catalog.ShardKey{{Field: "k", Hashed: true}}
	compound := catalog.ShardKey{{Field: "a"}, {Field: "b"}}
	cases := []struct {
		key  catalog.ShardKey
		spec bson.D
		ok   bool
	}{
		{hashed, bson.D{{Key: "key", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "unique", Value: true}}, true},
		{hashed, bson.D{{Key: "key", Value: bson.D{{Key: "k", Value: -1}, {Key: "x", Value: 1}}}, {Key: "unique", Value: 1}}, true},
		{hashed, bson.D{{Key: "key", Value: bson.D{{Key: "x", Value: 1}, {Key: "k", Value: 1}}}, {Key: "unique", Value: true}}, false},
		{hashed, bson.D{{Key: "key", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "unique", Value: false}}, true},
		{hashed, bson.D{{Key: "key", Value: bson.D{{Key: "x", Value: 1}}}}, true},
		{hashed, bson.D{{Key: "key", Value: bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}}}, {Key: "unique", Value: true}}, true},
		{compound, bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "unique", Value: true}}, false},
		{compound, bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 1}, {Key: "c", Value: 1}}}, {Key: "unique", Value: true}}, true},
		{compound, bson.D{{Key: "key", Value: bson.D{{Key: "b", Value: 1}, {Key: "a", Value: 1}}}, {Key: "unique", Value: true}}, false},
	}
	for _, tc := range cases {
		err := checkUniqueIndex(tc.key, doc(t, tc.spec))
		if (err == nil) != tc.ok || (err != nil && mongoerr.CodeOf(err) != mongoerr.CannotCreateIndex) {
			t.Errorf("key %s, spec %v: %v", tc.key, tc.spec, err)
		}
	}
	err := checkUniqueIndex(compound, doc(t, bson.D{{Key: "key", Value: bson.D{{Key: "b", Value: 1}}}, {Key: "unique", Value: true}}))
	if e, _ := mongoerr.As(err); e == nil || e.Msg != "cannot create unique index over { b: 1 } with shard key pattern { a: 1, b: 1 }" {
		t.Errorf("message: %v", err)
	}
}

// mergeDropIndexes skips shards without the collection or the index as
// long as one shard dropped it.
func TestMergeDropIndexes(t *testing.T) {
	nsNotFound := mongoerr.New(mongoerr.NamespaceNotFound, "ns")
	ixNotFound := mongoerr.New(mongoerr.IndexNotFound, "ix")
	other := mongoerr.New(mongoerr.HostUnreachable, "down")
	cases := []struct {
		was  []int
		errs []error
		n    int
		code mongoerr.Code
	}{
		{[]int{3, 2}, []error{nil, nil}, 3, 0},
		{[]int{0, 4}, []error{nsNotFound, nil}, 4, 0},
		{[]int{0, 4}, []error{ixNotFound, nil}, 4, 0},
		{[]int{0, 0}, []error{nsNotFound, ixNotFound}, 0, mongoerr.IndexNotFound},
		{[]int{0, 0}, []error{nsNotFound, nsNotFound}, 0, mongoerr.NamespaceNotFound},
		{[]int{2, 0}, []error{nil, other}, 0, mongoerr.HostUnreachable},
	}
	for i, tc := range cases {
		n, err := mergeDropIndexes(tc.was, tc.errs)
		if n != tc.n || mongoerr.CodeOf(err) != tc.code || (tc.code == 0) != (err == nil) {
			t.Errorf("case %d: %d %v", i, n, err)
		}
	}
}
