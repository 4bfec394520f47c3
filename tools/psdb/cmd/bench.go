package cmd

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/tools/psdb/bench"
)

func init() { register(newBenchCmd) }

// benchFlags are the flags shared by the bench subcommands.
type benchFlags struct {
	cfg      bench.Config
	duration time.Duration
	interval time.Duration
	timeout  time.Duration
	out      string
	chart    string
	quiet    bool
	cluster  string
}

func (f *benchFlags) add(c *cobra.Command, withRun bool) {
	f.cfg = bench.DefaultConfig()
	fl := c.Flags()
	fl.StringVar(&f.cfg.URI, "uri", f.cfg.URI, "MongoDB connection string of the router(s)")
	fl.StringVar(&f.cfg.DB, "db", f.cfg.DB, "database")
	fl.StringVar(&f.cfg.Coll, "coll", f.cfg.Coll, "collection")
	fl.Int64Var(&f.cfg.Records, "records", f.cfg.Records, "records loaded (keys user000000000000..) and addressed by the workload")
	fl.IntVar(&f.cfg.DocSize, "doc-size", f.cfg.DocSize, "payload bytes per document, spread over --fields string fields")
	fl.IntVar(&f.cfg.Fields, "fields", f.cfg.Fields, "fields per document (an update sets one)")
	fl.IntVar(&f.cfg.Threads, "threads", f.cfg.Threads, "concurrent client threads")
	fl.StringVar(&f.cfg.WriteConcern, "write-concern", f.cfg.WriteConcern, `write concern: "majority" or a member count`)
	fl.StringVar(&f.cfg.ReadPreference, "read-preference", f.cfg.ReadPreference, "primary, primaryPreferred, secondary, secondaryPreferred or nearest")
	fl.BoolVar(&f.cfg.Shard, "shard", false, `shard the collection hashed on _id (enableSharding, shardCollection) before loading`)
	fl.BoolVar(&f.cfg.Drop, "drop", false, "drop the collection before loading")
	fl.IntVar(&f.cfg.BatchSize, "batch-size", f.cfg.BatchSize, "documents per insertMany when loading")
	fl.DurationVar(&f.interval, "interval", time.Duration(f.cfg.Interval), "time-series step and progress period")
	fl.DurationVar(&f.timeout, "op-timeout", time.Duration(f.cfg.OpTimeout), "timeout of one operation")
	fl.Uint64Var(&f.cfg.Seed, "seed", 0, "random seed (0: from the clock)")
	fl.StringVar(&f.out, "out", "", "write the results as JSON to this file")
	fl.StringVar(&f.chart, "chart", "", "write an SVG chart of throughput and p99 latency over time to this file")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress line")
	fl.StringVar(&f.cluster, "cluster", "", "cluster.yaml of the cluster under test: its routers are the default --uri, and peak reports its processes' memory (RSS)")
	if withRun {
		fl.StringVarP(&f.cfg.Workload, "workload", "w", f.cfg.Workload, "workload: a (50/50 read/update), b (95/5), c (read only), d (read latest), e (short scans), f (read-modify-write), load (insert only)")
		fl.StringVar(&f.cfg.Distribution, "distribution", "", "key distribution: uniform, zipfian or latest (default: the workload's, latest for d, else uniform)")
		fl.DurationVar(&f.duration, "duration", 30*time.Second, "run time (0: bounded by --ops only)")
		fl.Int64Var(&f.cfg.Ops, "ops", 0, "operation count (0: bounded by --duration only)")
	}
}

// config returns the validated configuration.
func (f *benchFlags) config(c *cobra.Command) (bench.Config, error) {
	cfg := f.cfg
	if f.cluster != "" && !c.Flags().Changed("uri") {
		cl, err := config.Load(f.cluster, nil)
		if err != nil {
			return cfg, fmt.Errorf("--cluster: %w", err)
		}
		cfg.URI = cl.ConnectionString()
	}
	cfg.Interval = bench.Duration(f.interval)
	cfg.OpTimeout = bench.Duration(f.timeout)
	if c.Flags().Lookup("duration") != nil {
		cfg.Duration = bench.Duration(f.duration)
		if cfg.Ops > 0 && !c.Flags().Changed("duration") {
			cfg.Duration = 0 // --ops alone: no time bound
		}
	}
	return cfg, cfg.Validate()
}

func (f *benchFlags) progress(c *cobra.Command) *bench.Progress {
	if f.quiet {
		return bench.NewProgress(nil)
	}
	return bench.NewProgress(c.ErrOrStderr())
}

// connect returns a client and a context cancelled by SIGINT/SIGTERM.
func benchConnect(c *cobra.Command, cfg bench.Config, maxThreads int) (context.Context, func(), *mongo.Client, error) {
	ctx, stop := signal.NotifyContext(c.Context(), syscall.SIGINT, syscall.SIGTERM)
	cli, err := bench.Connect(cfg, maxThreads)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return ctx, func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cli.Disconnect(dctx)
		stop()
	}, cli, nil
}

// save writes the JSON and the chart if asked.
func (f *benchFlags) save(c *cobra.Command, v any, title string, ivs []bench.Interval, markers []bench.Marker) error {
	if f.out != "" {
		if err := bench.WriteJSON(f.out, v); err != nil {
			return err
		}
		fmt.Fprintf(c.ErrOrStderr(), "results written to %s\n", f.out)
	}
	if f.chart != "" {
		file, err := os.Create(f.chart)
		if err != nil {
			return fmt.Errorf("create chart: %w", err)
		}
		werr := bench.WriteChart(file, title, ivs, markers)
		if cerr := file.Close(); werr == nil && cerr != nil {
			werr = fmt.Errorf("write chart %s: %w", f.chart, cerr)
		}
		if werr != nil {
			return werr
		}
		fmt.Fprintf(c.ErrOrStderr(), "chart written to %s\n", f.chart)
	}
	return nil
}

func newBenchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Load generator: YCSB-style workloads and a peak-load search against a router",
		Long: `psdb bench drives a cluster through its routers with the official Go driver.

  psdb bench load --records 100000 --shard          # insert the records (once)
  psdb bench run --workload a --duration 60s        # run a workload against them
  psdb bench run --load --workload c ...            # both, in one command
  psdb bench peak --workload c --max-threads 256    # double threads until p99 passes a bound
  psdb bench scenario scale-out --cluster c.yaml    # add shards 1 to 4 under load
  psdb bench floor --threads 8 --duration 10s       # the messaging ceiling: ping, empty find

Results: a live progress line on stderr, a summary on stdout, --out results.json
and --chart chart.svg. See docs/design/bench.md.`,
	}
	c.AddCommand(newBenchRunCmd(), newBenchLoadCmd(), newBenchPeakCmd(), newBenchScenarioCmd(), newBenchFloorCmd())
	return c
}

func newBenchLoadCmd() *cobra.Command {
	var f benchFlags
	c := &cobra.Command{
		Use:   "load",
		Short: "Insert --records records (unordered insertMany batches); --shard shards the collection first",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := f.config(c)
			if err != nil {
				return err
			}
			cfg.Workload = "load"
			ctx, done, cli, err := benchConnect(c, cfg, cfg.Threads)
			if err != nil {
				return err
			}
			defer done()
			rep, err := bench.Load(ctx, cli, cfg, f.progress(c))
			if rep != nil {
				bench.PrintSummary(c.OutOrStdout(), rep.Summary)
				if serr := f.save(c, rep, fmt.Sprintf("psdb bench load: %d records, %d threads", cfg.Records, cfg.Threads), rep.Intervals, nil); err == nil {
					err = serr
				}
			}
			return err
		},
	}
	f.add(c, false)
	return c
}

func newBenchRunCmd() *cobra.Command {
	var (
		f    benchFlags
		load bool
	)
	c := &cobra.Command{
		Use:   "run --workload a|b|c|d|e|f|load",
		Short: "Run a workload for --duration or --ops and report throughput, latency, errors and shard spread",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := f.config(c)
			if err != nil {
				return err
			}
			ctx, done, cli, err := benchConnect(c, cfg, cfg.Threads)
			if err != nil {
				return err
			}
			defer done()
			if load && cfg.Workload != "load" {
				lcfg := cfg
				lcfg.Workload = "load"
				rep, err := bench.Load(ctx, cli, lcfg, f.progress(c))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "load: %d records in %.1fs (%.0f docs/s), %d errors\n",
					rep.Summary.Ops, rep.Summary.DurationS, rep.Summary.OpsPerSec, rep.Summary.Errors)
			} else if cfg.Shard {
				// --shard without --load: shard the collection, never drop.
				pcfg := cfg
				pcfg.Drop = false
				if err := bench.Prepare(ctx, cli, pcfg); err != nil {
					return err
				}
			}
			rep, err := bench.Run(ctx, cli, cfg, f.progress(c))
			if rep != nil {
				bench.PrintSummary(c.OutOrStdout(), rep.Summary)
				title := fmt.Sprintf("psdb bench: workload %s, %d records of %d B, %d threads, %s keys, w:%s",
					cfg.Workload, cfg.Records, cfg.DocSize, cfg.Threads, orDefault(cfg.Distribution, "default"), cfg.WriteConcern)
				if serr := f.save(c, rep, title, rep.Intervals, nil); err == nil {
					err = serr
				}
			}
			return err
		},
	}
	f.add(c, true)
	c.Flags().BoolVar(&load, "load", false, "load the records (as psdb bench load) before running")
	return c
}

func newBenchPeakCmd() *cobra.Command {
	var (
		f                   benchFlags
		startThreads, maxTh int
		step, bound         time.Duration
	)
	c := &cobra.Command{
		Use:   "peak --workload c --start-threads 1 --max-threads 256 --step-duration 10s --p99-bound 50ms",
		Short: "Double concurrency each step until p99 latency passes a bound; report the knee, errors and memory",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f.duration = step
			cfg, err := f.config(c)
			if err != nil {
				return err
			}
			ctx, done, cli, err := benchConnect(c, cfg, maxTh)
			if err != nil {
				return err
			}
			defer done()
			pc := bench.PeakConfig{Base: cfg, StartThreads: startThreads, MaxThreads: maxTh,
				StepDuration: bench.Duration(step), P99Bound: bench.Duration(bound), ClusterFile: f.cluster}
			rep, err := bench.Peak(ctx, cli, pc, f.progress(c))
			if rep != nil {
				bench.PrintPeak(c.OutOrStdout(), rep)
				title := fmt.Sprintf("psdb bench peak: workload %s, threads %d..%d, p99 bound %s", cfg.Workload, startThreads, maxTh, bound)
				if serr := f.save(c, rep, title, rep.Intervals, rep.Markers()); err == nil {
					err = serr
				}
				if err == nil && rep.NonTimeoutErrors > 0 {
					err = &exitError{code: 3, err: fmt.Errorf("%d errors other than timeouts", rep.NonTimeoutErrors)}
				}
			}
			return err
		},
	}
	f.add(c, true)
	fl := c.Flags()
	fl.IntVar(&startThreads, "start-threads", 1, "threads of the first step")
	fl.IntVar(&maxTh, "max-threads", 256, "largest thread count tried")
	fl.DurationVar(&step, "step-duration", 10*time.Second, "length of each step")
	fl.DurationVar(&bound, "p99-bound", 50*time.Millisecond, "stop after the first step whose p99 latency exceeds this")
	return c
}

// newBenchFloorCmd is `psdb bench floor`: the ceiling that router and
// shard messaging alone allow on this machine, against which a workload's
// throughput is read.
func newBenchFloorCmd() *cobra.Command {
	var f benchFlags
	c := &cobra.Command{
		Use:   "floor [--uri URI | --cluster cluster.yaml] [--threads 8] [--duration 10s] [--out floor.json]",
		Short: "Measure the messaging ceiling with no document work: ping (router only) and a find on an empty collection (router and shard)",
		Long: `floor runs two steps of --duration each, --threads synchronous workers on one
client: ping (db.runCommand({ping: 1}) on database bench, which the router
answers alone) and emptyFind (findOne by a random _id on bench.floor_empty,
an empty unsharded collection created for the step and dropped after it:
router, then the database's primary shard, which reads nothing). A
workload's ops/s divided by emptyFind's is the share of the messaging
ceiling it reaches. See docs/design/bench.md.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := f.config(c)
			if err != nil {
				return err
			}
			cfg.DB, cfg.Coll = bench.FloorDB, bench.FloorColl
			ctx, done, cli, err := benchConnect(c, cfg, cfg.Threads)
			if err != nil {
				return err
			}
			defer done()
			fc := bench.FloorConfig{URI: cfg.URI, Threads: cfg.Threads, StepDuration: cfg.Duration,
				Interval: cfg.Interval, OpTimeout: cfg.OpTimeout, Seed: cfg.Seed}
			rep, err := bench.Floor(ctx, cli, fc, f.progress(c))
			if rep != nil && len(rep.Steps) > 0 {
				bench.PrintFloor(c.OutOrStdout(), rep)
				if serr := f.save(c, rep, "", nil, nil); err == nil {
					err = serr
				}
				if n := rep.Errors(); err == nil && n > 0 {
					err = &exitError{code: 3, err: fmt.Errorf("%d errors: the floor is not a clean measurement", n)}
				}
			}
			return err
		},
	}
	f.cfg = bench.DefaultConfig()
	fl := c.Flags()
	fl.StringVar(&f.cfg.URI, "uri", f.cfg.URI, "MongoDB connection string of the router(s)")
	fl.StringVar(&f.cluster, "cluster", "", "cluster.yaml of the cluster under test: its routers are the default --uri")
	fl.IntVar(&f.cfg.Threads, "threads", f.cfg.Threads, "concurrent client threads")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "length of each step")
	fl.DurationVar(&f.interval, "interval", time.Duration(f.cfg.Interval), "progress period")
	fl.DurationVar(&f.timeout, "op-timeout", time.Duration(f.cfg.OpTimeout), "timeout of one operation")
	fl.Uint64Var(&f.cfg.Seed, "seed", 0, "random seed of the find keys (0: from the clock)")
	fl.StringVar(&f.out, "out", "", "write the results as JSON to this file")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress line")
	return c
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
