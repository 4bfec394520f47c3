package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/psdb/psdb/integration/checker"
)

// Result is the outcome of one scenario.
type Result struct {
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	Elapsed  string    `json:"elapsed"`
	// Faults lists every fault injected, in order.
	Faults []string `json:"faults"`
	// Acked counts acknowledged inserts; AckedOps acknowledged operations
	// of every kind (inserts, increments, reads).
	Acked         int `json:"acked"`
	AckedOps      int `json:"ackedOps"`
	Ops           int `json:"ops"`
	Indeterminate int `json:"indeterminate"`
	Lost          int `json:"lost"`
	Duplicated    int `json:"duplicated"`
	Unexpected    int `json:"unexpected"`
	// PresentAfterFailure, NonMonotonic and BadCounters are the checker's
	// other violations (writes present after a definite failure, reads
	// back in time for one client, counters outside their bounds).
	PresentAfterFailure int `json:"presentAfterFailure"`
	NonMonotonic        int `json:"nonMonotonicReads"`
	BadCounters         int `json:"badCounters"`
	// BulkDocs are documents the scenario loaded itself before the load
	// (migration-kill), checked exactly once through every router.
	BulkDocs       int `json:"bulkDocs,omitempty"`
	BulkLost       int `json:"bulkLost,omitempty"`
	BulkDuplicated int `json:"bulkDuplicated,omitempty"`
	// LongestUnavailabilityMs is the longest time without an
	// acknowledged insert while inserts were attempted.
	LongestUnavailabilityMs int64          `json:"longestUnavailabilityMs"`
	ErrorsByCode            map[string]int `json:"errorsByCode,omitempty"`
	LoadSeconds             float64        `json:"loadSeconds"`
	Healed                  bool           `json:"healed"`
	HealSeconds             float64        `json:"healSeconds"`
	HealError               string         `json:"healError,omitempty"`
	Notes                   []string       `json:"notes,omitempty"`
	// Error is why the scenario could not run to its end (setup, fault
	// script or final scan); a result with an Error fails.
	Error string `json:"error,omitempty"`
	// Skipped says why the scenario did not run on this cluster (a
	// skipped scenario neither passes nor fails the run).
	Skipped string `json:"skipped,omitempty"`
	// Details is the checker's full report when it found a violation.
	Details string `json:"details,omitempty"`
	OK      bool   `json:"ok"`
}

// fill copies the checker's verdict into the result.
func (r *Result) fill(rep checker.Report) {
	r.Acked = len(rep.Acked)
	r.Ops = int(rep.Ops)
	r.AckedOps = int(rep.Ops) - sum(rep.ErrorsByCode)
	r.Indeterminate = len(rep.Indeterminate)
	r.Lost, r.Duplicated, r.Unexpected = len(rep.Lost), len(rep.Duplicated), len(rep.Unexpected)
	r.PresentAfterFailure, r.NonMonotonic, r.BadCounters = len(rep.PresentAfterFailure), len(rep.NonMonotonic), len(rep.BadCounters)
	r.LongestUnavailabilityMs = rep.LongestUnavailability.Milliseconds()
	r.ErrorsByCode = rep.ErrorsByCode
	if !rep.OK() {
		r.Details = rep.String()
	}
	r.OK = r.pass(rep.OK())
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// pass is the verdict: the history is correct, nothing of the bulk load
// is lost or doubled, the cluster healed and the script ran to its end.
func (r *Result) pass(historyOK bool) bool {
	return historyOK && r.BulkLost == 0 && r.BulkDuplicated == 0 && r.Healed && r.Error == ""
}

// Passed reports whether the scenario passed (recomputed, so a Result
// read back from JSON can be judged).
func (r Result) Passed() bool {
	if r.Skipped != "" {
		return r.Error == ""
	}
	return r.Lost == 0 && r.Duplicated == 0 && r.Unexpected == 0 && r.PresentAfterFailure == 0 &&
		r.NonMonotonic == 0 && r.BadCounters == 0 && r.BulkLost == 0 && r.BulkDuplicated == 0 &&
		r.Healed && r.Error == "" && r.Ops > 0
}

// FaultSummary is the faults column: "2 x SIGKILL primary (rs0a, rs1b)"
// style, or the list when faults differ.
func (r Result) FaultSummary() string {
	if len(r.Faults) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d: %s", len(r.Faults), strings.Join(r.Faults, "; "))
}

// Verdict is a one-line summary for progress output.
func (r Result) Verdict() string {
	if r.Skipped != "" {
		return "SKIP: " + r.Skipped
	}
	v := "PASS"
	if !r.Passed() {
		v = "FAIL"
	}
	s := fmt.Sprintf("%s: %d faults, %d inserts acknowledged, lost %d, duplicated %d, longest write unavailability %v, healed %t",
		v, len(r.Faults), r.Acked, r.Lost+r.BulkLost, r.Duplicated+r.BulkDuplicated,
		time.Duration(r.LongestUnavailabilityMs)*time.Millisecond, r.Healed)
	if r.Error != "" {
		s += "; error: " + r.Error
	}
	if r.HealError != "" {
		s += "; heal: " + r.HealError
	}
	return s
}

// Report is a whole chaos run, saved as JSON by --out.
type Report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  string    `json:"machine,omitempty"`
	Command  string    `json:"command,omitempty"`
	Cluster  string    `json:"cluster"`
	Duration string    `json:"durationPerScenario"`
	Writers  int       `json:"writers"`
	Readers  int       `json:"readers"`
	Results  []Result  `json:"results"`
}

// OK reports whether every scenario that ran passed (and one at least ran).
func (r *Report) OK() bool {
	ran := 0
	for _, res := range r.Results {
		if !res.Passed() {
			return false
		}
		if res.Skipped == "" {
			ran++
		}
	}
	return ran > 0
}

// WriteTable writes the summary table (Markdown, readable as text):
// scenario, faults injected, operations acknowledged, lost, duplicated,
// longest write unavailability, healed.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| scenario | faults injected | inserts acked | ops acked | lost | duplicated | longest write unavailability | healed | verdict |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|---|\n")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, res := range r.Results {
		verdict := "PASS"
		if !res.Passed() {
			verdict = "FAIL"
		}
		if res.Skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s | | | | | | | SKIP |\n", res.Scenario, esc(res.Skipped))
			continue
		}
		healed := "yes"
		if !res.Healed {
			healed = "no"
		} else if res.HealSeconds >= 0.1 {
			healed = fmt.Sprintf("yes (%.1fs)", res.HealSeconds)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %v | %s | %s |\n", res.Scenario, esc(res.FaultSummary()),
			res.Acked, res.AckedOps, res.Lost+res.BulkLost, res.Duplicated+res.BulkDuplicated,
			time.Duration(res.LongestUnavailabilityMs)*time.Millisecond, healed, verdict)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMedians writes one row per scenario over its repeated runs:
// runs, passed, the sums of acknowledged inserts, lost and duplicated,
// and the median (and max) longest write unavailability and heal time.
func (r *Report) WriteMedians(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| scenario | runs | passed | inserts acked (sum) | lost (sum) | duplicated (sum) | longest write unavailability, median (max) | heal time, median |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	var order []string
	by := map[string][]Result{}
	for _, res := range r.Results {
		if res.Skipped != "" {
			continue
		}
		if _, ok := by[res.Scenario]; !ok {
			order = append(order, res.Scenario)
		}
		by[res.Scenario] = append(by[res.Scenario], res)
	}
	for _, name := range order {
		rs := by[name]
		var passed, acked, lost, dup int
		var unav []int64
		var heal []float64
		for _, res := range rs {
			if res.Passed() {
				passed++
			}
			acked += res.Acked
			lost += res.Lost + res.BulkLost
			dup += res.Duplicated + res.BulkDuplicated
			unav = append(unav, res.LongestUnavailabilityMs)
			heal = append(heal, res.HealSeconds)
		}
		ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %v (%v) | %.1fs |\n", name, len(rs), passed, acked, lost, dup,
			ms(median(unav)), ms(slices.Max(unav)), median(heal))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// median returns the middle value (the lower middle for an even count).
func median[T int64 | float64](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// Save writes the report as indented JSON to path.
func (r *Report) Save(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save report: %w", err)
	}
	return nil
}

// LoadReport reads a report saved by Save.
func LoadReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode report %s: %w", path, err)
	}
	return &r, nil
}
