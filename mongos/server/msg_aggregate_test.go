package server

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/aggregate"
	"github.com/psdb/psdb/pkg/shardclient"
)

// Aggregate runs the whole pipeline over the fake's documents.
func (f *fakeShard) Aggregate(ctx context.Context, _ string, pipeline []bson.Raw, bs *int32) (*shardclient.Batch, error) {
	p, err := aggregate.Parse(pipeline)
	if err != nil {
		return nil, err
	}
	return f.runPipeline(ctx, p, bs, false)
}

// AggregateShardPart runs the shard part of the pipeline's Split, as shardd.
func (f *fakeShard) AggregateShardPart(ctx context.Context, _ string, pipeline []bson.Raw, bs *int32) (*shardclient.Batch, error) {
	p, err := aggregate.Parse(pipeline)
	if err != nil {
		return nil, err
	}
	shard, _ := p.Split()
	return f.runPipeline(ctx, shard, bs, true)
}

func (f *fakeShard) runPipeline(ctx context.Context, p *aggregate.Pipeline, bs *int32, part bool) (*shardclient.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if part {
		f.shardParts++
	} else {
		f.wholePipelines++
	}
	out, err := p.Run(ctx, slices.Clone(f.docs))
	if err != nil {
		return nil, err
	}
	n := len(out)
	if bs != nil {
		n = min(n, int(*bs))
	}
	return f.page(out, n), nil
}

// drainDocs runs a cursor command and getMore until the cursor is
// exhausted and returns every document and the number of batches.
func drainDocs(t *testing.T, s *Server, cmd bson.D, getMoreBatch int32) ([]bson.Raw, int) {
	t.Helper()
	r := run(t, s, "db", cmd)
	if ok, code, msg := replyCode(t, r); !ok {
		t.Fatalf("%v: %d %s", cmd[0].Key, code, msg)
	}
	var out []bson.Raw
	batches := 0
	key := "firstBatch"
	for {
		batches++
		vals, _ := r.Lookup("cursor", key).Array().Values()
		for _, v := range vals {
			out = append(out, v.Document())
		}
		id := r.Lookup("cursor", "id").Int64()
		if id == 0 {
			return out, batches
		}
		key = "nextBatch"
		r = run(t, s, "db", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: getMoreBatch}})
		if ok, code, msg := replyCode(t, r); !ok {
			t.Fatalf("getMore: %d %s", code, msg)
		}
	}
}

// The router splits a pipeline over two shards and merges the shard parts'
// outputs ($group partial/final, $sort merge, $skip/$limit, $count); a
// pipeline targeted to one shard runs there whole.
func TestAggregateAcrossShards(t *testing.T) {
	sums := map[int64]int64{}
	for n := range int64(40) {
		sums[n%3] += n
	}
	groupWant := []string{
		fmt.Sprintf(`{"_id": 0, "total": %d, "n": 14}`, sums[0]),
		fmt.Sprintf(`{"_id": 1, "total": %d, "n": 13}`, sums[1]),
		fmt.Sprintf(`{"_id": 2, "total": %d, "n": 13}`, sums[2]),
	}
	cases := []struct {
		name       string
		pipeline   bson.A
		batch      int64
		want       []string // relaxed extended JSON
		shardParts int      // shards asked for the shard part
		whole      int      // shards asked for the whole pipeline
	}{
		{name: "group sum sorted", batch: 1, want: groupWant, shardParts: 2, pipeline: bson.A{
			bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "$mod", Value: bson.A{"$n", 3}}}},
				{Key: "total", Value: bson.D{{Key: "$sum", Value: "$n"}}}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
			bson.D{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
		}},
		{name: "sort skip limit", batch: 2, shardParts: 2, pipeline: bson.A{
			bson.D{{Key: "$sort", Value: bson.D{{Key: "n", Value: -1}}}},
			bson.D{{Key: "$skip", Value: 2}}, bson.D{{Key: "$limit", Value: 5}},
			bson.D{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}, {Key: "n", Value: 1}}}},
		}, want: []string{`{"n": 37}`, `{"n": 36}`, `{"n": 35}`, `{"n": 34}`, `{"n": 33}`}},
		{name: "count", batch: 101, shardParts: 2, pipeline: bson.A{bson.D{{Key: "$count", Value: "c"}}},
			want: []string{`{"c": 40}`}},
		{name: "match on the shard key targets one shard", batch: 101, whole: 1, pipeline: bson.A{
			bson.D{{Key: "$match", Value: bson.D{{Key: "k", Value: 5}}}},
			bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
		}, want: []string{`{"_id": null, "n": 1}`}},
		{name: "batchSize 0 opens the cursor", batch: 0, shardParts: 2, pipeline: bson.A{bson.D{{Key: "$count", Value: "c"}}},
			want: []string{`{"c": 40}`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBackend()
			// n even on s0 (k < 0), odd on s1.
			for n := range 40 {
				k := n
				sh := b.shards["s1"]
				if n%2 == 0 {
					k, sh = -n-1, b.shards["s0"]
				}
				sh.docs = append(sh.docs, doc(t, bson.D{{Key: "_id", Value: n}, {Key: "k", Value: k}, {Key: "n", Value: n}}))
			}
			s := newServer(Options{Backend: b})
			defer s.Close()
			cmd := bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: tc.pipeline},
				{Key: "cursor", Value: bson.D{{Key: "batchSize", Value: tc.batch}}}}
			got, batches := drainDocs(t, s, cmd, int32(max(tc.batch, 1)))
			var gotJSON []string
			for _, d := range got {
				gotJSON = append(gotJSON, d.String())
			}
			var want []string
			for _, w := range tc.want {
				var d bson.D
				if err := bson.UnmarshalExtJSON([]byte(w), false, &d); err != nil {
					t.Fatal(err)
				}
				want = append(want, doc(t, d).String())
			}
			if !slices.Equal(gotJSON, want) {
				t.Fatalf("got %v, want %v", gotJSON, want)
			}
			if len(want) > int(tc.batch) && batches < 2 {
				t.Fatalf("%d batches", batches)
			}
			parts, whole := b.shards["s0"].shardParts+b.shards["s1"].shardParts, b.shards["s0"].wholePipelines+b.shards["s1"].wholePipelines
			if parts != tc.shardParts || whole != tc.whole {
				t.Fatalf("shard parts %d, whole pipelines %d; want %d, %d", parts, whole, tc.shardParts, tc.whole)
			}
			if n := b.openCursors(); n != 0 {
				t.Fatalf("%d shard cursors left open", n)
			}
		})
	}
}

// Bad aggregate commands get MongoDB's codes, not a crash.
func TestAggregateErrors(t *testing.T) {
	cursor := bson.E{Key: "cursor", Value: bson.D{}}
	cases := []struct {
		name string
		db   string
		cmd  bson.D
		code int32 // 0: ok with an empty cursor
	}{
		{"collection-less $currentOp", "admin", bson.D{{Key: "aggregate", Value: 1}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$currentOp", Value: bson.D{}}}}}, cursor}, 40324},
		{"collection-less $match", "db", bson.D{{Key: "aggregate", Value: 1}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{}}}}}, cursor}, 73},
		{"aggregate 2", "db", bson.D{{Key: "aggregate", Value: 2}, {Key: "pipeline", Value: bson.A{}}, cursor}, 9},
		{"no cursor", "db", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{}}}, 9},
		{"no pipeline", "db", bson.D{{Key: "aggregate", Value: "c"}, cursor}, 40414},
		{"unknown stage", "db", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$bogus", Value: 1}}}}, cursor}, 40324},
		{"negative batchSize", "db", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{}}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: -1}}}}, 51024},
		{"unknown database", "nodb", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$count", Value: "n"}}}}, cursor}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(Options{Backend: newFakeBackend()})
			defer s.Close()
			r := run(t, s, tc.db, tc.cmd)
			ok, code, msg := replyCode(t, r)
			if tc.code == 0 {
				if !ok || r.Lookup("cursor", "id").Int64() != 0 || len(r.Lookup("cursor", "firstBatch").Array()) != 5 {
					t.Fatalf("want an empty cursor, got %v", r)
				}
				return
			}
			if ok || code != tc.code {
				t.Fatalf("got ok=%v %d %s, want code %d", ok, code, msg, tc.code)
			}
		})
	}
}
