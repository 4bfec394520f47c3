package server

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

func mustBSON(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSplitVectorRPC runs SplitVector over gRPC against a real store:
// median, size-based points, measuring, and the argument errors.
func TestSplitVectorRPC(t *testing.T) {
	f := start(t, Options{})
	ctx := context.Background()
	const ns = "db.c"
	docs := make([]bson.Raw, 200)
	for i := range docs {
		docs[i] = mustBSON(t, bson.D{{Key: "_id", Value: i}, {Key: "x", Value: i}})
	}
	if _, err := f.cli.Insert(ctx, ns, docs, shardclient.WriteOptions{Ordered: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli.CreateIndexes(ctx, ns, mustBSON(t, bson.D{{Key: "key", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "name", Value: "x_1"}})); err != nil {
		t.Fatal(err)
	}
	pattern := mustBSON(t, bson.D{{Key: "x", Value: 1}})
	lo := mustBSON(t, bson.D{{Key: "x", Value: bson.MinKey{}}})
	hi := mustBSON(t, bson.D{{Key: "x", Value: bson.MaxKey{}}})

	res, err := f.cli.SplitVector(ctx, ns, shardclient.SplitVector{KeyPattern: pattern, Min: lo, Max: hi, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.SplitKeys) != 1 || res.SplitKeys[0].Lookup("x").AsInt64() != 100 || res.NumDocs != 200 || res.IndexUsed != "x_1" {
		t.Fatalf("forced split: %+v", res)
	}
	size := res.DataSize
	res, err = f.cli.SplitVector(ctx, ns, shardclient.SplitVector{KeyPattern: pattern, Min: lo, Max: hi, MaxChunkBytes: size / 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.SplitKeys) < 3 || len(res.SplitKeys) > 4 {
		t.Fatalf("split at a quarter of the size: %d points", len(res.SplitKeys))
	}
	sz, cnt, err := f.cli.ChunkSize(ctx, ns, pattern, lo, mustBSON(t, bson.D{{Key: "x", Value: 50}}))
	if err != nil || sz != size/4 || cnt != 50 {
		t.Fatalf("ChunkSize of [MinKey, 50): %d bytes %d docs %v", sz, cnt, err)
	}
	hashed := mustBSON(t, bson.D{{Key: "x", Value: "hashed"}})
	res, err = f.cli.SplitVector(ctx, ns, shardclient.SplitVector{KeyPattern: hashed, Min: lo, Max: hi, Force: true})
	if err != nil || len(res.SplitKeys) != 1 || res.SplitKeys[0].Lookup("x").Int64() != 0 || res.NumDocs != 200 {
		t.Fatalf("hashed midpoint: %+v %v", res, err)
	}

	for _, tc := range []struct {
		name string
		ns   string
		sv   shardclient.SplitVector
		code mongoerr.Code
	}{
		{"no key pattern", ns, shardclient.SplitVector{Min: lo, Max: hi}, mongoerr.BadValue},
		{"bad key pattern", ns, shardclient.SplitVector{KeyPattern: mustBSON(t, bson.D{{Key: "x", Value: "text"}}), Min: lo, Max: hi}, mongoerr.BadValue},
		{"bad BSON", ns, shardclient.SplitVector{KeyPattern: pattern, Min: []byte{1, 2, 3}, Max: hi}, mongoerr.InvalidBSON},
		{"reversed range", ns, shardclient.SplitVector{KeyPattern: pattern, Min: hi, Max: lo}, mongoerr.BadValue},
		{"bad namespace", "nodot", shardclient.SplitVector{KeyPattern: pattern, Min: lo, Max: hi}, mongoerr.InvalidNamespace},
	} {
		_, err := f.cli.SplitVector(ctx, tc.ns, tc.sv)
		if !mongoerr.HasCode(err, tc.code) {
			t.Errorf("%s: %v, want code %d", tc.name, err, tc.code)
		}
	}
}
