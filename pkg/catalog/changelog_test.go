package catalog

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestApplyBalancerConfig(t *testing.T) {
	ctx := context.Background()
	c := newTestCatalog(t)
	// A new catalog takes everything from the file, enabled included.
	s, err := c.ApplyBalancerConfig(ctx, BalancerConfig{ChunkSizeBytes: 1 << 20, Threshold: 3, EnabledIfNew: false})
	if err != nil || s.Enabled || s.ChunkSizeBytes != 1<<20 || s.Threshold != 3 {
		t.Fatalf("first apply: %+v, %v", s, err)
	}
	// Later: balancerStart and a config.settings chunk size.
	s.Enabled, s.ChunkSizeBytes = true, 8<<20
	if err := c.SetBalancerSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	// The same file again: nothing it owns changed, so nothing moves.
	s, err = c.ApplyBalancerConfig(ctx, BalancerConfig{ChunkSizeBytes: 1 << 20, Threshold: 3, EnabledIfNew: false})
	if err != nil || !s.Enabled || s.ChunkSizeBytes != 8<<20 || s.Threshold != 3 {
		t.Fatalf("re-apply of an unchanged file: %+v, %v", s, err)
	}
	// An edited file wins for the value it changed.
	s, err = c.ApplyBalancerConfig(ctx, BalancerConfig{ChunkSizeBytes: 2 << 20, Threshold: 3})
	if err != nil || !s.Enabled || s.ChunkSizeBytes != 2<<20 {
		t.Fatalf("apply of an edited file: %+v, %v", s, err)
	}
	if got, err := c.GetBalancerSettings(ctx); err != nil || got != s {
		t.Fatalf("stored settings %+v (%v), want %+v", got, err, s)
	}
}

func TestChangelog(t *testing.T) {
	ctx := context.Background()
	c := newTestCatalog(t)
	base := time.Unix(1700000000, 0)
	const bound = 5
	for i := range bound + 3 {
		e := ChangelogEntry{Server: "r0", Time: base.Add(time.Duration(i) * time.Millisecond), What: "split", NS: fmt.Sprintf("db.c%d", i)}
		if err := c.appendChangelog(ctx, e, bound); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.ListChangelog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != bound || got[0].NS != "db.c3" || got[bound-1].NS != "db.c7" || got[0].ID == "" ||
		!got[bound-1].Time.Equal(base.Add(7*time.Millisecond)) {
		t.Fatalf("changelog after the trim: %+v", got)
	}
	if err := c.AppendChangelog(ctx, ChangelogEntry{Server: "r1", What: "addShard"}); err != nil {
		t.Fatal(err)
	}
}
