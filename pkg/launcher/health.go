package launcher

import (
	"context"
	"fmt"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/pkg/wire"
)

// HealthCheck reports whether node serves: nil when healthy, else why not.
// It must return by the time ctx ends. Implementations for a role are
// plugged into Options.Health (shardd: gRPC health; mongos: a wire-protocol
// ping).
type HealthCheck func(ctx context.Context, node config.Node) error

// InfoFunc describes a healthy node for the INFO column of the status table,
// e.g. "primary term 7" or "secondary lag 12ms" for a shard member. It must
// return by the time ctx ends; an error leaves the column empty.
type InfoFunc func(ctx context.Context, node config.Node) (string, error)

// DefaultInfo returns the built-in InfoFuncs by role for the nodes of cl:
// a shard member's replica-set state (ShardInfo).
func DefaultInfo(cl *config.Cluster) map[config.Role]InfoFunc {
	return map[config.Role]InfoFunc{config.RoleShard: ShardInfo(cl)}
}

// ShardInfo describes a shard member of cl from its replica-set status:
// "PRIMARY term 3 (3, 1200)" or "SECONDARY lag 12ms from rs0a (3, 1198)".
// The lag of a secondary is what the primary reports for it (the age of
// the oldest entry it lacks), so ShardInfo asks the primary too.
func ShardInfo(cl *config.Cluster) InfoFunc {
	return func(ctx context.Context, node config.Node) (string, error) { return shardInfo(ctx, cl, node) }
}

func shardInfo(ctx context.Context, cl *config.Cluster, node config.Node) (string, error) {
	st, err := shardclient.ReplicationStatus(ctx, node.Addr)
	if err != nil {
		return "", err
	}
	at := fmt.Sprintf("(%d, %d)", st.GetApplied().GetTerm(), st.GetApplied().GetIndex())
	switch st.GetState() {
	case "PRIMARY":
		return fmt.Sprintf("PRIMARY term %d %s", st.GetTerm(), at), nil
	case "SECONDARY":
		lag := "lag ?"
		if src := st.GetSyncSource(); src != "" {
			if addr := memberAddr(cl, node.Shard, src); addr != "" {
				if pst, err := shardclient.ReplicationStatus(ctx, addr); err == nil {
					for _, m := range pst.GetMembers() {
						if m.GetName() == node.Name {
							lag = fmt.Sprintf("lag %dms", m.GetLagMs())
						}
					}
				}
			}
			return fmt.Sprintf("SECONDARY %s from %s %s", lag, src, at), nil
		}
		return "SECONDARY (no primary) " + at, nil
	}
	return st.GetState() + " " + at, nil
}

// memberAddr finds the address of member name of shard in cl.
func memberAddr(cl *config.Cluster, shard, name string) string {
	sh, _ := cl.Shard(shard)
	for _, m := range sh.Members {
		if m.Name == name {
			return m.Addr
		}
	}
	return ""
}

// DefaultHealthChecks returns the built-in checks by role: etcd status for
// config servers, the gRPC health service for shard members, a wire-protocol
// ping for routers.
func DefaultHealthChecks() map[config.Role]HealthCheck {
	return map[config.Role]HealthCheck{
		config.RoleConfigServer: ConfigServerHealth,
		config.RoleShard:        ShardHealth,
		config.RoleRouter:       RouterHealth,
	}
}

// RouterHealth: the router answers a wire-protocol {ping: 1}.
func RouterHealth(ctx context.Context, node config.Node) error {
	return wire.Ping(ctx, node.Addr)
}

// ShardHealth: the shardd member has opened its store (its ready file names
// its live process) and its gRPC health service reports SERVING.
func ShardHealth(ctx context.Context, node config.Node) error {
	if err := checkReady(node); err != nil {
		return err
	}
	return shardclient.CheckHealth(ctx, node.Addr)
}

// ConfigServerHealth: the member has finished its start-up (its ready file
// names its live process, see MarkReady) and EtcdHealth passes.
func ConfigServerHealth(ctx context.Context, node config.Node) error {
	if err := checkReady(node); err != nil {
		return err
	}
	return EtcdHealth(ctx, node)
}

// EtcdHealth asks the config server member's etcd for its status on its
// client address: healthy when the member answers, reports no errors and
// knows a leader (so a member without quorum is not healthy).
func EtcdHealth(ctx context.Context, node config.Node) error {
	ep := "http://" + node.Addr
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{ep},
		DialTimeout: time.Second,
		Logger:      zap.NewNop(),
		Context:     ctx,
	})
	if err != nil {
		return fmt.Errorf("etcd client for %s: %w", ep, err)
	}
	defer cli.Close()
	st, err := cli.Status(ctx, ep)
	if err != nil {
		return fmt.Errorf("etcd status of %s: %w", ep, err)
	}
	if len(st.Errors) > 0 {
		return fmt.Errorf("etcd %s reports: %v", ep, st.Errors)
	}
	if st.Leader == 0 {
		return fmt.Errorf("etcd %s has no leader (no quorum)", ep)
	}
	return nil
}

// TCPHealth succeeds when node.Addr accepts a TCP connection.
func TCPHealth(ctx context.Context, node config.Node) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", node.Addr)
	if err != nil {
		return err
	}
	return c.Close()
}
