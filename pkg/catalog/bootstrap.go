package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MemberSpec is one member of a shard as cluster.yaml describes it.
type MemberSpec = Member

// ShardSpec is one shard as cluster.yaml describes it.
type ShardSpec struct {
	Name    string
	Members []MemberSpec
}

// ClusterInfo is the cluster record written by the first Bootstrap.
type ClusterInfo struct {
	Name      string
	ID        string
	CreatedAt time.Time
}

// GetCluster returns the cluster record; ErrNotFound before the first
// Bootstrap.
func (c *Catalog) GetCluster(ctx context.Context) (ClusterInfo, error) {
	var r clusterRecord
	if _, err := c.getJSON(ctx, c.clusterKey(), &r); err != nil {
		return ClusterInfo{}, err
	}
	t, _ := time.Parse(time.RFC3339, r.CreatedAt)
	return ClusterInfo{Name: r.Name, ID: r.ID, CreatedAt: t}, nil
}

// Bootstrap registers a cluster description in the catalog.
//
//   - First start (no cluster record): the cluster name and every shard
//     with its members (state active) are written in one Txn.
//   - Later starts with the same description: nothing is written.
//   - A description that conflicts with the catalog — another cluster
//     name, a shard whose members (names or addresses, order ignored)
//     differ, a shard in the description that the catalog does not know
//     (removed, or added to the file after the first start: use addShard)
//     — returns ErrClusterMismatch listing every difference, and nothing
//     is changed. Shards in the catalog but not in the description (added
//     later with addShard) are not a conflict.
//
// Concurrent Bootstraps (three config servers starting together) are safe:
// the Txn compares what was read, and a loser re-reads and then finds the
// same description already registered.
func Bootstrap(ctx context.Context, cli *clientv3.Client, clusterName string, shards []ShardSpec, opts ...Option) error {
	return New(cli, opts...).Bootstrap(ctx, clusterName, shards)
}

// Bootstrap is the method form of the package-level Bootstrap.
func (c *Catalog) Bootstrap(ctx context.Context, clusterName string, shards []ShardSpec) error {
	if err := validName("cluster", clusterName); err != nil {
		return err
	}
	if len(shards) == 0 {
		return invalid("cluster %q has no shards", clusterName)
	}
	seen := map[string]bool{}
	for _, s := range shards {
		if err := validName("shard", s.Name); err != nil {
			return err
		}
		if seen[s.Name] {
			return invalid("shard %q is listed twice", s.Name)
		}
		seen[s.Name] = true
		if err := validateMembers(s.Name, s.Members); err != nil {
			return err
		}
	}
	for attempt := 0; attempt < 8; attempt++ {
		ops := []clientv3.Op{clientv3.OpGet(c.clusterKey())}
		for _, s := range shards {
			ops = append(ops, clientv3.OpGet(c.shardKey(s.Name)))
		}
		read, err := c.commit(ctx, "bootstrap read", c.cli.Txn(ctx).Then(ops...))
		if err != nil {
			return err
		}
		var cluster *clusterRecord
		var clusterRev int64
		if kvs := read.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			cluster = &clusterRecord{}
			if err := json.Unmarshal(kvs[0].Value, cluster); err != nil {
				return corrupt(c.clusterKey(), err)
			}
			clusterRev = kvs[0].ModRevision
		}
		var diffs []string
		if cluster != nil && cluster.Name != clusterName {
			diffs = append(diffs, fmt.Sprintf("cluster name is %q in the catalog but %q in the description", cluster.Name, clusterName))
		}
		var cmps []clientv3.Cmp
		var puts []clientv3.Op
		for i, s := range shards {
			key := c.shardKey(s.Name)
			kvs := read.Responses[i+1].GetResponseRange().Kvs
			if len(kvs) == 0 {
				if cluster != nil {
					diffs = append(diffs, fmt.Sprintf("shard %q is in the description but not in the catalog (it was removed, or added to the file after the first start: register it with addShard or remove it from the file)", s.Name))
				}
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
				puts = append(puts, clientv3.OpPut(key, mustJSON(Shard{Name: s.Name, Members: s.Members, State: ShardActive})))
				continue
			}
			var cur Shard
			if err := json.Unmarshal(kvs[0].Value, &cur); err != nil {
				return corrupt(key, err)
			}
			diffs = append(diffs, memberDiffs(s.Name, cur.Members, s.Members)...)
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision))
		}
		if len(diffs) > 0 {
			return fmt.Errorf("%w: %s; nothing was changed", ErrClusterMismatch, strings.Join(diffs, "; "))
		}
		if cluster != nil && len(puts) == 0 {
			return nil // same description: no-op
		}
		if cluster == nil {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.clusterKey()), "=", 0))
			puts = append(puts, clientv3.OpPut(c.clusterKey(), mustJSON(clusterRecord{Name: clusterName, ID: newUUID(), CreatedAt: c.now().UTC().Format(time.RFC3339)})))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.clusterKey()), "=", clusterRev))
		}
		resp, err := c.commit(ctx, "bootstrap", c.cli.Txn(ctx).If(cmps...).Then(puts...))
		if err != nil {
			return err
		}
		if resp.Succeeded {
			c.log.Info().Str("cluster", clusterName).Int("shards", len(shards)).Msg("cluster registered in the catalog")
			return nil
		}
	}
	return conflict("catalog kept changing during bootstrap of cluster %q", clusterName)
}

func memberDiffs(shard string, have, want []Member) []string {
	var diffs []string
	hm := map[string]string{}
	for _, m := range have {
		hm[m.Name] = m.Addr
	}
	wm := map[string]string{}
	for _, m := range want {
		wm[m.Name] = m.Addr
		addr, ok := hm[m.Name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("shard %q: member %q (%s) is in the description but not in the catalog", shard, m.Name, m.Addr))
		case addr != m.Addr:
			diffs = append(diffs, fmt.Sprintf("shard %q: member %q has address %s in the catalog but %s in the description", shard, m.Name, addr, m.Addr))
		}
	}
	for _, m := range have {
		if _, ok := wm[m.Name]; !ok {
			diffs = append(diffs, fmt.Sprintf("shard %q: member %q (%s) is in the catalog but not in the description", shard, m.Name, m.Addr))
		}
	}
	return diffs
}
