package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// floorSample returns the report of a known floor: ping 1..100 µs ×10,
// emptyFind 200 µs ×100 of which two timed out, over 2 s each.
func floorSample() *FloorReport {
	ping, find := NewRecorder(), NewRecorder()
	for i := 1; i <= 1000; i++ {
		ping.Record(FloorPing, time.Duration(1+(i-1)%100)*time.Microsecond, 1, "", "")
	}
	for range 98 {
		find.Record(FloorEmptyFind, 200*time.Microsecond, 1, "", "")
	}
	find.Record(FloorEmptyFind, time.Second, 2, CodeClientTimeout, "")
	wp, wf := newWindow(), newWindow()
	wp.merge(ping.drain())
	wf.merge(find.drain())
	return &FloorReport{
		Tool: "psdb bench", Version: ReportVersion, Command: "floor",
		Config: FloorConfig{URI: "mongodb://127.0.0.1:1/", Threads: 4, StepDuration: Duration(2 * time.Second)},
		Steps: []FloorStep{
			floorStepOf(FloorPing, 0, summaryOf(wp, 2, nil)),
			floorStepOf(FloorEmptyFind, 2, summaryOf(wf, 2, nil)),
		},
	}
}

func TestFloorSteps(t *testing.T) {
	r := floorSample()
	p, f := r.Steps[0], r.Steps[1]
	if p.Name != "ping" || p.Ops != 1000 || !near(p.OpsPerSec, 500) || p.Errors != 0 || len(p.ErrorCodes) != 0 {
		t.Fatalf("ping step %+v", p)
	}
	if !near(p.Latency.P50Ms, 0.050) || !near(p.Latency.P99Ms, 0.099) || !near(p.Latency.MaxMs, 0.100) {
		t.Fatalf("ping latency %+v", p.Latency)
	}
	if f.Name != "emptyFind" || f.StartS != 2 || f.Ops != 100 || !near(f.OpsPerSec, 50) || f.Errors != 2 || f.ErrorCodes[CodeClientTimeout] != 2 {
		t.Fatalf("emptyFind step %+v", f)
	}
	if !near(f.Latency.P50Ms, 0.2) || !near(f.Latency.MaxMs, 1000) {
		t.Fatalf("emptyFind latency %+v", f.Latency)
	}
	if r.Errors() != 2 {
		t.Fatalf("report errors %d, want 2", r.Errors())
	}

	var out bytes.Buffer
	PrintFloor(&out, r)
	for _, want := range []string{"ping", "emptyFind", "p99.9 ms", "emptyFind errors by code: ClientTimeout=2", "share of the messaging ceiling"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("floor table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "ping errors") {
		t.Errorf("floor table names errors of a clean step:\n%s", out.String())
	}
}

func TestFloorJSON(t *testing.T) {
	r := floorSample()
	path := filepath.Join(t.TempDir(), "floor.json")
	if err := WriteJSON(path, r); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tool", "version", "command", "config", "start", "steps"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("floor JSON lacks %q:\n%s", k, raw)
		}
	}
	var back FloorReport
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back.Command != "floor" || back.Config.StepDuration != Duration(2*time.Second) || len(back.Steps) != 2 ||
		back.Steps[1].Name != FloorEmptyFind || back.Steps[1].Latency != r.Steps[1].Latency {
		t.Fatalf("round trip: %+v", back)
	}
}

// TestFloorConfigErrors checks that a bad configuration fails before the
// client is used.
func TestFloorConfigErrors(t *testing.T) {
	for _, fc := range []FloorConfig{{Threads: 0, StepDuration: Duration(time.Second)}, {Threads: 1}} {
		if _, err := Floor(context.Background(), nil, fc, nil); err == nil {
			t.Errorf("Floor(%+v): no error", fc)
		}
	}
}
