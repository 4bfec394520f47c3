package catalog

import (
	"testing"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestAddShard(t *testing.T) {
	c := newTestCatalog(t)
	addShards(t, c, "rs0")
	tests := []struct {
		name    string
		shard   string
		members []Member
		state   ShardState
		want    error
		code    mongoerr.Code
	}{
		{"ok", "rs1", members("rs1", 3), ShardActive, nil, 0},
		{"default state", "rs2", members("rs2", 1), "", nil, 0},
		{"draining", "rs3", members("rs3", 1), ShardDraining, nil, 0},
		{"exists", "rs0", members("rs0", 3), ShardActive, ErrExists, mongoerr.OperationFailed},
		{"empty name", "", members("x", 1), ShardActive, ErrInvalid, mongoerr.BadValue},
		{"slash in name", "a/b", members("x", 1), ShardActive, ErrInvalid, mongoerr.BadValue},
		{"no members", "rs4", nil, ShardActive, ErrInvalid, mongoerr.BadValue},
		{"duplicate member", "rs4", []Member{{"m", "h:1"}, {"m", "h:2"}}, ShardActive, ErrInvalid, mongoerr.BadValue},
		{"duplicate addr", "rs4", []Member{{"m1", "h:1"}, {"m2", "h:1"}}, ShardActive, ErrInvalid, mongoerr.BadValue},
		{"no addr", "rs4", []Member{{"m1", ""}}, ShardActive, ErrInvalid, mongoerr.BadValue},
		{"bad state", "rs4", members("rs4", 1), "gone", ErrInvalid, mongoerr.BadValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.AddShard(testCtx(t), tc.shard, tc.members, tc.state)
			if tc.want != nil {
				mustErr(t, err, tc.want, tc.code)
				return
			}
			mustOK(t, err)
			got, err := c.GetShard(testCtx(t), tc.shard)
			mustOK(t, err)
			if got.Name != tc.shard || len(got.Members) != len(tc.members) || got.State != s.State || got.ModRevision != s.ModRevision {
				t.Fatalf("GetShard = %+v, AddShard = %+v", got, s)
			}
		})
	}
}

func TestShardLifecycle(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1", "rs10")
	_, err := c.GetShard(ctx, "nope")
	mustErr(t, err, ErrNotFound, mongoerr.ShardNotFound)

	// Primary and term keys under a shard must not show up as shards.
	l, err := c.AcquirePrimary(ctx, "rs1", "rs1-a", 5e9)
	mustOK(t, err)
	defer l.Revoke(ctx)
	shards, _, err := c.ListShards(ctx)
	mustOK(t, err)
	if len(shards) != 3 || shards[0].Name != "rs0" || shards[1].Name != "rs1" || shards[2].Name != "rs10" {
		t.Fatalf("ListShards = %+v", shards)
	}

	// Removing an active shard is refused.
	mustErr(t, c.RemoveShard(ctx, "rs1"), ErrIllegal, mongoerr.IllegalOperation)
	s, err := c.MarkDraining(ctx, "rs1")
	mustOK(t, err)
	if s.State != ShardDraining {
		t.Fatalf("state %s", s.State)
	}
	if _, err := c.MarkDraining(ctx, "rs1"); err != nil { // idempotent
		t.Fatal(err)
	}
	mustErr(t, func() error { _, err := c.MarkDraining(ctx, "nope"); return err }(), ErrNotFound, mongoerr.ShardNotFound)

	// A draining shard that is some database's primary cannot leave.
	d, err := c.CreateDatabase(ctx, "db1", func(s string) int64 {
		if s == "rs0" {
			return 0
		}
		return 100
	})
	mustOK(t, err)
	if d.PrimaryShard != "rs0" {
		t.Fatalf("primary %s", d.PrimaryShard)
	}
	_, err = c.SetPrimaryShard(ctx, "db1", "rs1", 0)
	mustErr(t, err, ErrIllegal, mongoerr.IllegalOperation)

	// A draining shard that owns chunks cannot leave.
	mustOK(t, c.RemoveShard(ctx, "rs1")) // owns nothing
	if _, err := c.GetShard(ctx, "rs1"); err == nil {
		t.Fatal("rs1 still there")
	}
	if term, _ := c.CurrentTerm(ctx, "rs1"); term != 0 {
		t.Fatalf("term key of removed shard survived: %d", term)
	}
	if _, err := c.GetShard(ctx, "rs10"); err != nil {
		t.Fatal("removing rs1 removed rs10:", err)
	}
	_, _, err = c.ShardCollection(ctx, "db1.c", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: 4})
	mustOK(t, err)
	_, err = c.MarkDraining(ctx, "rs10")
	mustOK(t, err)
	mustErr(t, c.RemoveShard(ctx, "rs10"), ErrIllegal, mongoerr.IllegalOperation)
	_, err = c.MarkDraining(ctx, "rs0")
	mustOK(t, err)
	mustErr(t, c.RemoveShard(ctx, "rs0"), ErrIllegal, mongoerr.IllegalOperation)
}
