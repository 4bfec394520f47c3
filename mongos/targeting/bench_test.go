package targeting

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/catalog/catalogtest"
)

// benchChunkMap opens a real ChunkMap with a hashed collection of 256
// chunks and a ranged one of 256 chunks over 3 shards.
func benchChunkMap(b *testing.B) *catalog.ChunkMap {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := catalogtest.Start(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	cli, err := srv.Client()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close() })
	cat := catalog.New(cli, catalog.WithPrefix(catalogtest.Prefix(b)))
	for _, s := range threeShards {
		if _, err := cat.AddShard(ctx, s, []catalog.Member{{Name: s + "-a", Addr: "127.0.0.1:1"}}, catalog.ShardActive); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := cat.CreateDatabase(ctx, "db", nil); err != nil {
		b.Fatal(err)
	}
	if _, _, err := cat.ShardCollection(ctx, "db.h", catalog.ShardOptions{Key: hashedKey, NumInitialChunks: 256}); err != nil {
		b.Fatal(err)
	}
	_, chunks, err := cat.ShardCollection(ctx, "db.r", catalog.ShardOptions{Key: rangedKey})
	if err != nil {
		b.Fatal(err)
	}
	var pts []bson.Raw
	for i := 1; i < 256; i++ {
		pts = append(pts, raw(b, bson.D{{Key: "a", Value: i * 100}}))
	}
	if _, err := cat.SplitChunk(ctx, "db.r", chunks[0], pts...); err != nil {
		b.Fatal(err)
	}
	cm, err := cat.OpenChunkMap(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cm.Close)
	return cm
}

func BenchmarkTargeting(b *testing.B) {
	cm := benchChunkMap(b)
	cases := []struct {
		name   string
		ns     string
		filter bson.D
	}{
		{"hashed-eq", "db.h", bson.D{{Key: "h", Value: 12345}}},
		{"ranged-eq", "db.r", bson.D{{Key: "a", Value: 12345}}},
		{"ranged-range-10-chunks", "db.r", bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 1000}, {Key: "$lt", Value: 2000}}}}},
		{"ranged-in-20", "db.r", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{1, 501, 1001, 1501, 2001, 2501, 3001, 3501, 4001, 4501,
			5001, 5501, 6001, 6501, 7001, 7501, 8001, 8501, 9001, 9501}}}}}},
		{"no-key", "db.h", bson.D{{Key: "x", Value: 1}}},
	}
	for _, tc := range cases {
		filter := raw(b, tc.filter)
		b.Run("query-"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ForQuery(cm, tc.ns, filter); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	doc := raw(b, bson.D{{Key: "_id", Value: 1}, {Key: "h", Value: 12345}, {Key: "a", Value: 777}, {Key: "pad", Value: "xxxxxxxxxxxxxxxxxxxx"}})
	for _, ns := range []string{"db.h", "db.r"} {
		b.Run("insert-"+ns, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := ForInsert(cm, ns, doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
