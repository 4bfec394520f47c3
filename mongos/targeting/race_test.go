package targeting

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/catalog/catalogtest"
)

// TestTargetingDuringMigrations targets inserts and range queries against a
// real ChunkMap while another goroutine migrates chunks. Every answer must
// be one consistent state: whenever the targeted shard's version is still
// the one returned, that shard still owns the document's chunk (a shard
// whose version did not change did not lose or gain a chunk).
func TestTargetingDuringMigrations(t *testing.T) {
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
	if _, err := cat.CreateDatabase(ctx, "db", nil); err != nil {
		t.Fatal(err)
	}
	coll, chunks, err := cat.ShardCollection(ctx, "db.r", catalog.ShardOptions{Key: rangedKey})
	if err != nil {
		t.Fatal(err)
	}
	var pts []bson.Raw
	for i := 1; i < 12; i++ {
		pts = append(pts, raw(t, bson.D{{Key: "a", Value: i * 10}}))
	}
	if _, err := cat.SplitChunk(ctx, "db.r", chunks[0], pts...); err != nil {
		t.Fatal(err)
	}
	cm, err := cat.OpenChunkMap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()

	// The mover: random chunks to random other shards for 2 seconds.
	var wg sync.WaitGroup
	// Registered last, so it runs first: the mover ends before the
	// ChunkMap, the client and etcd close, also when the test fails.
	defer func() { cancel(); wg.Wait() }()
	moves := 0
	stop := time.Now().Add(2 * time.Second)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(3, 3))
		for time.Now().Before(stop) && ctx.Err() == nil {
			cs, _, err := cat.ListChunks(ctx, coll.UUID)
			if err != nil {
				if ctx.Err() == nil {
					t.Error(err)
				}
				return
			}
			c, err := cat.GetCollection(ctx, "db.r")
			if err != nil {
				if ctx.Err() == nil {
					t.Error(err)
				}
				return
			}
			ch := cs[r.IntN(len(cs))]
			to := threeShards[r.IntN(3)]
			if to == ch.Shard {
				continue
			}
			if _, err := cat.CommitMigration(ctx, "db.r", ch, ch.Shard, to, c.CollVersion()); err == nil {
				moves++
			}
		}
	}()

	r := rand.New(rand.NewPCG(5, 5))
	checked := 0
	for time.Now().Before(stop) {
		a := r.IntN(130)
		doc := raw(t, bson.D{{Key: "a", Value: a}})
		shard, v, err := ForInsert(cm, "db.r", doc)
		if errors.Is(err, ErrMetadataChanging) {
			continue // the map moved under every attempt (a loaded machine): the router retries
		}
		if err != nil {
			t.Fatal(err)
		}
		q, err := ForQuery(cm, "db.r", raw(t, bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: a}, {Key: "$lt", Value: a + 15}}}}))
		if errors.Is(err, ErrMetadataChanging) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		// Check against a stable state of the map.
		for range 8 {
			before, _ := cm.Collection("db.r")
			cur, err1 := cm.ShardVersion("db.r", shard)
			ch, err2 := cm.ChunkForDoc("db.r", doc)
			var qcur []catalog.CollVersion
			for _, s := range q.Shards {
				qv, _ := cm.ShardVersion("db.r", s)
				qcur = append(qcur, qv)
			}
			after, _ := cm.Collection("db.r")
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if before.Version != after.Version {
				continue
			}
			if cur == v && ch.Shard != shard {
				t.Fatalf("insert a=%d went to %s with its current version %s, but %s owns the chunk", a, shard, v, ch.Shard)
			}
			allCurrent := true
			for i, s := range q.Shards {
				allCurrent = allCurrent && qcur[i] == q.Versions[s]
			}
			if allCurrent && !q.Has(ch.Shard) && a >= 0 {
				t.Fatalf("range from %d: target %s current, but %s owns a=%d", a, q, ch.Shard, a)
			}
			checked++
			break
		}
	}
	wg.Wait() // moves is read after the mover ended
	if moves < 5 || checked < 50 {
		t.Fatalf("too little happened: %d migrations, %d checks", moves, checked)
	}
	t.Logf("%d migrations, %d consistent checks", moves, checked)
}
