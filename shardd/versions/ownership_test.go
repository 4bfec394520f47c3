package versions

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/pkg/shardversion"
	"github.com/psdb/psdb/proto/shardpb"
)

// Orphans are hidden from versioned reads: s1 holds documents k = 0..199
// but owns only [MinKey, 100) after splitAndMigrate; every versioned read
// kind sees the 100 it owns, an unversioned one all 200.
func TestOwnershipFilterHidesOrphans(t *testing.T) {
	ctx := ctxT(t)
	c := newCluster(t)
	var docs []bson.Raw
	for i := range 200 {
		docs = append(docs, raw(t, bson.D{{Key: "_id", Value: i}, {Key: "k", Value: i}}))
	}
	if _, err := c.cli.Insert(ctx, ns, docs, shardclient.WriteOptions{Ordered: true}); err != nil {
		t.Fatal(err)
	}
	c.splitAndMigrate(t)
	v := shardversion.Proto(c.shardVersion(t, "s1"))

	all, err := c.cli.FindAll(ctx, ns, shardclient.Find{})
	if err != nil || len(all) != 200 {
		t.Fatalf("unversioned find: %d docs, %v; want 200", len(all), err)
	}
	owned, err := c.cli.FindAll(ctx, ns, shardclient.Find{ShardVersion: v, Sort: raw(t, bson.D{{Key: "k", Value: 1}})})
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != 100 {
		t.Fatalf("versioned find: %d docs, want 100", len(owned))
	}
	for i, d := range owned {
		if k := d.Lookup("k").Int32(); int(k) != i {
			t.Fatalf("versioned find doc %d has k=%d", i, k)
		}
	}
	// An index on the shard key (the planner scans it) filters too.
	if _, err := c.pc.CreateIndexes(ctx, &shardpb.CreateIndexesRequest{Ns: ns, Specs: [][]byte{bdoc(bson.D{{Key: "key", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "name", Value: "k_1"}})}}); err != nil {
		t.Fatal(err)
	}
	ranged, err := c.cli.FindAll(ctx, ns, shardclient.Find{ShardVersion: v, Filter: raw(t, bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: 90}}}})})
	if err != nil || len(ranged) != 10 {
		t.Fatalf("versioned index find k >= 90: %d docs, %v; want 10", len(ranged), err)
	}
	cnt, err := c.pc.Count(ctx, &shardpb.CountRequest{Ns: ns, ShardVersion: v})
	if err != nil || cnt.GetN() != 100 {
		t.Fatalf("versioned count: %v, %v; want 100", cnt.GetN(), err)
	}
	dis, err := c.pc.Distinct(ctx, &shardpb.DistinctRequest{Ns: ns, Key: "k", ShardVersion: v})
	if err != nil {
		t.Fatal(err)
	}
	vals, _ := bson.Raw(dis.GetValues()).Values()
	if len(vals) != 100 {
		t.Fatalf("versioned distinct: %d values, want 100", len(vals))
	}
	agg, err := c.pc.Aggregate(ctx, &shardpb.AggregateRequest{Ns: ns, ShardVersion: v,
		Pipeline: [][]byte{bdoc(bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}})}})
	if err != nil {
		t.Fatal(err)
	}
	if len(agg.GetBatch()) != 1 || bson.Raw(agg.GetBatch()[0]).Lookup("n").Int32() != 100 {
		t.Fatalf("versioned aggregate count: %v", agg.GetBatch())
	}
	// Unversioned count sees the orphans.
	cnt, err = c.pc.Count(ctx, &shardpb.CountRequest{Ns: ns})
	if err != nil || cnt.GetN() != 200 {
		t.Fatalf("unversioned count: %v, %v; want 200", cnt.GetN(), err)
	}
	// s2's view: it owns [100, MaxKey) — the other half.
	c2, err := New(Options{Catalog: c.cat, Shard: "s2"})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	owns, err := c2.OwnershipFilter(ctx, ns)
	if err != nil || owns == nil {
		t.Fatalf("s2 filter: %v", err)
	}
	n := 0
	for _, d := range docs {
		if owns(d) {
			n++
			if d.Lookup("k").Int32() < 100 {
				t.Fatalf("s2 owns %s", d)
			}
		}
	}
	if n != 100 {
		t.Fatalf("s2 owns %d docs, want 100", n)
	}
	// Unsharded or unknown collections are not filtered.
	if f, err := c.chk.OwnershipFilter(ctx, "db.other"); err != nil || f != nil {
		t.Fatalf("unknown collection filter: %v, %v", f != nil, err)
	}
}

// ownedRanges: merged adjacent chunks, gaps, and the global maximum key
// owned by the last chunk only.
func TestOwnedRanges(t *testing.T) {
	key := catalog.ShardKey{{Field: "k"}}
	enc := func(v any) []byte {
		d := raw(t, bson.D{{Key: "k", Value: v}})
		b, err := key.EncodeDoc(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	minK, maxK := key.Encode([]bson.RawValue{keys.MinKey()}), key.Encode([]bson.RawValue{keys.MaxKey()})
	chunks := []catalog.Chunk{
		{MinKey: minK, MaxKey: enc(10), Shard: "a"},
		{MinKey: enc(10), MaxKey: enc(20), Shard: "a"},
		{MinKey: enc(20), MaxKey: enc(30), Shard: "b"},
		{MinKey: enc(30), MaxKey: maxK, Shard: "a"},
	}
	owns := ownedRanges(key, chunks, "a")
	for _, tc := range []struct {
		v    any
		want bool
	}{{-5, true}, {nil, true}, {19, true}, {20, false}, {29, false}, {30, true}, {"s", true}, {bson.MaxKey{}, true}} {
		if got := owns(raw(t, bson.D{{Key: "k", Value: tc.v}})); got != tc.want {
			t.Errorf("owns(k=%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
	if owns(raw(t, bson.D{{Key: "k", Value: bson.A{1}}})) {
		t.Error("a document with an array shard key is owned")
	}
	ownsB := ownedRanges(key, chunks, "b")
	if ownsB(raw(t, bson.D{{Key: "k", Value: bson.MaxKey{}}})) || !ownsB(raw(t, bson.D{{Key: "k", Value: 25}})) {
		t.Error("shard b ownership wrong")
	}
}

// Chunks makes the lagging view of versions_test.go a chunkLister, as
// *catalog.ChunkMap is, so versioned reads build their ownership filter
// from the same (lagging or live) view as their version check.
func (m *laggingMap) Chunks(ns string) ([]catalog.Chunk, error) {
	if m.caughtUp.Load() {
		return m.live.Chunks(ns)
	}
	return m.old.Chunks(ns)
}
