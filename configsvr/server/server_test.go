package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
)

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func testCluster(t *testing.T) *config.Cluster {
	t.Helper()
	p := freePorts(t, 4)
	y := fmt.Sprintf(`name: unit
runDir: %s
configServers:
  - {name: cfg0, clientAddr: "127.0.0.1:%d", peerAddr: "127.0.0.1:%d"}
shards:
  - name: rs0
    members:
      - {name: rs0a, addr: "127.0.0.1:%d"}
routers:
  - {name: mongos0, addr: "127.0.0.1:%d"}
`, t.TempDir(), p[0], p[1], p[2], p[3])
	cl, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestStartRestartAndRefusals(t *testing.T) {
	cl := testCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := Options{Cluster: cl, Name: "cfg0", Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}

	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.etcd.Config(); got.TickMs != 100 || got.ElectionMs != 500 || got.InitialClusterToken != "unit" {
		t.Errorf("etcd tick %d election %d token %q", got.TickMs, got.ElectionMs, got.InitialClusterToken)
	}
	info, err := catalog.New(s.Client()).GetCluster(ctx)
	if err != nil || info.Name != "unit" {
		t.Fatalf("cluster record %+v, %v", info, err)
	}
	if _, err := s.Client().Put(ctx, "/unit/k", "v"); err != nil {
		t.Fatal(err)
	}
	// The catalog's largest Txn (a pre-split collection) fits.
	ops := make([]clientv3.Op, catalog.RequiredMaxTxnOps)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("/unit/chunk/%05d", i), strings.Repeat("x", 512))
	}
	if _, err := s.Client().Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatalf("txn of %d ops: %v", len(ops), err)
	}

	// While it runs: a second member with the same addresses is refused.
	if _, err := Start(ctx, opts); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("second start: %v, want ErrAddrInUse", err)
	}
	s.Close()

	// Restart with the data.
	s, err = Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Client().Get(ctx, "/unit/k")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("key after restart: %v, %v", r, err)
	}
	if info2, err := catalog.New(s.Client()).GetCluster(ctx); err != nil || info2.ID != info.ID {
		t.Fatalf("cluster record after restart %+v, %v", info2, err)
	}
	s.Close()

	for _, tc := range []struct {
		name string
		want error
	}{
		{"nosuch", config.ErrUnknownNode},
		{"rs0a", ErrNotConfigServer},
	} {
		o := opts
		o.Name = tc.name
		if _, err := Start(ctx, o); !errors.Is(err, tc.want) {
			t.Errorf("Start(%s): %v, want %v", tc.name, err, tc.want)
		}
	}
}
