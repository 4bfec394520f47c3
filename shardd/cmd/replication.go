package cmd

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/opstats"
	"github.com/psdb/psdb/shardd/repl"
	"github.com/psdb/psdb/shardd/replset"
	"github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/storage"
)

// replication is the member's replica-set machinery: the Replication
// service, the role machine (replset.Member), its etcd client and the
// oplog retention policy.
type replication struct {
	svc       *server.Replication
	member    *replset.Member
	etcd      *clientv3.Client
	eng       *storage.Engine
	retention storage.RetentionPolicy
	log       zerolog.Logger
	// onPrimary runs when the member becomes primary; set once the
	// document server exists (setOnPrimary).
	onPrimary *atomic.Pointer[func()]
}

// setOnPrimary sets what runs each time the member becomes primary.
func (r *replication) setOnPrimary(f func()) { r.onPrimary.Store(&f) }

// newReplication builds the member's role machine over the config
// servers of cluster.yaml. The etcd client connects in the background:
// until it does, the member stays secondary and pulls from nobody.
func newReplication(o Options, n config.Node, eng *storage.Engine, log zerolog.Logger, rec *opstats.Recorder) (*replication, error) {
	sh, ok := o.Cluster.Shard(n.Shard)
	if !ok || len(sh.Members) == 0 {
		return nil, fmt.Errorf("shardd %s: shard %q has no members in cluster.yaml", n.Name, n.Shard)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Cluster.EtcdEndpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("shardd %s: etcd client for %v: %w", n.Name, o.Cluster.EtcdEndpoints(), err)
	}
	peers := make([]replset.Peer, 0, len(sh.Members))
	for _, m := range sh.Members {
		peers = append(peers, replset.Peer{Name: m.Name, Addr: m.Addr})
	}
	rc := o.Cluster.Replication
	r := &replication{onPrimary: new(atomic.Pointer[func()])}
	member, err := replset.New(replset.Options{
		Set: n.Shard, Self: n.Name, Addr: n.Addr, Peers: peers,
		Engine: eng, DataDir: n.DataDir,
		Leases:          catalog.New(cli, catalog.WithLogger(log)),
		LeaseTTL:        rc.LeaseTTL,
		ElectionBackoff: rc.ElectionBackoff,
		Logger:          log,
		OnApply:         func(_ int, d time.Duration) { rec.Record(opstats.OpReplApply, d) },
		OnPrimary: func(uint64) {
			if f := r.onPrimary.Load(); f != nil {
				(*f)()
			}
		},
	})
	if err != nil {
		cli.Close()
		return nil, err
	}
	svc, err := server.NewReplication(server.ReplicationOptions{Engine: eng, Coordinator: member, Logger: log})
	if err != nil {
		cli.Close()
		return nil, err
	}
	member.Attach(svc)
	r.svc, r.member, r.etcd, r.eng, r.log = svc, member, cli, eng, log
	r.retention = repl.RetentionPolicyOf(o.Cluster.OplogRetentionOf(n.Shard))
	return r, nil
}

// run runs the role machine and the oplog retention loop until ctx ends;
// on the way out the member gives up the primary lease, so stop it before
// the gRPC server.
func (r *replication) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.member.Run(ctx) })
	g.Go(func() error {
		err := repl.RunOplogRetention(ctx, repl.RetentionOptions{Engine: r.eng, Policy: r.retention, Logger: r.log})
		if ctx.Err() != nil {
			return nil
		}
		return err
	})
	return g.Wait()
}

func (r *replication) close() { _ = r.etcd.Close() }
