package server

import (
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/keys"
)

func TestDistinct(t *testing.T) {
	dc := startDataCluster(t)
	ctx := testCtx(t)
	for _, coll := range []string{"u", "h", "r"} {
		t.Run(coll, func(t *testing.T) {
			c := dc.db.Collection(coll)
			// Every shard holds every value of v (k spreads the documents),
			// with numbers of different types, arrays, strings and a missing
			// field: the merge must order them by MongoDB's comparison order
			// and count 2, 2.0 and NumberLong(2) once.
			var docs []any
			for k := -20; k < 20; k++ {
				var v any
				switch k % 5 {
				case 0:
					v = int32(2)
				case 1, -1:
					v = 2.0
				case 2, -2:
					v = int64(2)
				case 3, -3:
					v = bson.A{"b", int32(1)}
				default:
					v = fmt.Sprintf("s%d", k%3)
				}
				d := bson.D{{Key: "_id", Value: k}, {Key: "k", Value: k}, {Key: "v", Value: v}}
				if k == 7 {
					d = bson.D{{Key: "_id", Value: k}, {Key: "k", Value: k}}
				}
				docs = append(docs, d)
			}
			if _, err := c.InsertMany(ctx, docs); err != nil {
				t.Fatal(err)
			}
			if coll != "u" {
				n := dc.shardDocs(t, "db."+coll, bson.D{})
				if n["s0"] == 0 || n["s1"] == 0 {
					t.Fatalf("documents not on both shards: %v", n)
				}
			}
			r, err := dc.runCmd(ctx, bson.D{{Key: "distinct", Value: coll}, {Key: "key", Value: "v"}})
			if err != nil {
				t.Fatal(err)
			}
			vals, _ := r.Lookup("values").Array().Values()
			if got := fmt.Sprint(rawStrings(vals)); got != `[1 2 "b" "s-1" "s-2" "s0" "s1" "s2"]` {
				t.Fatalf("values %s", got)
			}
			for i := 1; i < len(vals); i++ {
				if keys.Compare(vals[i-1], vals[i]) >= 0 {
					t.Fatalf("values not in order: %s", r)
				}
			}
			// With a query; with the driver's helper.
			res := c.Distinct(ctx, "v", bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: 10}}}})
			var got []any
			if err := res.Decode(&got); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != "[1 2 b s1 s2]" {
				t.Fatalf("Distinct with a query: %v", got)
			}
			// A targeted query (one shard) and an unknown field.
			r, err = dc.runCmd(ctx, bson.D{{Key: "distinct", Value: coll}, {Key: "key", Value: "k"}, {Key: "query", Value: bson.D{{Key: "k", Value: 5}}}})
			if vals, _ := r.Lookup("values").Array().Values(); err != nil || len(vals) != 1 || vals[0].AsInt64() != 5 {
				t.Fatalf("targeted: %s %v", r, err)
			}
			r, err = dc.runCmd(ctx, bson.D{{Key: "distinct", Value: coll}, {Key: "key", Value: "nope"}})
			if vals, _ := r.Lookup("values").Array().Values(); err != nil || len(vals) != 0 {
				t.Fatalf("missing field: %s %v", r, err)
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			cmd  bson.D
			code int32
		}{
			{bson.D{{Key: "distinct", Value: "h"}}, 40414},
			{bson.D{{Key: "distinct", Value: "h"}, {Key: "key", Value: 1}}, 14},
			{bson.D{{Key: "distinct", Value: "h"}, {Key: "key", Value: "v"}, {Key: "query", Value: "x"}}, 14},
			{bson.D{{Key: "distinct", Value: "h"}, {Key: "key", Value: "v"}, {Key: "query", Value: bson.D{{Key: "$bogus", Value: 1}}}}, 2},
		} {
			_, err := dc.runCmd(ctx, tc.cmd)
			var ce mongo.CommandError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Errorf("%v: got %v, want code %d", tc.cmd, err, tc.code)
			}
		}
		// An unknown database has no values.
		r, err := dc.client.Database("nodb").RunCommand(ctx, bson.D{{Key: "distinct", Value: "c"}, {Key: "key", Value: "v"}}).Raw()
		if vals, _ := r.Lookup("values").Array().Values(); err != nil || len(vals) != 0 {
			t.Errorf("unknown database: %s %v", r, err)
		}
	})
}

// TestMergeDistinct checks the merge alone: order, duplicates across
// shards and numeric equality across types.
func TestMergeDistinct(t *testing.T) {
	v := func(x any) bson.RawValue {
		if x == nil {
			return bson.RawValue{Type: bson.TypeNull}
		}
		typ, data, err := bson.MarshalValue(x)
		if err != nil {
			t.Fatal(err)
		}
		return bson.RawValue{Type: typ, Value: data}
	}
	got := mergeDistinct([]bson.RawValue{v("b"), v(int32(3)), v(1.5), v(nil), // shard 0, as sent
		v(int64(3)), v("a"), v(1.5), v(int32(-1)), v(bson.D{{Key: "x", Value: 1}})}) // shard 1
	want := `[null -1 1.5 3 "a" "b" {"x": {"$numberInt":"1"}}]`
	if s := fmt.Sprint(rawStrings(got)); s != want {
		t.Fatalf("got %s, want %s", s, want)
	}
	if got[3].Type != bson.TypeInt32 {
		t.Fatalf("the first shard's 3 should be kept, got %s", got[3].Type)
	}
}

// rawStrings renders values compactly (relaxed extended JSON).
func rawStrings(vals []bson.RawValue) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		switch v.Type {
		case bson.TypeNull:
			out[i] = "null"
		case bson.TypeString:
			out[i] = fmt.Sprintf("%q", v.StringValue())
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
			f, _ := v.AsFloat64OK()
			out[i] = fmt.Sprint(f)
		case bson.TypeEmbeddedDocument:
			out[i] = v.Document().String()
		default:
			out[i] = v.String()
		}
	}
	return out
}
