package balancer

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psdb/psdb/pkg/catalog"
)

// mkColl builds a collection from "shard=count" specs: chunks are laid out
// in key order, first all of the first shard, and so on; chunk i has
// MinKey {i>>8, i}. A spec "rs0=5j0,1" marks chunks 0 and 1 of the
// collection jumbo.
func mkColl(ns string, specs ...string) Collection {
	c := Collection{NS: ns, Version: catalog.CollVersion{Epoch: "e", Version: catalog.Version{Major: 1}}}
	for _, sp := range specs {
		shard, rest, _ := strings.Cut(sp, "=")
		n, jumbo, _ := strings.Cut(rest, "j")
		count, err := strconv.Atoi(n)
		if err != nil {
			panic(sp)
		}
		for range count {
			i := len(c.Chunks)
			c.Chunks = append(c.Chunks, Chunk{Chunk: catalog.Chunk{MinKey: []byte{byte(i >> 8), byte(i)}, Shard: shard}})
		}
		if jumbo != "" {
			for _, j := range strings.Split(jumbo, ",") {
				k, _ := strconv.Atoi(j)
				c.Chunks[k].Jumbo = true
			}
		}
	}
	return c
}

func shardsOf(names ...string) []Shard {
	var out []Shard
	for _, n := range names {
		name, d := strings.CutSuffix(n, "!")
		out = append(out, Shard{Name: name, Draining: d})
	}
	return out
}

func chunkIndex(ch catalog.Chunk) int { return int(ch.MinKey[0])<<8 | int(ch.MinKey[1]) }

func describe(migs []Migration) []string {
	var out []string
	for _, m := range migs {
		out = append(out, fmt.Sprintf("%s %s>%s #%d %s", m.NS, m.From, m.To, chunkIndex(m.Chunk), m.Reason))
	}
	return out
}

func inflight(ns string, c Collection, idx int, to string) Migration {
	ch := c.Chunks[idx].Chunk
	return Migration{NS: ns, Chunk: ch, From: ch.Shard, To: to, Reason: ReasonBalance}
}

var noon = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func on() Settings {
	return Settings{Enabled: true, Threshold: 2, MaxConcurrent: 0, ChunkSizeBytes: 100}
}

func TestPlan(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 1, 1, h, m, 0, 0, time.UTC) }
	with := func(f func(*Settings)) Settings { s := on(); f(&s); return s }
	a3 := mkColl("db.a", "rs0=10", "rs1=0", "rs2=0")
	tests := []struct {
		name     string
		state    ClusterState
		settings Settings
		want     []string
		verdict  Verdict
	}{
		{"new empty shard joins", ClusterState{Shards: shardsOf("rs0", "rs1", "rs2"), Collections: []Collection{mkColl("db.c", "rs0=4", "rs1=4")}},
			on(), []string{"db.c rs0>rs2 #0 balance"}, VerdictMoving},
		{"three shards uneven", ClusterState{Shards: shardsOf("rs0", "rs1", "rs2"), Collections: []Collection{mkColl("db.c", "rs0=10", "rs1=4", "rs2=1")}},
			on(), []string{"db.c rs0>rs2 #0 balance"}, VerdictMoving},
		{"four shards two disjoint pairs", ClusterState{Shards: shardsOf("rs0", "rs1", "rs2", "rs3"), Collections: []Collection{mkColl("db.c", "rs0=10", "rs1=8", "rs3=1")}},
			on(), []string{"db.c rs0>rs2 #0 balance", "db.c rs1>rs3 #10 balance"}, VerdictMoving},
		{"ties go to the first name", ClusterState{Shards: shardsOf("rs2", "rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs1=3", "rs2=3")}},
			on(), []string{"db.c rs1>rs0 #0 balance"}, VerdictMoving},
		{"within threshold", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=5", "rs1=4")}},
			on(), nil, VerdictBalanced},
		{"configured threshold 4 not reached", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=6", "rs1=3")}},
			with(func(s *Settings) { s.Threshold = 4 }), nil, VerdictBalanced},
		{"configured threshold 4 reached", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=7", "rs1=3")}},
			with(func(s *Settings) { s.Threshold = 4 }), []string{"db.c rs0>rs1 #0 balance"}, VerdictMoving},
		{"threshold 1 acts as 2", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=3", "rs1=2")}},
			with(func(s *Settings) { s.Threshold = 1 }), nil, VerdictBalanced},
		{"mongodb table 30 chunks moves at 6", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=18", "rs1=12")}},
			with(func(s *Settings) { s.Threshold = 0 }), []string{"db.c rs0>rs1 #0 balance"}, VerdictMoving},
		{"mongodb table 31 chunks waits at 3", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=17", "rs1=14")}},
			with(func(s *Settings) { s.Threshold = 0 }), nil, VerdictBalanced},
		{"mongodb table 100 chunks moves at 8", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=54", "rs1=46")}},
			with(func(s *Settings) { s.Threshold = 0 }), []string{"db.c rs0>rs1 #0 balance"}, VerdictMoving},
		{"mongodb table 100 chunks waits at 6", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=53", "rs1=47")}},
			with(func(s *Settings) { s.Threshold = 0 }), nil, VerdictBalanced},
		{"disabled", ClusterState{Shards: shardsOf("rs0", "rs1!"), Collections: []Collection{mkColl("db.c", "rs1=8")}},
			with(func(s *Settings) { s.Enabled = false }), nil, VerdictDisabled},
		{"outside wrapping window", ClusterState{Now: at(12, 0), Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=8")}},
			with(func(s *Settings) { s.WindowStart, s.WindowEnd = "22:00", "06:00" }), nil, VerdictOutsideWindow},
		{"inside wrapping window late", ClusterState{Now: at(23, 0), Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=8")}},
			with(func(s *Settings) { s.WindowStart, s.WindowEnd = "22:00", "06:00" }), []string{"db.c rs0>rs1 #0 balance"}, VerdictMoving},
		{"inside wrapping window early", ClusterState{Now: at(5, 59), Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=8")}},
			with(func(s *Settings) { s.WindowStart, s.WindowEnd = "22:00", "06:00" }), []string{"db.c rs0>rs1 #0 balance"}, VerdictMoving},
		{"window end is exclusive", ClusterState{Now: at(6, 0), Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=8")}},
			with(func(s *Settings) { s.WindowStart, s.WindowEnd = "22:00", "06:00" }), nil, VerdictOutsideWindow},
		{"inside day window", ClusterState{Now: at(9, 0), Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=8")}},
			with(func(s *Settings) { s.WindowStart, s.WindowEnd = "09:00", "17:00" }), []string{"db.c rs0>rs1 #0 balance"}, VerdictMoving},
		{"invalid window moves nothing", ClusterState{Now: at(9, 0), Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=8")}},
			with(func(s *Settings) { s.WindowStart, s.WindowEnd = "9am", "17:00" }), nil, VerdictOutsideWindow},
		{"draining alone", ClusterState{Shards: shardsOf("rs0!", "rs1", "rs2"), Collections: []Collection{mkColl("db.c", "rs0=3")}},
			on(), []string{"db.c rs0>rs1 #0 draining"}, VerdictMoving},
		{"draining goes to least loaded and first", ClusterState{Shards: shardsOf("rs0!", "rs1", "rs2"), Collections: []Collection{mkColl("db.c", "rs0=2", "rs1=5", "rs2=1")}},
			on(), []string{"db.c rs0>rs2 #0 draining"}, VerdictMoving},
		{"draining even when balanced", ClusterState{Shards: shardsOf("rs0!", "rs1", "rs2"), Collections: []Collection{mkColl("db.c", "rs0=1", "rs1=5", "rs2=5")}},
			on(), []string{"db.c rs0>rs1 #0 draining"}, VerdictMoving},
		{"draining shard over two collections moves one chunk, others balance", ClusterState{Shards: shardsOf("rs0!", "rs1", "rs2", "rs3"),
			Collections: []Collection{mkColl("db.b", "rs0=2", "rs2=4"), mkColl("db.a", "rs0=2", "rs1=1", "rs2=1", "rs3=1")}},
			on(), []string{"db.a rs0>rs1 #0 draining", "db.b rs2>rs3 #2 balance"}, VerdictMoving},
		{"two draining shards in parallel", ClusterState{Shards: shardsOf("rs0!", "rs1!", "rs2", "rs3"), Collections: []Collection{mkColl("db.c", "rs0=2", "rs1=2")}},
			on(), []string{"db.c rs0>rs2 #0 draining", "db.c rs1>rs3 #2 draining"}, VerdictMoving},
		{"draining never receives", ClusterState{Shards: shardsOf("rs0", "rs1!", "rs2"), Collections: []Collection{mkColl("db.c", "rs0=6", "rs2=6")}},
			on(), nil, VerdictBalanced},
		{"jumbo chunks skipped", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=5j0,1")}},
			on(), []string{"db.c rs0>rs1 #2 balance"}, VerdictMoving},
		{"jumbo on draining shard is stuck", ClusterState{Shards: shardsOf("rs0!", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=1j0", "rs1=3")}},
			on(), nil, VerdictStuck},
		{"only jumbo on the loaded shard", ClusterState{Shards: shardsOf("rs0", "rs1", "rs2"), Collections: []Collection{mkColl("db.c", "rs0=4j0,1,2,3", "rs1=3", "rs2=0")}},
			on(), []string{"db.c rs1>rs2 #4 balance"}, VerdictMoving},
		{"only jumbo anywhere", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.c", "rs0=4j0,1,2,3")}},
			on(), nil, VerdictStuck},
		{"in-flight migration blocks its shards", ClusterState{Shards: shardsOf("rs0", "rs1", "rs2"), Collections: []Collection{a3},
			InFlight: []Migration{inflight("db.a", a3, 0, "rs1")}}, on(), nil, VerdictBusy},
		{"in-flight leaves other pairs free", ClusterState{Shards: shardsOf("rs0", "rs1", "rs2", "rs3"), Collections: []Collection{mkColl("db.c", "rs0=6", "rs1=6")},
			InFlight: []Migration{inflight("db.c", mkColl("db.c", "rs0=6", "rs1=6"), 0, "rs2")}}, on(), []string{"db.c rs1>rs3 #6 balance"}, VerdictMoving},
		{"in-flight chunk off a draining shard is not planned again", ClusterState{Shards: shardsOf("rs0!", "rs1", "rs2", "rs3"), Collections: []Collection{mkColl("db.c", "rs0=2", "rs1=2", "rs2=2")},
			InFlight: []Migration{inflight("db.c", mkColl("db.c", "rs0=2", "rs1=2", "rs2=2"), 0, "rs3")}}, on(), nil, VerdictBusy},
		{"maxConcurrent bounds the plan", ClusterState{Shards: shardsOf("rs0", "rs1", "rs2", "rs3"), Collections: []Collection{mkColl("db.c", "rs0=10", "rs1=10")}},
			with(func(s *Settings) { s.MaxConcurrent = 1 }), []string{"db.c rs0>rs2 #0 balance"}, VerdictMoving},
		{"maxConcurrent counts in-flight", ClusterState{Shards: shardsOf("rs0", "rs1", "rs2", "rs3", "rs4"), Collections: []Collection{mkColl("db.c", "rs0=10", "rs1=10")},
			InFlight: []Migration{{NS: "db.x", From: "rs4", To: "rs5"}}},
			with(func(s *Settings) { s.MaxConcurrent = 1 }), nil, VerdictBusy},
		{"collections compete for shards", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{mkColl("db.b", "rs1=4"), mkColl("db.a", "rs0=4")}},
			on(), []string{"db.a rs0>rs1 #0 balance"}, VerdictMoving},
		{"data size balances bytes", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{func() Collection {
			c := mkColl("db.c", "rs0=4", "rs1=6")
			c.DataSize = map[string]int64{"rs0": 1000, "rs1": 200}
			return c
		}()}}, on(), []string{"db.c rs0>rs1 #0 balance"}, VerdictMoving},
		{"data size within 3 chunk sizes", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{func() Collection {
			c := mkColl("db.c", "rs0=2", "rs1=8")
			c.DataSize = map[string]int64{"rs0": 1000, "rs1": 750}
			return c
		}()}}, on(), nil, VerdictBalanced},
		{"data size chunk too large to even out", ClusterState{Shards: shardsOf("rs0", "rs1"), Collections: []Collection{func() Collection {
			c := mkColl("db.c", "rs0=1", "rs1=1")
			c.DataSize = map[string]int64{"rs0": 1000, "rs1": 100}
			return c
		}()}}, on(), nil, VerdictStuck},
		{"no shards", ClusterState{}, on(), nil, VerdictBalanced},
		{"unsharded cluster", ClusterState{Shards: shardsOf("rs0", "rs1")}, on(), nil, VerdictBalanced},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.state.Now.IsZero() {
				tc.state.Now = noon
			}
			got := describe(Plan(tc.state, tc.settings))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("plan\n got %q\nwant %q\n%s", got, tc.want, Explain(tc.state, tc.settings))
			}
			ex := Explain(tc.state, tc.settings)
			if ex.Verdict != tc.verdict || ex.Planned != len(tc.want) {
				t.Fatalf("verdict %s (planned %d), want %s\n%s", ex.Verdict, ex.Planned, tc.verdict, ex)
			}
			// Deterministic: shard and collection order of the input do
			// not matter.
			rev := tc.state
			rev.Shards = slices.Clone(rev.Shards)
			slices.Reverse(rev.Shards)
			rev.Collections = slices.Clone(rev.Collections)
			slices.Reverse(rev.Collections)
			if again := describe(Plan(rev, tc.settings)); !slices.Equal(again, got) {
				t.Fatalf("plan depends on input order: %q vs %q", again, got)
			}
		})
	}
}

func TestExplainText(t *testing.T) {
	st := ClusterState{Now: noon, Shards: shardsOf("rs0", "rs1!", "rs2"), Collections: []Collection{mkColl("db.c", "rs0=5", "rs1=1j5", "rs2=4")}}
	ex := Explain(st, on())
	if ex.Verdict != VerdictStuck {
		t.Fatalf("verdict %s", ex)
	}
	s := ex.String()
	for _, want := range []string{"stuck:", "db.c: imbalance 1 chunks (threshold 2)", "jumbo", "rs1=1(draining)", "rs0=5 "} {
		if !strings.Contains(s, want) {
			t.Fatalf("explanation lacks %q:\n%s", want, s)
		}
	}
	st.InFlight = []Migration{{NS: "db.c", Chunk: st.Collections[0].Chunks[0].Chunk, From: "rs0", To: "rs2"}}
	if s := Explain(st, on()).String(); !strings.Contains(s, "rs0=5(busy)") {
		t.Fatalf("busy shard not shown:\n%s", s)
	}
}

func TestMongoDBThresholdAndWindow(t *testing.T) {
	for n, want := range map[int]int{0: 2, 19: 2, 20: 4, 79: 4, 80: 8, 10000: 8} {
		if got := MongoDBThreshold(n); got != want {
			t.Errorf("MongoDBThreshold(%d) = %d, want %d", n, got, want)
		}
	}
	at := func(h, m int) time.Time { return time.Date(2026, 1, 1, h, m, 0, 0, time.UTC) }
	for _, tc := range []struct {
		now        time.Time
		start, end string
		in, ok     bool
	}{
		{at(3, 0), "", "", true, true},
		{at(3, 0), "10:00", "10:00", true, true},
		{at(9, 59), "10:00", "11:00", false, true},
		{at(10, 0), "10:00", "11:00", true, true},
		{at(11, 0), "10:00", "11:00", false, true},
		{at(23, 59), "23:00", "01:00", true, true},
		{at(0, 30), "23:00", "01:00", true, true},
		{at(1, 0), "23:00", "01:00", false, true},
		{at(1, 0), "25:00", "01:00", false, false},
		{at(1, 0), "01:00", "", false, false},
	} {
		in, ok := InWindow(tc.now, tc.start, tc.end)
		if in != tc.in || ok != tc.ok {
			t.Errorf("InWindow(%s, %q, %q) = %v, %v; want %v, %v", tc.now.Format("15:04"), tc.start, tc.end, in, ok, tc.in, tc.ok)
		}
	}
}
