package catalog

import (
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func setupSharded(t *testing.T, c *Catalog, ns string, opts ShardOptions) (Collection, []Chunk) {
	t.Helper()
	ctx := testCtx(t)
	db, _, _ := SplitNS(ns)
	if _, err := c.EnsureDatabase(ctx, db, nil); err != nil {
		t.Fatal(err)
	}
	coll, chunks, err := c.ShardCollection(ctx, ns, opts)
	mustOK(t, err)
	return coll, chunks
}

func pt(t testing.TB, field string, v any) bson.Raw {
	return doc(t, bson.D{{Key: field, Value: v}})
}

func TestSplitChunk(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1")
	key := ShardKey{{Field: "a"}}
	coll, chunks := setupSharded(t, c, "db.c", ShardOptions{Key: key})
	whole := chunks[0]

	tests := []struct {
		name   string
		points []bson.Raw
		code   mongoerr.Code
	}{
		{"no points", nil, mongoerr.BadValue},
		{"wrong field", []bson.Raw{pt(t, "b", 1)}, mongoerr.BadValue},
		{"extra field", []bson.Raw{doc(t, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 1}})}, mongoerr.BadValue},
		{"at min", []bson.Raw{key.GlobalMin()}, mongoerr.CannotSplit},
		{"not increasing", []bson.Raw{pt(t, "a", 10), pt(t, "a", 5)}, mongoerr.CannotSplit},
		{"equal points", []bson.Raw{pt(t, "a", 10), pt(t, "a", int64(10))}, mongoerr.CannotSplit},
		{"array", []bson.Raw{pt(t, "a", bson.A{1})}, mongoerr.BadValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.SplitChunk(ctx, "db.c", whole, tc.points...)
			mustErr(t, err, ErrInvalid, tc.code)
		})
	}

	parts, err := c.SplitChunk(ctx, "db.c", whole, pt(t, "a", 10), pt(t, "a", "m"))
	mustOK(t, err)
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	for i, p := range parts {
		want := Version{Major: 1, Minor: uint32(i + 1)}
		if p.Version != want || p.Shard != whole.Shard {
			t.Fatalf("part %d: %s, want version %s on %s", i, p, want, whole.Shard)
		}
	}
	listed, _, err := c.ListChunks(ctx, coll.UUID)
	mustOK(t, err)
	if hi := checkTiling(t, key, listed); hi != (Version{1, 3}) {
		t.Fatalf("highest %s", hi)
	}
	got, _ := c.GetCollection(ctx, "db.c")
	if got.Version != (Version{1, 3}) {
		t.Fatalf("collection version %s", got.Version)
	}
	// The stale chunk (old revision) can no longer be split.
	_, err = c.SplitChunk(ctx, "db.c", whole, pt(t, "a", 5))
	mustErr(t, err, ErrConflict, mongoerr.ConflictingOperationInProgress)
	// Unsharded and unknown collections.
	_, err = c.CreateCollection(ctx, "db.plain")
	mustOK(t, err)
	_, err = c.SplitChunk(ctx, "db.plain", whole, pt(t, "a", 1))
	mustErr(t, err, ErrNotFound, mongoerr.NamespaceNotSharded)
	_, err = c.SplitChunk(ctx, "db.none", whole, pt(t, "a", 1))
	mustErr(t, err, ErrNotFound, mongoerr.NamespaceNotFound)
	// A chunk of a dropped incarnation is stale.
	mustOK(t, c.DropCollection(ctx, "db.c"))
	setupSharded(t, c, "db.c", ShardOptions{Key: key})
	_, err = c.SplitChunk(ctx, "db.c", parts[0], pt(t, "a", 1))
	mustErr(t, err, ErrStale, mongoerr.StaleEpoch)
}

func TestSplitHashedChunk(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0")
	key := ShardKey{{Field: "k", Hashed: true}}
	_, chunks := setupSharded(t, c, "db.h", ShardOptions{Key: key, NumInitialChunks: 2})
	_, err := c.SplitChunk(ctx, "db.h", chunks[0], pt(t, "k", 5)) // int32: not a hash
	mustErr(t, err, ErrInvalid, mongoerr.BadValue)
	parts, err := c.SplitChunk(ctx, "db.h", chunks[0], pt(t, "k", int64(-1000)))
	mustOK(t, err)
	if len(parts) != 2 || parts[0].Version != (Version{1, 2}) || parts[1].Version != (Version{1, 3}) {
		t.Fatalf("parts %v", parts)
	}
}

func TestCommitMigration(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1", "rs2")
	_, err := c.MarkDraining(ctx, "rs2")
	mustOK(t, err)
	key := ShardKey{{Field: "a"}}
	coll, chunks := setupSharded(t, c, "db.c", ShardOptions{Key: key})
	donor := chunks[0].Shard
	recipient := "rs1"
	if donor == "rs1" {
		recipient = "rs0"
	}
	parts, err := c.SplitChunk(ctx, "db.c", chunks[0], pt(t, "a", 0), pt(t, "a", 100))
	mustOK(t, err)
	coll, _ = c.GetCollection(ctx, "db.c")
	cv := coll.CollVersion()

	bad := []struct {
		name     string
		chunk    Chunk
		from, to string
		expected CollVersion
		err      error
		code     mongoerr.Code
	}{
		{"same shard", parts[1], donor, donor, cv, ErrInvalid, mongoerr.BadValue},
		{"wrong donor", parts[1], recipient, donor, cv, ErrConflict, mongoerr.ConflictingOperationInProgress},
		{"old version", parts[1], donor, recipient, CollVersion{Epoch: cv.Epoch, Version: Version{1, 0}}, ErrConflict, mongoerr.ConflictingOperationInProgress},
		{"other epoch", parts[1], donor, recipient, CollVersion{Epoch: "x", Version: cv.Version}, ErrStale, mongoerr.StaleEpoch},
		{"unknown recipient", parts[1], donor, "nope", cv, ErrNotFound, mongoerr.ShardNotFound},
		{"draining recipient", parts[1], donor, "rs2", cv, ErrIllegal, mongoerr.IllegalOperation},
		{"stale chunk", chunks[0], donor, recipient, cv, ErrConflict, mongoerr.ConflictingOperationInProgress},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CommitMigration(ctx, "db.c", tc.chunk, tc.from, tc.to, tc.expected)
			mustErr(t, err, tc.err, tc.code)
		})
	}

	// Move the middle chunk: it becomes M+1|0 on the recipient; the donor's
	// first remaining chunk becomes M+1|1.
	nv, err := c.CommitMigration(ctx, "db.c", parts[1], donor, recipient, cv)
	mustOK(t, err)
	if nv.Epoch != cv.Epoch || nv.Version != (Version{2, 1}) {
		t.Fatalf("new collection version %s", nv)
	}
	listed, _, err := c.ListChunks(ctx, coll.UUID)
	mustOK(t, err)
	checkTiling(t, key, listed)
	want := []struct {
		shard string
		v     Version
	}{{donor, Version{2, 1}}, {recipient, Version{2, 0}}, {donor, Version{1, 3}}}
	for i, w := range want {
		if listed[i].Shard != w.shard || listed[i].Version != w.v {
			t.Fatalf("chunk %d = %s, want %s v%s", i, listed[i], w.shard, w.v)
		}
	}
	// Move the recipient's only chunk back: no control chunk on the donor.
	nv2, err := c.CommitMigration(ctx, "db.c", listed[1], recipient, donor, nv)
	mustOK(t, err)
	if nv2.Version != (Version{3, 0}) {
		t.Fatalf("version after moving the last chunk %s", nv2)
	}
	listed, _, _ = c.ListChunks(ctx, coll.UUID)
	checkTiling(t, key, listed)
	for _, ch := range listed {
		if ch.Shard != donor {
			t.Fatalf("chunk %s not back on %s", ch, donor)
		}
	}
}

// Two migrations of one chunk (to the same or different recipients):
// exactly one commits.
func TestCommitMigrationRace(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1", "rs2")
	coll, _ := setupSharded(t, c, "db.c", ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: 6})
	for round := 0; round < 20; round++ {
		cur, err := c.GetCollection(ctx, "db.c")
		mustOK(t, err)
		chunks, _, err := c.ListChunks(ctx, coll.UUID)
		mustOK(t, err)
		ch := chunks[round%len(chunks)]
		var to []string
		for _, s := range []string{"rs0", "rs1", "rs2"} {
			if s != ch.Shard {
				to = append(to, s)
			}
		}
		errs := race(4, func(i int) error {
			_, err := c.CommitMigration(ctx, "db.c", ch, ch.Shard, to[i%2], cur.CollVersion())
			return err
		})
		if w := winners(t, errs, ErrConflict); w != 1 {
			t.Fatalf("round %d: %d winners: %v", round, w, errs)
		}
		after, _, err := c.ListChunks(ctx, coll.UUID)
		mustOK(t, err)
		hi := checkTiling(t, coll.Key, after)
		now, _ := c.GetCollection(ctx, "db.c")
		if hi != now.Version || now.Version.Major != cur.Version.Major+1 {
			t.Fatalf("round %d: version %s, highest chunk %s, before %s", round, now.Version, hi, cur.Version)
		}
	}
}

// A split and a migration of the same chunk read at the same state:
// exactly one commits, and the chunk map stays a tiling.
func TestSplitDuringMigration(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0", "rs1")
	key := ShardKey{{Field: "a"}}
	coll, _ := setupSharded(t, c, "db.c", ShardOptions{Key: key})
	outcomes := map[string]int{}
	for round := 0; round < 20; round++ {
		cur, _ := c.GetCollection(ctx, "db.c")
		chunks, _, err := c.ListChunks(ctx, coll.UUID)
		mustOK(t, err)
		ch := chunks[len(chunks)-1] // [x, MaxKey): always splittable at a larger value
		to := "rs0"
		if ch.Shard == "rs0" {
			to = "rs1"
		}
		errs := race(2, func(i int) error {
			if i == 0 {
				_, err := c.SplitChunk(ctx, "db.c", ch, pt(t, "a", 1000*(round+1)))
				return err
			}
			_, err := c.CommitMigration(ctx, "db.c", ch, ch.Shard, to, cur.CollVersion())
			return err
		})
		if w := winners(t, errs, ErrConflict); w != 1 {
			t.Fatalf("round %d: %d winners: split=%v migrate=%v", round, w, errs[0], errs[1])
		}
		outcomes[fmt.Sprintf("split won=%v", errs[0] == nil)]++
		after, _, err := c.ListChunks(ctx, coll.UUID)
		mustOK(t, err)
		checkTiling(t, key, after)
	}
	t.Logf("outcomes %v", outcomes)
}
