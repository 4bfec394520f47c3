package catalog

import (
	"slices"
	"testing"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestCreateDatabaseOn(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1", "rs2")
	_, err := c.MarkDraining(ctx, "rs2")
	mustOK(t, err)

	d, err := c.CreateDatabaseOn(ctx, "app", "rs1")
	mustOK(t, err)
	if d.PrimaryShard != "rs1" || d.Version.LastMod != 1 || d.Version.UUID == "" || d.ModRevision == 0 {
		t.Fatalf("created %+v", d)
	}
	got, err := c.GetDatabase(ctx, "app")
	mustOK(t, err)
	if got != d {
		t.Fatalf("GetDatabase %+v != %+v", got, d)
	}
	// An existing database is returned with ErrExists, whatever the shard.
	e, err := c.CreateDatabaseOn(ctx, "app", "rs0")
	mustErr(t, err, ErrExists, mongoerr.NamespaceExists)
	if e.PrimaryShard != "rs1" {
		t.Fatalf("existing database reported on %q", e.PrimaryShard)
	}
	_, err = c.CreateDatabaseOn(ctx, "APP", "rs0")
	mustErr(t, err, ErrExists, mongoerr.DatabaseDifferCase)
	_, err = c.CreateDatabaseOn(ctx, "other", "nope")
	mustErr(t, err, ErrNotFound, mongoerr.ShardNotFound)
	_, err = c.CreateDatabaseOn(ctx, "other", "rs2")
	mustErr(t, err, ErrIllegal, mongoerr.IllegalOperation)
	_, err = c.CreateDatabaseOn(ctx, "a.b", "rs0")
	mustErr(t, err, ErrInvalid, mongoerr.InvalidNamespace)

	// Concurrent creates of one name: exactly one wins, the others see it.
	errs := race(6, func(i int) error {
		_, err := c.CreateDatabaseOn(ctx, "raced", []string{"rs0", "rs1"}[i%2])
		return err
	})
	if n := winners(t, errs, ErrExists, ErrConflict); n != 1 {
		t.Fatalf("%d winners of concurrent CreateDatabaseOn", n)
	}
}

func TestGetShardUsage(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1")
	_, err := c.CreateDatabaseOn(ctx, "a", "rs0")
	mustOK(t, err)
	_, err = c.CreateDatabaseOn(ctx, "b", "rs1")
	mustOK(t, err)
	// Hashed, 4 chunks alternating from a's primary rs0; ranged: 1 chunk on
	// b's primary rs1.
	_, _, err = c.ShardCollection(ctx, "a.h", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: 4})
	mustOK(t, err)
	_, _, err = c.ShardCollection(ctx, "b.r", ShardOptions{Key: ShardKey{{Field: "x"}}})
	mustOK(t, err)
	_, err = c.CreateCollection(ctx, "a.plain")
	mustOK(t, err)

	u0, err := c.GetShardUsage(ctx, "rs0")
	mustOK(t, err)
	if u0.Chunks != 2 || !slices.Equal(u0.Databases, []string{"a"}) || !slices.Equal(u0.Collections, []string{"a.h"}) || u0.Revision == 0 {
		t.Fatalf("rs0 usage %+v", u0)
	}
	u1, err := c.GetShardUsage(ctx, "rs1")
	mustOK(t, err)
	if u1.Chunks != 3 || !slices.Equal(u1.Databases, []string{"b"}) || !slices.Equal(u1.Collections, []string{"a.h", "b.r"}) {
		t.Fatalf("rs1 usage %+v", u1)
	}
	u2, err := c.GetShardUsage(ctx, "none")
	mustOK(t, err)
	if u2.Chunks != 0 || len(u2.Databases) != 0 || len(u2.Collections) != 0 {
		t.Fatalf("unknown shard usage %+v", u2)
	}

	// Move everything off rs1 and it is empty; then it can be removed.
	coll, err := c.GetCollection(ctx, "b.r")
	mustOK(t, err)
	chunks, _, err := c.ListChunks(ctx, coll.UUID)
	mustOK(t, err)
	_, err = c.CommitMigration(ctx, "b.r", chunks[0], "rs1", "rs0", coll.CollVersion())
	mustOK(t, err)
	// Each migration bumps versions, so re-read the chunks every time.
	for moved := 0; ; moved++ {
		cur, err := c.GetCollection(ctx, "a.h")
		mustOK(t, err)
		hchunks, _, err := c.ListChunks(ctx, cur.UUID)
		mustOK(t, err)
		i := slices.IndexFunc(hchunks, func(ch Chunk) bool { return ch.Shard == "rs1" })
		if i < 0 {
			if moved != 2 {
				t.Fatalf("moved %d chunks of a.h off rs1, want 2", moved)
			}
			break
		}
		_, err = c.CommitMigration(ctx, "a.h", hchunks[i], "rs1", "rs0", cur.CollVersion())
		mustOK(t, err)
	}
	d, err := c.GetDatabase(ctx, "b")
	mustOK(t, err)
	_, err = c.SetPrimaryShard(ctx, "b", "rs0", d.ModRevision)
	mustOK(t, err)
	u1, err = c.GetShardUsage(ctx, "rs1")
	mustOK(t, err)
	if u1.Chunks != 0 || len(u1.Databases) != 0 || len(u1.Collections) != 0 {
		t.Fatalf("rs1 usage after moving everything %+v", u1)
	}
	_, err = c.MarkDraining(ctx, "rs1")
	mustOK(t, err)
	mustOK(t, c.RemoveShard(ctx, "rs1"))
}
