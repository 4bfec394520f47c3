// Package cmd runs one shardd process: it resolves the member in
// cluster.yaml, claims and opens its data directory, serves gRPC on the
// member's address and shuts down in order on a signal. It is the body of
// the shardd binary, kept in a package so tests and tools can reach its
// pieces (StorePath, the sentinels).
//
// It must never serve a store it could not open cleanly: a foreign,
// corrupt, or missing-but-expected store stops the process with a message.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/launcher"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/storage"
	"github.com/psdb/psdb/shardd/versions"
)

// DefaultStopTimeout bounds the graceful part of a shutdown.
const DefaultStopTimeout = 10 * time.Second

// Start-up errors, testable with errors.Is.
var (
	// ErrNotShardMember: --name is a node of cluster.yaml but not a shard
	// member.
	ErrNotShardMember = errors.New("node is not a shard member")
	// ErrAddrInUse: the member's address is bound by another process.
	ErrAddrInUse = errors.New("address already in use")
	// ErrStoreMissing: the data directory says this member has stored data
	// before, but the store is gone or empty.
	ErrStoreMissing = errors.New("store missing")
)

// storeDir is the store's directory inside the member's data directory;
// the data directory itself also holds config.StampFile and storeMarker.
const storeDir = "store"

// storeMarker is written (and synced) in the data directory once the store
// was opened for the first time. Its presence means "a store is expected":
// a later start that finds the store missing or empty refuses to serve
// rather than start empty and serve wrong (missing) data.
const storeMarker = "SHARDD_STORE"

// StorePath returns the directory of the Pebble store of a member whose
// data directory is dataDir.
func StorePath(dataDir string) string { return filepath.Join(dataDir, storeDir) }

// Options configure Run.
type Options struct {
	Cluster *config.Cluster
	Name    string
	// StopTimeout bounds GracefulStop on shutdown (default
	// DefaultStopTimeout); calls still running after it are cut.
	StopTimeout time.Duration
}

// ShownError is an error that was already logged to the console; main
// must not print it again.
type ShownError struct{ error }

func (e ShownError) Unwrap() error { return e.error }

// Run runs the member until ctx ends or SIGTERM/SIGINT arrives. The error
// of a failed start-up has been logged (file and console) and is returned
// as a ShownError.
func Run(ctx context.Context, o Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	n, err := o.Cluster.Node(o.Name)
	if err != nil {
		return err
	}
	if n.Role != config.RoleShard {
		return fmt.Errorf("%w: %q is a %s node; --name must be one of the shard members", ErrNotShardMember, n.Name, n.Role)
	}
	log, closer, err := logging.New(o.Cluster.LogOptions(n, launcher.ChildConsole(n)), n.Name, string(n.Role))
	if err != nil {
		return err
	}
	defer closer.Close()
	log = logging.WithShard(log, n.Shard)
	if err := serve(ctx, o, n, log); err != nil {
		log.Error().Err(err).Msg("shardd failed")
		return ShownError{err}
	}
	return nil
}

func serve(ctx context.Context, o Options, n config.Node, log zerolog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()

	if err := o.Cluster.ClaimDataDir(n.DataDir); err != nil {
		return fmt.Errorf("shardd %s: %w; point dataDir (or runDir) at another directory", n.Name, err)
	}
	// Bind the address before opening the store, so a second copy of the
	// member fails on the port before it touches the data.
	ln, err := net.Listen("tcp", n.Addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("shardd %s: address %s: %w; stop the process using it (another shardd?) or change the member's addr in cluster.yaml", n.Name, n.Addr, ErrAddrInUse)
		}
		return fmt.Errorf("shardd %s: listen on %s: %w", n.Name, n.Addr, err)
	}
	defer ln.Close()

	eng, err := openStore(n, log)
	if err != nil {
		return err
	}
	rec := newOpStats()
	rs, err := newReplication(o, n, eng, log, rec)
	if err != nil {
		eng.Close()
		return err
	}
	defer rs.close()
	// Shard versions are checked against the catalog through the same etcd client.
	// A write's catch-up with the catalog is bounded by two lease TTLs: a
	// member that cannot read etcd for that long cannot renew its lease
	// either, and its writers should be refused (and retried elsewhere)
	// rather than wait for the default bound.
	vc, err := versions.New(versions.Options{Catalog: catalog.New(rs.etcd, catalog.WithLogger(log)), Shard: n.Shard, Logger: log,
		RefreshTimeout: 2 * o.Cluster.Replication.LeaseTTL, Term: eng.Term})
	if err != nil {
		eng.Close()
		return err
	}
	defer vc.Close()
	srv, err := server.New(server.Options{Engine: eng, Logger: log, CursorTimeout: o.Cluster.Router.CursorTimeout, Replication: rs.svc, Versions: vc})
	if err != nil {
		eng.Close()
		return err
	}
	// A new primary resumes the range deletions its predecessor recorded.
	rs.setOnPrimary(srv.ResumeRangeDeletions)
	// The role machine is owned here: it stops (giving up the primary
	// lease) before the gRPC server and the store.
	memberCtx, stopMember := context.WithCancel(context.Background())
	defer stopMember()
	memberDone := make(chan struct{})
	go func() {
		defer close(memberDone)
		if err := rs.run(memberCtx); err != nil {
			log.Error().Err(err).Msg("replica-set member stopped")
		}
	}()
	g := srv.NewGRPCServer(grpc.ChainUnaryInterceptor(server.OpStatsInterceptor(rec)))
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	srv.SetServing(true)
	if err := launcher.MarkReady(n); err != nil {
		log.Warn().Err(err).Msg("cannot write the ready file")
	}
	defer launcher.ClearReady(n)
	stopStats := startLoadReporter(ctx, o, n, rs, srv, rec)
	defer stopStats()
	log.Info().Str("addr", n.Addr).Str("data", n.DataDir).Dur(logging.FieldDur, time.Since(start)).Msg("serving")

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case serveErr = <-served:
		serveErr = fmt.Errorf("grpc server stopped: %w", serveErr)
	}
	srv.SetServing(false)
	stopStats()  // its gauges read the store: stop it before the store closes
	stopMember() // step down first, so another member is elected at once
	<-memberDone
	rs.svc.Stop() // end the oplog streams, which never end by themselves
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(o.StopTimeout):
		log.Warn().Dur("timeout", o.StopTimeout).Msg("calls still running after the stop timeout; cutting them")
		g.Stop()
		<-stopped
	}
	srv.Close()
	if err := eng.Close(); err != nil {
		return errors.Join(serveErr, fmt.Errorf("close store: %w", err))
	}
	if serveErr == nil {
		log.Info().Msg("stopped")
	}
	return serveErr
}

// openStore opens the member's store, refusing a store that is missing or
// empty where one is expected (storeMarker) and one that is corrupt or not
// a PSDB store.
func openStore(n config.Node, log zerolog.Logger) (*storage.Engine, error) {
	dir := StorePath(n.DataDir)
	marker := filepath.Join(n.DataDir, storeMarker)
	_, merr := os.Stat(marker)
	expected := merr == nil
	if expected {
		ents, err := os.ReadDir(dir)
		if (err != nil && errors.Is(err, os.ErrNotExist)) || (err == nil && len(ents) == 0) {
			return nil, fmt.Errorf("shardd %s: %w: %s held this member's data (see %s) but is missing or empty; refusing to start with an empty store. Restore the directory, or remove %s to start this member afresh", n.Name, ErrStoreMissing, dir, marker, n.DataDir)
		}
		if err != nil {
			return nil, fmt.Errorf("shardd %s: read store directory: %w", n.Name, err)
		}
	}
	eng, err := storage.Open(dir, storage.Options{Logger: log})
	if err != nil {
		switch {
		case errors.Is(err, storage.ErrCorrupt):
			return nil, fmt.Errorf("shardd %s: the store in %s is damaged, refusing to serve it: %w. Restore it from a backup or remove %s to start this member afresh", n.Name, dir, err, n.DataDir)
		case errors.Is(err, storage.ErrNotStore):
			return nil, fmt.Errorf("shardd %s: %s holds something other than a PSDB store: %w. Point dataDir at another directory", n.Name, dir, err)
		}
		return nil, fmt.Errorf("shardd %s: %w", n.Name, err)
	}
	if !expected {
		if err := writeMarker(n.DataDir, marker); err != nil {
			eng.Close()
			return nil, fmt.Errorf("shardd %s: %w", n.Name, err)
		}
	}
	return eng, nil
}

// writeMarker creates the marker file and syncs it and its directory.
func writeMarker(dataDir, marker string) error {
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", marker, err)
	}
	if _, err := f.WriteString("store: " + storeDir + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", marker, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", marker, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", marker, err)
	}
	d, err := os.Open(dataDir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dataDir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dataDir, err)
	}
	return nil
}
