package checker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// View is the final state of the collection as one observer sees it: a
// full scan through a router, or of one replica-set member.
type View struct {
	Name string
	// IDs is every _id the scan returned, duplicates included.
	IDs []string
	// Counters, if not nil, holds the final value of each counter (0 when
	// absent); VerifyViews then checks it against the acknowledged and
	// attempted increments.
	Counters map[string]int64
}

// Collect scans store for a View named name: every _id, and the final value
// of each counter of h. It stops when ctx is done.
func Collect(ctx context.Context, name string, store Store, h *History) (View, error) {
	ids, err := store.ScanIDs(ctx)
	if err != nil {
		return View{}, fmt.Errorf("collect view %s: scan ids: %w", name, err)
	}
	v := View{Name: name, IDs: ids, Counters: map[string]int64{}}
	for _, c := range h.Counters() {
		n, _, err := store.ReadCounter(ctx, c)
		if err != nil {
			return View{}, fmt.Errorf("collect view %s: read counter %s: %w", name, c, err)
		}
		v.Counters[c] = n
	}
	return v, nil
}

// Violation is a read that went back in time for one client: the client
// had observed Prev (by a read, or as the result of its own increment) and
// later got Got < Prev (or, for an increment, Got < Prev+Inc).
type Violation struct {
	Client string
	ID     string
	Kind   OpKind
	Prev   int64
	PrevAt time.Time // end of the operation that observed Prev
	Got    int64
	Found  bool
	At     time.Time // start of the operation that returned Got
}

func (v Violation) String() string {
	return fmt.Sprintf("client %s %s %s: got %d (found=%t) at %s after observing %d at %s",
		v.Client, v.Kind, v.ID, v.Got, v.Found, v.At.Format("15:04:05.000000"), v.Prev, v.PrevAt.Format("15:04:05.000000"))
}

// CounterViolation is a counter whose final value in a view is outside
// [MinAcked, MaxAttempted]: acknowledged increments were lost, or more
// increments were applied than were ever sent.
type CounterViolation struct {
	View         string
	ID           string
	Final        int64
	MinAcked     int64 // sum of acknowledged increments
	MaxAttempted int64 // sum of acknowledged and indeterminate increments
}

func (c CounterViolation) String() string {
	return fmt.Sprintf("view %s counter %s: final %d outside [%d, %d]", c.View, c.ID, c.Final, c.MinAcked, c.MaxAttempted)
}

// ViewReport is the part of a Report about one View.
type ViewReport struct {
	Name       string
	Docs       int // _ids in the view, duplicates included
	Lost       []string
	Duplicated []string
	Unexpected []string
	// PresentAfterFailure: writes whose error proved them not applied
	// (Failed) but which are present.
	PresentAfterFailure []string
}

// Report is the verdict of VerifyViews. Id lists are sorted; across several
// views they are unions (ByView says where). Scenario and Faults are for the
// caller to fill in before Table.
type Report struct {
	Scenario string
	Faults   string

	Acked         []string // inserts acknowledged
	Failed        []string // inserts that failed definitely
	Indeterminate []string // inserts whose outcome is unknown
	// IndeterminatePresent counts indeterminate inserts present in at
	// least one view (either way is correct).
	IndeterminatePresent int

	Lost                []string // acknowledged but missing from a view
	Duplicated          []string // seen more than once in a view
	Unexpected          []string // present but never attempted
	PresentAfterFailure []string // failed definitely but present
	NonMonotonic        []Violation
	BadCounters         []CounterViolation
	ByView              []ViewReport

	// LongestUnavailability is the longest time without an acknowledged
	// insert while inserts were being attempted, from
	// LongestUnavailabilityFrom (see longestGap).
	LongestUnavailability     time.Duration
	LongestUnavailabilityFrom time.Time
	// ErrorsByCode counts failed operations of every kind by ErrorKey.
	ErrorsByCode map[string]int
	Ops          int64 // operations recorded, of every kind
	Views        int
}

// OK reports whether the history is correct: nothing lost, duplicated,
// unexpected or present after a definite failure, no read back in time and
// no counter out of bounds.
func (r Report) OK() bool {
	return len(r.Lost) == 0 && len(r.Duplicated) == 0 && len(r.Unexpected) == 0 &&
		len(r.PresentAfterFailure) == 0 && len(r.NonMonotonic) == 0 && len(r.BadCounters) == 0
}

// Verify checks h against one final list of _ids.
func Verify(ctx context.Context, h *History, final []string) Report {
	return VerifyViews(ctx, h, View{Name: "final", IDs: final})
}

// VerifyViews checks h against every view (for example one per replica-set
// member, or one per router). It is a pure function of its inputs; ctx only
// lets a caller abandon a very large check, in which case the Report is
// partial.
func VerifyViews(ctx context.Context, h *History, views ...View) Report {
	ops := h.Ops()
	counters := h.Counters()
	r := Report{Ops: int64(len(ops)), Views: len(views), ErrorsByCode: map[string]int{}}

	outcome := make(map[string]Outcome) // insert _id -> outcome
	minCounter := make(map[string]int64)
	maxCounter := make(map[string]int64)
	for _, op := range ops {
		if op.ErrKey != "" {
			r.ErrorsByCode[op.ErrKey]++
		}
		switch op.Kind {
		case OpInsert:
			outcome[op.ID] = op.Outcome
			switch op.Outcome {
			case Acked:
				r.Acked = append(r.Acked, op.ID)
			case Failed:
				r.Failed = append(r.Failed, op.ID)
			case Indeterminate:
				r.Indeterminate = append(r.Indeterminate, op.ID)
			}
		case OpUpdate:
			switch op.Outcome {
			case Acked:
				minCounter[op.ID] += op.Inc
				maxCounter[op.ID] += op.Inc
			case Indeterminate:
				maxCounter[op.ID] += op.Inc
			}
		}
	}
	isCounter := make(map[string]bool, len(counters))
	for _, c := range counters {
		isCounter[c] = true
	}

	lost, dup, unexp, failedPresent := set{}, set{}, set{}, set{}
	indetPresent := set{}
	for _, v := range views {
		if ctx.Err() != nil {
			break
		}
		vr := checkView(v, outcome, isCounter, minCounter)
		for _, id := range v.IDs {
			if outcome[id] == Indeterminate {
				indetPresent[id] = true
			}
		}
		lost.add(vr.Lost...)
		dup.add(vr.Duplicated...)
		unexp.add(vr.Unexpected...)
		failedPresent.add(vr.PresentAfterFailure...)
		r.ByView = append(r.ByView, vr)
		if v.Counters != nil {
			for _, c := range counters {
				if f := v.Counters[c]; f < minCounter[c] || f > maxCounter[c] {
					r.BadCounters = append(r.BadCounters, CounterViolation{View: v.Name, ID: c,
						Final: f, MinAcked: minCounter[c], MaxAttempted: maxCounter[c]})
				}
			}
		}
	}
	r.Lost, r.Duplicated, r.Unexpected, r.PresentAfterFailure = lost.sorted(), dup.sorted(), unexp.sorted(), failedPresent.sorted()
	r.IndeterminatePresent = len(indetPresent)
	slices.Sort(r.Acked)
	slices.Sort(r.Failed)
	slices.Sort(r.Indeterminate)
	r.NonMonotonic = monotonicViolations(ops)
	r.LongestUnavailability, r.LongestUnavailabilityFrom = longestGap(ops)
	return r
}

func checkView(v View, outcome map[string]Outcome, isCounter map[string]bool, minCounter map[string]int64) ViewReport {
	vr := ViewReport{Name: v.Name, Docs: len(v.IDs)}
	seen := make(map[string]int, len(v.IDs))
	for _, id := range v.IDs {
		seen[id]++
	}
	for id, n := range seen {
		if n > 1 {
			vr.Duplicated = append(vr.Duplicated, id)
		}
		o, attempted := outcome[id]
		switch {
		case !attempted && !isCounter[id]:
			vr.Unexpected = append(vr.Unexpected, id)
		case o == Failed:
			vr.PresentAfterFailure = append(vr.PresentAfterFailure, id)
		}
	}
	for id, o := range outcome {
		if o == Acked && seen[id] == 0 {
			vr.Lost = append(vr.Lost, id)
		}
	}
	// A counter that took an acknowledged increment must exist.
	for id, n := range minCounter {
		if n > 0 && seen[id] == 0 {
			vr.Lost = append(vr.Lost, id)
		}
	}
	slices.Sort(vr.Lost)
	slices.Sort(vr.Duplicated)
	slices.Sort(vr.Unexpected)
	slices.Sort(vr.PresentAfterFailure)
	return vr
}

// monotonicViolations checks, per client and counter, that every value the
// client got is at least the highest it observed before (for its own
// increment: at least that plus the increment). A client runs its
// operations one at a time, so its operations are in order in ops.
// Counters only ever grow, which is what makes this check sound.
func monotonicViolations(ops []Op) []Violation {
	type key struct{ client, id string }
	type seen struct {
		v  int64
		at time.Time
	}
	high := map[key]seen{}
	var out []Violation
	for _, op := range ops {
		if op.Outcome != Acked || (op.Kind != OpRead && op.Kind != OpUpdate) {
			continue
		}
		k := key{op.Client, op.ID}
		prev, ok := high[k]
		if ok {
			want := prev.v
			if op.Kind == OpUpdate {
				want += op.Inc
			}
			if op.Value < want {
				out = append(out, Violation{Client: op.Client, ID: op.ID, Kind: op.Kind, Prev: prev.v,
					PrevAt: prev.at, Got: op.Value, Found: op.Found, At: op.Start})
			}
		}
		if !ok || op.Value > prev.v {
			high[k] = seen{op.Value, op.End}
		}
	}
	return out
}

// longestGap returns the longest time during which inserts were attempted
// and none was acknowledged: the largest of the gaps between successive
// acknowledgements (the End of acked inserts, over all writers), from the
// first insert's Start to the first acknowledgement, and from the last
// acknowledgement to the End of the last insert attempted after it. With no
// acknowledged insert it is the whole span of the attempts.
func longestGap(ops []Op) (time.Duration, time.Time) {
	var acks []time.Time
	var first, last time.Time
	for _, op := range ops {
		if op.Kind != OpInsert {
			continue
		}
		if first.IsZero() || op.Start.Before(first) {
			first = op.Start
		}
		if op.End.After(last) {
			last = op.End
		}
		if op.Outcome == Acked {
			acks = append(acks, op.End)
		}
	}
	if first.IsZero() {
		return 0, time.Time{}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].Before(acks[j]) })
	points := append(append([]time.Time{first}, acks...), last)
	var best time.Duration
	var from time.Time
	for i := 1; i < len(points); i++ {
		if d := points[i].Sub(points[i-1]); d > best {
			best, from = d, points[i-1]
		}
	}
	return best, from
}

type set map[string]bool

func (s set) add(ids ...string) {
	for _, id := range ids {
		s[id] = true
	}
}

func (s set) sorted() []string {
	return slices.Sorted(maps.Keys(s))
}

// String is a readable multi-line summary, listing at most 10 _ids per
// problem.
func (r Report) String() string {
	var b strings.Builder
	verdict := "OK"
	if !r.OK() {
		verdict = "FAILED"
	}
	if r.Scenario != "" {
		fmt.Fprintf(&b, "%s (%s): ", r.Scenario, r.Faults)
	}
	fmt.Fprintf(&b, "history check %s: %d ops, %d views; inserts: %d acked, %d failed, %d indeterminate (%d present)\n",
		verdict, r.Ops, r.Views, len(r.Acked), len(r.Failed), len(r.Indeterminate), r.IndeterminatePresent)
	fmt.Fprintf(&b, "lost %d, duplicated %d, unexpected %d, present after failure %d, non-monotonic reads %d, bad counters %d\n",
		len(r.Lost), len(r.Duplicated), len(r.Unexpected), len(r.PresentAfterFailure), len(r.NonMonotonic), len(r.BadCounters))
	fmt.Fprintf(&b, "longest write unavailability %v", r.LongestUnavailability.Round(time.Millisecond))
	if !r.LongestUnavailabilityFrom.IsZero() {
		fmt.Fprintf(&b, " from %s", r.LongestUnavailabilityFrom.Format("15:04:05.000"))
	}
	b.WriteString("\n")
	if len(r.ErrorsByCode) > 0 {
		b.WriteString("errors:")
		for _, k := range slices.Sorted(maps.Keys(r.ErrorsByCode)) {
			fmt.Fprintf(&b, " %s=%d", k, r.ErrorsByCode[k])
		}
		b.WriteString("\n")
	}
	for _, vr := range r.ByView {
		if len(vr.Lost)+len(vr.Duplicated)+len(vr.Unexpected)+len(vr.PresentAfterFailure) == 0 {
			continue
		}
		fmt.Fprintf(&b, "view %s (%d docs):", vr.Name, vr.Docs)
		writeIDs(&b, "lost", vr.Lost)
		writeIDs(&b, "duplicated", vr.Duplicated)
		writeIDs(&b, "unexpected", vr.Unexpected)
		writeIDs(&b, "present after failure", vr.PresentAfterFailure)
		b.WriteString("\n")
	}
	for i, v := range r.NonMonotonic {
		if i == 10 {
			fmt.Fprintf(&b, "... %d more non-monotonic reads\n", len(r.NonMonotonic)-10)
			break
		}
		b.WriteString(v.String() + "\n")
	}
	for _, c := range r.BadCounters {
		b.WriteString(c.String() + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func writeIDs(b *strings.Builder, what string, ids []string) {
	if len(ids) == 0 {
		return
	}
	fmt.Fprintf(b, " %s %d [", what, len(ids))
	for i, id := range ids {
		if i == 10 {
			b.WriteString(" ...")
			break
		}
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(id)
	}
	b.WriteString("]")
}

// TableHeader returns the two header lines of the table whose rows Table
// returns (docs/CHAOS.md).
func TableHeader() string {
	return "| scenario | faults | acknowledged | lost | duplicated | longest write unavailability |\n" +
		"|---|---|---:|---:|---:|---:|"
}

// Table returns the report as one Markdown table row: scenario, faults,
// acknowledged inserts, lost, duplicated, longest write unavailability.
func (r Report) Table() string {
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	return fmt.Sprintf("| %s | %s | %d | %d | %d | %v |", esc(r.Scenario), esc(r.Faults),
		len(r.Acked), len(r.Lost), len(r.Duplicated), r.LongestUnavailability.Round(time.Millisecond))
}
