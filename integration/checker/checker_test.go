package checker

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// runFor runs w against store and fails the test if Run does not return
// within a generous deadline (a hang is the bug, not slowness).
func runFor(t *testing.T, ctx context.Context, store Store, w Workload) *History {
	t.Helper()
	type result struct {
		h   *History
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := Run(ctx, store, w)
		done <- result{h, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Run: %v", r.err)
		}
		return r.h
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s")
	}
	return nil
}

func collect(t *testing.T, name string, m *memStore, h *History) View {
	t.Helper()
	v, err := Collect(t.Context(), name, m, h)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return v
}

func one(id string) []string {
	if id == "" {
		return []string{"<fault did not fire>"}
	}
	return []string{id}
}

func TestVerifyDetectsFaults(t *testing.T) {
	base := Workload{Writers: 4, Readers: 2, MaxOps: 400, KeyPrefix: "t"}
	tests := []struct {
		name   string
		faults faults
		ok     bool
		check  func(t *testing.T, r Report, m *memStore)
	}{
		{name: "clean", ok: true, check: func(t *testing.T, r Report, m *memStore) {
			if len(r.Acked) == 0 || len(r.Failed)+len(r.Indeterminate) != 0 || len(r.ErrorsByCode) != 0 {
				t.Errorf("acked %d failed %d indeterminate %d errors %v", len(r.Acked), len(r.Failed), len(r.Indeterminate), r.ErrorsByCode)
			}
			if r.Ops != 400 {
				t.Errorf("Ops = %d, want MaxOps 400", r.Ops)
			}
		}},
		{name: "acked write dropped", faults: faults{dropAt: 17}, check: func(t *testing.T, r Report, m *memStore) {
			eq(t, "Lost", r.Lost, one(m.dropped))
			eq(t, "ByView[0].Lost", r.ByView[0].Lost, one(m.dropped))
		}},
		{name: "write duplicated", faults: faults{dupAt: 9}, check: func(t *testing.T, r Report, m *memStore) {
			eq(t, "Duplicated", r.Duplicated, one(m.duplicated))
			eq(t, "Lost", r.Lost, nil)
		}},
		{name: "indeterminate present", faults: faults{errAfterApplyAt: 5}, ok: true, check: func(t *testing.T, r Report, m *memStore) {
			eq(t, "Indeterminate", r.Indeterminate, one(m.errAfterApply))
			if r.IndeterminatePresent != 1 || r.ErrorsByCode[ClassNetwork] != 1 {
				t.Errorf("IndeterminatePresent %d, errors %v", r.IndeterminatePresent, r.ErrorsByCode)
			}
		}},
		{name: "indeterminate absent", faults: faults{timeoutAt: 5}, ok: true, check: func(t *testing.T, r Report, m *memStore) {
			eq(t, "Indeterminate", r.Indeterminate, one(m.timedOut))
			if r.IndeterminatePresent != 0 || r.ErrorsByCode[ClassTimeout] != 1 {
				t.Errorf("IndeterminatePresent %d, errors %v", r.IndeterminatePresent, r.ErrorsByCode)
			}
		}},
		{name: "indeterminate duplicated", faults: faults{errAfterApplyAt: 6, dupAt: 6}, check: func(t *testing.T, r Report, m *memStore) {
			eq(t, "Indeterminate", r.Indeterminate, one(m.errAfterApply))
			eq(t, "Duplicated", r.Duplicated, one(m.duplicated))
		}},
		{name: "definite failure absent", faults: faults{failAt: 3}, ok: true, check: func(t *testing.T, r Report, m *memStore) {
			eq(t, "Failed", r.Failed, one(m.failed))
			if r.ErrorsByCode["2 BadValue"] != 1 {
				t.Errorf("errors %v", r.ErrorsByCode)
			}
		}},
		{name: "definite failure present", faults: faults{failAppliedAt: 3}, check: func(t *testing.T, r Report, m *memStore) {
			eq(t, "PresentAfterFailure", r.PresentAfterFailure, one(m.failedApplied))
		}},
		{name: "unexpected document", faults: faults{extraID: "t-w99-0"}, check: func(t *testing.T, r Report, m *memStore) {
			eq(t, "Unexpected", r.Unexpected, []string{"t-w99-0"})
		}},
		{name: "read back in time", faults: faults{staleReadAt: 40}, check: func(t *testing.T, r Report, m *memStore) {
			if len(r.NonMonotonic) == 0 {
				t.Fatal("no non-monotonic read found")
			}
			for _, v := range r.NonMonotonic {
				if v.Kind != OpRead || v.Found || v.Got != 0 || v.Prev <= 0 {
					t.Errorf("unexpected violation %v", v)
				}
			}
			if len(r.BadCounters) != 0 || len(r.Lost)+len(r.Duplicated) != 0 {
				t.Errorf("bad counters %v lost %v dup %v", r.BadCounters, r.Lost, r.Duplicated)
			}
		}},
		{name: "acked increments rolled back", faults: faults{resetCounterAt: 30}, check: func(t *testing.T, r Report, m *memStore) {
			if len(r.NonMonotonic) == 0 || len(r.BadCounters) == 0 {
				t.Errorf("non-monotonic %v, bad counters %v", r.NonMonotonic, r.BadCounters)
			}
			for _, c := range r.BadCounters {
				if c.Final >= c.MinAcked {
					t.Errorf("counter violation %v is not a loss", c)
				}
			}
		}},
		{name: "increment applied twice", faults: faults{doubleUpdateAt: 30}, check: func(t *testing.T, r Report, m *memStore) {
			if len(r.NonMonotonic) != 0 || len(r.BadCounters) != 1 || r.BadCounters[0].Final != r.BadCounters[0].MaxAttempted+1 {
				t.Errorf("non-monotonic %v, bad counters %v", r.NonMonotonic, r.BadCounters)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemStore(tc.faults)
			h := runFor(t, t.Context(), m, base)
			r := VerifyViews(t.Context(), h, collect(t, "mem", m, h))
			if r.OK() != tc.ok {
				t.Errorf("OK() = %v, want %v:\n%s", r.OK(), tc.ok, r)
			}
			tc.check(t, r, m)
			if t.Failed() {
				t.Logf("report:\n%s", r)
			}
		})
	}
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// TestVerifyViews checks that a problem in one view is found and attributed
// to that view only.
func TestVerifyViews(t *testing.T) {
	m := newMemStore(faults{})
	h := runFor(t, t.Context(), m, Workload{Writers: 3, Readers: 1, MaxOps: 200})
	good := collect(t, "member0", m, h)
	bad := collect(t, "member1", m, h)
	r0 := VerifyViews(t.Context(), h, good)
	acked := r0.Acked
	if len(acked) < 2 {
		t.Fatalf("too few acked writes:\n%s", r0)
	}
	missing := acked[len(acked)/2]
	bad.IDs = slices.DeleteFunc(slices.Clone(bad.IDs), func(id string) bool { return id == missing })
	bad.IDs = append(bad.IDs, acked[0])

	r := VerifyViews(t.Context(), h, good, bad)
	if r.OK() {
		t.Fatalf("OK with a broken view:\n%s", r)
	}
	eq(t, "Lost", r.Lost, []string{missing})
	eq(t, "Duplicated", r.Duplicated, []string{acked[0]})
	if len(r.ByView) != 2 || len(r.ByView[0].Lost)+len(r.ByView[0].Duplicated) != 0 ||
		!slices.Equal(r.ByView[1].Lost, []string{missing}) || r.ByView[1].Name != "member1" {
		t.Errorf("ByView = %+v", r.ByView)
	}
	if s := r.String(); !strings.Contains(s, "view member1") || !strings.Contains(s, missing) || strings.Contains(s, "view member0") {
		t.Errorf("String() does not name the broken view:\n%s", s)
	}
	if r := Verify(t.Context(), h, good.IDs); !r.OK() {
		t.Errorf("Verify of the good view:\n%s", r)
	}
}

// TestLongestUnavailabilityStall injects a real stall and checks the
// measured unavailability against bounds derived from the recorded
// timestamps: with P the longest gap between the store's apply times and L
// the longest delay between an insert's apply and the checker's record of
// its acknowledgement, the measure must lie in [P-L, P'+L] (P' also counts
// the gaps at the edges of the run), and P must cover the stall.
func TestLongestUnavailabilityStall(t *testing.T) {
	const stall = 300 * time.Millisecond
	for range 2 {
		m := newMemStore(faults{stallAt: 60, stallFor: stall})
		h := runFor(t, t.Context(), m, Workload{Writers: 4, MaxOps: 200})
		r := VerifyViews(t.Context(), h, collect(t, "mem", m, h))
		if !r.OK() {
			t.Fatalf("stall alone must not fail the check:\n%s", r)
		}
		applied := m.appliedAt()
		var L time.Duration
		first, last := time.Time{}, time.Time{}
		for _, op := range h.Ops() {
			if first.IsZero() || op.Start.Before(first) {
				first = op.Start
			}
			if op.End.After(last) {
				last = op.End
			}
			if d := op.End.Sub(applied[op.ID]); op.Outcome == Acked && d > L {
				L = d
			}
		}
		var times []time.Time
		for _, at := range applied {
			times = append(times, at)
		}
		sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
		var P time.Duration
		for i := 1; i < len(times); i++ {
			P = max(P, times[i].Sub(times[i-1]))
		}
		edges := max(P, times[0].Sub(first), last.Sub(times[len(times)-1]))
		if P < stall {
			t.Fatalf("memStore broke its stall: longest apply gap %v < %v", P, stall)
		}
		got := r.LongestUnavailability
		if got < P-L || got > edges+L {
			t.Errorf("LongestUnavailability %v outside [%v, %v] (apply gap %v, ack delay %v)", got, P-L, edges+L, P, L)
		}
		if r.LongestUnavailabilityFrom.After(m.stallUntil) {
			t.Errorf("unavailability starts at %v, after the stall ended at %v", r.LongestUnavailabilityFrom, m.stallUntil)
		}
		t.Logf("stall %v: measured %v, apply gap %v, ack delay %v", stall, got, P, L)
	}
}

func at(ms int) time.Time {
	return time.Unix(1_700_000_000, 0).Add(time.Duration(ms) * time.Millisecond)
}

func ins(client string, start, end int, o Outcome) Op {
	return Op{Client: client, Kind: OpInsert, ID: client + "-" + time.Duration(start).String(), Start: at(start), End: at(end), Outcome: o}
}

func TestLongestGap(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		want time.Duration
		from time.Time
	}{
		{"no inserts", nil, 0, time.Time{}},
		{"steady", []Op{ins("w0", 0, 10, Acked), ins("w0", 10, 20, Acked), ins("w1", 5, 15, Acked)}, 10 * time.Millisecond, at(0)},
		{"outage between acks", []Op{
			ins("w0", 0, 10, Acked), ins("w1", 0, 12, Acked),
			ins("w0", 10, 500, Indeterminate), ins("w1", 12, 900, Indeterminate),
			ins("w0", 500, 1100, Acked), ins("w1", 900, 1000, Acked),
		}, 988 * time.Millisecond, at(12)},
		{"never recovers", []Op{ins("w0", 0, 10, Acked), ins("w0", 10, 2000, Indeterminate), ins("w0", 2000, 3000, Failed)}, 2990 * time.Millisecond, at(10)},
		{"never acked", []Op{ins("w0", 100, 200, Indeterminate), ins("w1", 50, 400, Indeterminate)}, 350 * time.Millisecond, at(50)},
		{"reads ignored", []Op{ins("w0", 0, 10, Acked), {Client: "r0", Kind: OpRead, Start: at(10), End: at(5000), Outcome: Acked}, ins("w0", 10, 20, Acked)}, 10 * time.Millisecond, at(0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, from := longestGap(tc.ops)
			if got != tc.want || !from.Equal(tc.from) {
				t.Errorf("longestGap = %v from %v, want %v from %v", got, from, tc.want, tc.from)
			}
		})
	}
}

func rd(client, id string, v int64, found bool) Op {
	return Op{Client: client, Kind: OpRead, ID: id, Value: v, Found: found, Outcome: Acked}
}

func up(client, id string, after int64, o Outcome) Op {
	return Op{Client: client, Kind: OpUpdate, ID: id, Inc: 1, Value: after, Found: o == Acked, Outcome: o}
}

func TestMonotonicViolations(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		want []int64 // Got of each violation
	}{
		{"increasing", []Op{up("r0", "c0", 1, Acked), rd("r0", "c0", 1, true), up("r0", "c0", 3, Acked), rd("r0", "c0", 5, true)}, nil},
		{"read below own write", []Op{up("r0", "c0", 4, Acked), rd("r0", "c0", 3, true)}, []int64{3}},
		{"read below earlier read", []Op{rd("r0", "c0", 7, true), rd("r0", "c0", 6, true)}, []int64{6}},
		{"document vanished", []Op{up("r0", "c0", 2, Acked), rd("r0", "c0", 0, false)}, []int64{0}},
		{"update not above what was seen", []Op{rd("r0", "c0", 5, true), up("r0", "c0", 5, Acked)}, []int64{5}},
		{"other clients and counters independent", []Op{up("r0", "c0", 9, Acked), rd("r1", "c0", 3, true), rd("r0", "c1", 1, true)}, nil},
		{"failed and indeterminate ignored", []Op{up("r0", "c0", 4, Acked), up("r0", "c0", 0, Indeterminate), rd("r0", "c0", 4, true)}, nil},
		{"high-water mark kept after a violation", []Op{rd("r0", "c0", 8, true), rd("r0", "c0", 2, true), rd("r0", "c0", 7, true)}, []int64{2, 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64
			for _, v := range monotonicViolations(tc.ops) {
				got = append(got, v.Got)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("violations %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRunBounds checks that Run stops on every bound and never outlives a
// hung store.
func TestRunBounds(t *testing.T) {
	t.Run("MaxOps", func(t *testing.T) {
		h := runFor(t, t.Context(), newMemStore(faults{}), Workload{Writers: 3, Readers: 3, MaxOps: 1000})
		if h.Len() != 1000 {
			t.Errorf("recorded %d ops, want 1000", h.Len())
		}
	})
	t.Run("Duration", func(t *testing.T) {
		h := runFor(t, t.Context(), newMemStore(faults{}), Workload{Writers: 2, Readers: 1, Duration: 50 * time.Millisecond})
		if h.Len() == 0 {
			t.Error("no operation recorded")
		}
		for _, op := range h.Ops() {
			if op.Outcome != Acked {
				t.Errorf("reaching Duration turned %v into %v (%v)", op.ID, op.Outcome, op.Err)
			}
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if h := runFor(t, ctx, newMemStore(faults{}), Workload{Writers: 2}); h.Len() == 0 {
			t.Error("no operation recorded")
		}
	})
	t.Run("hung store, OpTimeout", func(t *testing.T) {
		m := newMemStore(faults{hang: true})
		h := runFor(t, t.Context(), m, Workload{Writers: 2, Readers: 2, MaxOps: 12, OpTimeout: 20 * time.Millisecond, ErrorBackoff: time.Millisecond})
		r := Verify(t.Context(), h, nil)
		if h.Len() != 12 || len(r.Acked) != 0 || r.ErrorsByCode[ClassTimeout] != 12 || !r.OK() {
			t.Errorf("ops %d, errors %v:\n%s", h.Len(), r.ErrorsByCode, r)
		}
		if len(r.Indeterminate) == 0 || r.LongestUnavailability == 0 {
			t.Errorf("indeterminate %d, unavailability %v", len(r.Indeterminate), r.LongestUnavailability)
		}
	})
	t.Run("hung store, cancel", func(t *testing.T) {
		m := newMemStore(faults{hang: true})
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			<-m.hanging
			cancel()
		}()
		h := runFor(t, ctx, m, Workload{Writers: 2, Readers: 1, MaxOps: 1 << 40, OpTimeout: time.Hour})
		r := Verify(t.Context(), h, nil)
		if h.Len() == 0 || r.ErrorsByCode[ClassCanceled] != h.Len() {
			t.Errorf("ops %d, errors %v", h.Len(), r.ErrorsByCode)
		}
	})
}

func TestRunRejectsBadWorkload(t *testing.T) {
	tests := []struct {
		name string
		w    Workload
	}{
		{"no clients", Workload{MaxOps: 10}},
		{"negative writers", Workload{Writers: -1, MaxOps: 10}},
		{"negative readers", Workload{Writers: 1, Readers: -2, MaxOps: 10}},
		{"unbounded", Workload{Writers: 1}},
		{"negative duration", Workload{Writers: 1, Duration: -time.Second}},
		{"negative max ops", Workload{Writers: 1, MaxOps: -1, Duration: time.Second}},
		{"negative op timeout", Workload{Writers: 1, MaxOps: 1, OpTimeout: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Run(t.Context(), newMemStore(faults{}), tc.w)
			if !errors.Is(err, ErrBadWorkload) || h != nil {
				t.Errorf("Run = %v, %v; want ErrBadWorkload", h, err)
			}
		})
	}
}

func TestReportTable(t *testing.T) {
	r := Report{Scenario: "primary SIGKILL", Faults: "10 kills | 1 pause", Acked: []string{"a", "b", "c"},
		Duplicated: []string{"b"}, LongestUnavailability: 1234567 * time.Microsecond}
	want := `| primary SIGKILL | 10 kills \| 1 pause | 3 | 0 | 1 | 1.235s |`
	if got := r.Table(); got != want {
		t.Errorf("Table() = %q, want %q", got, want)
	}
	head := strings.Split(TableHeader(), "\n")
	if len(head) != 2 || strings.Count(head[0], "|") != strings.Count(want, "|")-1 || strings.Count(head[1], "|") != 7 {
		t.Errorf("TableHeader() = %q does not match a row of %d columns", TableHeader(), 6)
	}
	if s := r.String(); !strings.Contains(s, "FAILED") || !strings.Contains(s, "duplicated 1") {
		t.Errorf("String() = %q", s)
	}
}
