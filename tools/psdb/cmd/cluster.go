package cmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/launcher"
	"github.com/psdb/psdb/pkg/logging"
)

func init() { register(newClusterCmd) }

// clusterFlags are the flags shared by the cluster subcommands.
type clusterFlags struct {
	file   string
	binDir string
}

func (f *clusterFlags) add(c *cobra.Command, fileShorthand string) {
	c.Flags().StringVarP(&f.file, "file", fileShorthand, "cluster.yaml", "cluster description")
	c.Flags().StringVar(&f.binDir, "bin-dir", "", "directory of the node binaries (default: the directory of psdb)")
	config.BindFlags(c.Flags())
}

// open loads the cluster description and prepares a launcher for it. With
// progress, the launcher's progress lines go to the command's stderr.
func (f *clusterFlags) open(c *cobra.Command, opts launcher.Options, progress bool) (*launcher.Launcher, error) {
	cl, err := config.Load(f.file, c.Flags())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (run psdb in the directory holding cluster.yaml, or pass its path with --file)", err)
	}
	if err != nil {
		return nil, err
	}
	opts.ConfigPath = f.file
	opts.BinDir = f.binDir
	opts.Args = configArgs(c.Flags())
	opts.Logger = logging.Nop()
	if progress {
		// Progress lines name the node they concern; the tool itself
		// needs no node/role fields.
		opts.Logger = zerolog.New(logging.ConsoleWriter(c.ErrOrStderr())).Hook(zerolog.HookFunc(
			func(e *zerolog.Event, _ zerolog.Level, _ string) {
				e.Str(logging.FieldTime, time.Now().UTC().Format(time.RFC3339Nano))
			}))
	}
	return launcher.New(cl, opts)
}

// configArgs returns the flags of config.BindFlags set on fs, as
// arguments for the nodes, so that they load the same description.
func configArgs(fs *pflag.FlagSet) []string {
	known := pflag.NewFlagSet("config", pflag.ContinueOnError)
	config.BindFlags(known)
	var args []string
	known.VisitAll(func(k *pflag.Flag) {
		if f := fs.Lookup(k.Name); f != nil && f.Changed {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	return args
}

func newClusterCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "cluster",
		Short: "Run the processes of a cluster.yaml on this machine",
		Long: `Run the processes of a cluster.yaml on this machine.

Nodes start in order (config servers, shards, routers), each group waited on
until healthy. Pid files, logs and data live under the file's runDir (see
docs/design/launcher.md). Binaries are taken from the directory of psdb
(make build puts them all in ./bin) or --bin-dir.`,
	}
	c.AddCommand(newUpCmd(), newDownCmd(), newStatusCmd(), newLogsCmd())
	return c
}

func newUpCmd() *cobra.Command {
	var (
		f            clusterFlags
		detach       bool
		startTimeout time.Duration
		stopTimeout  time.Duration
	)
	c := &cobra.Command{
		Use:   "up [-f cluster.yaml] [--detach]",
		Short: "Start the cluster (restarting nodes with their data) and supervise it until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := f.open(c, launcher.Options{StartTimeout: startTimeout, StopTimeout: stopTimeout}, true)
			if err != nil {
				return err
			}
			// SIGHUP too: a closed terminal stops the cluster it started
			// rather than orphaning it.
			ctx, stop := signal.NotifyContext(c.Context(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			if err := l.Up(ctx); err != nil {
				return err
			}
			out := c.OutOrStdout()
			if err := printStatus(ctx, out, l); err != nil {
				return err
			}
			if detach {
				fmt.Fprintf(out, "cluster is running in the background; stop it with: %s\n",
					strings.Join(append([]string{"psdb cluster down -f", f.file}, configArgs(c.Flags())...), " "))
				return nil
			}
			fmt.Fprintln(out, "press Ctrl-C to stop the cluster")
			return supervise(ctx, c.ErrOrStderr(), l)
		},
	}
	f.add(c, "f")
	c.Flags().BoolVarP(&detach, "detach", "d", false, "leave the cluster running in the background and return")
	c.Flags().DurationVar(&startTimeout, "start-timeout", launcher.DefaultStartTimeout, "how long each group of nodes may take to become healthy")
	c.Flags().DurationVar(&stopTimeout, "stop-timeout", launcher.DefaultStopTimeout, "wait between SIGTERM and SIGKILL when stopping a node")
	return c
}

// supervise reports nodes that exit while the cluster runs, and stops the
// whole cluster when ctx ends (Ctrl-C). It returns when ctx ends or when
// the cluster was stopped by `psdb cluster down` from another terminal.
func supervise(ctx context.Context, stderr io.Writer, l *launcher.Launcher) error {
	exited := make(chan *launcher.Process)
	watchCtx, cancelWatch := context.WithCancel(context.Background())
	defer cancelWatch()
	for _, p := range l.Processes() {
		if done := p.Done(); done != nil {
			go func() {
				select {
				case <-done:
					select {
					case exited <- p:
					case <-watchCtx.Done():
					}
				case <-watchCtx.Done():
				}
			}()
		}
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stderr, "stopping the cluster ...")
			sctx, cancel := context.WithTimeout(context.Background(), 2*launcher.DefaultStopTimeout+10*time.Second)
			defer cancel()
			if err := l.Down(sctx); err != nil {
				return err
			}
			fmt.Fprintln(stderr, "cluster stopped")
			return nil
		case p := <-exited:
			how := "exit status 0"
			if err := p.ExitErr(); err != nil {
				how = err.Error()
			}
			fmt.Fprintf(stderr, "node %s exited (%s); log: %s\n", p.Name(), how, p.Node().LogFile)
		case <-tick.C:
			// `psdb cluster down` elsewhere stops every node and removes
			// the pid files: then there is nothing left to supervise. A
			// killed node leaves its pid file, and may be restarted with
			// `psdb cluster up` from another terminal.
			left := false
			for _, p := range l.Processes() {
				if _, err := os.Stat(p.Node().PidFile); p.Running() || err == nil {
					left = true
					break
				}
			}
			if !left {
				fmt.Fprintln(stderr, "the cluster was stopped (psdb cluster down); exiting")
				return nil
			}
		}
	}
}

func printStatus(ctx context.Context, out io.Writer, l *launcher.Launcher) error {
	st := l.Status(ctx)
	if err := launcher.WriteStatusTable(out, st); err != nil {
		return err
	}
	notBuilt := map[string]bool{}
	for _, s := range st {
		if s.State == launcher.StateNotBuilt && !notBuilt[launcher.BinaryName(s.Role)] {
			notBuilt[launcher.BinaryName(s.Role)] = true
			fmt.Fprintf(out, "note: %s is not built yet (no %s in %s); its nodes are not started\n", launcher.BinaryName(s.Role), launcher.BinaryName(s.Role), l.BinDir())
		}
	}
	for _, s := range st {
		if s.State == launcher.StateUnhealthy {
			fmt.Fprintf(out, "note: %s is unhealthy: %s\n", s.Name, s.Detail)
		}
	}
	cl := l.Cluster()
	fmt.Fprintf(out, "config servers (etcd): %s\n", strings.Join(cl.EtcdEndpoints(), ","))
	fmt.Fprintf(out, "connection string: %s\n", cl.ConnectionString())
	return nil
}

func newDownCmd() *cobra.Command {
	var (
		f           clusterFlags
		stopTimeout time.Duration
	)
	c := &cobra.Command{
		Use:   "down [-f cluster.yaml]",
		Short: "Stop every node of the cluster (SIGTERM, then SIGKILL); data and logs stay",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := f.open(c, launcher.Options{StopTimeout: stopTimeout}, true)
			if err != nil {
				return err
			}
			if err := l.Down(c.Context()); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), "cluster stopped")
			return nil
		},
	}
	f.add(c, "f")
	c.Flags().DurationVar(&stopTimeout, "stop-timeout", launcher.DefaultStopTimeout, "wait between SIGTERM and SIGKILL")
	return c
}

func newStatusCmd() *cobra.Command {
	var f clusterFlags
	c := &cobra.Command{
		Use:   "status [-f cluster.yaml]",
		Short: "Show every node: role, shard, address, pid and state (running, unhealthy, down, not-built)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l, err := f.open(c, launcher.Options{}, false)
			if err != nil {
				return err
			}
			return printStatus(c.Context(), c.OutOrStdout(), l)
		},
	}
	f.add(c, "f")
	return c
}

func newLogsCmd() *cobra.Command {
	var (
		f      clusterFlags
		follow bool
		raw    bool
	)
	c := &cobra.Command{
		Use:   "logs [node] [-f] [--file cluster.yaml]",
		Short: "Print (or follow with -f) the log of one node or of all nodes",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			l, err := f.open(c, launcher.Options{}, false)
			if err != nil {
				return err
			}
			procs := l.Processes()
			if len(args) == 1 {
				p, err := l.Process(args[0])
				if err != nil {
					return err
				}
				procs = []*launcher.Process{p}
			}
			ctx, stop := signal.NotifyContext(c.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return printLogs(ctx, c.OutOrStdout(), procs, follow, raw)
		},
	}
	// -f is --follow here, as in tail -f; the cluster file is --file.
	c.Flags().StringVar(&f.file, "file", "cluster.yaml", "cluster description")
	c.Flags().StringVar(&f.binDir, "bin-dir", "", "directory of the node binaries")
	config.BindFlags(c.Flags())
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until Ctrl-C")
	c.Flags().BoolVar(&raw, "json", false, "print the JSON lines as stored instead of the readable form")
	return c
}

// logFile is one node's log being printed.
type logFile struct {
	name   string
	path   string
	offset int64
	rest   []byte // an incomplete last line, kept until its newline
}

func printLogs(ctx context.Context, out io.Writer, procs []*launcher.Process, follow, raw bool) error {
	w := bufio.NewWriter(out)
	defer w.Flush()
	prefix := len(procs) > 1
	width := 0
	for _, p := range procs {
		width = max(width, len(p.Name()))
	}
	files := make([]*logFile, len(procs))
	for i, p := range procs {
		files[i] = &logFile{name: p.Name(), path: p.Node().LogFile}
	}
	emit := func(lf *logFile, line []byte) {
		if prefix {
			fmt.Fprintf(w, "%-*s | ", width, lf.name)
		}
		writeLogLine(w, line, raw)
	}
	found := false
	for _, lf := range files {
		ok, err := lf.drain(emit)
		if err != nil {
			return err
		}
		found = found || ok
	}
	if !follow {
		if !found {
			return errors.New("no log files yet: has the cluster been started (psdb cluster up)?")
		}
		return nil
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := w.Flush(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for _, lf := range files {
			if _, err := lf.drain(emit); err != nil {
				return err
			}
		}
	}
}

// drain emits the complete lines appended since the last call. It reports
// whether the file exists.
func (lf *logFile) drain(emit func(*logFile, []byte)) (bool, error) {
	f, err := os.Open(lf.path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return true, err
	}
	if st.Size() < lf.offset { // truncated or replaced: start over
		lf.offset, lf.rest = 0, nil
	}
	if _, err := f.Seek(lf.offset, io.SeekStart); err != nil {
		return true, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return true, err
	}
	lf.offset += int64(len(b))
	b = append(lf.rest, b...)
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		emit(lf, b[:i])
		b = b[i+1:]
	}
	lf.rest = append([]byte(nil), b...)
	return true, nil
}

// writeLogLine writes one stored line: JSON log lines in the console form
// of package logging unless raw, other lines (a crash's stderr) as they are.
func writeLogLine(w io.Writer, line []byte, raw bool) {
	if !raw && len(line) > 0 && line[0] == '{' {
		var buf bytes.Buffer
		if _, err := logging.ConsoleWriter(&buf).Write(line); err == nil {
			w.Write(buf.Bytes())
			return
		}
	}
	w.Write(line)
	w.Write([]byte{'\n'})
}
