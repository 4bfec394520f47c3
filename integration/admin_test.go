package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/config"
)

// admCluster is the cluster TestAdmin drives with `psdb admin`: two
// shards of three members and one router, and a driver client of the
// router for setting up data and checking effects.
type admCluster struct {
	c      *harness.Cluster
	uri    string
	cli    *mongo.Client
	shards []string
	bin    string
}

// admResult is one psdb run.
type admResult struct {
	stdout, stderr string
	code           int
}

// run runs `psdb admin <args> --uri <router>` and returns its outputs.
func (a *admCluster) run(t *testing.T, args ...string) admResult {
	t.Helper()
	return a.runURI(t, a.uri, args...)
}

func (a *admCluster) runURI(t *testing.T, uri string, args ...string) admResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	full := append([]string{"admin"}, args...)
	if uri != "" {
		full = append(full, "--uri", uri)
	}
	cmd := exec.CommandContext(ctx, a.bin, full...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := admResult{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("psdb %v: %v", full, err)
	}
	return r
}

// must runs psdb admin and fails the test unless it exits 0.
func (a *admCluster) must(t *testing.T, args ...string) string {
	t.Helper()
	r := a.run(t, args...)
	if r.code != 0 {
		t.Fatalf("psdb admin %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	if !slices.Contains(args, "--json") {
		t.Logf("psdb admin %s\n%s", strings.Join(args, " "), r.stdout)
	}
	return r.stdout
}

// mustJSON runs psdb admin --json and decodes its one JSON document.
func (a *admCluster) mustJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := a.must(t, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("psdb admin %v --json: %v\n%s", args, err, out)
	}
}

// fails runs psdb admin, wants exit status 1 and one stderr line holding
// want.
func (a *admCluster) fails(t *testing.T, uri string, want string, args ...string) {
	t.Helper()
	start := time.Now()
	r := a.runURI(t, uri, args...)
	if r.code != 1 || !strings.Contains(r.stderr, want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("psdb admin %v: exit %d, stderr %q; want exit 1 and one line holding %q", args, r.code, r.stderr, want)
	}
	t.Logf("psdb admin %s: %s", strings.Join(args, " "), r.stderr)
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("psdb admin %v took %s", args, d)
	}
}

// JSON shapes of the psdb admin results the test reads.
type (
	admShards struct {
		Shards []struct{ Name, Host, State string } `json:"shards"`
	}
	admChunk struct {
		NS    string         `json:"ns"`
		Min   map[string]any `json:"min"`
		Max   map[string]any `json:"max"`
		Shard string         `json:"shard"`
	}
	admChunks struct {
		Chunks   []admChunk `json:"chunks"`
		PerShard []struct {
			NS, Shard string
			Chunks    int
		} `json:"perShard"`
	}
	admRS struct {
		Shards []struct {
			Shard   string `json:"shard"`
			Term    int64  `json:"term"`
			Members []struct {
				Member string  `json:"member"`
				Name   string  `json:"name"`
				State  string  `json:"stateStr"`
				Health float64 `json:"health"`
			} `json:"members"`
		} `json:"shards"`
	}
	admRemove struct {
		Shard           string   `json:"shard"`
		State           string   `json:"state"`
		RemainingChunks int64    `json:"remainingChunks"`
		DBsToMove       []string `json:"dbsToMove"`
	}
)

// primaries returns each shard's PRIMARY member per rs status --json.
func (a *admCluster) primaries(t *testing.T) map[string]string {
	t.Helper()
	var st admRS
	a.mustJSON(t, &st, "rs", "status")
	out := map[string]string{}
	for _, sh := range st.Shards {
		for _, m := range sh.Members {
			if m.State == "PRIMARY" {
				out[sh.Shard] = m.Member
			}
		}
	}
	return out
}

// chunksOn returns the chunks of ns on shard per config.chunks, read with
// the driver (not with psdb).
func (a *admCluster) chunksOn(t *testing.T, ns, shard string) []bson.Raw {
	t.Helper()
	cur, err := a.cli.Database("config").Collection("chunks").Find(t.Context(), bson.D{{Key: "ns", Value: ns}, {Key: "shard", Value: shard}})
	if err != nil {
		t.Fatalf("config.chunks: %v", err)
	}
	var out []bson.Raw
	if err := cur.All(t.Context(), &out); err != nil {
		t.Fatalf("config.chunks: %v", err)
	}
	return out
}

// TestAdmin runs every `psdb admin` command against one real cluster:
// output as a table and as JSON, the effect on the cluster, and bad input.
func TestAdmin(t *testing.T) {
	c := harness.NewCluster(t, harness.WithShards(2), harness.WithMembers(3), harness.WithRouters(1))
	routers := c.ByRole(config.RoleRouter, "")
	a := &admCluster{c: c, uri: "mongodb://" + routers[0].Addr(), bin: filepath.Join(harness.BinDir(t), "psdb")}
	for _, s := range c.Config().Shards {
		a.shards = append(a.shards, s.Name)
	}
	if len(a.shards) != 2 {
		t.Fatalf("want 2 shards, got %v", a.shards)
	}
	sa, sb := a.shards[0], a.shards[1]
	cli, err := mongo.Connect(options.Client().ApplyURI(a.uri).SetTimeout(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Disconnect(context.Background()) })
	a.cli = cli

	// The data: admdb (primary shard sa) with admdb.c sharded on k.
	const ns = "admdb.c"
	harness.Eventually(t, 60*time.Second, func() error {
		return cli.Database("admin").RunCommand(t.Context(), bson.D{{Key: "enableSharding", Value: "admdb"}, {Key: "primaryShard", Value: sa}}).Err()
	})
	if err := cli.Database("admin").RunCommand(t.Context(), bson.D{{Key: "shardCollection", Value: ns}, {Key: "key", Value: bson.D{{Key: "k", Value: 1}}}}).Err(); err != nil {
		t.Fatalf("shardCollection: %v", err)
	}
	docs := make([]any, 100)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "k", Value: i}}
	}
	harness.Eventually(t, 60*time.Second, func() error {
		_, err := cli.Database("admdb").Collection("c").InsertMany(t.Context(), docs, options.InsertMany().SetOrdered(false))
		if err != nil && !mongo.IsDuplicateKeyError(err) {
			return err
		}
		return nil
	})
	// Both shards have a primary before the commands that need one.
	harness.Eventually(t, 60*time.Second, func() error {
		if p := a.primaries(t); len(p) != 2 {
			return fmt.Errorf("primaries %v", p)
		}
		return nil
	})

	t.Run("BadInput", func(t *testing.T) {
		a.fails(t, "mongodb://"+closedAddrAdm(t), "cannot reach the cluster at", "shards", "list", "--connect-timeout", "1s")
		a.fails(t, "mongodb://"+closedAddrAdm(t), "cannot reach the cluster at", "summary", "--json", "--connect-timeout", "1s")
		a.fails(t, "http://nowhere", `invalid URI "http://nowhere"`, "shards", "list")
		a.fails(t, a.uri, "ShardNotFound (70)", "rs", "status", "nosuch")
		a.fails(t, a.uri, "ShardNotFound (70)", "rs", "stepdown", "nosuch")
		a.fails(t, a.uri, "ShardNotFound (70)", "shards", "remove", "nosuch")
		a.fails(t, a.uri, "ShardNotFound", "chunks", "move", "--ns", ns, "--find", "{k: 1}", "--to", "nosuch")
		a.fails(t, a.uri, "--find: parse", "chunks", "move", "--ns", ns, "--find", "{k: ", "--to", sb)
		a.fails(t, a.uri, "NamespaceNotSharded", "chunks", "split", "--ns", "admdb.unsharded", "--middle", "{k: 1}")
	})

	t.Run("ShardsList", func(t *testing.T) {
		out := a.must(t, "shards", "list")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "SHARD") {
			t.Fatalf("shards list table:\n%s", out)
		}
		for i, s := range []string{sa, sb} {
			if f := strings.Fields(lines[i+1]); f[0] != s || f[1] != "active" || strings.Count(f[2], ",") != 2 {
				t.Fatalf("row of %s: %q", s, lines[i+1])
			}
		}
		var l admShards
		a.mustJSON(t, &l, "shards", "list")
		if len(l.Shards) != 2 || l.Shards[0].Name != sa || l.Shards[1].State != "active" || !strings.HasPrefix(l.Shards[0].Host, sa+"/") {
			t.Fatalf("shards list --json: %+v", l)
		}
	})

	t.Run("Balancer", func(t *testing.T) {
		var st map[string]any
		a.mustJSON(t, &st, "balancer", "status")
		for _, k := range []string{"mode", "inBalancerRound", "numBalancerRounds"} {
			if _, ok := st[k]; !ok {
				t.Fatalf("balancer status --json lacks %s: %v", k, st)
			}
		}
		if _, ok := st["ok"]; ok {
			t.Fatalf("balancer status --json shows ok: %v", st)
		}
		out := a.must(t, "balancer", "start")
		if !strings.HasPrefix(out, "balancerStart: ok\n") || admField(out, "mode") != "full" {
			t.Fatalf("balancer start:\n%s", out)
		}
		out = a.must(t, "balancer", "status")
		if !strings.HasPrefix(out, "FIELD") || admField(out, "mode") != "full" || admField(out, "numBalancerRounds") == "" {
			t.Fatalf("balancer status table:\n%s", out)
		}
		var ch struct {
			Command string         `json:"command"`
			Status  map[string]any `json:"status"`
		}
		a.mustJSON(t, &ch, "balancer", "stop")
		if ch.Command != "balancerStop" || ch.Status["mode"] != "off" {
			t.Fatalf("balancer stop --json: %+v", ch)
		}
		// Settings are what the router reads: the config database agrees.
		var s bson.M
		if err := cli.Database("config").Collection("settings").FindOne(t.Context(), bson.D{{Key: "_id", Value: "balancer"}}).Decode(&s); err != nil {
			t.Fatal(err)
		}
		if s["mode"] != "off" {
			t.Fatalf("config.settings balancer: %v", s)
		}
	})

	t.Run("ChunksSplitMoveList", func(t *testing.T) {
		out := a.must(t, "chunks", "split", "--ns", ns, "--middle", "{k: 50}")
		if !strings.Contains(out, "at { k: 50 }; admdb.c has 2 chunks") {
			t.Fatalf("chunks split --middle:\n%s", out)
		}
		var sp struct {
			NS     string         `json:"ns"`
			Find   map[string]any `json:"find"`
			Chunks int            `json:"chunks"`
		}
		a.mustJSON(t, &sp, "chunks", "split", "--ns", ns, "--find", `{"k": 10}`)
		if sp.NS != ns || sp.Chunks != 3 || sp.Find["k"] != float64(10) {
			t.Fatalf("chunks split --find --json: %+v", sp)
		}
		out = a.must(t, "chunks", "move", "--ns", ns, "--find", "{k: 60}", "--to", sb, "--wait-for-delete")
		if !strings.Contains(out, "moved the chunk of admdb.c holding { k: 60 } to "+sb) {
			t.Fatalf("chunks move:\n%s", out)
		}
		// The effect, read from config.chunks with the driver.
		on := a.chunksOn(t, ns, sb)
		if len(on) != 1 || on[0].Lookup("min", "k").AsInt64() != 50 {
			t.Fatalf("chunks of %s on %s: %v", ns, sb, on)
		}
		var mv struct {
			To     string `json:"to"`
			Millis int64  `json:"millis"`
		}
		a.mustJSON(t, &mv, "chunks", "move", "--ns", ns, "--find", "{k: 0}", "--to", sb)
		if mv.To != sb {
			t.Fatalf("chunks move --json: %+v", mv)
		}

		out = a.must(t, "chunks", "list", "--ns", ns)
		want := [][]string{
			{"NS", "MIN", "MAX", "SHARD", "VERSION"},
			{ns, "{ k: MinKey }", "{ k: 25 }", sb}, // split --find at the median
			{ns, "{ k: 25 }", "{ k: 50 }", sa},
			{ns, "{ k: 50 }", "{ k: MaxKey }", sb},
		}
		lines := strings.Split(out, "\n")
		for i, w := range want {
			for _, cell := range w {
				if i >= len(lines) || !strings.Contains(lines[i], cell) {
					t.Fatalf("chunks list line %d lacks %q:\n%s", i, cell, out)
				}
			}
		}
		if !strings.Contains(out, "\n\nNS       SHARD  CHUNKS\n"+ns+"  "+sa+"    1\n"+ns+"  "+sb+"    2\n") {
			t.Fatalf("chunks list without per-shard counts:\n%s", out)
		}
		var l admChunks
		a.mustJSON(t, &l, "chunks", "list", "--ns", ns)
		if len(l.Chunks) != 3 || l.Chunks[0].Min["k"] == nil || len(l.PerShard) != 2 {
			t.Fatalf("chunks list --json: %+v", l)
		}
		if mk, ok := l.Chunks[0].Min["k"].(map[string]any); !ok || mk["$minKey"] != float64(1) {
			t.Fatalf("first chunk's min: %v", l.Chunks[0].Min)
		}
		counts := map[string]int{}
		for _, p := range l.PerShard {
			counts[p.Shard] = p.Chunks
		}
		if counts[sa] != 1 || counts[sb] != 2 {
			t.Fatalf("per-shard counts: %v", l.PerShard)
		}
		a.mustJSON(t, &l, "chunks", "list", "--shard", sa)
		if len(l.Chunks) != 1 || l.Chunks[0].Shard != sa {
			t.Fatalf("chunks list --shard %s --json: %+v", sa, l)
		}
		// The data are all still there, wherever they live.
		n, err := cli.Database("admdb").Collection("c").CountDocuments(t.Context(), bson.D{})
		if err != nil || n != 100 {
			t.Fatalf("count after moves: %d, %v", n, err)
		}
	})

	t.Run("ReplicaSets", func(t *testing.T) {
		out := a.must(t, "rs", "status")
		for _, s := range []string{sa, sb} {
			if !strings.Contains(out, "shard "+s+"  set "+s) {
				t.Fatalf("rs status lacks the header of %s:\n%s", s, out)
			}
		}
		if strings.Count(out, "PRIMARY") != 2 || strings.Count(out, "SECONDARY") != 4 || strings.Count(out, "MEMBER  ") != 2 {
			t.Fatalf("rs status table:\n%s", out)
		}
		var st admRS
		a.mustJSON(t, &st, "rs", "status", sa)
		if len(st.Shards) != 1 || st.Shards[0].Shard != sa || len(st.Shards[0].Members) != 3 {
			t.Fatalf("rs status %s --json: %+v", sa, st)
		}
		for _, m := range st.Shards[0].Members {
			if m.Health != 1 || m.Name == "" {
				t.Fatalf("member %+v", m)
			}
		}
		old := a.primaries(t)[sa]
		var sd struct {
			Shard       string `json:"shard"`
			SteppedDown string `json:"steppedDown"`
			NewPrimary  string `json:"newPrimary"`
		}
		a.mustJSON(t, &sd, "rs", "stepdown", sa, "--secs", "30")
		if sd.Shard != sa || sd.SteppedDown != old {
			t.Fatalf("rs stepdown --json: %+v (primary was %s)", sd, old)
		}
		// A new primary, other than the old one, per rs status.
		harness.Eventually(t, 30*time.Second, func() error {
			if p := a.primaries(t)[sa]; p == "" || p == old {
				return fmt.Errorf("primary of %s is %q (old %s)", sa, p, old)
			}
			return nil
		})
		if sd.NewPrimary != "" && sd.NewPrimary == old {
			t.Fatalf("newPrimary is the old primary: %+v", sd)
		}
		// The table form, on the other shard, with force.
		oldB := a.primaries(t)[sb]
		out = a.must(t, "rs", "stepdown", sb, "--secs", "30", "--force")
		if !strings.Contains(out, "shard "+sb+": "+oldB+" (") || !strings.Contains(out, "stepped down") {
			t.Fatalf("rs stepdown table:\n%s", out)
		}
		harness.Eventually(t, 30*time.Second, func() error {
			if p := a.primaries(t)[sb]; p == "" || p == oldB {
				return fmt.Errorf("primary of %s is %q (old %s)", sb, p, oldB)
			}
			return nil
		})
		// Writes work again through the router on both shards.
		harness.Eventually(t, 30*time.Second, func() error {
			_, err := cli.Database("admdb").Collection("c").UpdateMany(t.Context(), bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "after", Value: true}}}})
			return err
		})
	})

	t.Run("Summary", func(t *testing.T) {
		out := a.must(t, "summary")
		for _, w := range []string{"SHARD", "DATABASE", "COLLECTION", "BALANCER", "ROUTER", ns, "{ k: 1 }", sa + "=1 " + sb + "=2", routers[0].Addr(), "3/3"} {
			if !strings.Contains(out, w) {
				t.Fatalf("summary lacks %q:\n%s", w, out)
			}
		}
		var s struct {
			Shards []struct {
				Name, State, Primary string
				Healthy              int `json:"healthyMembers"`
			} `json:"shards"`
			Databases   []struct{ Name, Primary string } `json:"databases"`
			Collections []struct {
				NS       string         `json:"ns"`
				Chunks   int            `json:"chunks"`
				PerShard map[string]int `json:"perShard"`
			} `json:"collections"`
			Balancer map[string]any `json:"balancer"`
			Routers  []struct{ Addr string }
		}
		a.mustJSON(t, &s, "summary")
		if len(s.Shards) != 2 || s.Shards[0].Healthy != 3 || s.Shards[0].Primary == "" {
			t.Fatalf("summary shards: %+v", s.Shards)
		}
		found := false
		for _, d := range s.Databases {
			if d.Name == "admdb" && d.Primary == sa {
				found = true
			}
		}
		if !found {
			t.Fatalf("summary databases: %+v", s.Databases)
		}
		if len(s.Collections) != 1 || s.Collections[0].NS != ns || s.Collections[0].Chunks != 3 || s.Collections[0].PerShard[sb] != 2 {
			t.Fatalf("summary collections: %+v", s.Collections)
		}
		if s.Balancer["mode"] != "off" || len(s.Routers) != 1 || s.Routers[0].Addr != routers[0].Addr() {
			t.Fatalf("summary balancer/routers: %v %+v", s.Balancer, s.Routers)
		}
	})

	// A shard that owns nothing is removed by the first call.
	t.Run("AddRemoveEmptyShard", func(t *testing.T) {
		spec := "admextra/" + closedAddrAdm(t)
		out := a.must(t, "shards", "add", spec)
		if out != "shard admextra added\n" {
			t.Fatalf("shards add: %q", out)
		}
		var l admShards
		a.mustJSON(t, &l, "shards", "list")
		if len(l.Shards) != 3 {
			t.Fatalf("shards after add: %+v", l)
		}
		var p admRemove
		a.mustJSON(t, &p, "shards", "remove", "admextra")
		if p.State != "completed" || p.Shard != "admextra" {
			t.Fatalf("shards remove of an empty shard: %+v", p)
		}
		a.mustJSON(t, &l, "shards", "list")
		if len(l.Shards) != 2 {
			t.Fatalf("shards after remove: %+v", l)
		}
		a.fails(t, a.uri, "ShardNotFound", "shards", "remove", "admextra")
	})

	// A shard owning chunks drains: started, ongoing, then completed once
	// chunks move off it (here with chunks move; --wait follows it).
	t.Run("MovePrimary", func(t *testing.T) {
		if err := cli.Database("admin").RunCommand(t.Context(), bson.D{{Key: "enableSharding", Value: "admmp"}, {Key: "primaryShard", Value: sb}}).Err(); err != nil {
			t.Fatalf("enableSharding: %v", err)
		}
		plain := cli.Database("admmp").Collection("plain")
		if _, err := plain.InsertMany(t.Context(), []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}}); err != nil {
			t.Fatal(err)
		}
		out := a.must(t, "shards", "move-primary", "admmp", "--to", sa)
		if !strings.Contains(out, "database admmp now has primary shard "+sa+" (1 unsharded collections moved") {
			t.Fatalf("shards move-primary:\n%s", out)
		}
		var d bson.Raw
		if err := cli.Database("config").Collection("databases").FindOne(t.Context(), bson.D{{Key: "_id", Value: "admmp"}}).Decode(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.Lookup("primary").StringValue(); got != sa {
			t.Fatalf("config.databases primary of admmp: %q, want %q", got, sa)
		}
		if n, err := plain.CountDocuments(t.Context(), bson.D{}); err != nil || n != 2 {
			t.Fatalf("count after move-primary: %d, %v", n, err)
		}
		a.fails(t, a.uri, "ShardNotFound", "shards", "move-primary", "admmp", "--to", "nosuchshard")
	})

	t.Run("RemoveShardWithChunks", func(t *testing.T) {
		out := a.must(t, "shards", "remove", sb)
		if !strings.Contains(out, "STATE                started") {
			t.Fatalf("first shards remove:\n%s", out)
		}
		var p admRemove
		a.mustJSON(t, &p, "shards", "remove", sb)
		if p.State != "ongoing" || p.RemainingChunks != 2 || len(p.DBsToMove) != 0 {
			t.Fatalf("second shards remove: %+v", p)
		}
		var l admShards
		a.mustJSON(t, &l, "shards", "list")
		if l.Shards[1].Name != sb || l.Shards[1].State != "draining" {
			t.Fatalf("shards list while draining: %+v", l)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		wait := exec.CommandContext(ctx, a.bin, "admin", "shards", "remove", sb, "--wait", "--interval", "200ms", "--wait-timeout", "60s", "--json", "--uri", a.uri)
		var wout bytes.Buffer
		wait.Stdout = &wout
		stderr, err := wait.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := wait.Start(); err != nil {
			t.Fatal(err)
		}
		// The progress lines, as they come; the channel closes at EOF.
		lines := make(chan string, 100)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		var progress []string
		next := func() (string, bool) {
			select {
			case l, ok := <-lines:
				if ok {
					progress = append(progress, l)
				}
				return l, ok
			case <-ctx.Done():
				t.Fatalf("no progress line from shards remove --wait; so far %q", progress)
				return "", false
			}
		}
		// One ongoing line before the chunks move, so the wait is seen
		// following the draining rather than finding it done.
		if l, _ := next(); !strings.HasPrefix(l, "removeShard "+sb+": ongoing; remaining chunks=2 dbs=0") {
			t.Fatalf("first progress line %q", l)
		}
		for _, find := range []string{"{k: MinKey}", "{k: 50}"} {
			a.must(t, "chunks", "move", "--ns", ns, "--find", find, "--to", sa)
		}
		for {
			if _, ok := next(); !ok {
				break
			}
		}
		if err := wait.Wait(); err != nil {
			t.Fatalf("shards remove --wait: %v\nstdout: %s\nstderr: %q", err, wout.String(), progress)
		}
		if err := json.Unmarshal(wout.Bytes(), &p); err != nil || p.State != "completed" {
			t.Fatalf("shards remove --wait --json: %+v %v\n%s", p, err, wout.String())
		}
		if last := progress[len(progress)-1]; last != "removeShard "+sb+": completed" {
			t.Fatalf("shards remove --wait progress: %q", progress)
		}
		t.Logf("shards remove --wait progress:\n%s", strings.Join(progress, "\n"))
		a.mustJSON(t, &l, "shards", "list")
		if len(l.Shards) != 1 || l.Shards[0].Name != sa {
			t.Fatalf("shards after removal: %+v", l)
		}
		n, err := cli.Database("admdb").Collection("c").CountDocuments(t.Context(), bson.D{})
		if err != nil || n != 100 {
			t.Fatalf("count after removal: %d, %v", n, err)
		}
	})
}

// admField returns the VALUE of a FIELD VALUE table's row ("" if none).
func admField(table, field string) string {
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			return strings.Join(f[1:], " ")
		}
	}
	return ""
}

// closedAddrAdm returns a local address nothing listens on.
func closedAddrAdm(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", harness.FreePorts(t, 1)[0])
}
