package targeting

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/catalog/catalogtest"
)

// TestRealChunkMap targets against a real etcd-backed catalog.ChunkMap:
// a hashed collection pre-split into 8 chunks over 3 shards and a ranged
// one split and partly migrated.
func TestRealChunkMap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	srv, err := catalogtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cat := catalog.New(cli, catalog.WithPrefix(catalogtest.Prefix(t)))
	for _, s := range threeShards {
		if _, err := cat.AddShard(ctx, s, []catalog.Member{{Name: s + "-a", Addr: "127.0.0.1:1"}}, catalog.ShardActive); err != nil {
			t.Fatal(err)
		}
	}
	db, err := cat.CreateDatabase(ctx, "db", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.CreateCollection(ctx, "db.plain"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cat.ShardCollection(ctx, "db.h", catalog.ShardOptions{Key: hashedKey, NumInitialChunks: 8}); err != nil {
		t.Fatal(err)
	}
	_, chunks, err := cat.ShardCollection(ctx, "db.r", catalog.ShardOptions{Key: compoundKey})
	if err != nil {
		t.Fatal(err)
	}
	pt := func(a, b any) bson.Raw { return raw(t, bson.D{{Key: "a", Value: a}, {Key: "b", Value: b}}) }
	parts, err := cat.SplitChunk(ctx, "db.r", chunks[0], pt(0, bson.MinKey{}), pt(10, bson.MinKey{}), pt(10, 5), pt(20, bson.MinKey{}))
	if err != nil {
		t.Fatal(err)
	}
	// Move [(10,MinKey),(10,5)) and [(20,MinKey),MaxKey) off the primary.
	others := slices.DeleteFunc(slices.Clone(threeShards), func(s string) bool { return s == db.PrimaryShard })
	for i, idx := range []int{2, 4} {
		r, err := cat.GetCollection(ctx, "db.r")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cat.CommitMigration(ctx, "db.r", parts[idx], parts[idx].Shard, others[i], r.CollVersion()); err != nil {
			t.Fatal(err)
		}
	}
	cm, err := cat.OpenChunkMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()

	// Hashed: every insert goes where the ChunkMap says the document
	// belongs, with that shard's version; equality finds it again.
	for i := range 200 {
		doc := raw(t, bson.D{{Key: "_id", Value: i}, {Key: "h", Value: i}})
		shard, v, err := ForInsert(cm, "db.h", doc)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := cm.ChunkForDoc("db.h", doc)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := cm.ShardVersion("db.h", ch.Shard)
		if shard != ch.Shard || v != want {
			t.Fatalf("insert h=%d: %s %v, chunk map says %s %v", i, shard, v, ch.Shard, want)
		}
		q, err := ForQuery(cm, "db.h", raw(t, bson.D{{Key: "h", Value: i}}))
		if err != nil || q.Kind != OneShard || q.Shards[0] != shard || q.Versions[shard] != v {
			t.Fatalf("query h=%d: %s, %v (insert went to %s)", i, q, err, shard)
		}
	}
	all, err := ForQuery(cm, "db.h", raw(t, bson.D{{Key: "x", Value: 1}}))
	if err != nil || all.Kind != AllShards || !slices.Equal(all.Shards, threeShards) {
		t.Fatalf("broadcast: %s %v", all, err)
	}

	// Ranged compound: the primary keeps (-inf,0), [0,10) and [(10,5),20);
	// the others got [(10,MinKey),(10,5)) and [20, MaxKey).
	p := db.PrimaryShard
	tests := []struct {
		filter bson.D
		shards []string
	}{
		{bson.D{{Key: "a", Value: 5}, {Key: "b", Value: 1}}, []string{p}},
		{bson.D{{Key: "a", Value: 10}, {Key: "b", Value: 1}}, []string{others[0]}},
		{bson.D{{Key: "a", Value: 10}, {Key: "b", Value: 7}}, []string{p}},
		{bson.D{{Key: "a", Value: 10}}, sorted(p, others[0])},
		{bson.D{{Key: "a", Value: 10}, {Key: "b", Value: bson.D{{Key: "$lt", Value: 5}}}}, []string{others[0]}},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 25}}}}, []string{others[1]}},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$lt", Value: 10}}}}, []string{p}},
		{bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{3, 30}}}}}, sorted(p, others[1])},
		{bson.D{{Key: "b", Value: 1}}, threeShards},
	}
	for _, tc := range tests {
		got, err := ForQuery(cm, "db.r", raw(t, tc.filter))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Shards, tc.shards) {
			t.Fatalf("%v: got %s, want %v", tc.filter, got, tc.shards)
		}
		for _, s := range got.Shards {
			if want, _ := cm.ShardVersion("db.r", s); got.Versions[s] != want {
				t.Fatalf("%v: version of %s %v, want %v", tc.filter, s, got.Versions[s], want)
			}
		}
	}
	shard, _, err := ForInsert(cm, "db.r", raw(t, bson.D{{Key: "a", Value: 10}, {Key: "b", Value: 2}}))
	if err != nil || shard != others[0] {
		t.Fatalf("insert into moved chunk: %s %v", shard, err)
	}
	u, err := ForQuery(cm, "db.plain", nil)
	if err != nil || !u.Unsharded || u.Shards[0] != p || u.DatabaseVersion != db.Version {
		t.Fatalf("unsharded: %s %v", u, err)
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }
