package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/keys"
)

// sampleWindows records a known run: two workers, reads of 1..100 ms and
// updates of 10 ms, two duplicate-key errors, spread over two shards.
func sampleWindows() (*window, []*window) {
	r1, r2 := NewRecorder(), NewRecorder()
	for i := 1; i <= 100; i++ {
		r1.Record(OpRead, time.Duration(i)*time.Millisecond, 1, "", "rs0")
	}
	for range 50 {
		r2.Record(OpUpdate, 10*time.Millisecond, 1, "", "rs1")
	}
	r2.Record(OpUpdate, 10*time.Millisecond, 1, "DuplicateKey", "rs1")
	r2.RecordErrors(OpInsert, 1, "DuplicateKey")
	w1 := newWindow()
	w1.merge(r1.drain())
	w2 := newWindow()
	w2.merge(r2.drain())
	total := newWindow()
	total.merge(w1)
	total.merge(w2)
	return total, []*window{w1, w2}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 0.01*math.Max(1, math.Abs(b)) }

func TestSummaryPercentilesErrorsShards(t *testing.T) {
	total, _ := sampleWindows()
	sm := &ShardMap{NS: "bench.usertable", Sharded: true, Key: catalog.ShardKey{{Field: "_id", Hashed: true}}, ChunksPerShard: map[string]int{"rs0": 2, "rs1": 2}}
	s := summaryOf(total, 2, sm)
	if s.Ops != 152 || s.Errors != 2 || !near(s.OpsPerSec, 76) {
		t.Fatalf("ops %d errors %d rate %.1f; want 152, 2, 76", s.Ops, s.Errors, s.OpsPerSec)
	}
	read := s.PerOp[OpRead]
	if read.Ops != 100 || !near(read.Latency.P50Ms, 50) || !near(read.Latency.P95Ms, 95) || !near(read.Latency.P99Ms, 99) || !near(read.Latency.MaxMs, 100) {
		t.Fatalf("read summary %+v", read)
	}
	if up := s.PerOp[OpUpdate]; up.Ops != 51 || up.Errors != 1 || !near(up.Latency.P999Ms, 10) {
		t.Fatalf("update summary %+v", up)
	}
	if s.ErrorCodes["DuplicateKey"] != 2 || len(s.ErrorCodes) != 1 {
		t.Fatalf("error codes %v", s.ErrorCodes)
	}
	if s.Shards.Ops["rs0"] != 100 || s.Shards.Ops["rs1"] != 51 || !near(s.Shards.Share["rs0"], 100.0/151) {
		t.Fatalf("shard spread %+v", s.Shards)
	}
	if s.Shards.ShardKey != `{_id: "hashed"}` || s.Shards.Chunks["rs1"] != 2 {
		t.Fatalf("shard spread metadata %+v", s.Shards)
	}
	var out bytes.Buffer
	PrintSummary(&out, s)
	for _, want := range []string{"read", "update", "DuplicateKey=2", "rs0=100"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary text lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	total, windows := sampleWindows()
	rep := Report{Tool: "psdb bench", Version: ReportVersion, Command: "run", Config: DefaultConfig(), Start: time.Now().UTC()}
	for i, w := range windows {
		rep.Intervals = append(rep.Intervals, intervalOf(w, float64(i+1), 1))
	}
	rep.Summary = summaryOf(total, 2, nil)
	path := filepath.Join(t.TempDir(), "r.json")
	if err := WriteJSON(path, rep); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tool", "config", "intervals", "summary"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if d := generic["config"].(map[string]any)["duration"]; d != "30s" {
		t.Errorf("config.duration = %v, want \"30s\"", d)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Summary.Ops != 152 || len(back.Intervals) != 2 || back.Intervals[0].Ops[OpRead].Ops != 100 ||
		!near(back.Intervals[0].Ops[OpRead].P99Ms, 99) || back.Config.Duration != Duration(30*time.Second) {
		t.Fatalf("round trip lost data: %+v", back)
	}
	if !strings.Contains(back.Summary.Shards.Method, "unavailable") {
		t.Errorf("shard method without a map: %q", back.Summary.Shards.Method)
	}
}

func TestErrorCodeNames(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{mongo.CommandError{Code: 11000}, "DuplicateKey"},
		{mongo.CommandError{Code: 50}, "MaxTimeMSExpired"},
		{mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 11000}}}, "DuplicateKey"},
		{mongo.WriteException{WriteConcernError: &mongo.WriteConcernError{Code: 64}}, "WriteConcernTimeout"},
		{mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{{WriteError: mongo.WriteError{Code: 13}}}}, "Unauthorized"},
		{fmt.Errorf("find: %w", mongo.ErrNoDocuments), CodeNotFound},
		{fmt.Errorf("op: %w", context.DeadlineExceeded), CodeClientTimeout},
		{errors.New("something else"), CodeClient},
	} {
		if got := ErrorCode(c.err); got != c.want {
			t.Errorf("ErrorCode(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if ErrorCode(nil) != "" {
		t.Error("ErrorCode(nil) not empty")
	}
	if !IsTimeoutCode(CodeClientTimeout) || !IsTimeoutCode("MaxTimeMSExpired") || IsTimeoutCode("DuplicateKey") {
		t.Error("IsTimeoutCode misclassifies")
	}
}

// checkXML decodes every token of an SVG and returns the element counts.
func checkXML(t *testing.T, data []byte) map[string]int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	counts := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, data)
		}
		if se, ok := tok.(xml.StartElement); ok {
			counts[se.Name.Local]++
		}
	}
	return counts
}

func TestChartIsWellFormedSVG(t *testing.T) {
	_, windows := sampleWindows()
	var ivs []Interval
	for i := range 30 {
		ivs = append(ivs, intervalOf(windows[i%2], float64(i+1), 1))
	}
	var buf bytes.Buffer
	if err := WriteChart(&buf, `workload "a" <&> 8 threads`, ivs, []Marker{{AtS: 10, Label: "16 thr"}}); err != nil {
		t.Fatal(err)
	}
	counts := checkXML(t, buf.Bytes())
	if counts["svg"] != 1 {
		t.Fatalf("want one svg root, got %v", counts)
	}
	// Throughput: all + insert + read + update; latency: the three types.
	if counts["polyline"] != 7 {
		t.Errorf("want 7 polylines, got %d", counts["polyline"])
	}
	for _, label := range []string{"throughput (ops/s)", "p99 latency (ms)", "elapsed (s)", "16 thr", "&lt;&amp;&gt;"} {
		if !strings.Contains(buf.String(), label) {
			t.Errorf("chart lacks %q", label)
		}
	}
	// An empty run still gives a valid chart.
	buf.Reset()
	if err := WriteChart(&buf, "empty", nil, nil); err != nil {
		t.Fatal(err)
	}
	checkXML(t, buf.Bytes())
}

func TestNiceStep(t *testing.T) {
	for _, c := range []struct {
		max, want float64
	}{{7500, 2000}, {10, 2}, {1, 0.2}, {0, 1}, {0.03, 0.01}, {95, 20}} {
		if got := niceStep(c.max, 5); !near(got, c.want) {
			t.Errorf("niceStep(%v) = %v, want %v", c.max, got, c.want)
		}
	}
}

// TestShardMapOwner builds a map from config.chunks-shaped bounds of a
// hashed _id key and checks each key's owner against keys.Hash.
func TestShardMapOwner(t *testing.T) {
	mk := func(min bson.D, shard string) chunkDoc {
		raw, err := bson.Marshal(min)
		if err != nil {
			t.Fatal(err)
		}
		return chunkDoc{Min: raw, Shard: shard}
	}
	m := &ShardMap{NS: "bench.usertable", Sharded: true, Key: catalog.ShardKey{{Field: "_id", Hashed: true}}, ChunksPerShard: map[string]int{}}
	// Out of order on purpose: setChunks sorts.
	err := m.setChunks([]chunkDoc{
		mk(bson.D{{Key: "_id", Value: int64(0)}}, "rs1"),
		mk(bson.D{{Key: "_id", Value: bson.MinKey{}}}, "rs0"),
		mk(bson.D{{Key: "_id", Value: int64(1) << 62}}, "rs2"),
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for n := range int64(2000) {
		id := KeyName(n)
		h := keys.Hash(bson.RawValue{Type: bson.TypeString, Value: bsonString(id)})
		want := "rs0"
		switch {
		case h >= 1<<62:
			want = "rs2"
		case h >= 0:
			want = "rs1"
		}
		if got := m.Owner(id); got != want {
			t.Fatalf("Owner(%s) = %s, want %s (hash %d)", id, got, want, h)
		}
		seen[want]++
	}
	if seen["rs0"] < 800 || seen["rs1"] < 400 || seen["rs2"] < 400 {
		t.Errorf("hashing spread %v; want about 1000/500/500", seen)
	}
	if m.ScanOwner("user000000000001") != broadcastShard {
		t.Error("a scan over a hashed key is not broadcast")
	}
	if m.ChunksPerShard["rs0"] != 1 || len(m.ChunksPerShard) != 3 {
		t.Errorf("chunks per shard %v", m.ChunksPerShard)
	}
	un := &ShardMap{NS: "bench.plain", Primary: "rs1"}
	if un.Owner("user000000000001") != "rs1" || un.ScanOwner("x") != "rs1" {
		t.Error("unsharded collection not owned by its primary shard")
	}
	var none *ShardMap
	if none.Owner("x") != "" {
		t.Error("nil map has an owner")
	}
}

// bsonString is the BSON encoding of a string value.
func bsonString(s string) []byte {
	_, b, err := bson.MarshalValue(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestMemoryFromPidFiles(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "self.pid")
	if err := os.WriteFile(live, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		t.Fatal(err)
	}
	mem := Memory([]config.Node{
		{Name: "n1", Role: config.RoleShard, PidFile: live},
		{Name: "n2", Role: config.RoleRouter, PidFile: filepath.Join(dir, "missing.pid")},
	})
	if len(mem) != 3 {
		t.Fatalf("want 2 nodes and the client, got %+v", mem)
	}
	if mem[0].PID != os.Getpid() || mem[0].RSSBytes <= 0 || mem[0].PeakRSSBytes < mem[0].RSSBytes || mem[0].Error != "" {
		t.Errorf("live node memory %+v", mem[0])
	}
	if mem[1].Error == "" {
		t.Errorf("missing pid file gave no error: %+v", mem[1])
	}
	if mem[2].Role != "client" || mem[2].RSSBytes <= 0 {
		t.Errorf("client memory %+v", mem[2])
	}
}

func TestPeakKnee(t *testing.T) {
	r := &PeakReport{Config: PeakConfig{P99Bound: Duration(50 * time.Millisecond)}, Steps: []PeakStep{
		{Threads: 1, OpsPerSec: 1000, WithinBound: true},
		{Threads: 2, OpsPerSec: 1800, WithinBound: true},
		{Threads: 4, OpsPerSec: 2500, WithinBound: true},
		{Threads: 8, OpsPerSec: 2400, WithinBound: false},
	}}
	r.finish(newWindow(), time.Now(), nil)
	if r.Knee == nil || r.Knee.Threads != 4 || r.Best.Threads != 4 {
		t.Fatalf("knee %+v best %+v", r.Knee, r.Best)
	}
	if ms := r.Markers(); len(ms) != 4 || ms[3].Label != "8 thr" {
		t.Fatalf("markers %+v", ms)
	}
	var out bytes.Buffer
	PrintPeak(&out, r)
	if !strings.Contains(out.String(), "knee: 4 threads") {
		t.Errorf("peak table:\n%s", out.String())
	}
}

// TestRecorderConcurrentDrain records from several goroutines while
// another drains, as workers and the reporter do: nothing is lost or
// counted twice (run with -race).
func TestRecorderConcurrentDrain(t *testing.T) {
	const workers, each = 4, 5000
	recs := make([]*Recorder, workers)
	for i := range recs {
		recs[i] = NewRecorder()
	}
	total := newWindow()
	done := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			for _, r := range recs {
				total.merge(r.drain())
			}
			select {
			case <-done:
				for _, r := range recs {
					total.merge(r.drain())
				}
				return
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for j := range each {
				code := ""
				if j%100 == 0 {
					code = "NetworkTimeout"
				}
				recs[i].Record(OpRead, time.Duration(j)*time.Microsecond, 1, code, "rs0")
			}
		})
	}
	wg.Wait()
	close(done)
	<-drained
	ops, errs := total.totals()
	if ops != workers*each || errs != workers*each/100 || total.shards["rs0"] != workers*each ||
		total.ops[OpRead].hist.TotalCount() != workers*each {
		t.Fatalf("ops %d errors %d shard %d samples %d", ops, errs, total.shards["rs0"], total.ops[OpRead].hist.TotalCount())
	}
}
