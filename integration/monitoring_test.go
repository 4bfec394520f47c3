package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/opstats"
)

// TestMonitoringLoadLines boots one shard of three members and a router
// with a short log.statsInterval, writes through the driver, and watches
// the nodes' log files until the router and the shard primary log load
// lines with inserts, a secondary logs its replication lag, and the
// config server logs its etcd gauges; `psdb cluster logs` shows the lines
// in the readable form.
func TestMonitoringLoadLines(t *testing.T) {
	c := harness.NewCluster(t, harness.WithShards(1), harness.WithMembers(3), harness.WithRouters(1),
		harness.WithEdit(func(cl *config.Cluster) { cl.Log.StatsInterval = 200 * time.Millisecond }))
	router := c.ByRole(config.RoleRouter, "")[0]
	shard := c.Config().Shards[0].Name
	primary := newReplSet(t, c, shard).waitPrimary(60 * time.Second)

	cli, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + router.Addr() + "/?directConnection=true").
		SetTimeout(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Disconnect(context.Background()) })
	coll := cli.Database("monitoring").Collection("docs")

	next := 0
	insert := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		docs := make([]any, 5)
		for i := range docs {
			docs[i] = bson.D{{Key: "_id", Value: next}, {Key: "pad", Value: strings.Repeat("x", 100)}}
			next++
		}
		_, err := coll.InsertMany(ctx, docs)
		return err
	}
	harness.Eventually(t, 60*time.Second, insert)

	want := map[string]func(loadLine) bool{
		router.Name(): func(l loadLine) bool { return l.ops(opstats.OpInsert) > 0 && l.has("conns") },
		primary: func(l loadLine) bool {
			return l.ops(opstats.OpInsert) > 0 && l.str("state") == "PRIMARY" && l.has("lagMs") && l.has("commitLagMs")
		},
		c.ConfigServers()[0].Name(): func(l loadLine) bool { return l.str("etcdLeader") != "" && l.has("dbSize") },
	}
	secondaries := map[string]bool{}
	for _, p := range c.ByRole(config.RoleShard, shard) {
		if p.Name() != primary {
			secondaries[p.Name()] = true
		}
	}
	secondaryOK := func(l loadLine) bool {
		return l.str("state") == "SECONDARY" && l.has("lagMs") && l.str("syncSource") != "" && l.ops(opstats.OpReplApply) > 0
	}
	harness.Eventually(t, 60*time.Second, func() error {
		if err := insert(); err != nil {
			return err
		}
		var missing []string
		for name, ok := range want {
			if !anyLoadLine(t, c.Process(name), ok) {
				missing = append(missing, name)
			}
		}
		sec := false
		for name := range secondaries {
			sec = sec || anyLoadLine(t, c.Process(name), secondaryOK)
		}
		if !sec {
			missing = append(missing, "a secondary with lagMs")
		}
		if len(missing) > 0 {
			return fmt.Errorf("no matching load line yet on %v", missing)
		}
		return nil
	})

	// The readable form of `psdb cluster logs` shows the load lines.
	out := mustPsdb(t, c.Dir(), "cluster", "logs", router.Name(), "--file", c.ConfigPath())
	found := false
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "INF load ") && strings.Contains(l, `ops={"command"`) && strings.Contains(l, "p99ms=") {
			found = true
			break
		}
	}
	if !found {
		t.Fatalf("psdb cluster logs shows no readable load line:\n%s", lastLines(out, 20))
	}
}

// loadLine is one decoded load line.
type loadLine map[string]any

func (l loadLine) has(f string) bool { _, ok := l[f]; return ok }

func (l loadLine) str(f string) string { s, _ := l[f].(string); return s }

func (l loadLine) ops(op string) float64 {
	m, _ := l[opstats.FieldOps].(map[string]any)
	v, _ := m[op].(float64)
	return v
}

// anyLoadLine reports whether the node's log file holds a load line for
// which ok is true.
func anyLoadLine(t *testing.T, p *harness.Process, ok func(loadLine) bool) bool {
	t.Helper()
	data, err := os.ReadFile(p.Node().LogFile)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatalf("read %s's log: %v", p.Name(), err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(`"message":"load"`)) {
			continue
		}
		var l loadLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && ok(l) {
			return true
		}
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
