package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/shardclient"
)

// TestSingleMemberKillRestart runs a one-member replica set (it elects
// itself) and SIGKILLs it three times while four clients insert with
// w:"majority" (a majority of one): after each restart every
// acknowledged insert is there, and SIGTERM exits cleanly.
func TestSingleMemberKillRestart(t *testing.T) {
	t.Parallel()
	c := harness.NewCluster(t, harness.WithShards(1), harness.WithMembers(1), harness.WithOnly(config.RoleConfigServer, config.RoleShard))
	rs := newReplSet(t, c, c.Config().Shards[0].Name)
	member := c.Process(rs.names[0])
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	var want []int
	for round := range 3 {
		rs.waitPrimary(20 * time.Second)
		// A fresh client per process: a connection to the killed process
		// is in reconnect backoff for a while.
		cli, err := shardclient.Dial(ctx, member.Addr())
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu    sync.Mutex
			acked []int
			wg    sync.WaitGroup
		)
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					id := round*10_000_000 + w*1_000_000 + i
					doc, _ := bson.Marshal(bson.D{{Key: "_id", Value: id}, {Key: "w", Value: w}})
					res, err := cli.Insert(ctx, "app.items", []bson.Raw{doc}, shardclient.WriteOptions{Ordered: true, WriteConcern: majority})
					if err != nil || writeErr(res) != nil {
						return // the process is gone
					}
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
			})
		}
		harness.Eventually(t, 20*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(acked) < 100 {
				return context.DeadlineExceeded
			}
			return nil
		})
		member.Kill()
		wg.Wait()
		cli.Close()
		want = append(want, acked...)

		member.Start()
		rs.waitPrimary(20 * time.Second)
		cli, err = shardclient.Dial(ctx, member.Addr())
		if err != nil {
			t.Fatal(err)
		}
		docs, err := cli.FindAll(ctx, "app.items", shardclient.Find{})
		cli.Close()
		if err != nil {
			t.Fatal(err)
		}
		have := map[int]bool{}
		for _, d := range docs {
			have[int(d.Lookup("_id").Int32())] = true
		}
		for _, id := range want {
			if !have[id] {
				t.Fatalf("round %d: acknowledged _id %d lost after SIGKILL (%d acknowledged, %d found)", round, id, len(want), len(docs))
			}
		}
		t.Logf("round %d: %d acknowledged inserts in all, %d documents after restart", round, len(want), len(docs))
	}
	member.Stop()
	if err := member.Wait(10 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}
