package opstats

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeClock is a settable clock for the Recorder's windows.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestRecorderCountsAndPercentiles(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := newRecorder(clk.now, OpQuery)
	// 100 inserts: 1ms .. 100ms.
	for i := 1; i <= 100; i++ {
		r.Record(OpInsert, time.Duration(i)*time.Millisecond)
	}
	r.Record(OpUpdate, -time.Second) // counts as the minimum
	r.Record(OpDelete, 2*time.Hour)  // counts as one hour
	clk.advance(2 * time.Second)
	s := r.Snapshot()
	if s.Elapsed() != 2*time.Second {
		t.Fatalf("elapsed = %v, want 2s", s.Elapsed())
	}
	var names []string
	for _, o := range s.Ops {
		names = append(names, o.Op)
	}
	if got := strings.Join(names, ","); got != "delete,insert,query,update" {
		t.Fatalf("types = %s, want sorted delete,insert,query,update", got)
	}
	ins, _ := s.Get(OpInsert)
	if ins.Count != 100 {
		t.Fatalf("insert count = %d, want 100", ins.Count)
	}
	near := func(name string, got, want time.Duration) {
		t.Helper()
		if d := got - want; d < -want/50 || d > want/50 {
			t.Errorf("%s = %v, want %v within 2%%", name, got, want)
		}
	}
	near("p50", ins.P50, 50*time.Millisecond)
	near("p99", ins.P99, 99*time.Millisecond)
	near("max", ins.Max, 100*time.Millisecond)
	if got := s.Rate(OpInsert); got != 50 {
		t.Errorf("insert rate = %v, want 50/s", got)
	}
	if q, ok := s.Get(OpQuery); !ok || q.Count != 0 || q.P99 != 0 {
		t.Errorf("pre-declared query = %+v, %v; want present with 0 ops", q, ok)
	}
	if d, _ := s.Get(OpDelete); d.Max < 59*time.Minute || d.Max > 61*time.Minute {
		t.Errorf("2h delete max = %v, want clamped to about 1h", d.Max)
	}
	if u, _ := s.Get(OpUpdate); u.Count != 1 || u.Max != time.Microsecond {
		t.Errorf("negative update = %+v, want 1 op of 1µs", u)
	}
}

func TestRecorderWindowResets(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := newRecorder(clk.now)
	r.Record(OpInsert, time.Millisecond)
	clk.advance(time.Second)
	first := r.Snapshot()
	if c, _ := first.Get(OpInsert); c.Count != 1 {
		t.Fatalf("first window insert = %+v, want 1", c)
	}
	clk.advance(3 * time.Second)
	second := r.Snapshot()
	if !second.Start.Equal(first.End) || second.Elapsed() != 3*time.Second {
		t.Fatalf("second window %v..%v does not follow the first (ending %v)", second.Start, second.End, first.End)
	}
	c, ok := second.Get(OpInsert)
	if !ok || c.Count != 0 || c.P50 != 0 {
		t.Fatalf("second window insert = %+v, %v; want present and reset to 0", c, ok)
	}
	// The swapped histograms keep working.
	for range 3 {
		r.Record(OpInsert, 5*time.Millisecond)
		clk.advance(time.Second)
		s := r.Snapshot()
		if c, _ := s.Get(OpInsert); c.Count != 1 || c.P50 < 4900*time.Microsecond || c.P50 > 5100*time.Microsecond {
			t.Fatalf("window insert = %+v, want 1 op of 5ms", c)
		}
	}
}

func TestRecorderConcurrentNoLoss(t *testing.T) {
	r := NewRecorder()
	const workers, per = 4, 5000
	types := []string{OpInsert, OpQuery, OpUpdate, OpDelete}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var total int64
	var mu sync.Mutex
	snapDone := make(chan struct{})
	go func() {
		defer close(snapDone)
		for {
			s := r.Snapshot()
			mu.Lock()
			for _, o := range s.Ops {
				total += o.Count
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				r.Record(types[(w+i)%len(types)], time.Duration(i)*time.Microsecond)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-snapDone
	for _, o := range r.Snapshot().Ops {
		total += o.Count
	}
	if total != workers*per {
		t.Fatalf("counted %d operations over all windows, want %d", total, workers*per)
	}
}

func TestNilRecorder(t *testing.T) {
	var r *Recorder
	r.Record(OpInsert, time.Millisecond) // no panic
	if s := r.Snapshot(); len(s.Ops) != 0 {
		t.Fatalf("nil recorder snapshot = %+v", s)
	}
}

// syncBuffer is a bytes.Buffer safe for the Reporter's goroutine and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	return out
}

func TestReporterLine(t *testing.T) {
	var buf syncBuffer
	log := zerolog.New(&buf).With().Str("node", "rs0a").Logger()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := newRecorder(clk.now, OpQuery)
	for i := 0; i < 20; i++ {
		r.Record(OpInsert, 2*time.Millisecond)
	}
	clk.advance(10 * time.Second)
	rep := NewReporter(ReporterOptions{Logger: log, Recorder: r, Gauges: func(ctx context.Context) map[string]any {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("gauges called without a deadline")
		}
		return map[string]any{"state": "PRIMARY", "term": 3, "lagMs": 0}
	}})
	rep.Report(context.Background())
	lines := buf.lines()
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1", len(lines))
	}
	l := lines[0]
	if l["message"] != Message || l["level"] != "info" || l["node"] != "rs0a" {
		t.Fatalf("line = %v", l)
	}
	if l[FieldInterval] != 10.0 {
		t.Errorf("interval = %v, want 10", l[FieldInterval])
	}
	ops := l[FieldOps].(map[string]any)
	if ops[OpInsert] != 2.0 || ops[OpQuery] != 0.0 {
		t.Errorf("ops = %v, want insert 2/s, query 0/s", ops)
	}
	p50 := l[FieldP50].(map[string]any)
	p99 := l[FieldP99].(map[string]any)
	if v, _ := p50[OpInsert].(float64); v < 1.95 || v > 2.05 {
		t.Errorf("p50ms = %v, want insert about 2", p50)
	}
	if v, _ := p99[OpInsert].(float64); v < 1.95 || v > 2.05 {
		t.Errorf("p99ms = %v, want insert about 2", p99)
	}
	if _, ok := p50[OpQuery]; ok {
		t.Errorf("p50ms = %v has a type without operations", p50)
	}
	if l["state"] != "PRIMARY" || l["term"] != 3.0 || l["lagMs"] != 0.0 {
		t.Errorf("gauges missing: %v", l)
	}
}

func TestReporterGaugesOnly(t *testing.T) {
	var buf syncBuffer
	rep := NewReporter(ReporterOptions{Logger: zerolog.New(&buf), Gauges: func(context.Context) map[string]any {
		return map[string]any{"etcdLeader": "cfg0"}
	}})
	rep.Report(context.Background())
	l := buf.lines()[0]
	if _, ok := l[FieldOps]; ok {
		t.Errorf("gauge-only line has ops: %v", l)
	}
	if l["etcdLeader"] != "cfg0" || l["message"] != Message {
		t.Errorf("line = %v", l)
	}
}

func TestReporterRunsAndStops(t *testing.T) {
	var buf syncBuffer
	r := NewRecorder()
	rep := NewReporter(ReporterOptions{Logger: zerolog.New(&buf), Recorder: r, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rep.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.Record(OpInsert, time.Millisecond)
		found := false
		for _, l := range buf.lines() {
			if ops, ok := l[FieldOps].(map[string]any); ok && ops[OpInsert].(float64) > 0 {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no load line with inserts within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after the context was cancelled")
	}
	n := len(buf.lines())
	r.Record(OpInsert, time.Millisecond)
	if got := len(buf.lines()); got != n {
		t.Fatalf("lines written after Run returned: %d then %d", n, got)
	}
}

func TestReporterLevelAboveInfo(t *testing.T) {
	var buf syncBuffer
	r := NewRecorder()
	called := false
	rep := NewReporter(ReporterOptions{Logger: zerolog.New(&buf).Level(zerolog.WarnLevel), Recorder: r,
		Gauges: func(context.Context) map[string]any { called = true; return nil }})
	r.Record(OpInsert, time.Millisecond)
	rep.Report(context.Background())
	if len(buf.lines()) != 0 || called {
		t.Fatalf("line written or gauges called at warn level")
	}
	if c, _ := r.Snapshot().Get(OpInsert); c.Count != 0 {
		t.Fatalf("the hidden report did not end the window: %+v", c)
	}
}

func BenchmarkRecord(b *testing.B) {
	r := NewRecorder(OpInsert)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Record(OpInsert, time.Duration(i%5000)*time.Microsecond)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	r := NewRecorder(OpInsert, OpQuery, OpUpdate, OpDelete)
	types := []string{OpInsert, OpQuery, OpUpdate, OpDelete}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Record(types[i%len(types)], time.Duration(i%5000)*time.Microsecond)
			i++
		}
	})
}
