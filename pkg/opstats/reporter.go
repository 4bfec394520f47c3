package opstats

import (
	"context"
	"math"
	"time"

	"github.com/rs/zerolog"
)

// DefaultInterval is the Reporter's default interval between load lines.
const DefaultInterval = 10 * time.Second

// Message is the message of every load line.
const Message = "load"

// Fields of the load line written by the Reporter (gauges add their own).
const (
	FieldInterval = "interval" // seconds the line covers
	FieldOps      = "ops"      // {type: operations per second}
	FieldP50      = "p50ms"    // {type: median latency, ms}; types with ops only
	FieldP99      = "p99ms"    // {type: 99th percentile latency, ms}; types with ops only
)

// Gauges returns the node's own fields for a load line (replication state
// and lag, health, connections, ...). It is called once per line, from the
// Reporter's goroutine, with a context that ends after the gauge timeout;
// it should return what it has rather than block. A nil map adds nothing.
type Gauges func(ctx context.Context) map[string]any

// ReporterOptions configure a Reporter.
type ReporterOptions struct {
	// Logger receives the load lines (at info level); it should carry the
	// node and role fields.
	Logger zerolog.Logger
	// Interval between lines; 0 means DefaultInterval.
	Interval time.Duration
	// Recorder whose windows are reported; nil writes gauges only (no ops,
	// p50ms, p99ms fields).
	Recorder *Recorder
	// Gauges adds the node's fields; nil adds none.
	Gauges Gauges
	// GaugeTimeout bounds one Gauges call; 0 means half the interval, at
	// most 2s.
	GaugeTimeout time.Duration
}

// Reporter writes a node's load line every interval. Create it with
// NewReporter and run it with Run, once; Report writes one line at once.
// Its methods are safe for concurrent use, but Run and Report share the
// Recorder's window: a line written by Report shortens Run's next window.
type Reporter struct {
	o ReporterOptions
}

// NewReporter returns a Reporter; nothing runs before Run.
func NewReporter(o ReporterOptions) *Reporter {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.GaugeTimeout <= 0 {
		o.GaugeTimeout = min(o.Interval/2, 2*time.Second)
	}
	return &Reporter{o: o}
}

// Run writes a load line every interval until ctx ends, then returns nil.
// The first line comes one interval after Run starts (the Recorder's
// window up to then is discarded so that it covers that interval only).
func (r *Reporter) Run(ctx context.Context) error {
	r.o.Recorder.Snapshot()
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.Report(ctx)
		}
	}
}

// Report writes one load line now, covering the Recorder's window since
// the previous line.
func (r *Reporter) Report(ctx context.Context) {
	var gauges map[string]any
	if r.o.Gauges != nil && r.o.Logger.GetLevel() <= zerolog.InfoLevel {
		gctx, cancel := context.WithTimeout(ctx, r.o.GaugeTimeout)
		gauges = r.o.Gauges(gctx)
		cancel()
	}
	// The window ends here even when the level hides the line.
	snap := r.o.Recorder.Snapshot()
	ev := r.o.Logger.Info()
	if ev == nil {
		return
	}
	if r.o.Recorder != nil {
		el := snap.Elapsed().Seconds()
		ops, p50, p99 := zerolog.Dict(), zerolog.Dict(), zerolog.Dict()
		for _, o := range snap.Ops {
			rate := 0.0
			if el > 0 {
				rate = float64(o.Count) / el
			}
			ops.Float64(o.Op, round2(rate))
			if o.Count > 0 {
				p50.Float64(o.Op, ms(o.P50))
				p99.Float64(o.Op, ms(o.P99))
			}
		}
		ev = ev.Float64(FieldInterval, round2(el)).Dict(FieldOps, ops).Dict(FieldP50, p50).Dict(FieldP99, p99)
	}
	if len(gauges) > 0 {
		ev = ev.Fields(gauges)
	}
	ev.Msg(Message)
}

// ms is d in milliseconds, rounded to 3 decimals (microseconds).
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// Start runs a Reporter over o in a goroutine until ctx ends or stop is
// called; stop ends it and waits until it has returned (safe to call more
// than once). It is the usual way for a process to own its reporter:
// defer the stop of a Start made with the process's context.
func Start(ctx context.Context, o ReporterOptions) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	r := NewReporter(o)
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
