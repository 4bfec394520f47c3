package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// The floor's namespace and step names.
const (
	FloorDB        = "bench"
	FloorColl      = "floor_empty"
	FloorPing      = "ping"
	FloorEmptyFind = "emptyFind"
)

// FloorConfig describes a messaging-floor measurement (`psdb bench
// floor`): each step runs Threads synchronous workers for StepDuration.
type FloorConfig struct {
	URI          string   `json:"uri"`
	Threads      int      `json:"threads"`
	StepDuration Duration `json:"step_duration"`
	Interval     Duration `json:"interval"`
	OpTimeout    Duration `json:"op_timeout"`
	Seed         uint64   `json:"seed"`
}

// FloorStep is one step of the floor: one operation type, no document work.
type FloorStep struct {
	Name       string           `json:"name"`
	StartS     float64          `json:"start_s"`
	DurationS  float64          `json:"duration_s"`
	Ops        int64            `json:"ops"`
	OpsPerSec  float64          `json:"ops_per_sec"`
	Latency    Latency          `json:"latency"`
	Errors     int64            `json:"errors"`
	ErrorCodes map[string]int64 `json:"error_codes"`
}

// FloorReport is the JSON result of `psdb bench floor`.
type FloorReport struct {
	Tool    string      `json:"tool"`
	Version int         `json:"version"`
	Command string      `json:"command"` // "floor"
	Config  FloorConfig `json:"config"`
	Start   time.Time   `json:"start"`
	End     time.Time   `json:"end"`
	Steps   []FloorStep `json:"steps"`
}

// Errors returns the errors of every step.
func (r *FloorReport) Errors() int64 {
	var n int64
	for _, s := range r.Steps {
		n += s.Errors
	}
	return n
}

// floorStepOf turns one step's run summary into its report entry.
func floorStepOf(name string, startS float64, s Summary) FloorStep {
	codes := map[string]int64{}
	for c, n := range s.ErrorCodes {
		codes[c] = n
	}
	return FloorStep{Name: name, StartS: startS, DurationS: s.DurationS, Ops: s.Ops, OpsPerSec: s.OpsPerSec,
		Latency: s.Latency, Errors: s.Errors, ErrorCodes: codes}
}

// floorOp is one operation of a step; r is the worker's own generator.
type floorOp func(ctx context.Context, r *rand.Rand) error

// Floor measures what the messaging alone costs on this machine, with no
// document work: step ping (one round trip to the router, which answers
// without a shard) and step emptyFind (a find by _id on an empty unsharded
// collection: router, then the database's primary shard over gRPC, which
// reads nothing). A workload's ops/s over emptyFind's is the share of the
// messaging ceiling it reaches. bench.floor_empty is dropped, created
// empty before emptyFind, and dropped again at the end.
func Floor(ctx context.Context, cli *mongo.Client, fc FloorConfig, progress *Progress) (*FloorReport, error) {
	if fc.Threads < 1 {
		return nil, errors.New("--threads must be at least 1")
	}
	if fc.StepDuration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	cfg := DefaultConfig()
	cfg.URI, cfg.DB, cfg.Coll, cfg.Workload = fc.URI, FloorDB, FloorColl, "floor"
	cfg.Threads, cfg.Duration, cfg.Seed = fc.Threads, fc.StepDuration, fc.Seed
	if fc.Interval > 0 {
		cfg.Interval = fc.Interval
	}
	if fc.OpTimeout > 0 {
		cfg.OpTimeout = fc.OpTimeout
	}
	fc.Interval, fc.OpTimeout = cfg.Interval, cfg.OpTimeout

	rep := &FloorReport{Tool: "psdb bench", Version: ReportVersion, Command: "floor", Config: fc, Start: time.Now().UTC()}
	start := time.Now()
	db := cli.Database(FloorDB)
	coll := db.Collection(FloorColl)

	step := func(name string, op floorOp) error {
		e := newEngine(cli, cfg, progress)
		e.label = fmt.Sprintf("%-9s ", name)
		e.offset = time.Since(start).Seconds()
		err := e.runFloorStep(ctx, name, op)
		rep.Steps = append(rep.Steps, floorStepOf(name, e.offset, e.report("floor").Summary))
		return err
	}
	finish := func(err error) (*FloorReport, error) {
		rep.End = time.Now().UTC()
		return rep, err
	}

	if err := step(FloorPing, func(ctx context.Context, _ *rand.Rand) error {
		return db.RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err()
	}); err != nil {
		return finish(err)
	}

	if err := floorCollection(ctx, db, time.Duration(cfg.OpTimeout), true); err != nil {
		return finish(err)
	}
	err := step(FloorEmptyFind, func(ctx context.Context, r *rand.Rand) error {
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: KeyName(r.Int64N(1_000_000_000_000))}}).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil // the expected answer of an empty collection
		}
		return err
	})
	// Drop the collection even when interrupted.
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.OpTimeout))
	defer cancel()
	if derr := floorCollection(cleanup, db, time.Duration(cfg.OpTimeout), false); err == nil {
		err = derr
	}
	return finish(err)
}

// floorCollection drops bench.floor_empty and, if create, creates it
// again, empty and unsharded, on the database's primary shard.
func floorCollection(ctx context.Context, db *mongo.Database, timeout time.Duration, create bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := db.Collection(FloorColl).Drop(ctx); err != nil {
		return fmt.Errorf("drop %s.%s: %w", FloorDB, FloorColl, err)
	}
	if !create {
		return nil
	}
	if err := db.CreateCollection(ctx, FloorColl); err != nil {
		return fmt.Errorf("create %s.%s: %w", FloorDB, FloorColl, err)
	}
	return nil
}

// runFloorStep runs op with e.cfg.Threads workers for e.cfg.Duration,
// recording each call under name.
func (e *engine) runFloorStep(ctx context.Context, name string, op floorOp) error {
	deadline := time.Now().Add(time.Duration(e.cfg.Duration))
	timeout := time.Duration(e.cfg.OpTimeout)
	e.execute(ctx, e.cfg.Threads, func(ctx context.Context, i int, rec *Recorder) {
		r := e.seed(i)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			opCtx, cancel := context.WithTimeout(ctx, timeout)
			t0 := time.Now()
			err := op(opCtx, r)
			d := time.Since(t0)
			cancel()
			if ctx.Err() != nil {
				return // interrupted: not a measurement
			}
			rec.Record(name, d, 1, ErrorCode(err), "")
		}
	})
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s interrupted: %w", name, err)
	}
	return nil
}

// PrintFloor writes a table of the steps, their errors by code and how to
// read a workload against them.
func PrintFloor(w io.Writer, r *FloorReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\tops\tops/s\terrors\tp50 ms\tp95 ms\tp99 ms\tp99.9 ms\tmax ms\t")
	for _, s := range r.Steps {
		l := s.Latency
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", s.Name, s.Ops, s.OpsPerSec, s.Errors, l.P50Ms, l.P95Ms, l.P99Ms, l.P999Ms, l.MaxMs)
	}
	tw.Flush()
	for _, s := range r.Steps {
		printErrorCodes(w, s.Name+" errors by code:", s.ErrorCodes)
	}
	fmt.Fprintf(w, "%d threads, one client: ping is one router round trip, emptyFind one router+shard hop; "+
		"a workload's ops/s divided by emptyFind's ops/s is the share of the messaging ceiling it reaches\n", r.Config.Threads)
}
