package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/tools/psdb/bench"
)

// TestBench is CI's short form of `psdb bench` (issue 9): on a real
// cluster of two single-member shards and one router, the psdb binary
// loads a hashed collection, runs workload A for 20 seconds and a short
// peak search, and the JSON reports and the SVG chart it writes must be
// complete and well-formed, with no errors and operations on both shards.
func TestBench(t *testing.T) {
	c := harness.NewCluster(t, harness.WithShards(2), harness.WithMembers(1), harness.WithRouters(1))
	rc := &routerCluster{c: c, cat: catalog.New(c.EtcdClient(t)), routers: c.ByRole(config.RoleRouter, "")}
	for _, s := range c.Config().Shards {
		rc.shards = append(rc.shards, s.Name)
	}
	rc.clients = []*mongo.Client{rc.connect(t, rc.routers[0].Addr())}
	rc.waitReady(t)

	uri := "mongodb://" + rc.routers[0].Addr() + "/"
	psdb := filepath.Join(harness.BinDir(t), "psdb")
	dir := t.TempDir()
	run := func(args ...string) (stdout, stderr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, psdb, args...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			t.Fatalf("psdb %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, o.String(), e.String())
		}
		return o.String(), e.String()
	}
	common := []string{"--uri", uri, "--records", "3000", "--doc-size", "200", "--threads", "4"}

	out, _ := run(append([]string{"bench", "load", "--shard", "--drop"}, common...)...)
	if !strings.Contains(out, "3000 operations") || !strings.Contains(out, "0 errors") {
		t.Fatalf("load summary:\n%s", out)
	}

	jsonPath, svgPath := filepath.Join(dir, "a.json"), filepath.Join(dir, "a.svg")
	out, progress := run(append([]string{"bench", "run", "--workload", "a", "--duration", "20s",
		"--out", jsonPath, "--chart", svgPath}, common...)...)
	t.Logf("workload A:\n%s", out)
	// Not a terminal: one progress line per second.
	if n := strings.Count(progress, "ops/s"); n < 15 {
		t.Errorf("%d progress lines in 20 s, want one per second:\n%s", n, progress)
	}

	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatalf("results JSON: %v\n%s", err, raw)
	}
	for _, k := range []string{"tool", "version", "config", "start", "end", "intervals", "summary"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("results JSON lacks %q", k)
		}
	}
	var rep bench.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	s := rep.Summary
	if s.Ops == 0 || s.OpsPerSec <= 0 || s.DurationS < 19 || s.DurationS > 30 {
		t.Errorf("summary: %d ops, %.0f ops/s over %.1fs", s.Ops, s.OpsPerSec, s.DurationS)
	}
	if s.Errors != 0 || len(s.ErrorCodes) != 0 {
		t.Errorf("errors: %d %v", s.Errors, s.ErrorCodes)
	}
	for _, op := range []string{bench.OpRead, bench.OpUpdate} {
		o, ok := s.PerOp[op]
		if !ok || o.Ops == 0 || o.Latency.P50Ms <= 0 || o.Latency.P99Ms < o.Latency.P50Ms || o.Latency.MaxMs < o.Latency.P999Ms {
			t.Errorf("%s summary: %+v", op, o)
		}
	}
	if n := len(rep.Intervals); n < 18 {
		t.Errorf("%d intervals, want about 20", n)
	}
	for _, iv := range rep.Intervals {
		if iv.OpsPerSec <= 0 || iv.Ops[bench.OpRead].P99Ms <= 0 {
			t.Errorf("interval %+v", iv)
			break
		}
	}
	sp := s.Shards
	if sp.ShardKey != `{_id: "hashed"}` || len(sp.Ops) != 2 || sp.Unattributed != 0 {
		t.Errorf("shard spread: %+v", sp)
	}
	var sum int64
	for sh, n := range sp.Ops {
		sum += n
		if share := sp.Share[sh]; share < 0.3 || share > 0.7 {
			t.Errorf("shard %s took %.2f of the operations of a hashed collection", sh, share)
		}
	}
	if sum != s.Ops {
		t.Errorf("shard spread counts %d operations of %d", sum, s.Ops)
	}
	checkSVG(t, svgPath)

	// A short peak search with the cluster's memory.
	peakPath := filepath.Join(dir, "peak.json")
	out, _ = run("bench", "peak", "--uri", uri, "--records", "3000", "--workload", "c", "--start-threads", "1",
		"--max-threads", "2", "--step-duration", "2s", "--p99-bound", "10s", "--cluster", c.ConfigPath(),
		"--out", peakPath, "--chart", filepath.Join(dir, "peak.svg"))
	t.Logf("peak:\n%s", out)
	raw, err = os.ReadFile(peakPath)
	if err != nil {
		t.Fatal(err)
	}
	var peak bench.PeakReport
	if err := json.Unmarshal(raw, &peak); err != nil {
		t.Fatal(err)
	}
	if len(peak.Steps) != 2 || peak.Knee == nil || peak.Knee.Threads != 2 || peak.NonTimeoutErrors != 0 {
		t.Fatalf("peak steps %+v knee %+v errors %d", peak.Steps, peak.Knee, peak.NonTimeoutErrors)
	}
	mem := peak.Steps[1].Memory
	if len(mem) != len(c.Config().Nodes())+1 {
		t.Fatalf("memory of %d processes, want every node and the client: %+v", len(mem), mem)
	}
	for _, m := range mem {
		if m.Error != "" || m.PID == 0 || m.RSSBytes <= 0 {
			t.Errorf("memory of %s: %+v", m.Name, m)
		}
	}
	checkSVG(t, filepath.Join(dir, "peak.svg"))

	// The messaging floor: a ping step and an empty-find step, 2 s each.
	floorPath := filepath.Join(dir, "floor.json")
	out, _ = run("bench", "floor", "--uri", uri, "--threads", "2", "--duration", "2s", "--out", floorPath)
	t.Logf("floor:\n%s", out)
	raw, err = os.ReadFile(floorPath)
	if err != nil {
		t.Fatal(err)
	}
	var floor bench.FloorReport
	if err := json.Unmarshal(raw, &floor); err != nil {
		t.Fatal(err)
	}
	if floor.Command != "floor" || len(floor.Steps) != 2 || floor.Steps[0].Name != bench.FloorPing || floor.Steps[1].Name != bench.FloorEmptyFind {
		t.Fatalf("floor report: %s", raw)
	}
	for _, st := range floor.Steps {
		if st.Ops <= 0 || st.OpsPerSec <= 0 || st.Errors != 0 || len(st.ErrorCodes) != 0 {
			t.Errorf("floor step %s: %+v", st.Name, st)
		}
	}
	names, err := rc.clients[0].Database(bench.FloorDB).ListCollectionNames(t.Context(), bson.D{{Key: "name", Value: bench.FloorColl}})
	if err != nil || len(names) != 0 {
		t.Errorf("after the floor, %s.%s: %v %v; want it dropped", bench.FloorDB, bench.FloorColl, names, err)
	}
}

// checkSVG fails the test unless path is well-formed XML with an svg root
// and at least one line drawn.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	root, lines := "", 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "polyline" {
				lines++
			}
		}
	}
	if root != "svg" || lines == 0 {
		t.Fatalf("%s: root %q, %d polylines", path, root, lines)
	}
}
