package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestParseShardKey(t *testing.T) {
	tests := []struct {
		name string
		doc  bson.D
		want ShardKey
		ok   bool
	}{
		{"ranged", bson.D{{Key: "a", Value: 1}}, ShardKey{{Field: "a"}}, true},
		{"compound", bson.D{{Key: "a", Value: int64(1)}, {Key: "b.c", Value: 1.0}}, ShardKey{{Field: "a"}, {Field: "b.c"}}, true},
		{"hashed", bson.D{{Key: "k", Value: "hashed"}}, ShardKey{{Field: "k", Hashed: true}}, true},
		{"hashed second", bson.D{{Key: "a", Value: 1}, {Key: "k", Value: "hashed"}}, ShardKey{{Field: "a"}, {Field: "k", Hashed: true}}, true},
		{"descending", bson.D{{Key: "a", Value: -1}}, nil, false},
		{"two hashed", bson.D{{Key: "a", Value: "hashed"}, {Key: "b", Value: "hashed"}}, nil, false},
		{"text", bson.D{{Key: "a", Value: "text"}}, nil, false},
		{"empty", bson.D{}, nil, false},
		{"dollar", bson.D{{Key: "$a", Value: 1}}, nil, false},
		{"dup", bson.D{{Key: "a", Value: 1}, {Key: "a", Value: 1}}, nil, false},
		{"bool", bson.D{{Key: "a", Value: true}}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseShardKey(doc(t, tc.doc))
			if !tc.ok {
				mustErr(t, err, ErrInvalid, 0)
				return
			}
			mustOK(t, err)
			if !k.Equal(tc.want) {
				t.Fatalf("got %v want %v", k, tc.want)
			}
			back, err := ParseShardKey(doc(t, k.Doc()))
			mustOK(t, err)
			if !back.Equal(k) {
				t.Fatalf("Doc round trip %v -> %v", k, back)
			}
		})
	}
}

func TestHashSplitPoints(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 7, 1024} {
		pts := hashSplitPoints(n)
		if len(pts) != n-1 {
			t.Fatalf("n=%d: %d points", n, len(pts))
		}
		for i := 1; i < len(pts); i++ {
			if pts[i] <= pts[i-1] {
				t.Fatalf("n=%d: points not increasing at %d: %v", n, i, pts[i-1:i+1])
			}
		}
	}
	if p := hashSplitPoints(2); p[0] != 0 {
		t.Fatalf("2 chunks split at %d, want 0", p[0])
	}
}

func TestCreateCollection(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0")
	_, err := c.CreateDatabase(ctx, "db", nil)
	mustOK(t, err)
	tests := []struct {
		name string
		ns   string
		err  error
		code mongoerr.Code
	}{
		{"ok", "db.a", nil, 0},
		{"dots in coll", "db.a.b.c", nil, 0},
		{"exists", "db.a", ErrExists, mongoerr.NamespaceExists},
		{"no db", "nodb.a", ErrNotFound, mongoerr.NamespaceNotFound},
		{"no dot", "dba", ErrInvalid, mongoerr.InvalidNamespace},
		{"empty coll", "db.", ErrInvalid, mongoerr.InvalidNamespace},
		{"dollar", "db.a$b", ErrInvalid, mongoerr.InvalidNamespace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			coll, err := c.CreateCollection(ctx, tc.ns)
			if tc.err != nil {
				mustErr(t, err, tc.err, tc.code)
				return
			}
			mustOK(t, err)
			got, err := c.GetCollection(ctx, tc.ns)
			mustOK(t, err)
			if got.UUID != coll.UUID || got.Epoch != coll.Epoch || got.Sharded || got.NS != tc.ns {
				t.Fatalf("GetCollection %+v, created %+v", got, coll)
			}
		})
	}
	colls, _, err := c.ListCollections(ctx, "db")
	mustOK(t, err)
	if len(colls) != 2 {
		t.Fatalf("ListCollections: %+v", colls)
	}
}

func TestShardCollection(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1", "rs2")
	_, err := c.MarkDraining(ctx, "rs2")
	mustOK(t, err)
	d, err := c.CreateDatabase(ctx, "db", func(s string) int64 {
		if s == "rs1" {
			return 0
		}
		return 1
	})
	mustOK(t, err)
	if d.PrimaryShard != "rs1" {
		t.Fatal(d.PrimaryShard)
	}
	hashed := ShardKey{{Field: "k", Hashed: true}}
	tests := []struct {
		name       string
		ns         string
		opts       ShardOptions
		err        error
		code       mongoerr.Code
		wantChunks int
		wantShards []string // owner of chunk i
	}{
		{"ranged", "db.r", ShardOptions{Key: ShardKey{{Field: "a"}, {Field: "b"}}, Unique: true}, nil, 0, 1, []string{"rs1"}},
		{"hashed default", "db.h", ShardOptions{Key: hashed}, nil, 0, 4, []string{"rs1", "rs0", "rs1", "rs0"}},
		{"hashed 5", "db.h5", ShardOptions{Key: hashed, NumInitialChunks: 5}, nil, 0, 5, []string{"rs1", "rs0", "rs1", "rs0", "rs1"}},
		{"hashed compound", "db.hc", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}, {Field: "x"}}, NumInitialChunks: 3}, nil, 0, 3, []string{"rs1", "rs0", "rs1"}},
		{"hashed not first", "db.hn", ShardOptions{Key: ShardKey{{Field: "x"}, {Field: "k", Hashed: true}}}, nil, 0, 1, []string{"rs1"}},
		{"already sharded", "db.r", ShardOptions{Key: hashed}, ErrExists, mongoerr.AlreadyInitialized, 0, nil},
		{"unique hashed", "db.u", ShardOptions{Key: hashed, Unique: true}, ErrInvalid, mongoerr.InvalidOptions, 0, nil},
		{"too many chunks", "db.t", ShardOptions{Key: hashed, NumInitialChunks: MaxInitialChunks + 1}, ErrInvalid, mongoerr.InvalidOptions, 0, nil},
		{"chunks for ranged", "db.t", ShardOptions{Key: ShardKey{{Field: "a"}}, NumInitialChunks: 4}, ErrInvalid, mongoerr.InvalidOptions, 0, nil},
		{"no db", "nodb.t", ShardOptions{Key: hashed}, ErrNotFound, mongoerr.NamespaceNotFound, 0, nil},
		{"empty key", "db.t", ShardOptions{}, ErrInvalid, mongoerr.BadValue, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			coll, chunks, err := c.ShardCollection(ctx, tc.ns, tc.opts)
			if tc.err != nil {
				mustErr(t, err, tc.err, tc.code)
				return
			}
			mustOK(t, err)
			listed, _, err := c.ListChunks(ctx, coll.UUID)
			mustOK(t, err)
			if len(listed) != tc.wantChunks || len(chunks) != tc.wantChunks {
				t.Fatalf("%d chunks returned, %d listed, want %d", len(chunks), len(listed), tc.wantChunks)
			}
			hi := checkTiling(t, tc.opts.Key, listed)
			if hi != coll.Version {
				t.Fatalf("collection version %s, highest chunk %s", coll.Version, hi)
			}
			for i, ch := range listed {
				if ch.Shard != tc.wantShards[i] {
					t.Fatalf("chunk %d on %s, want %s", i, ch.Shard, tc.wantShards[i])
				}
				if !bytes.Equal(ch.MinKey, chunks[i].MinKey) || !bytes.Equal(ch.Max, chunks[i].Max) || ch.Version != chunks[i].Version {
					t.Fatalf("listed chunk %d %s differs from returned %s", i, ch, chunks[i])
				}
			}
			got, err := c.GetCollection(ctx, tc.ns)
			mustOK(t, err)
			if !got.Sharded || !got.Key.Equal(tc.opts.Key) || got.Unique != tc.opts.Unique || got.Version != coll.Version {
				t.Fatalf("stored %+v", got)
			}
		})
	}
	// Sharding an existing unsharded collection keeps its uuid, new epoch.
	plain, err := c.CreateCollection(ctx, "db.plain")
	mustOK(t, err)
	sh, _, err := c.ShardCollection(ctx, "db.plain", ShardOptions{Key: ShardKey{{Field: "a"}}})
	mustOK(t, err)
	if sh.UUID != plain.UUID || sh.Epoch == plain.Epoch {
		t.Fatalf("uuid %s->%s epoch %s->%s", plain.UUID, sh.UUID, plain.Epoch, sh.Epoch)
	}
}

func TestDropCollection(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1")
	_, err := c.CreateDatabase(ctx, "db", nil)
	mustOK(t, err)
	mustErr(t, c.DropCollection(ctx, "db.x"), ErrNotFound, mongoerr.NamespaceNotFound)
	mustErr(t, c.DropCollection(ctx, "bad"), ErrInvalid, mongoerr.InvalidNamespace)
	seenUUID, seenEpoch := map[string]bool{}, map[string]bool{}
	for i := 0; i < 3; i++ {
		coll, _, err := c.ShardCollection(ctx, "db.x", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}})
		mustOK(t, err)
		if seenUUID[coll.UUID] || seenEpoch[coll.Epoch] {
			t.Fatalf("uuid or epoch reused after drop: %+v", coll)
		}
		seenUUID[coll.UUID], seenEpoch[coll.Epoch] = true, true
		mustOK(t, c.DropCollection(ctx, "db.x"))
		if chunks, _, _ := c.ListChunks(ctx, coll.UUID); len(chunks) != 0 {
			t.Fatalf("%d chunks left after drop", len(chunks))
		}
		_, err = c.GetCollection(ctx, "db.x")
		mustErr(t, err, ErrNotFound, mongoerr.NamespaceNotFound)
	}
}

// race runs f(i) for i in [0,n) in goroutines released together and
// returns their errors.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func winners(t *testing.T, errs []error, losers ...error) int {
	t.Helper()
	n := 0
	for _, err := range errs {
		if err == nil {
			n++
			continue
		}
		ok := false
		for _, l := range losers {
			ok = ok || errors.Is(err, l)
		}
		if !ok {
			t.Fatalf("unexpected loser error: %v", err)
		}
	}
	return n
}

func TestShardCollectionRace(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1")
	_, err := c.CreateDatabase(ctx, "db", nil)
	mustOK(t, err)
	for round := 0; round < 20; round++ {
		ns := fmt.Sprintf("db.c%d", round)
		if round%2 == 1 { // half the rounds shard an existing unsharded collection
			_, err := c.CreateCollection(ctx, ns)
			mustOK(t, err)
		}
		keys := []ShardKey{{{Field: "k", Hashed: true}}, {{Field: "a"}}, {{Field: "b", Hashed: true}}, {{Field: "c"}}}
		errs := race(4, func(i int) error {
			_, _, err := c.ShardCollection(ctx, ns, ShardOptions{Key: keys[i]})
			return err
		})
		if w := winners(t, errs, ErrExists, ErrConflict); w != 1 {
			t.Fatalf("round %d: %d winners: %v", round, w, errs)
		}
		coll, err := c.GetCollection(ctx, ns)
		mustOK(t, err)
		chunks, _, err := c.ListChunks(ctx, coll.UUID)
		mustOK(t, err)
		checkTiling(t, coll.Key, chunks)
		assertNoOrphanChunks(t, c)
	}
}

// Drop racing shardCollection: whatever the order, no chunk is ever left
// without its collection, and a surviving collection is consistent.
func TestDropDuringShardCollection(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1")
	_, err := c.CreateDatabase(ctx, "db", nil)
	mustOK(t, err)
	outcomes := map[string]int{}
	for round := 0; round < 30; round++ {
		ns := fmt.Sprintf("db.c%d", round)
		_, err := c.CreateCollection(ctx, ns)
		mustOK(t, err)
		errs := race(2, func(i int) error {
			if i == 0 {
				_, _, err := c.ShardCollection(ctx, ns, ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: 8})
				return err
			}
			return c.DropCollection(ctx, ns)
		})
		coll, gerr := c.GetCollection(ctx, ns)
		switch {
		case errs[0] == nil && errs[1] == nil && gerr != nil:
			outcomes["sharded then dropped"]++
		case errs[0] == nil && errs[1] == nil:
			outcomes["dropped then sharded (created anew)"]++
			chunks, _, err := c.ListChunks(ctx, coll.UUID)
			mustOK(t, err)
			checkTiling(t, coll.Key, chunks)
		case errs[0] != nil && errs[1] == nil && gerr != nil:
			if !errors.Is(errs[0], ErrConflict) && !errors.Is(errs[0], ErrNotFound) {
				t.Fatalf("shardCollection lost with %v", errs[0])
			}
			outcomes["drop won, shard failed"]++
		default:
			t.Fatalf("round %d: shard=%v drop=%v get=%v", round, errs[0], errs[1], gerr)
		}
		assertNoOrphanChunks(t, c)
	}
	t.Logf("outcomes: %v", outcomes)
}

// assertNoOrphanChunks checks every chunk belongs to a live sharded
// collection.
func assertNoOrphanChunks(t *testing.T, c *Catalog) {
	t.Helper()
	ctx := context.Background()
	colls, rev, err := c.ListCollections(ctx, "")
	mustOK(t, err)
	live := map[string]bool{}
	for _, coll := range colls {
		if coll.Sharded {
			live[coll.UUID] = true
		}
	}
	resp, err := testCli.Get(ctx, c.chunksPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithRev(rev))
	mustOK(t, err)
	for _, kv := range resp.Kvs {
		ch, err := c.decodeRouting(kv, true)
		mustOK(t, err)
		if !live[ch.name] {
			t.Fatalf("orphan chunk %s", kv.Key)
		}
	}
}
