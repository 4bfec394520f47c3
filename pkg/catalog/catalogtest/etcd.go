// Package catalogtest starts a real etcd server in-process for tests of
// code that uses the catalog. It owns nothing but the test server's
// lifetime and must never be imported by non-test code paths of a binary.
package catalogtest

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Server is a single-member etcd running in this process. Safe for
// concurrent use.
type Server struct {
	Etcd *embed.Etcd
	// Endpoint is the client URL (http://127.0.0.1:port).
	Endpoint string
}

// MaxTxnOps is the --max-txn-ops the test server allows (what configsvr
// must allow too: catalog.RequiredMaxTxnOps).
const MaxTxnOps = 4096

// Start starts etcd with its data in dir, on free ports of 127.0.0.1,
// with a 100 ms heartbeat and 500 ms election timeout (so a 1 s lease TTL
// is accepted and expires promptly). It waits until the server is ready.
func Start(dir string) (*Server, error) {
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = dir
	cfg.LogLevel = "fatal" // Close logs benign "server closed" errors
	cfg.TickMs = 100
	cfg.ElectionMs = 500
	cfg.MaxTxnOps = MaxTxnOps
	cfg.MaxRequestBytes = 8 << 20
	cfg.UnsafeNoFsync = true // test data; fsync costs seconds on a busy disk
	local, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls = []url.URL{*local}
	cfg.AdvertiseClientUrls = []url.URL{*local}
	cfg.ListenPeerUrls = []url.URL{*local}
	cfg.AdvertisePeerUrls = []url.URL{*local}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start test etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		e.Close()
		return nil, errors.New("test etcd did not become ready within 20s")
	}
	addr := e.Clients[0].Addr().String()
	return &Server{Etcd: e, Endpoint: "http://" + addr}, nil
}

// Close stops the server.
func (s *Server) Close() { s.Etcd.Close() }

// Client returns a new client of the server; the caller closes it.
func (s *Server) Client() (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", s.Endpoint, err)
	}
	return cli, nil
}

var seq atomic.Int64

// Prefix returns a root prefix unique to this test (and call), so tests
// can share one server: "/t/<test name>-<n>/psdb".
func Prefix(tb testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name())
	return fmt.Sprintf("/t/%s-%d/psdb", name, seq.Add(1))
}
