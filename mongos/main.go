// Command mongos runs one PSDB router: it serves the MongoDB wire protocol
// on the router's address from cluster.yaml, so any MongoDB driver or
// mongosh can connect to it.
//
//	mongos --config cluster.yaml --name mongos0
//
// Flags of package config (--run-dir, --log-level, ...) and PSDB_*
// environment variables override the file. The router keeps no data: it
// writes nothing but its log. SIGTERM/SIGINT stop it gracefully (requests
// in flight finish, up to --stop-timeout) and it exits 0; any start-up
// error (bad file, unknown name, a node that is not a router, address in
// use) exits 1 with one clear message.
//
// Health check: the router serves when a wire-protocol ping on its address
// answers {ok: 1} (wire.Ping).
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/psdb/psdb/mongos/server"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/gcpercent"
	"github.com/psdb/psdb/pkg/launcher"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/opstats"
)

// DefaultStopTimeout bounds the graceful part of a shutdown.
const DefaultStopTimeout = 10 * time.Second

// Start-up errors, testable with errors.Is.
var (
	// ErrNotRouter: --name is a node of cluster.yaml but not a router.
	ErrNotRouter = errors.New("node is not a router")
	// ErrAddrInUse: the router's address is bound by another process.
	ErrAddrInUse = errors.New("address already in use")
)

func main() {
	gcpercent.Apply() // pkg/gcpercent: a higher GC target unless GOGC is set
	if err := newCommand().Execute(); err != nil {
		var shown shownError
		if !errors.As(err, &shown) {
			fmt.Fprintf(os.Stderr, "mongos: %v\n", err)
		}
		os.Exit(1)
	}
}

// shownError is an error the logger has already shown on the console.
type shownError struct{ error }

func (e shownError) Unwrap() error { return e.error }

// flags are the mongos flags besides package config's.
type flags struct {
	cfgPath       string
	name          string
	stopTimeout   time.Duration
	slowThreshold time.Duration
	testCommands  bool
}

func newCommand() *cobra.Command {
	var o flags
	cmd := &cobra.Command{
		Use:           "mongos --config cluster.yaml --name <router>",
		Short:         "Run one PSDB router (the MongoDB wire protocol endpoint)",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.name == "" {
				return errors.New("--name is required: the name of one of the routers in " + o.cfgPath)
			}
			cl, err := config.Load(o.cfgPath, cmd.Flags())
			if err != nil {
				return err
			}
			return run(cmd.Context(), cl, o)
		},
	}
	cmd.Flags().StringVarP(&o.cfgPath, "config", "f", "cluster.yaml", "cluster description")
	cmd.Flags().StringVar(&o.name, "name", "", "this router's name in routers")
	cmd.Flags().DurationVar(&o.stopTimeout, "stop-timeout", DefaultStopTimeout, "on SIGTERM, how long requests in flight may take to finish before connections are cut")
	cmd.Flags().DurationVar(&o.slowThreshold, "slow-op-threshold", server.DefaultSlowThreshold, "commands slower than this are logged at info level (negative: never)")
	cmd.Flags().BoolVar(&o.testCommands, "enable-test-commands", false, "enable test-only commands (configureFailPoint); never in production")
	config.BindFlags(cmd.Flags())
	return cmd
}

func run(ctx context.Context, cl *config.Cluster, o flags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	node, err := cl.Node(o.name)
	if err != nil {
		return err
	}
	if node.Role != config.RoleRouter {
		return fmt.Errorf("%w: %q is a %s node; --name must be one of the routers", ErrNotRouter, node.Name, node.Role)
	}
	log, closer, err := logging.New(cl.LogOptions(node, launcher.ChildConsole(node)), node.Name, string(node.Role))
	if err != nil {
		return err
	}
	defer closer.Close()
	if err := serve(ctx, cl, node, o, log); err != nil {
		// The logger wrote the error to the log file and, unless the
		// launcher redirected stderr there, to the console.
		log.Error().Err(err).Msg("mongos failed")
		return shownError{err}
	}
	return nil
}

func serve(ctx context.Context, cl *config.Cluster, node config.Node, o flags, log zerolog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", node.Addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("router %s: address %s: %w; stop the process using it (another mongos or a MongoDB server?) or change the router's addr in cluster.yaml", node.Name, node.Addr, ErrAddrInUse)
		}
		return fmt.Errorf("router %s: listen on %s: %w", node.Name, node.Addr, err)
	}
	maxMsg := cl.Router.MaxMessageBytes.Bytes()
	if maxMsg > math.MaxInt32 {
		maxMsg = math.MaxInt32 // config validation keeps it below; the wire length is an int32
	}
	// The backend connects to the config servers in the background, so the
	// router answers the handshake (and its health check) at once.
	backend := server.NewClusterBackend(cl.EtcdEndpoints(), log)
	defer backend.Close()
	rec := opstats.NewRecorder(opstats.OpInsert, opstats.OpQuery, opstats.OpUpdate, opstats.OpDelete, opstats.OpGetMore, opstats.OpCommand)
	bal, err := newBalancer(cl, node, backend, log)
	if err != nil {
		return fmt.Errorf("router %s: %w", node.Name, err)
	}
	srv := server.New(server.Options{
		Name:            node.Name,
		Balancer:        bal,
		OpStats:         rec,
		Backend:         backend,
		Logger:          log,
		MaxMessageBytes: int32(maxMsg),
		SlowThreshold:   o.slowThreshold,
		CursorTimeout:   cl.Router.CursorTimeout,
		CmdLine:         os.Args,
		Parsed:          parsedOptions(o, node),
		TestCommands:    o.testCommands,
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving the MongoDB wire protocol")
	// The router's registration (config.mongos, sh.status()) is owned
	// here and revoked on the way out.
	regCtx, stopReg := context.WithCancel(ctx)
	regDone := make(chan struct{})
	go func() {
		defer close(regDone)
		register(regCtx, backend, node, log)
	}()
	defer func() { stopReg(); <-regDone }()
	// The balancer campaigns while the router runs; on the way out it
	// resigns, so another router leads at once.
	balCtx, stopBal := context.WithCancel(ctx)
	balDone := make(chan struct{})
	go func() {
		defer close(balDone)
		_ = bal.Run(balCtx)
	}()
	defer func() { stopBal(); <-balDone }()
	stopStats := startLoadReporter(ctx, cl, log, rec, srv, backend)
	defer stopStats()

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case serveErr = <-served:
		served = nil
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.stopTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn().Dur("timeout", o.stopTimeout).Msg("requests still running after the stop timeout were cut")
	}
	if served != nil {
		if err := <-served; !errors.Is(err, server.ErrServerClosed) && serveErr == nil {
			serveErr = err
		}
	}
	if serveErr != nil && !errors.Is(serveErr, server.ErrServerClosed) {
		return fmt.Errorf("router %s stopped serving: %w", node.Name, serveErr)
	}
	log.Info().Msg("stopped")
	return nil
}

// registrationTTL is the lease of a router's registration in the catalog.
const registrationTTL = 10 * time.Second

// register keeps the router registered in the catalog (routers/<name>)
// until ctx ends, registering again whenever the lease is lost; it
// revokes the registration when ctx ends.
func register(ctx context.Context, b *server.ClusterBackend, node config.Node, log zerolog.Logger) {
	for ctx.Err() == nil {
		cat, err := b.Catalog()
		var reg *catalog.Registration
		if err == nil {
			reg, err = cat.RegisterRouter(ctx, node.Name, node.Addr, registrationTTL)
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn().Err(err).Msg("cannot register the router in the catalog; retrying")
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = reg.Close(cctx)
			cancel()
			return
		case <-reg.Done():
			log.Warn().Msg("router registration lost; registering again")
		}
	}
}

// parsedOptions is getCmdLineOpts's "parsed" document: the options as
// mongos understood them, in MongoDB's option layout where one exists.
func parsedOptions(o flags, node config.Node) map[string]any {
	p := map[string]any{
		"config":    o.cfgPath,
		"name":      node.Name,
		"systemLog": map[string]any{"path": node.LogFile},
	}
	if host, port, err := net.SplitHostPort(node.Addr); err == nil {
		n, _ := strconv.Atoi(port)
		p["net"] = map[string]any{"bindIp": host, "port": int32(n)}
	}
	return p
}
