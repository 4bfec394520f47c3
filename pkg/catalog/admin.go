package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// This file holds the catalog operations only the router's admin commands
// need (enableSharding with a chosen primary, removeShard's progress).

// CreateDatabaseOn creates a database record whose primary is the given
// active shard (enableSharding with primaryShard). An existing database is
// returned with ErrExists (NamespaceExists) whatever its primary, so the
// caller can compare; a name differing only in case from an existing one
// fails with ErrExists (DatabaseDifferCase); an unknown shard with
// ErrNotFound (ShardNotFound) and a draining one with ErrIllegal
// (IllegalOperation). The Txn compares the shard's and the database list's
// revisions: a concurrent change makes it fail with ErrConflict.
func (c *Catalog) CreateDatabaseOn(ctx context.Context, name, shard string) (Database, error) {
	if err := ValidateDBName(name); err != nil {
		return Database{}, err
	}
	s, err := c.GetShard(ctx, shard)
	if err != nil {
		return Database{}, err
	}
	if s.State != ShardActive {
		return Database{}, coded(ErrIllegal, mongoerr.IllegalOperation, "shard %q is draining and cannot be the primary of database %q", shard, name)
	}
	dbs, rev, err := c.ListDatabases(ctx)
	if err != nil {
		return Database{}, err
	}
	for _, d := range dbs {
		if d.Name == name {
			return d, coded(ErrExists, mongoerr.NamespaceExists, "database %q already exists", name)
		}
		if strings.EqualFold(d.Name, name) {
			return Database{}, coded(ErrExists, mongoerr.DatabaseDifferCase, "db already exists with different case already have: [%s] trying to create [%s]", d.Name, name)
		}
	}
	d := Database{Name: name, PrimaryShard: shard, Version: DatabaseVersion{UUID: newUUID(), LastMod: 1}}
	key := c.databaseKey(name)
	resp, err := c.commit(ctx, "create database "+name+" on "+shard, c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.ModRevision(c.shardKey(shard)), "=", s.ModRevision),
			clientv3.Compare(clientv3.ModRevision(c.databasesPrefix()), "<", rev+1).WithPrefix()).
		Then(clientv3.OpPut(key, mustJSON(d))))
	if err != nil {
		return Database{}, err
	}
	if !resp.Succeeded {
		if got, err := c.GetDatabase(ctx, name); err == nil {
			return got, coded(ErrExists, mongoerr.NamespaceExists, "database %q already exists", name)
		}
		return Database{}, conflict("databases or shard %q changed while creating database %q", shard, name)
	}
	d.ModRevision = resp.Header.Revision
	return d, nil
}

// ShardUsage is what a shard still owns: what removeShard reports as
// remaining while the shard drains.
type ShardUsage struct {
	// Chunks is the number of chunks the shard owns, over all collections.
	Chunks int
	// Databases are the databases whose primary is the shard, sorted.
	Databases []string
	// Collections are the sharded namespaces with at least one chunk on the
	// shard, sorted.
	Collections []string
	// Revision is the etcd revision everything was read at.
	Revision int64
}

// GetShardUsage reads, at one revision, the chunks and databases a shard
// owns. It reads every chunk record (removeShard is rare); the shard need
// not exist (its usage is then empty unless records still name it).
func (c *Catalog) GetShardUsage(ctx context.Context, shard string) (ShardUsage, error) {
	dbs, rev, err := c.ListDatabases(ctx)
	if err != nil {
		return ShardUsage{}, err
	}
	u := ShardUsage{Revision: rev}
	for _, d := range dbs {
		if d.PrimaryShard == shard {
			u.Databases = append(u.Databases, d.Name)
		}
	}
	cresp, err := c.cli.Get(ctx, c.collectionsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return ShardUsage{}, fmt.Errorf("etcd list collections: %w", err)
	}
	nsOf := map[string]string{} // uuid -> ns of sharded collections
	for _, kv := range cresp.Kvs {
		var coll Collection
		if err := json.Unmarshal(kv.Value, &coll); err != nil {
			return ShardUsage{}, corrupt(string(kv.Key), err)
		}
		if coll.Sharded {
			nsOf[coll.UUID] = coll.NS
		}
	}
	seen := map[string]bool{}
	_, err = c.scanRange(ctx, c.chunksPrefix(), clientv3.GetPrefixRangeEnd(c.chunksPrefix()), rev, func(kv *mvccpb.KeyValue) error {
		var r chunkRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return corrupt(string(kv.Key), err)
		}
		if r.Shard != shard {
			return nil
		}
		u.Chunks++
		uuid, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), c.chunksPrefix()), "/")
		if ns, ok := nsOf[uuid]; ok && !seen[ns] {
			seen[ns] = true
			u.Collections = append(u.Collections, ns)
		}
		return nil
	})
	if err != nil {
		return ShardUsage{}, err
	}
	slices.Sort(u.Collections)
	return u, nil
}
