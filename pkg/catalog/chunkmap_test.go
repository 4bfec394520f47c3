package catalog

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func openMap(t *testing.T, c *Catalog) *ChunkMap {
	t.Helper()
	m, err := c.OpenChunkMap(testCtx(t))
	mustOK(t, err)
	t.Cleanup(m.Close)
	return m
}

// currentRev returns etcd's current revision.
func currentRev(t testing.TB) int64 {
	resp, err := testCli.Get(context.Background(), "/nothing")
	mustOK(t, err)
	return resp.Header.Revision
}

// converge waits until the map reflects the current revision and then
// compares it with what the catalog reads from etcd.
func converge(t *testing.T, c *Catalog, m *ChunkMap) {
	t.Helper()
	ctx := testCtx(t)
	rev := currentRev(t)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.WaitForRevision(wctx, rev); err != nil {
		t.Fatalf("WaitForRevision(%d): %v (map at %d)", rev, err, m.Revision())
	}
	shards, _, err := c.ListShards(ctx)
	mustOK(t, err)
	ms := m.Shards()
	if len(ms) != len(shards) {
		t.Fatalf("map has %d shards, catalog %d", len(ms), len(shards))
	}
	for i := range shards {
		if ms[i].Name != shards[i].Name || ms[i].State != shards[i].State || len(ms[i].Members) != len(shards[i].Members) {
			t.Fatalf("shard %d: map %+v catalog %+v", i, ms[i], shards[i])
		}
		p, perr := c.GetPrimary(ctx, shards[i].Name)
		mp, ok := m.Primary(shards[i].Name)
		if (perr == nil) != ok || p != mp {
			t.Fatalf("primary of %s: map %+v %v catalog %+v %v", shards[i].Name, mp, ok, p, perr)
		}
	}
	dbs, _, err := c.ListDatabases(ctx)
	mustOK(t, err)
	mdbs := m.Databases()
	if len(mdbs) != len(dbs) {
		t.Fatalf("map has %d databases, catalog %d", len(mdbs), len(dbs))
	}
	for i := range dbs {
		if mdbs[i] != dbs[i] {
			t.Fatalf("database: map %+v catalog %+v", mdbs[i], dbs[i])
		}
	}
	colls, _, err := c.ListCollections(ctx, "")
	mustOK(t, err)
	mcolls := m.Collections("")
	if len(mcolls) != len(colls) {
		t.Fatalf("map has %d collections, catalog %d", len(mcolls), len(colls))
	}
	for i, coll := range colls {
		mc := mcolls[i]
		if mc.NS != coll.NS || mc.UUID != coll.UUID || mc.Epoch != coll.Epoch || mc.Version != coll.Version || mc.Sharded != coll.Sharded || mc.ModRevision != coll.ModRevision {
			t.Fatalf("collection: map %+v catalog %+v", mc, coll)
		}
		if !coll.Sharded {
			continue
		}
		chunks, _, err := c.ListChunks(ctx, coll.UUID)
		mustOK(t, err)
		mchunks, err := m.Chunks(coll.NS)
		mustOK(t, err)
		if len(mchunks) != len(chunks) {
			t.Fatalf("%s: map has %d chunks, catalog %d", coll.NS, len(mchunks), len(chunks))
		}
		maxBy := map[string]Version{}
		for j := range chunks {
			a, b := mchunks[j], chunks[j]
			if !bytes.Equal(a.MinKey, b.MinKey) || !bytes.Equal(a.MaxKey, b.MaxKey) || a.Shard != b.Shard || a.Version != b.Version || !bytes.Equal(a.Min, b.Min) {
				t.Fatalf("%s chunk %d: map %s catalog %s", coll.NS, j, a, b)
			}
			if maxBy[b.Shard].Less(b.Version) {
				maxBy[b.Shard] = b.Version
			}
		}
		owners, err := m.ShardsFor(coll.NS)
		mustOK(t, err)
		if len(owners) != len(maxBy) {
			t.Fatalf("%s: ShardsFor %v, owners %v", coll.NS, owners, maxBy)
		}
		for _, s := range shards {
			sv, err := m.ShardVersion(coll.NS, s.Name)
			mustOK(t, err)
			if sv.Version != maxBy[s.Name] || sv.Epoch != coll.Epoch {
				t.Fatalf("%s: ShardVersion(%s) = %s, want %s", coll.NS, s.Name, sv, maxBy[s.Name])
			}
		}
		cv, err := m.CollectionVersion(coll.NS)
		mustOK(t, err)
		if cv != coll.CollVersion() {
			t.Fatalf("CollectionVersion %s want %s", cv, coll.CollVersion())
		}
	}
}

// changes runs a scripted sequence of catalog changes, calling check after
// each.
func changes(t *testing.T, c *Catalog, check func(step string)) {
	ctx := testCtx(t)
	addShards(t, c, "rs0", "rs1")
	check("add shards")
	l, err := c.AcquirePrimary(ctx, "rs0", "rs0-a", 5*time.Second)
	mustOK(t, err)
	check("primary")
	_, err = c.EnsureDatabase(ctx, "db", nil)
	mustOK(t, err)
	check("create db")
	_, err = c.CreateCollection(ctx, "db.plain")
	mustOK(t, err)
	check("create collection")
	coll, _, err := c.ShardCollection(ctx, "db.h", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: 6})
	mustOK(t, err)
	check("shard hashed")
	_, chunks, err := c.ShardCollection(ctx, "db.r", ShardOptions{Key: ShardKey{{Field: "a"}}})
	mustOK(t, err)
	check("shard ranged")
	parts, err := c.SplitChunk(ctx, "db.r", chunks[0], pt(t, "a", 0), pt(t, "a", 100))
	mustOK(t, err)
	check("split")
	r, _ := c.GetCollection(ctx, "db.r")
	to := "rs1"
	if parts[1].Shard == "rs1" {
		to = "rs0"
	}
	_, err = c.CommitMigration(ctx, "db.r", parts[1], parts[1].Shard, to, r.CollVersion())
	mustOK(t, err)
	check("migrate")
	hc, _, err := c.ListChunks(ctx, coll.UUID)
	mustOK(t, err)
	h, _ := c.GetCollection(ctx, "db.h")
	other := "rs0"
	if hc[0].Shard == "rs0" {
		other = "rs1"
	}
	_, err = c.CommitMigration(ctx, "db.h", hc[0], hc[0].Shard, other, h.CollVersion())
	mustOK(t, err)
	check("migrate hashed")
	mustOK(t, l.Revoke(ctx))
	check("primary gone")
	mustOK(t, c.DropCollection(ctx, "db.h"))
	check("drop")
	_, _, err = c.ShardCollection(ctx, "db.h", ShardOptions{Key: ShardKey{{Field: "z"}}})
	mustOK(t, err)
	check("re-shard")
	_, err = c.MarkDraining(ctx, "rs1")
	mustOK(t, err)
	check("draining")
	// A revision outside the routing range: WaitForRevision still returns.
	mustOK(t, c.SetBalancerSettings(ctx, DefaultBalancerSettings()))
	check("unrelated change")
	mustOK(t, c.DropDatabase(ctx, "db"))
	check("drop database")
}

func TestChunkMapConverges(t *testing.T) {
	c := newTestCatalog(t)
	m := openMap(t, c)
	changes(t, c, func(step string) {
		t.Run(step, func(t *testing.T) { converge(t, c, m) })
	})
	if m.reloads != 0 {
		t.Fatalf("%d full reloads for incremental changes", m.reloads)
	}
}

// gateWatch makes the map's watch stop and stay stopped until the returned
// release is called.
func gateWatch(t *testing.T, m *ChunkMap) (release func()) {
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	var once sync.Once
	m.mu.Lock()
	m.beforeWatch = func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}
	m.mu.Unlock()
	m.restartWatch()
	// Wait until the old watch has ended and the new one waits at the gate.
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not restart")
	}
	return func() {
		once.Do(func() {
			m.mu.Lock()
			m.beforeWatch = nil
			m.mu.Unlock()
			close(gate)
		})
	}
}

func TestChunkMapWatchResume(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	m := openMap(t, c)
	addShards(t, c, "rs0", "rs1")
	converge(t, c, m)
	release := gateWatch(t, m)
	defer release()
	// Changes while the watch is cut.
	_, err := c.EnsureDatabase(ctx, "db", nil)
	mustOK(t, err)
	_, chunks, err := c.ShardCollection(ctx, "db.r", ShardOptions{Key: ShardKey{{Field: "a"}}})
	mustOK(t, err)
	_, err = c.SplitChunk(ctx, "db.r", chunks[0], pt(t, "a", 5))
	mustOK(t, err)
	if _, ok := m.Collection("db.r"); ok {
		t.Fatal("map saw a change made after the watch was cut")
	}
	release()
	converge(t, c, m)
	if m.reloads != 0 {
		t.Fatalf("resume without compaction did a full reload")
	}
}

func TestChunkMapCompaction(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	m := openMap(t, c)
	addShards(t, c, "rs0", "rs1")
	_, err := c.EnsureDatabase(ctx, "db", nil)
	mustOK(t, err)
	_, chunks, err := c.ShardCollection(ctx, "db.r", ShardOptions{Key: ShardKey{{Field: "a"}}})
	mustOK(t, err)
	converge(t, c, m)
	release := gateWatch(t, m)
	defer release()
	seenBefore := m.Revision()
	parts, err := c.SplitChunk(ctx, "db.r", chunks[0], pt(t, "a", 5), pt(t, "a", 50))
	mustOK(t, err)
	_, err = c.CreateCollection(ctx, "db.new")
	mustOK(t, err)
	mustOK(t, c.DropCollection(ctx, "db.r"))
	_ = parts
	rev := currentRev(t)
	if _, err := testCli.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if m.Revision() != seenBefore {
		t.Fatal("map applied changes while its watch was cut")
	}
	release()
	converge(t, c, m)
	if m.reloads != 1 {
		t.Fatalf("%d full reloads after compaction, want 1", m.reloads)
	}
	// And it keeps following incrementally afterwards.
	_, _, err = c.ShardCollection(ctx, "db.after", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}})
	mustOK(t, err)
	converge(t, c, m)
}

func TestChunkMapLookups(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1")
	d, err := c.EnsureDatabase(ctx, "db", nil)
	mustOK(t, err)
	_, chunks, err := c.ShardCollection(ctx, "db.r", ShardOptions{Key: ShardKey{{Field: "a"}}})
	mustOK(t, err)
	parts, err := c.SplitChunk(ctx, "db.r", chunks[0], pt(t, "a", 0), pt(t, "a", 100))
	mustOK(t, err)
	hcoll, _, err := c.ShardCollection(ctx, "db.h", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: 8})
	mustOK(t, err)
	_, err = c.CreateCollection(ctx, "db.plain")
	mustOK(t, err)
	m := openMap(t, c)

	val := func(v any) bson.RawValue {
		raw := doc(t, bson.D{{Key: "v", Value: v}})
		return raw.Lookup("v")
	}
	for _, tc := range []struct {
		v    any
		want int
	}{{bson.MinKey{}, 0}, {nil, 0}, {-5, 0}, {int64(-1), 0}, {0, 1}, {0.5, 1}, {99, 1}, {100, 2}, {1e9, 2}, {"str", 2}, {bson.MaxKey{}, 2}} {
		ch, err := m.ChunkFor("db.r", []bson.RawValue{val(tc.v)})
		mustOK(t, err)
		if !bytes.Equal(ch.MinKey, parts[tc.want].MinKey) {
			t.Fatalf("ChunkFor(%v) = %s, want %s", tc.v, ch, parts[tc.want])
		}
		byDoc, err := m.ChunkForDoc("db.r", doc(t, bson.D{{Key: "a", Value: tc.v}, {Key: "x", Value: 1}}))
		mustOK(t, err)
		if !bytes.Equal(byDoc.MinKey, ch.MinKey) {
			t.Fatalf("ChunkForDoc(%v) = %s, want %s", tc.v, byDoc, ch)
		}
	}
	// A missing shard key field is null.
	ch, err := m.ChunkForDoc("db.r", doc(t, bson.D{{Key: "x", Value: 1}}))
	mustOK(t, err)
	if !bytes.Equal(ch.MinKey, parts[0].MinKey) {
		t.Fatalf("missing field went to %s", ch)
	}
	enc := func(v any) []byte { return keys.EncodeTuple([]bson.RawValue{val(v)}, nil) }
	for _, tc := range []struct {
		name   string
		lo, hi []byte
		want   []int
	}{
		{"all", nil, nil, []int{0, 1, 2}},
		{"inside one", enc(10), enc(20), []int{1}},
		{"across", enc(-10), enc(150), []int{0, 1, 2}},
		{"to bound", nil, enc(0), []int{0}},
		{"from bound", enc(100), nil, []int{2}},
		{"empty", enc(5), enc(5), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.ChunksOverlapping("db.r", tc.lo, tc.hi)
			mustOK(t, err)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d chunks %v, want %v", len(got), got, tc.want)
			}
			for i, w := range tc.want {
				if !bytes.Equal(got[i].MinKey, parts[w].MinKey) {
					t.Fatalf("chunk %d = %s, want %s", i, got[i], parts[w])
				}
			}
		})
	}
	// Hashed: the owning chunk contains the document's hashed key.
	for i := 0; i < 50; i++ {
		d := doc(t, bson.D{{Key: "k", Value: fmt.Sprintf("user%d", i)}})
		ch, err := m.ChunkForDoc("db.h", d)
		mustOK(t, err)
		e, err := hcoll.Key.EncodeDoc(d)
		mustOK(t, err)
		if bytes.Compare(ch.MinKey, e) > 0 || bytes.Compare(e, ch.MaxKey) >= 0 {
			t.Fatalf("%s not in %s", d, ch)
		}
	}
	owners, err := m.ShardsFor("db.plain")
	mustOK(t, err)
	if len(owners) != 1 || owners[0] != d.PrimaryShard {
		t.Fatalf("unsharded owners %v", owners)
	}
	owners, err = m.ShardsFor("db.h")
	mustOK(t, err)
	if len(owners) != 2 {
		t.Fatalf("hashed owners %v", owners)
	}
	_, err = m.ChunkFor("db.plain", []bson.RawValue{val(1)})
	mustErr(t, err, ErrNotFound, mongoerr.NamespaceNotSharded)
	_, err = m.ChunkFor("db.none", []bson.RawValue{val(1)})
	mustErr(t, err, ErrNotFound, mongoerr.NamespaceNotFound)
	_, err = m.ChunkFor("db.r", nil)
	mustErr(t, err, ErrInvalid, mongoerr.ShardKeyNotFound)
	_, err = m.ShardsFor("nodb.x")
	mustErr(t, err, ErrNotFound, mongoerr.NamespaceNotFound)
	cnt, err := m.ChunkCount("db.h")
	mustOK(t, err)
	if cnt["rs0"]+cnt["rs1"] != 8 {
		t.Fatalf("counts %v", cnt)
	}

	m.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	mustErr(t, m.WaitForRevision(wctx, m.Revision()+1000), ErrClosed, 0)
}

// Readers run while changes are applied (meaningful under -race).
func TestChunkMapConcurrentReaders(t *testing.T) {
	c := newTestCatalog(t)
	m := openMap(t, c)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := bson.RawValue{Type: bson.TypeNull}
			for {
				select {
				case <-stop:
					return
				default:
				}
				runtime.Gosched()
				for _, coll := range m.Collections("") {
					if coll.Sharded {
						_, _ = m.ChunkFor(coll.NS, []bson.RawValue{v})
						_, _ = m.ChunksOverlapping(coll.NS, nil, nil)
						_, _ = m.ShardVersion(coll.NS, "rs0")
					}
				}
			}
		}()
	}
	changes(t, c, func(string) {})
	close(stop)
	wg.Wait()
	converge(t, c, m)
}
