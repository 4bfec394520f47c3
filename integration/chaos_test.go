package integration

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/tools/psdb/chaos"
)

// TestChaosShort is the CI form of `make chaos` (issue 9): the
// primary-kill and migration-kill scenarios of tools/psdb/chaos on a
// small cluster of real processes (1 config server, 2 shards x 3 members,
// 2 routers), under the history checker's load through both routers with
// w:"majority" retryable writes and primary reads. Every acknowledged
// write must be present exactly once through each router, no read may go
// back in time, and the cluster must heal (every node healthy, one
// primary per shard, the routers see every member healthy).
func TestChaosShort(t *testing.T) {
	c := harness.NewCluster(t, harness.WithShards(2), harness.WithMembers(3), harness.WithRouters(2))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cl, err := chaos.Attach(ctx, c.Config(), c.Launcher())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close(ctx)
	var progress bytes.Buffer
	rep, err := chaos.Run(ctx, cl, chaos.Options{
		Scenarios:   []string{"primary-kill", "migration-kill"},
		Duration:    3 * time.Second,
		Writers:     4,
		Readers:     2,
		HealTimeout: 60 * time.Second,
		Progress:    &progress,
	})
	t.Log("chaos progress:\n" + progress.String())
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + table.String())
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want 2", len(rep.Results))
	}
	for _, r := range rep.Results {
		switch {
		case r.Lost != 0 || r.Duplicated != 0 || r.BulkLost != 0 || r.BulkDuplicated != 0:
			t.Errorf("%s: lost %d (+%d bulk), duplicated %d (+%d bulk)\n%s", r.Scenario, r.Lost, r.BulkLost, r.Duplicated, r.BulkDuplicated, r.Details)
		case !r.Healed:
			t.Errorf("%s: the cluster did not heal: %s", r.Scenario, r.HealError)
		case r.Error != "":
			t.Errorf("%s: %s", r.Scenario, r.Error)
		case !r.Passed():
			t.Errorf("%s failed: %s\n%s", r.Scenario, r.Verdict(), r.Details)
		case len(r.Faults) == 0 || r.Acked == 0:
			t.Errorf("%s: %d faults injected, %d inserts acknowledged: the scenario tested nothing", r.Scenario, len(r.Faults), r.Acked)
		}
	}
}
