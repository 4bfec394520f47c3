package catalog

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psdb/psdb/pkg/catalog/catalogtest"
)

// One etcd for the whole package; each test uses its own root prefix.
var (
	testEtcd *catalogtest.Server
	testCli  *clientv3.Client
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	dir, err := os.MkdirTemp("", "catalog-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testEtcd, err = catalogtest.Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testCli, err = testEtcd.Client()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testCli.Close()
	testEtcd.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newTestCatalog(t testing.TB) *Catalog {
	return New(testCli, WithPrefix(catalogtest.Prefix(t)))
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
