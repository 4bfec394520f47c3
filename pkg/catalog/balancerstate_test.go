package catalog

import (
	"testing"
)

func TestReadShardingSnapshot(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs1", "rs0")
	mustOK(t, func() error { _, err := c.MarkDraining(ctx, "rs1"); return err }())
	hashed, _ := setupSharded(t, c, "db.h", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: 6})
	ranged, _ := setupSharded(t, c, "db.a", ShardOptions{Key: ShardKey{{Field: "a"}}})
	if _, err := c.CreateCollection(ctx, "db.unsharded"); err != nil {
		t.Fatal(err)
	}

	snap, err := c.ReadShardingSnapshot(ctx)
	mustOK(t, err)
	if len(snap.Shards) != 2 || snap.Shards[0].Name != "rs0" || snap.Shards[1].Name != "rs1" || snap.Shards[1].State != ShardDraining {
		t.Fatalf("shards %+v", snap.Shards)
	}
	if len(snap.Collections) != 2 || snap.Collections[0].Collection.NS != "db.a" || snap.Collections[1].Collection.NS != "db.h" {
		t.Fatalf("collections %+v", snap.Collections)
	}
	if got := snap.Collections[0]; got.Collection.UUID != ranged.UUID || len(got.Chunks) != 1 {
		t.Fatalf("ranged collection %+v", got)
	}
	h := snap.Collections[1]
	if len(h.Chunks) != 6 || h.Collection.Version != hashed.Version {
		t.Fatalf("hashed collection: %d chunks, version %s", len(h.Chunks), h.Collection.Version)
	}
	checkTiling(t, hashed.Key, h.Chunks)
	for i, ch := range h.Chunks {
		if ch.Shard != "rs0" || ch.ModRevision == 0 || ch.ModRevision > snap.Revision {
			t.Fatalf("chunk %d: %s rev %d (snapshot %d)", i, ch, ch.ModRevision, snap.Revision)
		}
	}

	// A snapshot's chunks can be passed to CommitMigration as read.
	mustOK(t, func() error { _, err := c.AddShard(ctx, "rs2", members("rs2", 3), ShardActive); return err }())
	if _, err := c.CommitMigration(ctx, "db.h", h.Chunks[2], "rs0", "rs2", h.Collection.CollVersion()); err != nil {
		t.Fatal(err)
	}
	snap2, err := c.ReadShardingSnapshot(ctx)
	mustOK(t, err)
	if snap2.Revision <= snap.Revision || len(snap2.Shards) != 3 {
		t.Fatalf("second snapshot rev %d shards %d", snap2.Revision, len(snap2.Shards))
	}
	if got := snap2.Collections[1].Chunks[2].Shard; got != "rs2" {
		t.Fatalf("moved chunk is on %s", got)
	}
}
