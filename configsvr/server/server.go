// Package server runs one member of the config server: an embedded etcd
// (go.etcd.io/etcd/server/v3/embed) configured from cluster.yaml, followed by
// the cluster bootstrap that registers the shards of cluster.yaml in the
// catalog.
//
// It owns the member's data directory: the etcd data under <data_dir>/etcd
// and the cluster stamp file <data_dir>/PSDB_CLUSTER (config.ClaimDataDir), which ties the
// directory to one cluster name so that a data directory of another cluster
// is refused instead of being served. It never builds catalog keys itself
// (pkg/catalog is the only code that knows etcd's key schema) and never
// exits the process: errors are returned to package main.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
)

// Errors returned by Start. They are wrapped with the node and address they
// concern; test them with errors.Is.
var (
	// ErrAddrInUse: the client or peer address of the member is already
	// bound by another process.
	ErrAddrInUse = errors.New("address already in use")
	// ErrForeignDataDir: the data directory is stamped with another cluster
	// name (config.ClaimDataDir's error).
	ErrForeignDataDir = config.ErrForeignDataDir
	// ErrNotConfigServer: the --name given is a node of cluster.yaml, but not
	// a config server.
	ErrNotConfigServer = errors.New("node is not a config server")
	// ErrNotReady: etcd did not become ready before the deadline (usually no
	// quorum: a majority of the members is not running).
	ErrNotReady = errors.New("config server not ready")
)

// maxRequestBytes is etcd's request size limit for the config server: room
// for a Txn of catalog.RequiredMaxTxnOps chunk records with large shard-key
// bounds (etcd's default is 1.5 MiB).
const maxRequestBytes = 8 << 20

// DefaultReadyTimeout bounds the wait for etcd to be ready (with 3 members,
// until a majority is up) and for the bootstrap.
const DefaultReadyTimeout = 60 * time.Second

// Options configure one config server member.
type Options struct {
	Cluster *config.Cluster
	// Name is the member's node name in Cluster.ConfigServers.
	Name string
	// Logger receives our lines and etcd's (at warn and above unless the
	// logger is at debug level).
	Logger zerolog.Logger
	// ReadyTimeout: see DefaultReadyTimeout (used when zero).
	ReadyTimeout time.Duration
}

// Server is one running config server member. Close stops it. Safe for
// concurrent use.
type Server struct {
	node    config.Node
	closing *atomic.Bool // see zerologCore
	etcd    *embed.Etcd
	cli     *clientv3.Client
	log     zerolog.Logger
}

// Start validates the member's configuration, checks its addresses and data
// directory, starts embedded etcd, waits until it is ready (or ctx is done,
// or ReadyTimeout passes) and bootstraps the catalog. On any error
// everything started so far is stopped again.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Cluster == nil {
		return nil, errors.New("config server: no cluster configuration")
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	cl := opts.Cluster
	node, err := cl.Node(opts.Name)
	if err != nil {
		return nil, err
	}
	if node.Role != config.RoleConfigServer {
		names := make([]string, len(cl.ConfigServers))
		for i, cs := range cl.ConfigServers {
			names[i] = cs.Name
		}
		return nil, fmt.Errorf("%w: %q is a %s node of cluster %q; --name must be one of the configServers: %s", ErrNotConfigServer, node.Name, node.Role, cl.Name, strings.Join(names, ", "))
	}
	log := opts.Logger

	if err := checkFree(node.Name, "client", node.Addr); err != nil {
		return nil, err
	}
	if err := checkFree(node.Name, "peer", node.PeerAddr); err != nil {
		return nil, err
	}
	if err := cl.ClaimDataDir(node.DataDir); err != nil {
		return nil, fmt.Errorf("config server %s: %w; point dataDir (or runDir) at another directory, or remove it to start afresh", node.Name, err)
	}

	closing := new(atomic.Bool)
	ecfg, err := etcdConfig(cl, node, log, closing)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		if isAddrInUse(err) {
			return nil, fmt.Errorf("config server %s: %w (%v); stop the process using it or change clientAddr/peerAddr in cluster.yaml", node.Name, ErrAddrInUse, err)
		}
		return nil, fmt.Errorf("start embedded etcd for %s (data %s): %w", node.Name, ecfg.Dir, err)
	}
	s := &Server{node: node, closing: closing, etcd: e, log: log}
	if err := s.waitReady(ctx, opts.ReadyTimeout, len(cl.ConfigServers)); err != nil {
		s.closeEtcd()
		return nil, err
	}
	log.Info().Dur("dur", time.Since(start)).Str("client_url", clientURL(node.Addr)).Msg("etcd ready")

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{clientURL(node.Addr)},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		s.closeEtcd()
		return nil, fmt.Errorf("config server %s: etcd client: %w", node.Name, err)
	}
	s.cli = cli

	bctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	if err := catalog.Bootstrap(bctx, cli, cl.Name, shardSpecs(cl), catalog.WithLogger(log)); err != nil {
		s.Close()
		return nil, fmt.Errorf("config server %s: bootstrap of cluster %q: %w", node.Name, cl.Name, err)
	}
	bs, err := catalog.New(cli, catalog.WithLogger(log)).ApplyBalancerConfig(bctx, catalog.BalancerConfig{
		ChunkSizeBytes: cl.Sharding.ChunkSize.Bytes(),
		Threshold:      cl.Sharding.ImbalanceThreshold,
		EnabledIfNew:   cl.Sharding.BalancerEnabled,
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("config server %s: store the balancer settings of cluster.yaml: %w", node.Name, err)
	}
	log.Info().Bool("balancerEnabled", bs.Enabled).Int64("chunkSizeBytes", bs.ChunkSizeBytes).Int("threshold", bs.Threshold).Msg("balancer settings")
	log.Info().Dur("dur", time.Since(start)).Str("cluster", cl.Name).Msg("ready")
	return s, nil
}

// waitReady waits for etcd's ReadyNotify, a fatal etcd error, ctx or the
// deadline, whichever comes first.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration, members int) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.etcd.Server.ReadyNotify():
		return nil
	case err := <-s.etcd.Err():
		return fmt.Errorf("config server %s: etcd failed while starting: %w", s.node.Name, err)
	case <-s.etcd.Server.StopNotify():
		return fmt.Errorf("config server %s: etcd stopped while starting; see the log above", s.node.Name)
	case <-ctx.Done():
		return fmt.Errorf("config server %s: start interrupted: %w", s.node.Name, ctx.Err())
	case <-t.C:
		hint := ""
		if members > 1 {
			hint = fmt.Sprintf("; with %d config servers a majority (%d) must be running: start the others", members, members/2+1)
		}
		return fmt.Errorf("%w: %s: etcd not ready after %s%s", ErrNotReady, s.node.Name, timeout, hint)
	}
}

// Client returns an etcd client connected to this member. It is closed by
// Close.
func (s *Server) Client() *clientv3.Client { return s.cli }

// Node returns the member's node description.
func (s *Server) Node() config.Node { return s.node }

// Err reports a fatal error of the embedded etcd after it started (for
// example its listener failed). The process should exit when it fires.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the client and etcd; it blocks until etcd has stopped. Safe to
// call once.
func (s *Server) Close() error {
	if s.cli != nil {
		_ = s.cli.Close()
	}
	s.closeEtcd()
	s.log.Info().Msg("stopped")
	return nil
}

// etcdStopGrace bounds etcd's graceful stop (a leader first transfers
// its leadership); past it the server stops hard, as after a crash, which
// the other members survive by electing a leader.
const etcdStopGrace = 2 * time.Second

func (s *Server) closeEtcd() {
	s.closing.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.etcd.Close()
	}()
	select {
	case <-done:
		return
	case <-time.After(etcdStopGrace):
	}
	s.log.Warn().Dur("after", etcdStopGrace).Msg("etcd did not stop gracefully; stopping it hard")
	s.etcd.Server.HardStop()
	select {
	case <-done:
	case <-time.After(etcdStopGrace):
		s.log.Warn().Msg("etcd still stopping; exiting anyway (its data is synced)")
	}
}

func clientURL(addr string) string { return "http://" + addr }

// shardSpecs is cluster.yaml's shards as the catalog's bootstrap takes them.
func shardSpecs(cl *config.Cluster) []catalog.ShardSpec {
	out := make([]catalog.ShardSpec, 0, len(cl.Shards))
	for _, sh := range cl.Shards {
		spec := catalog.ShardSpec{Name: sh.Name}
		for _, m := range sh.Members {
			spec.Members = append(spec.Members, catalog.MemberSpec{Name: m.Name, Addr: m.Addr})
		}
		out = append(out, spec)
	}
	return out
}

// etcdConfig builds the embed configuration of node. The cluster name is the
// initial cluster token, so members of two clusters never join each other.
// Tick and election timeouts come from cluster.yaml: DESIGN §4 needs a 1 s
// primary lease TTL, and etcd refuses TTLs below 1.5 election timeouts.
func etcdConfig(cl *config.Cluster, node config.Node, log zerolog.Logger, closing *atomic.Bool) (*embed.Config, error) {
	cfg := embed.NewConfig()
	cfg.Name = node.Name
	cfg.Dir = filepath.Join(node.DataDir, "etcd")
	curl, err := url.Parse(clientURL(node.Addr))
	if err != nil {
		return nil, fmt.Errorf("config server %s: client_addr %q: %w", node.Name, node.Addr, err)
	}
	purl, err := url.Parse("http://" + node.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("config server %s: peer_addr %q: %w", node.Name, node.PeerAddr, err)
	}
	cfg.ListenClientUrls = []url.URL{*curl}
	cfg.AdvertiseClientUrls = []url.URL{*curl}
	cfg.ListenPeerUrls = []url.URL{*purl}
	cfg.AdvertisePeerUrls = []url.URL{*purl}

	cfg.InitialCluster = cl.EtcdInitialCluster()
	cfg.InitialClusterToken = cl.Name
	cfg.ClusterState = embed.ClusterStateFlagNew
	if _, err := os.Stat(filepath.Join(cfg.Dir, "member")); err == nil {
		// A restart: etcd reads membership from its WAL.
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}

	if hb := cl.Replication.EtcdHeartbeat; hb > 0 {
		cfg.TickMs = uint(hb / time.Millisecond)
	}
	if et := cl.Replication.EtcdElectionTimeout; et > 0 {
		cfg.ElectionMs = uint(et / time.Millisecond)
	}
	// The catalog writes a new collection's initial chunks in one Txn.
	cfg.MaxTxnOps = max(cfg.MaxTxnOps, uint(catalog.RequiredMaxTxnOps))
	cfg.MaxRequestBytes = max(cfg.MaxRequestBytes, maxRequestBytes)
	// Keep the history of one hour for watchers (the chunk-map caches
	// resume from their last revision) and compact older revisions.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"

	min := zapcore.WarnLevel
	if log.GetLevel() <= zerolog.DebugLevel {
		min = zapcore.InfoLevel
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newEtcdLogger(log, min, closing))
	return cfg, nil
}

// checkFree fails with ErrAddrInUse when addr is already bound, so the user
// gets one clear line instead of etcd's start-up noise. etcd binding the
// address afterwards is still checked (another process may race us).
func checkFree(node, which, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if isAddrInUse(err) {
			return fmt.Errorf("config server %s: %s address %s: %w; stop the process using it (another config server or etcd?) or change %sAddr in cluster.yaml", node, which, addr, ErrAddrInUse, which)
		}
		return fmt.Errorf("config server %s: cannot listen on %s address %s: %w", node, which, addr, err)
	}
	return ln.Close()
}

func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE)
}
