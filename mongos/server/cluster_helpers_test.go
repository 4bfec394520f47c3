package server

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/catalog/catalogtest"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/shardclient"
	shardserver "github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

// The parts of an in-process cluster, all real: an embedded etcd as config
// server (catalogtest), shardd servers over Pebble stores on gRPC
// listeners of 127.0.0.1 (servertest), a ClusterBackend with the wire
// server in front of it, and the official Go driver. Everything stops at
// cleanup.

// startCatalog starts an embedded etcd in a temporary directory and
// returns it with a catalog over it.
func startCatalog(t *testing.T) (*catalogtest.Server, *catalog.Catalog) {
	t.Helper()
	etcd, err := catalogtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	ecli, err := etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ecli.Close() })
	return etcd, catalog.New(ecli)
}

// startShardd serves a shardd over a fresh Pebble store on 127.0.0.1:0.
func startShardd(t testing.TB) *servertest.Member[*shardserver.Server] {
	t.Helper()
	return servertest.Start(t, func(e *storage.Engine) (*shardserver.Server, error) {
		return shardserver.New(shardserver.Options{Engine: e, Logger: logging.Nop()})
	}, servertest.Options{})
}

// serveShardd serves a shardd (startShardd) and returns its gRPC address.
func serveShardd(t testing.TB) string {
	t.Helper()
	return startShardd(t).Addr
}

// serveShards serves one shardd per name and returns, by name, their gRPC
// addresses and a client straight to each.
func serveShards(t *testing.T, names ...string) (map[string]string, map[string]*shardclient.Client) {
	t.Helper()
	addrs, direct := map[string]string{}, map[string]*shardclient.Client{}
	for _, name := range names {
		m := startShardd(t)
		addrs[name], direct[name] = m.Addr, m.Client
	}
	return addrs, direct
}

// startRouter serves a router (ClusterBackend over etcd, logging to log)
// on 127.0.0.1:0 and returns its backend and a driver connected to it.
func startRouter(t *testing.T, etcd *catalogtest.Server, log zerolog.Logger) (*ClusterBackend, *mongo.Client) {
	t.Helper()
	b := NewClusterBackend([]string{etcd.Endpoint}, log)
	t.Cleanup(func() { b.Close() })
	_, addr := startServer(t, Options{Logger: log, Backend: b})
	return b, connectDriver(t, addr)
}

// testCtx is a context that ends after 30 s or with the test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
