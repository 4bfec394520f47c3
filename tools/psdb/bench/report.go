package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// ReportVersion is the version of the JSON report's layout.
const ReportVersion = 1

// Report is the JSON result of `psdb bench run` and `psdb bench load`.
type Report struct {
	Tool      string     `json:"tool"` // "psdb bench"
	Version   int        `json:"version"`
	Command   string     `json:"command"` // "run" or "load"
	Config    Config     `json:"config"`
	Start     time.Time  `json:"start"`
	End       time.Time  `json:"end"`
	Intervals []Interval `json:"intervals"`
	Summary   Summary    `json:"summary"`
}

// Interval is one point of the time series (normally one second).
type Interval struct {
	// ElapsedS is the end of the interval, in seconds since the start.
	ElapsedS  float64               `json:"elapsed_s"`
	OpsPerSec float64               `json:"ops_per_sec"`
	Errors    int64                 `json:"errors"`
	Ops       map[string]IntervalOp `json:"ops"`
}

// IntervalOp is one operation type in one interval.
type IntervalOp struct {
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
}

// Latency summarises a histogram, in milliseconds.
type Latency struct {
	Count  int64   `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P95Ms  float64 `json:"p95_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p99_9_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// OpSummary is one operation type over the whole run.
type OpSummary struct {
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Latency   Latency `json:"latency"`
}

// Summary is the whole run.
type Summary struct {
	DurationS  float64              `json:"duration_s"`
	Ops        int64                `json:"ops"`
	OpsPerSec  float64              `json:"ops_per_sec"`
	Errors     int64                `json:"errors"`
	ErrorCodes map[string]int64     `json:"error_codes"`
	Latency    Latency              `json:"latency"` // every operation type together
	PerOp      map[string]OpSummary `json:"per_op"`
	Shards     ShardSpread          `json:"shards"`
}

// ShardSpread is how operations spread over shards.
type ShardSpread struct {
	// Method says how owners were computed.
	Method    string `json:"method"`
	Namespace string `json:"namespace"`
	ShardKey  string `json:"shard_key,omitempty"`
	// Chunks counts each shard's chunks at the end of the run.
	Chunks map[string]int `json:"chunks,omitempty"`
	// Ops counts the operations on each shard's keys; Share is Ops over
	// their sum.
	Ops   map[string]int64   `json:"ops"`
	Share map[string]float64 `json:"share"`
	// Broadcast counts operations sent to every shard (range scans over
	// a hashed key); they are not in Ops.
	Broadcast int64 `json:"broadcast"`
	// Unattributed counts operations whose owner was unknown.
	Unattributed int64 `json:"unattributed,omitempty"`
}

func ms(us float64) float64 { return us / 1000 }

func latencyOf(h *hdr.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count:  h.TotalCount(),
		MeanMs: ms(h.Mean()),
		P50Ms:  ms(float64(h.ValueAtQuantile(50))),
		P95Ms:  ms(float64(h.ValueAtQuantile(95))),
		P99Ms:  ms(float64(h.ValueAtQuantile(99))),
		P999Ms: ms(float64(h.ValueAtQuantile(99.9))),
		MaxMs:  ms(float64(h.Max())),
	}
}

// intervalOf summarises one interval window of length secs.
func intervalOf(w *window, elapsed, secs float64) Interval {
	iv := Interval{ElapsedS: elapsed, Ops: map[string]IntervalOp{}}
	ops, errs := w.totals()
	iv.OpsPerSec = rate(ops, secs)
	iv.Errors = errs
	for name, s := range w.ops {
		iv.Ops[name] = IntervalOp{
			Ops:       s.ops,
			OpsPerSec: rate(s.ops, secs),
			P50Ms:     ms(float64(s.hist.ValueAtQuantile(50))),
			P99Ms:     ms(float64(s.hist.ValueAtQuantile(99))),
		}
	}
	return iv
}

func rate(n int64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

// summaryOf summarises a whole run's window.
func summaryOf(w *window, secs float64, sm *ShardMap) Summary {
	s := Summary{DurationS: secs, ErrorCodes: map[string]int64{}, PerOp: map[string]OpSummary{}}
	all := newHist()
	for name, o := range w.ops {
		all.Merge(o.hist)
		s.PerOp[name] = OpSummary{Ops: o.ops, Errors: o.errors, OpsPerSec: rate(o.ops, secs), Latency: latencyOf(o.hist)}
	}
	s.Ops, s.Errors = w.totals()
	s.OpsPerSec = rate(s.Ops, secs)
	s.Latency = latencyOf(all)
	for c, n := range w.codes {
		s.ErrorCodes[c] = n
	}
	s.Shards = spreadOf(w, sm)
	return s
}

func spreadOf(w *window, sm *ShardMap) ShardSpread {
	sp := ShardSpread{Ops: map[string]int64{}, Share: map[string]float64{}}
	var total int64
	for sh, n := range w.shards {
		if sh == broadcastShard {
			sp.Broadcast += n
			continue
		}
		sp.Ops[sh] = n
		total += n
	}
	for sh, n := range sp.Ops {
		sp.Share[sh] = float64(n) / float64(total)
	}
	ops, _ := w.totals()
	sp.Unattributed = max(0, ops-total-sp.Broadcast)
	switch {
	case sm == nil:
		sp.Method = "unavailable: the router's config database could not be read"
	case !sm.Sharded:
		sp.Namespace = sm.NS
		sp.Method = "unsharded collection: every operation goes to the database's primary shard (config.databases)"
	case !sm.OnID():
		sp.Namespace = sm.NS
		sp.Method = "unavailable: the shard key is not _id"
	default:
		sp.Namespace = sm.NS
		sp.Method = "client-side: each key's owner from the router's config.chunks, with the server's shard-key hashing and encoding (pkg/catalog, pkg/keys)"
		sp.Chunks = sm.ChunksPerShard
		var parts []string
		for _, f := range sm.Key {
			v := "1"
			if f.Hashed {
				v = `"hashed"`
			}
			parts = append(parts, f.Field+": "+v)
		}
		sp.ShardKey = "{" + strings.Join(parts, ", ") + "}"
	}
	return sp
}

// WriteJSON writes v, indented, to path.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// PrintSummary writes a human-readable summary of s to w.
func PrintSummary(w io.Writer, s Summary) {
	fmt.Fprintf(w, "duration %.1fs, %d operations, %.0f ops/s, %d errors\n", s.DurationS, s.Ops, s.OpsPerSec, s.Errors)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tops\tops/s\terrors\tp50 ms\tp95 ms\tp99 ms\tp99.9 ms\tmax ms\t")
	names := make([]string, 0, len(s.PerOp))
	for n := range s.PerOp {
		names = append(names, n)
	}
	sort.Strings(names)
	row := func(name string, ops, errs int64, rate float64, l Latency) {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", name, ops, rate, errs, l.P50Ms, l.P95Ms, l.P99Ms, l.P999Ms, l.MaxMs)
	}
	for _, n := range names {
		o := s.PerOp[n]
		row(n, o.Ops, o.Errors, o.OpsPerSec, o.Latency)
	}
	if len(names) > 1 {
		row("all", s.Ops, s.Errors, s.OpsPerSec, s.Latency)
	}
	tw.Flush()
	printErrorCodes(w, "errors by code:", s.ErrorCodes)
	sp := s.Shards
	shards := make([]string, 0, len(sp.Ops))
	for sh := range sp.Ops {
		shards = append(shards, sh)
	}
	sort.Strings(shards)
	fmt.Fprintf(w, "shards (%s):", sp.Method)
	for _, sh := range shards {
		fmt.Fprintf(w, " %s=%d (%.1f%%", sh, sp.Ops[sh], 100*sp.Share[sh])
		if c, ok := sp.Chunks[sh]; ok {
			fmt.Fprintf(w, ", %d chunks", c)
		}
		fmt.Fprint(w, ")")
	}
	if sp.Broadcast > 0 {
		fmt.Fprintf(w, " every shard=%d", sp.Broadcast)
	}
	fmt.Fprintln(w)
}

// printErrorCodes writes a line "<title> code=n ..." with the codes in
// order; nothing when there are none.
func printErrorCodes(w io.Writer, title string, byCode map[string]int64) {
	if len(byCode) == 0 {
		return
	}
	codes := make([]string, 0, len(byCode))
	for c := range byCode {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	fmt.Fprint(w, title)
	for _, c := range codes {
		fmt.Fprintf(w, " %s=%d", c, byCode[c])
	}
	fmt.Fprintln(w)
}
