package repl_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/repl"
	"github.com/psdb/psdb/shardd/storage"
)

func ot(term, index uint64) storage.OpTime { return storage.OpTime{Term: term, Index: index} }

func TestMajorityOpTime(t *testing.T) {
	tests := []struct {
		name    string
		optimes []storage.OpTime
		need    int
		want    storage.OpTime
	}{
		{"3 members all equal", []storage.OpTime{ot(1, 5), ot(1, 5), ot(1, 5)}, 2, ot(1, 5)},
		{"3 members one lagging", []storage.OpTime{ot(1, 9), ot(1, 7), ot(1, 2)}, 2, ot(1, 7)},
		{"3 members two lagging", []storage.OpTime{ot(1, 9), ot(1, 3), ot(1, 2)}, 2, ot(1, 3)},
		{"3 members two never reported", []storage.OpTime{ot(1, 9), {}, {}}, 2, ot(0, 0)},
		{"3 members order does not matter", []storage.OpTime{ot(1, 2), ot(1, 9), ot(1, 7)}, 2, ot(1, 7)},
		{"5 members", []storage.OpTime{ot(1, 10), ot(1, 8), ot(1, 6), ot(1, 4), ot(1, 2)}, 3, ot(1, 6)},
		{"5 members two down", []storage.OpTime{ot(1, 10), ot(1, 10), ot(1, 9), {}, {}}, 3, ot(1, 9)},
		{"5 members three down", []storage.OpTime{ot(1, 10), ot(1, 10), {}, {}, {}}, 3, ot(0, 0)},
		{"5 members equal pairs", []storage.OpTime{ot(1, 4), ot(1, 4), ot(1, 7), ot(1, 7), ot(1, 1)}, 3, ot(1, 4)},
		{"terms order before indexes", []storage.OpTime{ot(2, 3), ot(1, 9), ot(2, 4)}, 2, ot(2, 3)},
		{"1 member", []storage.OpTime{ot(3, 1)}, 1, ot(3, 1)},
		{"need more than members", []storage.OpTime{ot(1, 1)}, 2, ot(0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := repl.MajorityOpTime(tc.optimes, tc.need); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// report is one ReportProgress.
type report struct {
	member string
	at     storage.OpTime
}

func TestProgressCommitPoint(t *testing.T) {
	tests := []struct {
		name    string
		members []string
		self    storage.OpTime
		term    uint64
		reports []report
		want    storage.OpTime
	}{
		{"3 members no reports", []string{"p", "a", "b"}, ot(1, 5), 1, nil, ot(0, 0)},
		{"3 members one secondary caught up", []string{"p", "a", "b"}, ot(1, 5), 1, []report{{"a", ot(1, 5)}}, ot(1, 5)},
		{"3 members secondaries lag", []string{"p", "a", "b"}, ot(1, 9), 1, []report{{"a", ot(1, 4)}, {"b", ot(1, 6)}}, ot(1, 6)},
		{"3 members secondary ahead of primary's own count", []string{"p", "a", "b"}, ot(1, 3), 1, []report{{"a", ot(1, 3)}, {"b", ot(1, 3)}}, ot(1, 3)},
		{"late report never goes back", []string{"p", "a", "b"}, ot(1, 9), 1, []report{{"a", ot(1, 8)}, {"a", ot(1, 2)}}, ot(1, 8)},
		{"5 members need 3", []string{"p", "a", "b", "c", "d"}, ot(1, 9), 1, []report{{"a", ot(1, 7)}, {"b", ot(1, 5)}, {"c", ot(1, 3)}}, ot(1, 5)},
		{"5 members only one secondary", []string{"p", "a", "b", "c", "d"}, ot(1, 9), 1, []report{{"a", ot(1, 9)}}, ot(0, 0)},
		{"older term not committed by counting", []string{"p", "a", "b"}, ot(2, 9), 2, []report{{"a", ot(1, 8)}, {"b", ot(1, 8)}}, ot(0, 0)},
		{"current term commits", []string{"p", "a", "b"}, ot(2, 9), 2, []report{{"a", ot(1, 8)}, {"b", ot(2, 9)}}, ot(2, 9)},
		{"term rule off", []string{"p", "a", "b"}, ot(2, 9), 0, []report{{"a", ot(1, 8)}, {"b", ot(1, 8)}}, ot(1, 8)},
		{"single member", []string{"p"}, ot(1, 4), 1, nil, ot(1, 4)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			self := tc.self
			p, err := repl.NewProgress(repl.ProgressOptions{Self: "p", Members: tc.members, Term: tc.term, SelfDurable: func() storage.OpTime { return self }})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.reports {
				if err := p.Report(r.member, r.at); err != nil {
					t.Fatal(err)
				}
			}
			if got := p.CommitPoint(); got != tc.want {
				t.Fatalf("commit point %s, want %s", got, tc.want)
			}
		})
	}
}

func TestProgressReportUnknown(t *testing.T) {
	p, err := repl.NewProgress(repl.ProgressOptions{Self: "p", Members: []string{"p", "a"}, SelfDurable: func() storage.OpTime { return ot(1, 1) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"x", "p", ""} {
		if err := p.Report(m, ot(1, 1)); mongoerr.CodeOf(err) != mongoerr.BadValue {
			t.Errorf("Report(%q): %v", m, err)
		}
	}
	if _, err := repl.NewProgress(repl.ProgressOptions{Self: "z", Members: []string{"p"}, SelfDurable: func() storage.OpTime { return ot(1, 1) }}); err == nil {
		t.Error("self outside the members accepted")
	}
}

func TestProgressWaitFor(t *testing.T) {
	self := ot(1, 10)
	p, err := repl.NewProgress(repl.ProgressOptions{Self: "p", Members: []string{"p", "a", "b"}, Term: 1, SelfDurable: func() storage.OpTime { return self }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// w:1 and w:0 never wait; w:4 cannot be satisfied by 3 members.
	for _, wc := range []repl.WriteConcern{{N: 1}, {N: 0}} {
		if err := p.WaitFor(ctx, ot(1, 10), wc); err != nil {
			t.Fatalf("%s: %v", wc, err)
		}
	}
	if err := p.WaitFor(ctx, ot(1, 10), repl.WriteConcern{N: 4}); mongoerr.CodeOf(err) != mongoerr.UnsatisfiableWriteConcern {
		t.Fatalf("w:4: %v", err)
	}
	// Timeouts.
	for _, wc := range []repl.WriteConcern{{Majority: true, Timeout: 20 * time.Millisecond}, {N: 2, Timeout: 20 * time.Millisecond}} {
		if err := p.WaitFor(ctx, ot(1, 10), wc); mongoerr.CodeOf(err) != mongoerr.WriteConcernTimeout {
			t.Fatalf("%s: %v, want WriteConcernTimeout", wc, err)
		}
	}
	// A report releases the waiters: majority and w:2 with one report,
	// w:3 only with both.
	type result struct {
		wc  repl.WriteConcern
		err error
	}
	done := make(chan result, 3)
	for _, wc := range []repl.WriteConcern{{Majority: true}, {N: 2}, {N: 3}} {
		go func() { done <- result{wc, p.WaitFor(ctx, ot(1, 10), wc)} }()
	}
	if err := p.Report("a", ot(1, 10)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := <-done
		if r.err != nil || r.wc.N == 3 {
			t.Fatalf("%s: %v", r.wc, r.err)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("w:3 returned with one secondary: %v", r.err)
	default:
	}
	if err := p.Report("b", ot(1, 11)); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil {
		t.Fatalf("w:3: %v", r.err)
	}
	// The caller giving up is not a timeout.
	short, stop := context.WithCancel(ctx)
	stop()
	if err := p.WaitFor(short, ot(1, 99), repl.WriteConcern{Majority: true}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestWriteConcernFromProto(t *testing.T) {
	tests := []struct {
		in   *shardpb.WriteConcern
		want repl.WriteConcern
		code mongoerr.Code
	}{
		{nil, repl.WriteConcern{Majority: true}, 0},
		{&shardpb.WriteConcern{}, repl.WriteConcern{Majority: true}, 0},
		{&shardpb.WriteConcern{WtimeoutMs: 250}, repl.WriteConcern{Majority: true, Timeout: 250 * time.Millisecond}, 0},
		{&shardpb.WriteConcern{WMode: "majority", WtimeoutMs: 5}, repl.WriteConcern{Majority: true, Timeout: 5 * time.Millisecond}, 0},
		{&shardpb.WriteConcern{W: 1}, repl.WriteConcern{N: 1}, 0},
		{&shardpb.WriteConcern{W: 3, J: true}, repl.WriteConcern{N: 3}, 0},
		{&shardpb.WriteConcern{WMode: "dc"}, repl.WriteConcern{}, mongoerr.UnknownReplWriteConcern},
		{&shardpb.WriteConcern{W: -1}, repl.WriteConcern{}, mongoerr.BadValue},
		{&shardpb.WriteConcern{WtimeoutMs: -1}, repl.WriteConcern{}, mongoerr.BadValue},
	}
	for _, tc := range tests {
		got, err := repl.WriteConcernFromProto(tc.in)
		if mongoerr.CodeOf(err) != tc.code || (err == nil && got != tc.want) {
			t.Errorf("%v: got %+v, %v; want %+v, code %v", tc.in, got, err, tc.want, tc.code)
		}
	}
}
