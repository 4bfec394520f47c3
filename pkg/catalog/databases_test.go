package catalog

import (
	"testing"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestCreateDatabase(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	_, err := c.CreateDatabase(ctx, "db0", nil)
	mustErr(t, err, ErrNotFound, mongoerr.ShardNotFound) // no shards yet
	addShards(t, c, "rs0", "rs1", "rs2")
	_, err = c.MarkDraining(ctx, "rs2")
	mustOK(t, err)

	// Without a hint: the active shard that is primary of fewest databases.
	want := []string{"rs0", "rs1", "rs0", "rs1"}
	for i, w := range want {
		name := "db" + string(rune('a'+i))
		d, err := c.CreateDatabase(ctx, name, nil)
		mustOK(t, err)
		if d.PrimaryShard != w {
			t.Fatalf("%s on %s, want %s", name, d.PrimaryShard, w)
		}
		got, err := c.GetDatabase(ctx, name)
		mustOK(t, err)
		if got != d {
			t.Fatalf("GetDatabase %+v != %+v", got, d)
		}
	}
	// With a size hint: the smallest.
	d, err := c.CreateDatabase(ctx, "big", func(s string) int64 { return map[string]int64{"rs0": 10, "rs1": 5, "rs2": 0}[s] })
	mustOK(t, err)
	if d.PrimaryShard != "rs1" {
		t.Fatalf("hinted primary %s, want rs1 (rs2 is draining)", d.PrimaryShard)
	}

	tests := []struct {
		name string
		db   string
		err  error
		code mongoerr.Code
	}{
		{"exists", "dba", ErrExists, mongoerr.NamespaceExists},
		{"differ case", "DBA", ErrExists, mongoerr.DatabaseDifferCase},
		{"empty", "", ErrInvalid, mongoerr.InvalidNamespace},
		{"dot", "a.b", ErrInvalid, mongoerr.InvalidNamespace},
		{"slash", "a/b", ErrInvalid, mongoerr.InvalidNamespace},
		{"space", "a b", ErrInvalid, mongoerr.InvalidNamespace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateDatabase(ctx, tc.db, nil)
			mustErr(t, err, tc.err, tc.code)
		})
	}
	e, err := c.EnsureDatabase(ctx, "dba", nil)
	mustOK(t, err)
	if e.Name != "dba" {
		t.Fatalf("EnsureDatabase returned %+v", e)
	}
	dbs, _, err := c.ListDatabases(ctx)
	mustOK(t, err)
	if len(dbs) != 5 || dbs[0].Name != "big" {
		t.Fatalf("ListDatabases %+v", dbs)
	}
	_, err = c.GetDatabase(ctx, "nope")
	mustErr(t, err, ErrNotFound, mongoerr.NamespaceNotFound)
}

func TestSetPrimaryShardAndDropDatabase(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1")
	d, err := c.CreateDatabase(ctx, "db", nil)
	mustOK(t, err)
	other := "rs1"
	if d.PrimaryShard == "rs1" {
		other = "rs0"
	}
	_, err = c.SetPrimaryShard(ctx, "db", other, d.ModRevision-1)
	mustErr(t, err, ErrConflict, mongoerr.ConflictingOperationInProgress)
	_, err = c.SetPrimaryShard(ctx, "db", "nope", d.ModRevision)
	mustErr(t, err, ErrNotFound, mongoerr.ShardNotFound)
	moved, err := c.SetPrimaryShard(ctx, "db", other, d.ModRevision)
	mustOK(t, err)
	if moved.PrimaryShard != other || moved.Version.LastMod != d.Version.LastMod+1 || moved.Version.UUID != d.Version.UUID {
		t.Fatalf("moved %+v from %+v", moved, d)
	}

	_, err = c.CreateCollection(ctx, "db.plain")
	mustOK(t, err)
	sharded, _, err := c.ShardCollection(ctx, "db.sh", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}})
	mustOK(t, err)
	_, err = c.CreateDatabase(ctx, "db2", nil)
	mustOK(t, err)
	keep, _, err := c.ShardCollection(ctx, "db2.sh", ShardOptions{Key: ShardKey{{Field: "k"}}})
	mustOK(t, err)

	mustOK(t, c.DropDatabase(ctx, "db"))
	mustErr(t, c.DropDatabase(ctx, "db"), ErrNotFound, mongoerr.NamespaceNotFound)
	colls, _, err := c.ListCollections(ctx, "")
	mustOK(t, err)
	if len(colls) != 1 || colls[0].NS != "db2.sh" {
		t.Fatalf("collections after drop: %+v", colls)
	}
	if chunks, _, _ := c.ListChunks(ctx, sharded.UUID); len(chunks) != 0 {
		t.Fatalf("%d chunks of a dropped database's collection left", len(chunks))
	}
	if chunks, _, _ := c.ListChunks(ctx, keep.UUID); len(chunks) != 1 {
		t.Fatalf("other database lost its chunks: %d", len(chunks))
	}
}
