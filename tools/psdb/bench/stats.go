package bench

import (
	"sort"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: latencies are recorded in microseconds, from 1 µs to
// 10 minutes, with 3 significant digits; longer values are clamped.
const (
	histMinMicros = 1
	histMaxMicros = int64(10 * time.Minute / time.Microsecond)
	histSigFigs   = 3
)

func newHist() *hdr.Histogram { return hdr.New(histMinMicros, histMaxMicros, histSigFigs) }

func recordLatency(h *hdr.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < histMinMicros {
		us = histMinMicros
	}
	if us > histMaxMicros {
		us = histMaxMicros
	}
	_ = h.RecordValue(us) // in range by construction
}

// opStats is what one operation type did in one interval or run.
type opStats struct {
	hist   *hdr.Histogram // latency of successful and failed operations
	ops    int64          // operations (documents, for batched inserts)
	errors int64          // failed operations
}

func newOpStats() *opStats { return &opStats{hist: newHist()} }

func (s *opStats) merge(o *opStats) {
	s.hist.Merge(o.hist)
	s.ops += o.ops
	s.errors += o.errors
}

// window is the statistics of one interval or of a whole run.
type window struct {
	ops    map[string]*opStats
	codes  map[string]int64 // errors by code name
	shards map[string]int64 // operations by owning shard
}

func newWindow() *window {
	return &window{ops: map[string]*opStats{}, codes: map[string]int64{}, shards: map[string]int64{}}
}

func (w *window) op(name string) *opStats {
	s := w.ops[name]
	if s == nil {
		s = newOpStats()
		w.ops[name] = s
	}
	return s
}

func (w *window) merge(o *window) {
	for name, s := range o.ops {
		w.op(name).merge(s)
	}
	for c, n := range o.codes {
		w.codes[c] += n
	}
	for sh, n := range o.shards {
		w.shards[sh] += n
	}
}

func (w *window) totals() (ops, errs int64) {
	for _, s := range w.ops {
		ops += s.ops
		errs += s.errors
	}
	return ops, errs
}

// opNames returns the operation types in w, sorted.
func (w *window) opNames() []string {
	names := make([]string, 0, len(w.ops))
	for n := range w.ops {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Recorder collects one worker's measurements. The worker records; the
// reporter drains the current window once per interval. Its mutex is
// only contended by that drain.
type Recorder struct {
	mu  sync.Mutex
	cur *window
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{cur: newWindow()} }

// Record adds one operation of type op that took d and affected n
// documents (1 except for batched inserts); code is empty on success,
// else the error's code name; shard, if not empty, is the shard owning
// the operation's key.
func (r *Recorder) Record(op string, d time.Duration, n int64, code, shard string) {
	r.mu.Lock()
	s := r.cur.op(op)
	recordLatency(s.hist, d)
	s.ops += n
	if code != "" {
		s.errors += n
		r.cur.codes[code] += n
	}
	if shard != "" {
		r.cur.shards[shard] += n
	}
	r.mu.Unlock()
}

// RecordErrors adds n failed operations (documents of a batch) with the
// given code, without a latency sample (a batch's latency is recorded once).
func (r *Recorder) RecordErrors(op string, n int64, code string) {
	r.mu.Lock()
	s := r.cur.op(op)
	s.ops += n
	s.errors += n
	r.cur.codes[code] += n
	r.mu.Unlock()
}

// AddShard counts n operations on shard's keys ("" is ignored).
func (r *Recorder) AddShard(shard string, n int64) {
	if shard == "" {
		return
	}
	r.mu.Lock()
	r.cur.shards[shard] += n
	r.mu.Unlock()
}

// drain returns the current window and starts a new one.
func (r *Recorder) drain() *window {
	r.mu.Lock()
	w := r.cur
	r.cur = newWindow()
	r.mu.Unlock()
	return w
}
