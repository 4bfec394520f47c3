package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
)

// stepWindow records n reads of 2 ms spread over shards by weight.
func stepWindow(weights map[string]int, n int) *window {
	r := NewRecorder()
	sum := 0
	for _, w := range weights {
		sum += w
	}
	for sh, w := range weights {
		for range n * w / sum {
			r.Record(OpRead, 2*time.Millisecond, 1, "", sh)
		}
	}
	return r.drain()
}

var hashedMap = &ShardMap{NS: "bench.usertable", Sharded: true, Key: catalog.ShardKey{{Field: "_id", Hashed: true}}}

// TestScaleStepBookkeeping builds a step as the scenario does: the moving
// phase from two pieces, the steady window, then the derived shares.
func TestScaleStepBookkeeping(t *testing.T) {
	moving := newWindow()
	moving.merge(stepWindow(map[string]int{"rs0": 1}, 500))           // piece 1: all on rs0
	moving.merge(stepWindow(map[string]int{"rs0": 1, "rs1": 1}, 500)) // piece 2: half moved
	mv := summaryOf(moving, 10, hashedMap)
	step := ScaleStep{Shards: 2, ShardNames: []string{"rs0", "rs1"}, Added: "rs1", Moving: &mv,
		Steady:     summaryOf(stepWindow(map[string]int{"rs0": 3, "rs1": 1}, 1000), 5, hashedMap),
		Chunks:     map[string]int{"rs0": 6, "rs1": 2},
		Docs:       map[string]int64{"rs0": 7500, "rs1": 2500},
		DataBytes:  map[string]int64{"rs0": 7500 << 10, "rs1": 2500 << 10},
		Converged:  true,
		ConvergeS:  12.5,
		Migrations: 3}
	finishStep(&step)
	if step.Moving.Ops != 1000 || !near(step.Moving.OpsPerSec, 100) || !near(step.Moving.Shards.Share["rs0"], 0.75) {
		t.Fatalf("moving phase: %d ops, %.1f ops/s, rs0 share %.3f; want 1000, 100, 0.75", step.Moving.Ops, step.Moving.OpsPerSec, step.Moving.Shards.Share["rs0"])
	}
	if !near(step.Steady.OpsPerSec, 200) || !near(step.MaxOpShare, 0.75) {
		t.Fatalf("steady %.1f ops/s, max share %.3f; want 200, 0.75", step.Steady.OpsPerSec, step.MaxOpShare)
	}
	if !near(step.ShardOpsPerSec["rs0"], 150) || !near(step.ShardOpsPerSec["rs1"], 50) {
		t.Fatalf("per-shard ops/s %v, want rs0 150 rs1 50", step.ShardOpsPerSec)
	}
	if !near(step.DataShare["rs1"], 0.25) || !near(step.ChunkShare["rs0"], 0.75) {
		t.Fatalf("data share %v chunk share %v", step.DataShare, step.ChunkShare)
	}
	if got := shareOf(map[string]int{"rs0": 0}); len(got) != 0 {
		t.Fatalf("shares of nothing: %v", got)
	}
}

func TestScaleProjection(t *testing.T) {
	step := func(n int, ops, maxShare float64) ScaleStep {
		s := ScaleStep{Shards: n, MaxOpShare: maxShare}
		s.Steady.OpsPerSec = ops
		return s
	}
	even := []ScaleStep{step(1, 1000, 1), step(2, 900, 0.5), step(4, 800, 0.25)}
	p := Project(even, []int{1, 2, 4, 8})
	want := []float64{1000, 2000, 4000, 8000}
	for i, pt := range p.Points {
		if !near(pt.OpsPerSec, want[i]) {
			t.Fatalf("even shares, %d machines: %.0f ops/s, want %.0f (%+v)", pt.Machines, pt.OpsPerSec, want[i], p)
		}
	}
	if !p.Points[2].Measured || p.Points[3].Measured || p.Efficiency != 1 || p.BaseOpsPerSec != 1000 {
		t.Fatalf("projection %+v", p)
	}
	if !strings.Contains(p.Assumption, "own machine") {
		t.Fatalf("assumption %q", p.Assumption)
	}
	// The busiest of 4 shards takes 40%: it saturates first, so 4
	// machines give 4 x 1000 x (0.25/0.4) = 2500, and 8 the same factor.
	skew := []ScaleStep{step(1, 1000, 1), step(2, 900, 0.6), step(4, 800, 0.4)}
	p = Project(skew, []int{2, 4, 8})
	for i, w := range []float64{2000 / 1.2, 2500, 5000} {
		if !near(p.Points[i].OpsPerSec, w) {
			t.Fatalf("skewed, %d machines: %.0f, want %.0f", p.Points[i].Machines, p.Points[i].OpsPerSec, w)
		}
	}
	if !near(p.Efficiency, 0.625) {
		t.Fatalf("efficiency %.3f, want 0.625", p.Efficiency)
	}
	if got := Project(nil, []int{4}); len(got.Points) != 0 {
		t.Fatalf("projection without steps: %+v", got)
	}
}

func statusOf(t *testing.T, d bson.D) balancerView {
	t.Helper()
	raw, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var st balancerView
	if err := bson.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestScaleBalanced(t *testing.T) {
	const ns = "bench.usertable"
	round := func(verdict string, inFlight int, loads bson.D, dataSize bool) bson.D {
		fl := bson.A{}
		for range inFlight {
			fl = append(fl, bson.D{{Key: "ns", Value: ns}})
		}
		return bson.D{{Key: "ok", Value: 1.0}, {Key: "numBalancerRounds", Value: int64(7)}, {Key: "migrationsSucceeded", Value: int64(3)},
			{Key: "inFlight", Value: fl},
			{Key: "lastRound", Value: bson.D{{Key: "verdict", Value: verdict}, {Key: "message", Value: "m"},
				{Key: "collections", Value: bson.A{bson.D{{Key: "ns", Value: ns}, {Key: "imbalance", Value: int64(1)},
					{Key: "threshold", Value: int64(2)}, {Key: "dataSize", Value: dataSize}, {Key: "loads", Value: loads}}}}}}}
	}
	two := bson.D{{Key: "rs0", Value: int64(5)}, {Key: "rs1", Value: int64(4)}}
	active := []string{"rs0", "rs1"}
	cases := []struct {
		name   string
		st     bson.D
		chunks map[string]int
		active []string
		want   bool
		why    string
	}{
		{"balanced", round("balanced", 0, two, false), map[string]int{"rs0": 5, "rs1": 4}, active, true, ""},
		{"moving", round("moving", 1, two, false), map[string]int{"rs0": 5, "rs1": 4}, active, false, "moving"},
		{"in flight", round("balanced", 1, two, false), map[string]int{"rs0": 5, "rs1": 4}, active, false, "in flight"},
		{"round before the new shard", round("balanced", 0, bson.D{{Key: "rs0", Value: int64(9)}}, false), map[string]int{"rs0": 9}, active, false, "predates shard rs1"},
		{"chunks apart", round("balanced", 0, two, false), map[string]int{"rs0": 6, "rs1": 3}, active, false, "threshold 2"},
		{"data-size mode ignores chunk counts", round("balanced", 0, two, true), map[string]int{"rs0": 6, "rs1": 3}, active, true, ""},
		{"other collection only", round("balanced", 0, two, false), nil, active, true, ""},
	}
	for _, c := range cases {
		st := statusOf(t, c.st)
		ns := ns
		if c.name == "other collection only" {
			ns = "other.coll"
			c.want, c.why = false, "does not mention other.coll"
		}
		got, why := balanced(st, ns, c.active, c.chunks)
		if got != c.want || !strings.Contains(why, c.why) {
			t.Errorf("%s: balanced = %t (%q), want %t (%q)", c.name, got, why, c.want, c.why)
		}
	}
	if st := statusOf(t, round("balanced", 0, two, false)); st.Rounds != 7 || st.Moved != 3 {
		t.Fatalf("decoded rounds %d moved %d", st.Rounds, st.Moved)
	}
}

func sampleScaleReport() *ScaleReport {
	r := &ScaleReport{Tool: "psdb bench", Version: ReportVersion, Command: "scenario scale-out", Note: ScaleNote,
		Config: DefaultScaleConfig(DefaultConfig())}
	for i, sh := range []string{"rs0", "rs1", "rs2"} {
		names := []string{"rs0", "rs1", "rs2"}[:i+1]
		weights := map[string]int{}
		chunks := map[string]int{}
		docs := map[string]int64{}
		for _, n := range names {
			weights[n], chunks[n], docs[n] = 1, 4, 1000
		}
		s := ScaleStep{Shards: i + 1, ShardNames: names, StartS: float64(30 * i), Steady: summaryOf(stepWindow(weights, 900), 3, hashedMap),
			Chunks: chunks, Docs: docs, DataBytes: map[string]int64{}}
		if i > 0 {
			mv := summaryOf(stepWindow(weights, 300), 1, hashedMap)
			s.Added, s.Moving, s.Converged, s.ConvergeS, s.Migrations = sh, &mv, true, 8, 4
		}
		finishStep(&s)
		r.Steps = append(r.Steps, s)
		r.Intervals = append(r.Intervals, Interval{ElapsedS: float64(30*i + 1), OpsPerSec: 300,
			Ops: map[string]IntervalOp{OpRead: {Ops: 300, OpsPerSec: 300, P50Ms: 2, P99Ms: 2}}})
	}
	r.Projection = Project(r.Steps, []int{1, 2, 4, 8, 16})
	return r
}

// TestScaleReportJSON checks the report's JSON field names and its round
// trip, the markers, the table and the chart.
func TestScaleReportJSON(t *testing.T) {
	r := sampleScaleReport()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tool", "version", "command", "config", "steps", "projection", "note", "intervals", "summary"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON has no %q: %s", k, data)
		}
	}
	step1 := m["steps"].([]any)[1].(map[string]any)
	for _, k := range []string{"shards", "shard_names", "added", "start_s", "converge_s", "converged", "migrations", "moving", "steady",
		"shard_ops_per_sec", "chunks", "docs", "data_bytes", "data_share", "chunk_share", "max_op_share"} {
		if _, ok := step1[k]; !ok {
			t.Errorf("step JSON has no %q: %v", k, step1)
		}
	}
	if _, ok := m["steps"].([]any)[0].(map[string]any)["moving"]; ok {
		t.Errorf("the first step has a moving phase")
	}
	cfg := m["config"].(map[string]any)
	if cfg["step_duration"] != "1m0s" || cfg["shards"] != 4.0 {
		t.Errorf("config JSON %v", cfg)
	}
	var back ScaleReport
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Steps) != 3 || back.Steps[2].Added != "rs2" || !near(back.Steps[2].Steady.Shards.Share["rs1"], 1.0/3) ||
		back.Projection.Points[2].Machines != 4 || time.Duration(back.Config.StepDuration) != time.Minute {
		t.Fatalf("round trip: %+v", back)
	}
	ms := r.Markers()
	if len(ms) != 4 || ms[0].Label != "+rs1" || ms[0].AtS != 30 || ms[1].AtS != 38 || ms[3].Label != "3 shards balanced" {
		t.Fatalf("markers %+v", ms)
	}
	var out bytes.Buffer
	PrintScale(&out, r)
	for _, want := range []string{"converge s", "read p50/p99 ms", "rs2 ops 33.3%", "16 machines", "cannot grow"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	var svg bytes.Buffer
	if err := WriteChart(&svg, "scale-out", r.Intervals, ms); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&svg)
	for {
		if _, err := dec.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("chart is not well-formed XML: %v", err)
			}
			break
		}
	}
}

func TestScaleConfigValidate(t *testing.T) {
	sc := DefaultScaleConfig(DefaultConfig())
	if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), "--cluster") {
		t.Fatalf("no cluster file: %v", err)
	}
	sc.ClusterFile, sc.Shards = "c.yaml", 1
	if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), "--shards") {
		t.Fatalf("one shard: %v", err)
	}
	sc.Shards, sc.Base.Workload = 4, "load"
	if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), "cannot be load") {
		t.Fatalf("load workload: %v", err)
	}
	sc.Base.Workload, sc.Piece, sc.Poll = "b", 0, 0
	if err := sc.Validate(); err != nil || sc.Piece <= 0 || sc.Poll <= 0 {
		t.Fatalf("valid config: %v (piece %v poll %v)", err, sc.Piece, sc.Poll)
	}
}
