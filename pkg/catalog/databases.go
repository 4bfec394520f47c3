package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// ValidateDBName checks a database name the way MongoDB does (no empty
// name, none of `/\. "$*<>:|?` or NUL, at most 64 bytes).
func ValidateDBName(db string) error {
	if db == "" {
		return mongoerr.Wrap(ErrInvalid, mongoerr.InvalidNamespace, "database name is empty")
	}
	if len(db) > 64 {
		return mongoerr.Wrap(ErrInvalid, mongoerr.InvalidNamespace, "database name %q is longer than 64 bytes", db)
	}
	if strings.ContainsAny(db, "/\\. \"$*<>:|?\x00") {
		return mongoerr.Wrap(ErrInvalid, mongoerr.InvalidNamespace, "database name %q contains an invalid character", db)
	}
	return nil
}

// SplitNS validates "db.coll" and returns its parts.
func SplitNS(ns string) (db, coll string, err error) {
	db, coll, ok := strings.Cut(ns, ".")
	if !ok || coll == "" {
		return "", "", mongoerr.Wrap(ErrInvalid, mongoerr.InvalidNamespace, "namespace %q is not of the form db.collection", ns)
	}
	if err := ValidateDBName(db); err != nil {
		return "", "", err
	}
	if strings.ContainsAny(coll, "$\x00") {
		return "", "", mongoerr.Wrap(ErrInvalid, mongoerr.InvalidNamespace, "collection name %q contains an invalid character", coll)
	}
	if len(ns) > 255 {
		return "", "", mongoerr.Wrap(ErrInvalid, mongoerr.InvalidNamespace, "namespace %q is longer than 255 bytes", ns)
	}
	return db, coll, nil
}

// SizeHint returns how much data a shard holds (bytes or any comparable
// measure). CreateDatabase picks the active shard with the smallest hint.
type SizeHint func(shard string) int64

// CreateDatabase creates a database record, choosing as primary the active
// shard with the least data: by hint when given; otherwise by the number of
// databases whose primary it already is (cheap to read, and what decides
// where unsharded data lands), ties broken by name. The Txn compares the
// chosen shard's and the database list's revisions, so a shard removed or a
// competing create in the meantime makes it fail with ErrConflict; an
// existing database fails with ErrExists (NamespaceExists).
func (c *Catalog) CreateDatabase(ctx context.Context, name string, hint SizeHint) (Database, error) {
	if err := ValidateDBName(name); err != nil {
		return Database{}, err
	}
	shards, rev, err := c.ListShards(ctx)
	if err != nil {
		return Database{}, err
	}
	dbs, _, err := c.listDatabasesAt(ctx, rev)
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
	count := map[string]int64{}
	for _, d := range dbs {
		count[d.PrimaryShard]++
	}
	var best *Shard
	var bestSize int64
	for i := range shards {
		s := &shards[i]
		if s.State != ShardActive {
			continue
		}
		size := count[s.Name]
		if hint != nil {
			size = hint(s.Name)
		}
		if best == nil || size < bestSize {
			best, bestSize = s, size
		}
	}
	if best == nil {
		return Database{}, coded(ErrNotFound, mongoerr.ShardNotFound, "no active shard to place database %q on", name)
	}
	d := Database{Name: name, PrimaryShard: best.Name, Version: DatabaseVersion{UUID: newUUID(), LastMod: 1}}
	key := c.databaseKey(name)
	resp, err := c.commit(ctx, "create database "+name, c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.ModRevision(c.shardKey(best.Name)), "=", best.ModRevision),
			clientv3.Compare(clientv3.ModRevision(c.databasesPrefix()), "<", rev+1).WithPrefix()).
		Then(clientv3.OpPut(key, mustJSON(d))))
	if err != nil {
		return Database{}, err
	}
	if !resp.Succeeded {
		if got, err := c.GetDatabase(ctx, name); err == nil {
			return got, coded(ErrExists, mongoerr.NamespaceExists, "database %q already exists", name)
		}
		return Database{}, conflict("databases or shard %q changed while creating database %q", best.Name, name)
	}
	d.ModRevision = resp.Header.Revision
	return d, nil
}

// EnsureDatabase returns the database, creating it if absent (retrying a
// few times when concurrent creates of other databases conflict).
func (c *Catalog) EnsureDatabase(ctx context.Context, name string, hint SizeHint) (Database, error) {
	var err error
	for range 8 {
		var d Database
		d, err = c.CreateDatabase(ctx, name, hint)
		if err == nil || errorsIs(err, ErrExists) && d.Name == name {
			return d, nil
		}
		if !errorsIs(err, ErrConflict) {
			return Database{}, err
		}
	}
	return Database{}, err
}

// GetDatabase returns a database; ErrNotFound (NamespaceNotFound) if absent.
func (c *Catalog) GetDatabase(ctx context.Context, name string) (Database, error) {
	var d Database
	rev, err := c.getJSON(ctx, c.databaseKey(name), &d)
	if err == ErrNotFound {
		return Database{}, coded(ErrNotFound, mongoerr.NamespaceNotFound, "database %q not found", name)
	}
	if err != nil {
		return Database{}, err
	}
	d.ModRevision = rev
	return d, nil
}

// ListDatabases returns all databases sorted by name and the revision read.
func (c *Catalog) ListDatabases(ctx context.Context) ([]Database, int64, error) {
	return c.listDatabasesAt(ctx, 0)
}

func (c *Catalog) listDatabasesAt(ctx context.Context, rev int64) ([]Database, int64, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := c.cli.Get(ctx, c.databasesPrefix(), opts...)
	if err != nil {
		return nil, 0, fmt.Errorf("etcd list databases: %w", err)
	}
	out := make([]Database, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var d Database
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return nil, 0, corrupt(string(kv.Key), err)
		}
		d.ModRevision = kv.ModRevision
		out = append(out, d)
	}
	return out, resp.Header.Revision, nil
}

// SetPrimaryShard moves a database's primary to another active shard
// (movePrimary's commit) and bumps its version. expectedRev is the
// database's ModRevision the caller read; ErrConflict if it changed.
func (c *Catalog) SetPrimaryShard(ctx context.Context, name, shard string, expectedRev int64) (Database, error) {
	d, err := c.GetDatabase(ctx, name)
	if err != nil {
		return Database{}, err
	}
	if expectedRev != 0 && d.ModRevision != expectedRev {
		return Database{}, conflict("database %q changed since it was read", name)
	}
	s, err := c.GetShard(ctx, shard)
	if err != nil {
		return Database{}, err
	}
	if s.State != ShardActive {
		return Database{}, coded(ErrIllegal, mongoerr.IllegalOperation, "shard %q is draining", shard)
	}
	d.PrimaryShard = shard
	d.Version.LastMod++
	resp, err := c.commit(ctx, "set primary of "+name, c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(c.databaseKey(name)), "=", d.ModRevision),
			clientv3.Compare(clientv3.ModRevision(c.shardKey(shard)), "=", s.ModRevision)).
		Then(clientv3.OpPut(c.databaseKey(name), mustJSON(d))))
	if err != nil {
		return Database{}, err
	}
	if !resp.Succeeded {
		return Database{}, conflict("database %q or shard %q changed concurrently", name, shard)
	}
	d.ModRevision = resp.Header.Revision
	return d, nil
}

// DropDatabase deletes a database with all its collections and their
// chunks in one Txn. ErrNotFound if absent; ErrConflict if a collection of
// the database was created or changed meanwhile.
func (c *Catalog) DropDatabase(ctx context.Context, name string) error {
	if err := ValidateDBName(name); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		d, err := c.GetDatabase(ctx, name)
		if err != nil {
			return err
		}
		colls, rev, err := c.ListCollections(ctx, name)
		if err != nil {
			return err
		}
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(c.databaseKey(name)), "=", d.ModRevision),
			clientv3.Compare(clientv3.ModRevision(c.collectionsPrefix()+name+"."), "<", rev+1).WithPrefix(),
		}
		ops := []clientv3.Op{
			clientv3.OpDelete(c.databaseKey(name)),
			clientv3.OpDelete(c.collectionsPrefix()+name+".", clientv3.WithPrefix()),
		}
		for _, coll := range colls {
			if coll.Sharded {
				ops = append(ops, clientv3.OpDelete(c.chunkPrefix(coll.UUID), clientv3.WithPrefix()))
			}
		}
		resp, err := c.commit(ctx, "drop database "+name, c.cli.Txn(ctx).If(cmps...).Then(ops...))
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		if attempt >= 8 {
			return conflict("database %q kept changing while dropping it", name)
		}
	}
}
