// Command shardd runs one member of a shard's replica set: it opens the
// member's Pebble store and serves the Shard gRPC service (document
// operations, cursors, catalog commands) and the standard gRPC health
// service on the member's address from cluster.yaml.
//
//	shardd --config cluster.yaml --name rs0a
//
// Flags of package config (--run-dir, --log-level, ...) and PSDB_*
// environment variables override the file. Health reports SERVING once the
// store is open; the process also writes the launcher's ready file then.
// SIGTERM/SIGINT shut down cleanly (exit 0); any start-up error (bad file,
// unknown name, address in use, foreign, corrupt or missing data) exits 1
// with one clear message. The member finds its replica set's primary
// through the config servers' etcd, stands in elections when there is
// none, and replicates (see package shardd/replset).
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/gcpercent"
	"github.com/psdb/psdb/shardd/cmd"
)

func main() {
	gcpercent.Apply() // pkg/gcpercent: a higher GC target unless GOGC is set
	if err := newCommand().Execute(); err != nil {
		var shown cmd.ShownError
		if !errors.As(err, &shown) {
			fmt.Fprintf(os.Stderr, "shardd: %v\n", err)
		}
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var (
		cfgPath string
		name    string
		opts    cmd.Options
	)
	c := &cobra.Command{
		Use:           "shardd --config cluster.yaml --name <shard member>",
		Short:         "Run one member of a PSDB shard (Pebble store + gRPC Shard service)",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cc *cobra.Command, _ []string) error {
			if name == "" {
				return errors.New("--name is required: the name of one of the shard members in " + cfgPath)
			}
			cl, err := config.Load(cfgPath, cc.Flags())
			if err != nil {
				return err
			}
			opts.Cluster, opts.Name = cl, name
			return cmd.Run(cc.Context(), opts)
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "f", "cluster.yaml", "cluster description")
	c.Flags().StringVar(&name, "name", "", "this member's name among the shards' members")
	c.Flags().DurationVar(&opts.StopTimeout, "stop-timeout", cmd.DefaultStopTimeout, "on SIGTERM, how long running calls may take to finish before they are cut")
	config.BindFlags(c.Flags())
	return c
}
