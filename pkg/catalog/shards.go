package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func validateMembers(shard string, members []Member) error {
	if len(members) == 0 {
		return invalid("shard %q has no members", shard)
	}
	seen := map[string]bool{}
	addrs := map[string]bool{}
	for _, m := range members {
		if err := validName("member", m.Name); err != nil {
			return err
		}
		if m.Addr == "" {
			return invalid("member %q of shard %q has no address", m.Name, shard)
		}
		if seen[m.Name] {
			return invalid("shard %q lists member %q twice", shard, m.Name)
		}
		if addrs[m.Addr] {
			return invalid("shard %q lists address %q twice", shard, m.Addr)
		}
		seen[m.Name], addrs[m.Addr] = true, true
	}
	return nil
}

// AddShard registers a shard with its members (state "" means active). It
// fails with ErrExists (OperationFailed, as MongoDB answers addShard of a
// known name) if the name is taken.
func (c *Catalog) AddShard(ctx context.Context, name string, members []Member, state ShardState) (Shard, error) {
	if err := validName("shard", name); err != nil {
		return Shard{}, err
	}
	if err := validateMembers(name, members); err != nil {
		return Shard{}, err
	}
	if state == "" {
		state = ShardActive
	}
	if state != ShardActive && state != ShardDraining {
		return Shard{}, invalid("shard state %q is not active or draining", state)
	}
	s := Shard{Name: name, Members: slices.Clone(members), State: state}
	key := c.shardKey(name)
	resp, err := c.commit(ctx, "add shard "+name, c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, mustJSON(s))))
	if err != nil {
		return Shard{}, err
	}
	if !resp.Succeeded {
		return Shard{}, coded(ErrExists, mongoerr.OperationFailed, "shard %q already exists", name)
	}
	s.ModRevision = resp.Header.Revision
	return s, nil
}

// GetShard returns a shard; ErrNotFound (ShardNotFound) if absent.
func (c *Catalog) GetShard(ctx context.Context, name string) (Shard, error) {
	var s Shard
	rev, err := c.getJSON(ctx, c.shardKey(name), &s)
	if err == ErrNotFound {
		return Shard{}, coded(ErrNotFound, mongoerr.ShardNotFound, "shard %q not found", name)
	}
	if err != nil {
		return Shard{}, err
	}
	s.ModRevision = rev
	return s, nil
}

// ListShards returns all shards sorted by name, and the revision read at.
func (c *Catalog) ListShards(ctx context.Context) ([]Shard, int64, error) {
	resp, err := c.cli.Get(ctx, c.shardsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("etcd list shards: %w", err)
	}
	var out []Shard
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), c.shardsPrefix())
		if strings.Contains(rest, "/") { // primary and term keys
			continue
		}
		var s Shard
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return nil, 0, corrupt(string(kv.Key), err)
		}
		s.ModRevision = kv.ModRevision
		out = append(out, s)
	}
	return out, resp.Header.Revision, nil
}

// MarkDraining sets a shard's state to draining (removeShard's first step).
// Idempotent.
func (c *Catalog) MarkDraining(ctx context.Context, name string) (Shard, error) {
	s, err := c.GetShard(ctx, name)
	if err != nil {
		return Shard{}, err
	}
	if s.State == ShardDraining {
		return s, nil
	}
	s.State = ShardDraining
	key := c.shardKey(name)
	resp, err := c.commit(ctx, "mark draining "+name, c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", s.ModRevision)).
		Then(clientv3.OpPut(key, mustJSON(s))))
	if err != nil {
		return Shard{}, err
	}
	if !resp.Succeeded {
		return Shard{}, conflict("shard %q changed concurrently", name)
	}
	s.ModRevision = resp.Header.Revision
	return s, nil
}

// RemoveShard deletes a draining shard that owns no chunk and is no
// database's primary, with its primary and term keys. Fails with
// ErrIllegal (IllegalOperation) if the shard is active or still owns data,
// and ErrConflict if chunks or databases changed while it checked.
func (c *Catalog) RemoveShard(ctx context.Context, name string) error {
	s, err := c.GetShard(ctx, name)
	if err != nil {
		return err
	}
	if s.State != ShardDraining {
		return coded(ErrIllegal, mongoerr.IllegalOperation, "shard %q must be draining before it is removed", name)
	}
	dbs, rev, err := c.ListDatabases(ctx)
	if err != nil {
		return err
	}
	for _, d := range dbs {
		if d.PrimaryShard == name {
			return coded(ErrIllegal, mongoerr.IllegalOperation, "shard %q is still the primary shard of database %q", name, d.Name)
		}
	}
	// Scan chunks at the same revision. This reads every chunk's value;
	// removeShard is rare, and the Txn below re-checks nothing changed.
	cresp, err := c.cli.Get(ctx, c.chunksPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return fmt.Errorf("etcd scan chunks: %w", err)
	}
	for _, kv := range cresp.Kvs {
		var r chunkRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return corrupt(string(kv.Key), err)
		}
		if r.Shard == name {
			return coded(ErrIllegal, mongoerr.IllegalOperation, "shard %q still owns chunks", name)
		}
	}
	resp, err := c.commit(ctx, "remove shard "+name, c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(c.shardKey(name)), "=", s.ModRevision),
			clientv3.Compare(clientv3.ModRevision(c.databasesPrefix()), "<", rev+1).WithPrefix(),
			clientv3.Compare(clientv3.ModRevision(c.chunksPrefix()), "<", rev+1).WithPrefix()).
		Then(clientv3.OpDelete(c.shardKey(name)),
			clientv3.OpDelete(c.shardSubPrefix(name), clientv3.WithPrefix())))
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return conflict("shard %q, its databases or chunks changed while removing it", name)
	}
	return nil
}
