package cmd

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/tools/psdb/chaos"
)

func init() { register(newChaosCmd) }

func newChaosCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "chaos",
		Short: "Inject faults under load and check that no acknowledged write is lost",
		Long: "Chaos scenarios: kills, pauses and restarts of real nodes while the history\n" +
			"checker writes (w:majority, retryable) and reads (primary) through the routers;\n" +
			"afterwards every acknowledged write must be present exactly once, no read may go\n" +
			"back in time, and the cluster must heal. See docs/CHAOS.md.",
	}
	c.AddCommand(newChaosRunCmd(), newChaosListCmd())
	return c
}

func newChaosListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the scenarios",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			for _, s := range chaos.Scenarios() {
				fmt.Fprintf(c.OutOrStdout(), "%-18s %s\n", s.Name, s.Summary)
			}
			return nil
		},
	}
}

func newChaosRunCmd() *cobra.Command {
	var (
		file, binDir, dir, scenarios, out string
		keep                              bool
		spec                              chaos.BootSpec
		o                                 chaos.Options
	)
	c := &cobra.Command{
		Use:   "run",
		Short: "Run chaos scenarios and print the summary table",
		Long: "Runs the scenarios one after another against the cluster of --cluster, or\n" +
			"against a cluster it boots in a temporary directory (3 config servers,\n" +
			"2 shards x 3 members, 2 routers, free ports) and stops at the end.\n" +
			"Exit status 1 when a scenario loses or duplicates a write, reads back in\n" +
			"time, or the cluster does not heal.\n\n" +
			"Scenarios: " + strings.Join(chaos.Names(), ", ") + ", all.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(c.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			o.Scenarios = strings.Split(scenarios, ",")
			if _, err := chaos.Select(o.Scenarios); err != nil {
				return err
			}
			o.Progress = c.ErrOrStderr()
			logger := zerolog.New(logging.ConsoleWriter(c.ErrOrStderr())).Hook(zerolog.HookFunc(
				func(e *zerolog.Event, _ zerolog.Level, _ string) {
					e.Str(logging.FieldTime, time.Now().UTC().Format(time.RFC3339Nano))
				}))
			var (
				cl  *chaos.Cluster
				err error
			)
			if file != "" {
				cl, err = chaos.Open(ctx, file, binDir, logger)
			} else {
				spec.BinDir, spec.Dir, spec.Keep, spec.Logger = binDir, dir, keep, logger
				fmt.Fprintln(c.ErrOrStderr(), "booting a cluster for the chaos run ...")
				cl, err = chaos.Boot(ctx, spec)
			}
			if err != nil {
				return err
			}
			defer func() {
				if err := cl.Close(context.WithoutCancel(ctx)); err != nil {
					fmt.Fprintf(c.ErrOrStderr(), "psdb: %v\n", err)
				}
			}()
			rep, runErr := chaos.Run(ctx, cl, o)
			if rep == nil {
				return runErr
			}
			host, _ := os.Hostname()
			rep.Machine = fmt.Sprintf("%s, %d cores, %s/%s", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
			rep.Command = strings.Join(os.Args, " ")
			if err := rep.WriteTable(c.OutOrStdout()); err != nil {
				return err
			}
			if o.Repeat > 1 {
				fmt.Fprintf(c.OutOrStdout(), "\nOver %d repeats:\n\n", o.Repeat)
				if err := rep.WriteMedians(c.OutOrStdout()); err != nil {
					return err
				}
			}
			if out != "" {
				if err := rep.Save(out); err != nil {
					return err
				}
				fmt.Fprintf(c.ErrOrStderr(), "report saved to %s\n", out)
			}
			if runErr != nil {
				return runErr
			}
			if !rep.OK() {
				var failed []string
				for _, r := range rep.Results {
					if !r.Passed() {
						failed = append(failed, r.Scenario)
					}
				}
				return fmt.Errorf("chaos: %d of %d scenarios failed: %s", len(failed), len(rep.Results), strings.Join(failed, ", "))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&file, "cluster", "", "cluster.yaml of a running cluster (default: boot a cluster of its own)")
	f.StringVar(&binDir, "bin-dir", "", "directory of the node binaries (default: the directory of psdb)")
	f.StringVar(&dir, "dir", "", "directory for the booted cluster (default: a temporary directory, removed afterwards)")
	f.BoolVar(&keep, "keep", false, "keep the booted cluster's temporary directory (logs, data)")
	f.IntVar(&spec.ConfigServers, "config-servers", 3, "config server members of the booted cluster")
	f.IntVar(&spec.Shards, "shards", 2, "shards of the booted cluster")
	f.IntVar(&spec.Members, "members", 3, "members per shard of the booted cluster")
	f.IntVar(&spec.Routers, "routers", 2, "routers of the booted cluster")
	f.BoolVar(&spec.Partitionable, "proxies", true, "boot the cluster with fault proxies between members and to the config servers (the partition scenarios need them)")
	f.StringVar(&scenarios, "scenario", "all", "scenarios to run, comma-separated, or all")
	f.DurationVar(&o.Duration, "duration", 20*time.Second, "least load time per scenario")
	f.IntVar(&o.Repeat, "repeat", 1, "run the list of scenarios this many times (a table of medians follows)")
	f.IntVar(&o.Writers, "writers", 4, "inserting clients")
	f.IntVar(&o.Readers, "readers", 2, "incrementing and reading clients")
	f.DurationVar(&o.HealTimeout, "heal-timeout", 90*time.Second, "bound on every failover, restart and heal")
	f.StringVar(&out, "out", "chaos-report.json", "JSON report file (empty: none)")
	return c
}
