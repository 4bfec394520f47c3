package cmd

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/psdb/psdb/tools/psdb/bench"
)

// newBenchScenarioCmd is `psdb bench scenario`, the parent of scripted
// benchmark scenarios (issue 9 part 2: scale-out).
func newBenchScenarioCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "scenario",
		Short: "Scripted benchmark scenarios against a running cluster (scale-out)",
	}
	c.AddCommand(newBenchScaleOutCmd())
	return c
}

func newBenchScaleOutCmd() *cobra.Command {
	var (
		f  benchFlags
		sc = bench.DefaultScaleConfig(bench.DefaultConfig())
	)
	c := &cobra.Command{
		Use:   "scale-out --cluster cluster.yaml [--shards 4] [--step-duration 60s]",
		Short: "Load a hashed collection on one shard, then add shards one at a time under load; per step throughput, latency, shares, convergence",
		Long: `scale-out runs against a running cluster whose cluster.yaml lists at least
--shards shards. It drops the benchmark database, removes shards 2..N (they
must own nothing; their replica sets keep running), loads --records records
hashed on _id on shard 1, and runs the workload continuously: --step-duration
with 1 shard, then for each further shard an addShard, the workload until the
balancer converges (balancerStatus balanced, chunk counts within the
threshold), and --step-duration more. See docs/design/bench.md.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if f.cluster == "" {
				return errors.New("--cluster is required")
			}
			f.duration = time.Duration(sc.StepDuration)
			cfg, err := f.config(c)
			if err != nil {
				return err
			}
			sc.Base, sc.ClusterFile = cfg, f.cluster
			ctx, done, cli, err := benchConnect(c, cfg, cfg.Threads)
			if err != nil {
				return err
			}
			defer done()
			rep, err := bench.ScaleOut(ctx, cli, sc, f.progress(c))
			if rep != nil && len(rep.Steps) > 0 {
				bench.PrintScale(c.OutOrStdout(), rep)
				title := fmt.Sprintf("psdb bench scale-out: workload %s, %d records of %d B, %d threads, 1 to %d shards",
					cfg.Workload, cfg.Records, cfg.DocSize, cfg.Threads, sc.Shards)
				if serr := f.save(c, rep, title, rep.Intervals, rep.Markers()); err == nil {
					err = serr
				}
				if err == nil {
					for _, s := range rep.Steps {
						if s.Added != "" && !s.Converged {
							err = &exitError{code: 3, err: fmt.Errorf("the balancer did not converge after addShard %s", s.Added)}
						}
					}
				}
			}
			return err
		},
	}
	f.add(c, true)
	fl := c.Flags()
	fl.IntVar(&sc.Shards, "shards", sc.Shards, "shards at the end (the first --shards shards of --cluster, in file order)")
	fl.DurationVar((*time.Duration)(&sc.StepDuration), "step-duration", time.Duration(sc.StepDuration), "measurement window of each step, after the balancer converged")
	fl.DurationVar((*time.Duration)(&sc.ConvergeTimeout), "converge-timeout", time.Duration(sc.ConvergeTimeout), "longest wait for the balancer after an addShard")
	fl.DurationVar((*time.Duration)(&sc.Piece), "piece", time.Duration(sc.Piece), "workload piece while chunks move (the moving phase is whole pieces)")
	_ = fl.MarkHidden("duration")
	_ = fl.MarkHidden("ops")
	_ = fl.MarkHidden("shard")
	_ = fl.MarkHidden("drop")
	return c
}
