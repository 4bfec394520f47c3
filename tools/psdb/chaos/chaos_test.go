package chaos

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/integration/checker"
	"github.com/psdb/psdb/pkg/config"
)

func TestSelect(t *testing.T) {
	all, err := Select([]string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(all); got != len(Scenarios()) {
		t.Fatalf("all: %d scenarios, want %d", got, len(Scenarios()))
	}
	for _, want := range []string{"primary-kill", "primary-pause", "secondary-restart", "router-kill",
		"configsvr-kill", "migration-kill", "rolling-restart", "partition", "partition-replication"} {
		if !slices.Contains(Names(), want) {
			t.Errorf("scenario %s missing from %v", want, Names())
		}
	}
	got, err := Select([]string{"migration-kill", " primary-kill", "migration-kill", ""})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "migration-kill" || got[1].Name != "primary-kill" {
		t.Fatalf("Select kept order and dropped repeats wrongly: %v", got)
	}
	for _, bad := range [][]string{{"primary-kil"}, {}, {" "}} {
		if _, err := Select(bad); !errors.Is(err, ErrUnknownScenario) {
			t.Errorf("Select(%q): %v, want ErrUnknownScenario", bad, err)
		}
	}
	for _, s := range Scenarios() {
		if s.Name == "" || s.Summary == "" || s.Inject == nil {
			t.Errorf("scenario %+v incomplete", s.Name)
		}
	}
}

func TestRequires(t *testing.T) {
	small, err := config.Local(config.LocalSpec{ConfigServers: 1, Shards: 1, MembersPerShard: 1, Routers: 1,
		Port: func() (int, error) { return config.FreePort() }})
	if err != nil {
		t.Fatal(err)
	}
	big, err := config.Local(config.LocalSpec{ConfigServers: 3, Shards: 2, MembersPerShard: 3, Routers: 2,
		Port: func() (int, error) { return config.FreePort() }})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Scenarios() {
		if s.Requires == nil {
			continue
		}
		if err := s.Requires(small); err == nil {
			t.Errorf("%s accepts a 1-member, 1-shard, 1-router, 1-config-server cluster", s.Name)
		}
		if err := s.Requires(big); err != nil {
			t.Errorf("%s refuses the default chaos cluster: %v", s.Name, err)
		}
	}
}

// memStore is a minimal in-memory checker.Store.
type memStore struct {
	mu   sync.Mutex
	docs map[string]int64
	ids  []string
	fail bool
}

func (m *memStore) InsertOne(_ context.Context, doc bson.D) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("down")
	}
	m.ids = append(m.ids, doc[0].Value.(string))
	return nil
}

func (m *memStore) UpdateCounter(_ context.Context, id string, inc int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.docs == nil {
		m.docs = map[string]int64{}
	}
	if _, ok := m.docs[id]; !ok {
		m.ids = append(m.ids, id) // an upsert creates the counter document
	}
	m.docs[id] += inc
	return m.docs[id], nil
}

func (m *memStore) ReadCounter(_ context.Context, id string) (int64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.docs[id]
	return n, ok, nil
}

func (m *memStore) ScanIDs(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ids), nil
}

func TestWatchedStore(t *testing.T) {
	mem := &memStore{}
	st := &watchedStore{Store: mem, exclude: bulkPrefix}
	ctx := t.Context()
	for _, id := range []string{"a", "bulk-000001", "b"} {
		if err := st.InsertOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatal(err)
		}
	}
	mem.fail = true
	if err := st.InsertOne(ctx, bson.D{{Key: "_id", Value: "c"}}); err == nil {
		t.Fatal("insert into a failing store succeeded")
	}
	if st.Acks() != 3 {
		t.Fatalf("acks %d, want 3 (failures not counted)", st.Acks())
	}
	ids, err := st.ScanIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("scan %v: the bulk document must be left out", ids)
	}
	// waitAcks returns once enough inserts are acknowledged, and with the
	// context's error when they never come.
	mem.fail = false
	done := make(chan error, 1)
	target := st.Acks() + 2
	go func() { done <- st.waitAckCount(ctx, target) }()
	for i := range 2 {
		if err := st.InsertOne(ctx, bson.D{{Key: "_id", Value: "d" + string(rune('0'+i))}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("waitAcks: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := st.waitAcks(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitAcks without inserts: %v, want DeadlineExceeded", err)
	}
}

// TestResultAndReport runs the real checker over an in-memory store and
// checks the verdict, the table and the JSON round trip.
func TestResultAndReport(t *testing.T) {
	mem := &memStore{}
	hist, err := checker.Run(t.Context(), mem, checker.Workload{Writers: 2, Readers: 1, MaxOps: 60, KeyPrefix: "u"})
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := mem.ScanIDs(t.Context())
	good := Result{Scenario: "primary-kill", Faults: []string{"SIGKILL primary rs0a", "SIGKILL primary rs1b"}, Healed: true}
	good.fill(checker.Verify(t.Context(), hist, ids))
	if !good.OK || !good.Passed() || good.Acked == 0 || good.Ops != 60 {
		t.Fatalf("clean history: %+v", good)
	}
	// One acknowledged insert missing, another doubled.
	bad := Result{Scenario: "migration-kill", Faults: []string{"SIGKILL donor primary rs0b"}, Healed: true}
	broken := append(slices.Clone(ids[1:]), ids[2])
	bad.fill(checker.Verify(t.Context(), hist, broken))
	if bad.OK || bad.Passed() || bad.Lost != 1 || bad.Duplicated != 1 || bad.Details == "" {
		t.Fatalf("broken history: lost %d duplicated %d ok %t", bad.Lost, bad.Duplicated, bad.OK)
	}
	unhealed := good
	unhealed.Scenario, unhealed.Healed, unhealed.HealError = "router-kill", false, "mongos0: not running"
	errored := good
	errored.Scenario, errored.Error = "configsvr-kill", "fault script: no progress"

	rep := &Report{Cluster: "test", Results: []Result{good, bad, unhealed, errored}}
	if rep.OK() {
		t.Fatal("a report with failed scenarios is OK")
	}
	if !(&Report{Results: []Result{good}}).OK() || (&Report{}).OK() {
		t.Fatal("Report.OK wrong for one passing scenario or none")
	}
	skipped := Result{Scenario: "partition", Skipped: "no fault proxies"}
	if !skipped.Passed() || !(&Report{Results: []Result{good, skipped}}).OK() || (&Report{Results: []Result{skipped}}).OK() {
		t.Fatal("a skipped scenario must neither pass a run alone nor fail it")
	}
	var sb bytes.Buffer
	if err := (&Report{Results: []Result{skipped}}).WriteTable(&sb); err != nil || !strings.Contains(sb.String(), "| partition | skipped: no fault proxies |") {
		t.Fatalf("skipped row: %v\n%s", err, sb.String())
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2+4 {
		t.Fatalf("table has %d lines:\n%s", len(lines), b.String())
	}
	for i, want := range []string{"| primary-kill | 2: SIGKILL primary rs0a; SIGKILL primary rs1b |", "| migration-kill |", "| router-kill |", "| configsvr-kill |"} {
		if !strings.HasPrefix(lines[2+i], want) {
			t.Errorf("row %d %q, want prefix %q", i, lines[2+i], want)
		}
	}
	if !strings.HasSuffix(lines[2], "| yes | PASS |") || !strings.Contains(lines[3], "| 1 | 1 |") || !strings.HasSuffix(lines[3], "FAIL |") ||
		!strings.Contains(lines[4], "| no | FAIL |") || !strings.HasSuffix(lines[5], "FAIL |") {
		t.Errorf("verdict columns wrong:\n%s", b.String())
	}
	var mb bytes.Buffer
	twice := good
	twice.LongestUnavailabilityMs, twice.HealSeconds = 3000, 2
	good.LongestUnavailabilityMs = 1000
	third := good
	third.LongestUnavailabilityMs = 2000
	if err := (&Report{Results: []Result{good, bad, twice, third, skipped}}).WriteMedians(&mb); err != nil {
		t.Fatal(err)
	}
	mlines := strings.Split(strings.TrimSpace(mb.String()), "\n")
	if len(mlines) != 4 || !strings.HasPrefix(mlines[2], "| primary-kill | 3 | 3 | ") || !strings.Contains(mlines[2], "| 0 | 0 | 2s (3s) |") ||
		!strings.HasPrefix(mlines[3], "| migration-kill | 1 | 0 |") || !strings.Contains(mlines[3], "| 1 | 1 |") {
		t.Fatalf("medians:\n%s", mb.String())
	}
	if median([]int64{5, 1, 3, 2}) != 2 || median([]float64{7}) != 7 {
		t.Fatal("median")
	}
	path := filepath.Join(t.TempDir(), "report.json")
	if err := rep.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 4 || back.Results[1].Lost != 1 || back.Results[0].Passed() != true || back.Results[1].Passed() {
		t.Fatalf("JSON round trip: %+v", back.Results)
	}
	if !strings.Contains(good.Verdict(), "PASS") || !strings.Contains(bad.Verdict(), "FAIL") {
		t.Fatalf("verdicts: %q / %q", good.Verdict(), bad.Verdict())
	}
	if (Result{}).FaultSummary() != "none" {
		t.Fatal("no faults must read none")
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.Duration != 20*time.Second || o.Writers != 4 || o.Readers != 2 || o.HealTimeout != 90*time.Second ||
		o.Database != "chaos" || o.Progress == nil {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestLogHas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.log")
	if logHas(path, 0, "x") || fileSize(path) != 0 {
		t.Fatal("a missing log has nothing")
	}
	if err := writeFile(path, `{"msg":"migration session started"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	if !logHas(path, 0, "migration session started") {
		t.Fatal("line not found")
	}
	if logHas(path, fileSize(path), "migration session started") {
		t.Fatal("line found after the offset")
	}
}
