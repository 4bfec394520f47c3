package server

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// startSplitCluster is startAdminCluster that also returns the router's
// backend, for the library calls (SplitIfNeeded).
func startSplitCluster(t *testing.T, nShards int) (*adminCluster, *ClusterBackend) {
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
	if err := ac.cat.Bootstrap(testCtx(t), "split-test", specs); err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger()
	b, cli := startRouter(t, etcd, log)
	ac.cli, ac.admin = cli, cli.Database("admin")
	waitFor(t, "the router to load the catalog", 20*time.Second, func() bool {
		_, err := b.Routing()
		return err == nil
	})
	return ac, b
}

// chunkView is a config.chunks document, reduced.
type chunkView struct {
	min, max any
	shard    any
	lastmod  bson.Timestamp
}

func (ac *adminCluster) chunksOf(t *testing.T, ns, field string) []chunkView {
	t.Helper()
	var out []chunkView
	for _, d := range ac.find(t, "chunks", bson.D{{Key: "ns", Value: ns}}, options.Find().SetSort(bson.D{{Key: "min", Value: 1}})) {
		lm, _ := d["lastmod"].(bson.Timestamp)
		out = append(out, chunkView{min: asM(d["min"])[field], max: asM(d["max"])[field], shard: d["shard"], lastmod: lm})
	}
	return out
}

// mins returns the chunks' min values, checking the chunks tile the key
// space.
func mins(t *testing.T, chunks []chunkView) []any {
	t.Helper()
	var out []any
	for i, c := range chunks {
		if i == 0 && c.min != (bson.MinKey{}) || i == len(chunks)-1 && c.max != (bson.MaxKey{}) || i > 0 && chunks[i-1].max != c.min {
			t.Fatalf("chunks do not tile the key space: %v", chunks)
		}
		out = append(out, c.min)
	}
	return out
}

func TestSplitCommand(t *testing.T) {
	ac, b := startSplitCluster(t, 2)
	ctx := testCtx(t)
	ac.mustRun(t, bson.D{{Key: "enableSharding", Value: "app"}, {Key: "primaryShard", Value: "s0"}})
	ac.mustRun(t, bson.D{{Key: "shardCollection", Value: "app.r"}, {Key: "key", Value: bson.D{{Key: "x", Value: 1}}}})
	r := ac.cli.Database("app").Collection("r")
	var docs []any
	for i := range 100 {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "x", Value: i}, {Key: "pad", Value: "0123456789012345678901234567890123456789"}})
	}
	if _, err := r.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}

	// middle: at that key; the minor version grows, the major stays.
	ac.mustRun(t, bson.D{{Key: "split", Value: "app.r"}, {Key: "middle", Value: bson.D{{Key: "x", Value: 50}}}})
	ch := ac.chunksOf(t, "app.r", "x")
	if m := mins(t, ch); len(m) != 2 || m[1] != int32(50) {
		t.Fatalf("after split at 50: %v", ch)
	}
	if ch[0].lastmod != (bson.Timestamp{T: 1, I: 1}) || ch[1].lastmod != (bson.Timestamp{T: 1, I: 2}) || ch[0].shard != "s0" || ch[1].shard != "s0" {
		t.Fatalf("versions or shards after the split: %v", ch)
	}
	// find: the chunk holding x = 10 ([MinKey, 50), documents 0..49) at its median 25.
	ac.mustRun(t, bson.D{{Key: "split", Value: "app.r"}, {Key: "find", Value: bson.D{{Key: "x", Value: 10}}}})
	// bounds: the chunk [50, MaxKey) at its median 75.
	ac.mustRun(t, bson.D{{Key: "split", Value: "app.r"}, {Key: "bounds", Value: bson.A{bson.D{{Key: "x", Value: 50}}, bson.D{{Key: "x", Value: bson.MaxKey{}}}}}})
	ch = ac.chunksOf(t, "app.r", "x")
	if m := mins(t, ch); fmt.Sprint(m) != fmt.Sprint([]any{bson.MinKey{}, int32(25), int32(50), int32(75)}) {
		t.Fatalf("chunks after find and bounds splits: %v", ch)
	}
	seen := map[bson.Timestamp]bool{}
	for _, c := range ch {
		if c.lastmod.T != 1 || seen[c.lastmod] {
			t.Fatalf("chunk versions after splits: %v", ch)
		}
		seen[c.lastmod] = true
	}
	if n, err := r.CountDocuments(ctx, bson.D{}); err != nil || n != 100 {
		t.Fatalf("documents after splits: %d %v", n, err)
	}
	if n, err := r.CountDocuments(ctx, bson.D{{Key: "x", Value: bson.D{{Key: "$gte", Value: 25}, {Key: "$lt", Value: 75}}}}); err != nil || n != 50 {
		t.Fatalf("range read after splits: %d %v", n, err)
	}
	// A chunk of one document cannot be split at its median.
	ac.mustRun(t, bson.D{{Key: "split", Value: "app.r"}, {Key: "middle", Value: bson.D{{Key: "x", Value: 98}}}})
	ac.mustRun(t, bson.D{{Key: "split", Value: "app.r"}, {Key: "middle", Value: bson.D{{Key: "x", Value: 99}}}})

	// Errors, with MongoDB's codes.
	ac.mustRun(t, bson.D{{Key: "enableSharding", Value: "plain"}})
	if _, err := ac.cli.Database("plain").Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	before := ac.chunksOf(t, "app.r", "x")
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code mongoerr.Code
	}{
		{"boundary", bson.D{{Key: "split", Value: "app.r"}, {Key: "middle", Value: bson.D{{Key: "x", Value: 50}}}}, mongoerr.CannotSplit},
		{"MinKey", bson.D{{Key: "split", Value: "app.r"}, {Key: "middle", Value: bson.D{{Key: "x", Value: bson.MinKey{}}}}}, mongoerr.CannotSplit},
		{"indivisible", bson.D{{Key: "split", Value: "app.r"}, {Key: "find", Value: bson.D{{Key: "x", Value: 98}}}}, mongoerr.CannotSplit},
		{"other field", bson.D{{Key: "split", Value: "app.r"}, {Key: "middle", Value: bson.D{{Key: "y", Value: 1}}}}, mongoerr.BadValue},
		{"extra field", bson.D{{Key: "split", Value: "app.r"}, {Key: "middle", Value: bson.D{{Key: "x", Value: 1}, {Key: "y", Value: 1}}}}, mongoerr.BadValue},
		{"operator", bson.D{{Key: "split", Value: "app.r"}, {Key: "middle", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$gt", Value: 1}}}}}}, mongoerr.BadValue},
		{"find without the key", bson.D{{Key: "split", Value: "app.r"}, {Key: "find", Value: bson.D{{Key: "y", Value: 1}}}}, mongoerr.ShardKeyNotFound},
		{"find with a range", bson.D{{Key: "split", Value: "app.r"}, {Key: "find", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$gt", Value: 1}}}}}}, mongoerr.ShardKeyNotFound},
		{"bounds of no chunk", bson.D{{Key: "split", Value: "app.r"}, {Key: "bounds", Value: bson.A{bson.D{{Key: "x", Value: 0}}, bson.D{{Key: "x", Value: 10}}}}}, mongoerr.BadValue},
		{"one bound", bson.D{{Key: "split", Value: "app.r"}, {Key: "bounds", Value: bson.A{bson.D{{Key: "x", Value: 0}}}}}, mongoerr.BadValue},
		{"nothing", bson.D{{Key: "split", Value: "app.r"}}, mongoerr.BadValue},
		{"find and middle", bson.D{{Key: "split", Value: "app.r"}, {Key: "find", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "middle", Value: bson.D{{Key: "x", Value: 1}}}}, mongoerr.BadValue},
		{"bounds and middle", bson.D{{Key: "split", Value: "app.r"}, {Key: "middle", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "bounds", Value: bson.A{bson.D{{Key: "x", Value: 0}}, bson.D{{Key: "x", Value: 25}}}}}, mongoerr.BadValue},
		{"not sharded", bson.D{{Key: "split", Value: "plain.c"}, {Key: "middle", Value: bson.D{{Key: "x", Value: 1}}}}, mongoerr.NamespaceNotSharded},
		{"unknown", bson.D{{Key: "split", Value: "app.none"}, {Key: "middle", Value: bson.D{{Key: "x", Value: 1}}}}, mongoerr.NamespaceNotSharded},
		{"bad namespace", bson.D{{Key: "split", Value: "nodot"}, {Key: "middle", Value: bson.D{{Key: "x", Value: 1}}}}, mongoerr.InvalidNamespace},
		{"namespace type", bson.D{{Key: "split", Value: 1}, {Key: "middle", Value: bson.D{{Key: "x", Value: 1}}}}, mongoerr.BadValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ac.run(t, tc.cmd)
			wantCommandError(t, err, int32(tc.code))
		})
	}
	if after := ac.chunksOf(t, "app.r", "x"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused splits changed the chunks:\n%v\n%v", before, after)
	}

	// Hashed: the chunk holding hash(5) at its hash midpoint, and a middle
	// given as a hash.
	ac.mustRun(t, bson.D{{Key: "shardCollection", Value: "app.h"}, {Key: "key", Value: bson.D{{Key: "k", Value: "hashed"}}}, {Key: "numInitialChunks", Value: 2}})
	ac.mustRun(t, bson.D{{Key: "split", Value: "app.h"}, {Key: "find", Value: bson.D{{Key: "k", Value: 5}}}})
	want := int64(1 << 62)
	if keys.Hash(bson.RawValue{Type: bson.TypeInt32, Value: []byte{5, 0, 0, 0}}) < 0 {
		want = -1 << 62
	}
	ac.mustRun(t, bson.D{{Key: "split", Value: "app.h"}, {Key: "middle", Value: bson.D{{Key: "k", Value: int64(12345)}}}})
	hm := mins(t, ac.chunksOf(t, "app.h", "k"))
	if fmt.Sprint(hm) != fmt.Sprint(sortedHashMins(want, 12345)) {
		t.Fatalf("hashed chunks %v, want mins at MinKey, 0, %d and 12345", hm, want)
	}

	// SplitIfNeeded on a hashed chunk: equal hash ranges, on whichever
	// shard owns it; every document stays readable through the router.
	h := ac.cli.Database("app").Collection("h")
	var hdocs []any
	for i := range 400 {
		hdocs = append(hdocs, bson.D{{Key: "_id", Value: i}, {Key: "k", Value: i}})
	}
	if _, err := h.InsertMany(ctx, hdocs); err != nil {
		t.Fatal(err)
	}
	hrt, err := b.Routing()
	if err != nil {
		t.Fatal(err)
	}
	hchunk, err := hrt.ChunkFor("app.h", []bson.RawValue{hashedValue(want)})
	if err != nil {
		t.Fatal(err)
	}
	// A maximum of 1 byte asks for a piece per byte: capped at the most
	// one SplitChunk takes.
	hout, err := SplitIfNeeded(ctx, b, "app.h", hchunk, 1)
	if err != nil {
		t.Fatal(err)
	}
	if hout.Jumbo || hout.NumDocs == 0 || len(hout.Chunks) != catalog.MaxInitialChunks+1 {
		t.Fatalf("SplitIfNeeded of hashed chunk %s: %+v", hchunk, hout)
	}
	for _, c := range hout.Chunks {
		if c.Shard != hchunk.Shard || c.Version.Major != hchunk.Version.Major {
			t.Fatalf("split chunk %s moved or changed major (was %s)", c, hchunk)
		}
	}
	if n, err := h.CountDocuments(ctx, bson.D{}); err != nil || n != 400 {
		t.Fatalf("hashed documents after the split: %d %v", n, err)
	}
	if n, err := h.CountDocuments(ctx, bson.D{{Key: "k", Value: 5}}); err != nil || n != 1 {
		t.Fatalf("targeted read after the hashed split: %d %v", n, err)
	}

	// SplitIfNeeded: the chunk [25, 50) (25 documents) under a maximum of
	// about 10 documents is cut into pieces of about 5; above its size it
	// is left alone (and when the shard's whole collection is within the
	// maximum, the shard answers with the collection's totals there, an
	// upper bound of the chunk's, without reading the chunk).
	rt, err := b.Routing()
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := rt.ChunkFor("app.r", []bson.RawValue{{Type: bson.TypeInt32, Value: []byte{30, 0, 0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	docSize := int64(len(mustMarshal(t, docs[0])))
	out, err := SplitIfNeeded(ctx, b, "app.r", chunk, 100*docSize)
	if err != nil || out.Chunks != nil || out.NumDocs < 25 || out.DataSize < 25*docSize {
		t.Fatalf("SplitIfNeeded under the maximum: %+v %v", out, err)
	}
	out, err = SplitIfNeeded(ctx, b, "app.r", chunk, 10*docSize)
	if err != nil || len(out.Chunks) != 5 || out.Jumbo {
		t.Fatalf("SplitIfNeeded over the maximum: %+v %v", out, err)
	}
	ch = ac.chunksOf(t, "app.r", "x")
	if m := fmt.Sprint(mins(t, ch)); m != fmt.Sprint([]any{bson.MinKey{}, int32(25), int32(30), int32(35), int32(40), int32(45), int32(50), int32(75), int32(98), int32(99)}) {
		t.Fatalf("chunks after SplitIfNeeded: %v", m)
	}
	// The chunk as read before is stale now.
	_, err = SplitIfNeeded(ctx, b, "app.r", chunk, 10*docSize)
	if !mongoerr.HasCode(err, mongoerr.ConflictingOperationInProgress) {
		t.Fatalf("SplitIfNeeded with a stale chunk: %v", err)
	}
	// A single-key chunk over the maximum is jumbo.
	chunk, err = rt.ChunkFor("app.r", []bson.RawValue{{Type: bson.TypeInt32, Value: []byte{98, 0, 0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err = SplitIfNeeded(ctx, b, "app.r", chunk, docSize/2)
	if err != nil || !out.Jumbo || out.Chunks != nil {
		t.Fatalf("SplitIfNeeded of a single-key chunk: %+v %v", out, err)
	}
}

// sortedHashMins returns the hashed chunks' expected min values in order.
func sortedHashMins(pts ...int64) []any {
	all := append([]int64{0}, pts...)
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[j] < all[i] {
				all[i], all[j] = all[j], all[i]
			}
		}
	}
	out := []any{bson.MinKey{}}
	for _, p := range all {
		out = append(out, p)
	}
	return out
}

func mustMarshal(t *testing.T, d any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
