package server

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/mongos/targeting"
)

// explainShards runs explain and returns the winning plan's stage and the
// names of the shards it lists.
func explainShards(t *testing.T, dc *dataCluster, cmd bson.D) (string, []string, bson.Raw) {
	t.Helper()
	r, err := dc.runCmd(testCtx(t), bson.D{{Key: "explain", Value: cmd}, {Key: "verbosity", Value: "queryPlanner"}})
	if err != nil {
		t.Fatalf("explain %v: %v", cmd, err)
	}
	wp := r.Lookup("queryPlanner", "winningPlan")
	vals, _ := wp.Document().Lookup("shards").Array().Values()
	var names []string
	for _, v := range vals {
		d := v.Document()
		names = append(names, d.Lookup("shardName").StringValue())
		// Each entry carries the shard's own queryPlanner fields.
		if _, err := d.LookupErr("winningPlan", "stage"); err != nil {
			t.Fatalf("shard entry without a winning plan: %s", d)
		}
	}
	return wp.Document().Lookup("stage").StringValue(), names, r
}

func TestExplain(t *testing.T) {
	dc := startDataCluster(t)
	ctx := testCtx(t)
	var docs []any
	for k := -10; k < 10; k++ {
		docs = append(docs, bson.D{{Key: "_id", Value: k}, {Key: "k", Value: k}, {Key: "v", Value: k % 3}})
	}
	for _, coll := range []string{"u", "h", "r"} {
		if _, err := dc.db.Collection(coll).InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	// The shard owning k: 3 on the hashed collection.
	rt, err := dc.b.Routing()
	if err != nil {
		t.Fatal(err)
	}
	one := func(coll string, k int) string {
		tg, err := targeting.ForQuery(rt, "db."+coll, doc(t, bson.D{{Key: "k", Value: k}}))
		if err != nil || len(tg.Shards) != 1 {
			t.Fatalf("targeting %s k=%d: %v %v", coll, k, tg, err)
		}
		return tg.Shards[0]
	}
	both := []string{"s0", "s1"}
	eq := bson.D{{Key: "k", Value: 3}}
	cases := []struct {
		name   string
		cmd    bson.D
		stage  string
		shards []string
	}{
		{"find, unsharded", bson.D{{Key: "find", Value: "u"}, {Key: "filter", Value: bson.D{{Key: "v", Value: 1}}}}, "SINGLE_SHARD", []string{dc.primary}},
		{"find, hashed, equality on the key", bson.D{{Key: "find", Value: "h"}, {Key: "filter", Value: eq}}, "SINGLE_SHARD", []string{one("h", 3)}},
		{"find, hashed, scatter", bson.D{{Key: "find", Value: "h"}, {Key: "filter", Value: bson.D{{Key: "v", Value: 1}}}}, "SHARD_MERGE", both},
		{"find, hashed, sorted scatter", bson.D{{Key: "find", Value: "h"}, {Key: "sort", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "limit", Value: 3}}, "SHARD_MERGE_SORT", both},
		{"find, ranged, equality", bson.D{{Key: "find", Value: "r"}, {Key: "filter", Value: bson.D{{Key: "k", Value: -4}}}}, "SINGLE_SHARD", []string{dc.primary}},
		{"find, ranged, range in one chunk", bson.D{{Key: "find", Value: "r"}, {Key: "filter", Value: bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: 2}}}}}}, "SINGLE_SHARD", []string{dc.other}},
		{"find, ranged, range over both", bson.D{{Key: "find", Value: "r"}, {Key: "filter", Value: bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: -2}}}}}}, "SHARD_MERGE", both},
		{"count, hashed, equality", bson.D{{Key: "count", Value: "h"}, {Key: "query", Value: eq}}, "SINGLE_SHARD", []string{one("h", 3)}},
		{"count, ranged, scatter", bson.D{{Key: "count", Value: "r"}}, "SHARD_MERGE", both},
		{"distinct, hashed, equality", bson.D{{Key: "distinct", Value: "h"}, {Key: "key", Value: "v"}, {Key: "query", Value: eq}}, "SINGLE_SHARD", []string{one("h", 3)}},
		{"distinct, hashed, scatter", bson.D{{Key: "distinct", Value: "h"}, {Key: "key", Value: "v"}}, "SHARD_MERGE", both},
		{"aggregate, ranged, leading $match on the key", bson.D{{Key: "aggregate", Value: "r"}, {Key: "pipeline", Value: bson.A{
			bson.D{{Key: "$match", Value: bson.D{{Key: "k", Value: 5}}}}, bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$v"}}}}}},
			{Key: "cursor", Value: bson.D{}}}, "SINGLE_SHARD", []string{dc.other}},
		{"aggregate, hashed, scatter", bson.D{{Key: "aggregate", Value: "h"}, {Key: "pipeline", Value: bson.A{
			bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$v"}}}}}}, {Key: "cursor", Value: bson.D{}}}, "SHARD_MERGE", both},
	}
	for _, tc := range cases {
		stage, shards, r := explainShards(t, dc, tc.cmd)
		if stage != tc.stage || !slices.Equal(shards, tc.shards) {
			t.Errorf("%s: stage %s on %v, want %s on %v: %s", tc.name, stage, shards, tc.stage, tc.shards, r)
		}
	}
	// The shard's plan is there: an index on v shows as IXSCAN.
	if _, err := dc.runCmd(ctx, bson.D{{Key: "createIndexes", Value: "u"}, {Key: "indexes", Value: bson.A{bson.D{{Key: "key", Value: bson.D{{Key: "v", Value: 1}}}, {Key: "name", Value: "v_1"}}}}}); err != nil {
		t.Fatal(err)
	}
	_, _, r := explainShards(t, dc, bson.D{{Key: "find", Value: "u"}, {Key: "filter", Value: bson.D{{Key: "v", Value: 1}}}})
	if s := r.Lookup("queryPlanner", "winningPlan", "shards").String(); !strings.Contains(s, "IXSCAN") || r.Lookup("command", "find").StringValue() != "u" ||
		r.Lookup("queryPlanner", "mongosPlannerVersion").Int32() != 1 {
		t.Errorf("explain of an indexed find: %s", r)
	}
	// The driver's explain helper form (verbosity omitted) works too.
	if err := dc.db.RunCommand(ctx, bson.D{{Key: "explain", Value: bson.D{{Key: "count", Value: "u"}}}}).Err(); err != nil {
		t.Errorf("explain without verbosity: %v", err)
	}

	for _, tc := range []struct {
		name string
		cmd  bson.D
		code int32
	}{
		{"not a document", bson.D{{Key: "explain", Value: 1}}, 14},
		{"bad verbosity", bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: "u"}}}, {Key: "verbosity", Value: "loud"}}, 2},
		{"unknown command", bson.D{{Key: "explain", Value: bson.D{{Key: "frobnicate", Value: "u"}}}}, 59},
		{"unsupported command", bson.D{{Key: "explain", Value: bson.D{{Key: "update", Value: "u"}, {Key: "updates", Value: bson.A{}}}}}, 115},
		{"bad find", bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: "u"}, {Key: "limit", Value: -1}}}}, 51024},
		{"bad filter", bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: "h"}, {Key: "filter", Value: bson.D{{Key: "$bogus", Value: 1}}}}}}, 2},
		{"distinct without key", bson.D{{Key: "explain", Value: bson.D{{Key: "distinct", Value: "u"}}}}, 40414},
		{"mismatched $db", bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: "u"}, {Key: "$db", Value: "other"}}}}, 73},
	} {
		err := dc.db.RunCommand(ctx, tc.cmd).Err()
		var ce mongo.CommandError
		if !errors.As(err, &ce) || ce.Code != tc.code {
			t.Errorf("%s: got %v, want code %d", tc.name, err, tc.code)
		}
	}
}
