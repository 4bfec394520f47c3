// Command configsvr runs one member of PSDB's config server: embedded etcd
// holding the catalog, plus the bootstrap that registers cluster.yaml's
// shards on first start.
//
//	configsvr --config cluster.yaml --name cfg0
//
// Flags of package config (--run-dir, --log-level, ...) and PSDB_*
// environment variables override the file. The process exits 0 after a
// clean shutdown on SIGTERM/SIGINT, and 1 with one clear message on any
// error (bad file, unknown name, address in use, foreign data directory).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/psdb/psdb/configsvr/server"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/launcher"
	"github.com/psdb/psdb/pkg/logging"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		var shown shownError
		if !errors.As(err, &shown) {
			fmt.Fprintf(os.Stderr, "configsvr: %v\n", err)
		}
		os.Exit(1)
	}
}

// shownError is an error the console logger has already shown.
type shownError struct{ error }

func (e shownError) Unwrap() error { return e.error }

func newCommand() *cobra.Command {
	var (
		cfgPath      string
		name         string
		readyTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:           "configsvr --config cluster.yaml --name <config server>",
		Short:         "Run one member of the PSDB config server (embedded etcd + catalog bootstrap)",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return errors.New("--name is required: the name of one of the configServers in " + cfgPath)
			}
			cl, err := config.Load(cfgPath, cmd.Flags())
			if err != nil {
				return err
			}
			return run(cl, name, readyTimeout)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "f", "cluster.yaml", "cluster description")
	cmd.Flags().StringVar(&name, "name", "", "this member's name in configServers")
	cmd.Flags().DurationVar(&readyTimeout, "ready-timeout", server.DefaultReadyTimeout, "how long to wait for etcd to be ready (with 3 members: for a majority) and for the bootstrap")
	config.BindFlags(cmd.Flags())
	return cmd
}

func run(cl *config.Cluster, name string, readyTimeout time.Duration) error {
	node, err := cl.Node(name)
	if err != nil {
		return err
	}
	log, closer, err := logging.New(logging.Options{
		Level:   cl.Log.Level,
		Format:  cl.Log.Format,
		File:    node.LogFile,
		Console: launcher.ChildConsole(node),
	}, node.Name, string(node.Role))
	if err != nil {
		return err
	}
	defer closer.Close()

	err = serve(cl, node, log, readyTimeout)
	if err != nil {
		// The logger writes to the log file and, unless the launcher
		// redirected stderr into that file, to the console: main must not
		// print the error a second time.
		log.Error().Err(err).Msg("config server failed")
		return shownError{err}
	}
	return nil
}

func serve(cl *config.Cluster, node config.Node, log zerolog.Logger, readyTimeout time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	srv, err := server.Start(ctx, server.Options{
		Cluster:      cl,
		Name:         node.Name,
		Logger:       log,
		ReadyTimeout: readyTimeout,
	})
	if err != nil {
		return err
	}
	if err := launcher.MarkReady(node); err != nil {
		srv.Close()
		return err
	}
	defer launcher.ClearReady(node)
	stopStats := startLoadReporter(ctx, cl, node, log, srv)
	defer stopStats()

	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
		return srv.Close()
	case err := <-srv.Err():
		srv.Close()
		return fmt.Errorf("embedded etcd failed: %w", err)
	}
}
