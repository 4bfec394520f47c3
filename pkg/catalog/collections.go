package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// MaxInitialChunks bounds numInitialChunks of ShardCollection: all initial
// chunks are written in one Txn, which must fit etcd's --max-txn-ops
// (RequiredMaxTxnOps) and request size limit.
const MaxInitialChunks = 1024

// GetCollection returns a collection; ErrNotFound (NamespaceNotFound) if
// absent.
func (c *Catalog) GetCollection(ctx context.Context, ns string) (Collection, error) {
	var coll Collection
	rev, err := c.getJSON(ctx, c.collectionKey(ns), &coll)
	if err == ErrNotFound {
		return Collection{}, coded(ErrNotFound, mongoerr.NamespaceNotFound, "collection %s not found", ns)
	}
	if err != nil {
		return Collection{}, err
	}
	coll.ModRevision = rev
	return coll, nil
}

// ListCollections returns the collections of db (all databases if db is
// empty) sorted by namespace, and the revision read at.
func (c *Catalog) ListCollections(ctx context.Context, db string) ([]Collection, int64, error) {
	prefix := c.collectionsPrefix()
	if db != "" {
		prefix += db + "."
	}
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("etcd list collections: %w", err)
	}
	out := make([]Collection, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var coll Collection
		if err := json.Unmarshal(kv.Value, &coll); err != nil {
			return nil, 0, corrupt(string(kv.Key), err)
		}
		coll.ModRevision = kv.ModRevision
		out = append(out, coll)
	}
	return out, resp.Header.Revision, nil
}

// CreateCollection creates an unsharded collection in an existing
// database. ErrExists (NamespaceExists) if the namespace exists;
// ErrNotFound (NamespaceNotFound) if the database does not; ErrConflict if
// the database was dropped or moved meanwhile.
func (c *Catalog) CreateCollection(ctx context.Context, ns string) (Collection, error) {
	db, _, err := SplitNS(ns)
	if err != nil {
		return Collection{}, err
	}
	d, err := c.GetDatabase(ctx, db)
	if err != nil {
		return Collection{}, err
	}
	coll := Collection{NS: ns, UUID: newUUID(), Epoch: bson.NewObjectID().Hex()}
	key := c.collectionKey(ns)
	resp, err := c.commit(ctx, "create collection "+ns, c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.ModRevision(c.databaseKey(db)), "=", d.ModRevision)).
		Then(clientv3.OpPut(key, mustJSON(coll))).
		Else(clientv3.OpGet(key)))
	if err != nil {
		return Collection{}, err
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
			return Collection{}, coded(ErrExists, mongoerr.NamespaceExists, "collection %s already exists", ns)
		}
		return Collection{}, conflict("database %q changed while creating %s", db, ns)
	}
	coll.ModRevision = resp.Header.Revision
	return coll, nil
}

// ShardOptions are shardCollection's options.
type ShardOptions struct {
	Key    ShardKey
	Unique bool
	// NumInitialChunks is the number of chunks a hashed key is pre-split
	// into (0: two per active shard). Ranged keys always start with one
	// chunk [MinKey, MaxKey) on the database's primary shard.
	NumInitialChunks int
}

// ShardCollection shards a collection, creating it if absent. The
// database must exist. A hashed key (first field hashed) is pre-split into
// NumInitialChunks chunks cutting the int64 hash space into equal parts,
// assigned round-robin over the active shards sorted by name starting at
// the database's primary; chunk i gets version 1|i. A ranged key gets one
// chunk 1|0 on the primary shard. The collection keeps its uuid if it
// existed unsharded and gets a fresh epoch.
//
// One Txn compares the database, the collection (absent, or its revision)
// and every shard used, so of two concurrent calls exactly one commits; the
// other gets ErrExists (AlreadyInitialized) or ErrConflict.
func (c *Catalog) ShardCollection(ctx context.Context, ns string, opts ShardOptions) (Collection, []Chunk, error) {
	db, _, err := SplitNS(ns)
	if err != nil {
		return Collection{}, nil, err
	}
	if err := opts.Key.validate(); err != nil {
		return Collection{}, nil, err
	}
	hashedAny := slices.ContainsFunc(opts.Key, func(f KeyField) bool { return f.Hashed })
	if opts.Unique && hashedAny {
		return Collection{}, nil, mongoerr.Wrap(ErrInvalid, mongoerr.InvalidOptions, "hashed shard keys cannot be declared unique")
	}
	if opts.NumInitialChunks < 0 || opts.NumInitialChunks > MaxInitialChunks {
		return Collection{}, nil, mongoerr.Wrap(ErrInvalid, mongoerr.InvalidOptions, "numInitialChunks must be between 0 and %d, got %d", MaxInitialChunks, opts.NumInitialChunks)
	}
	if opts.NumInitialChunks > 0 && !opts.Key.Hashed() {
		return Collection{}, nil, mongoerr.Wrap(ErrInvalid, mongoerr.InvalidOptions, "numInitialChunks is only supported for a hashed shard key")
	}
	d, err := c.GetDatabase(ctx, db)
	if err != nil {
		return Collection{}, nil, err
	}
	shards, _, err := c.ListShards(ctx)
	if err != nil {
		return Collection{}, nil, err
	}
	key := c.collectionKey(ns)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(c.databaseKey(db)), "=", d.ModRevision)}
	coll, err := c.GetCollection(ctx, ns)
	switch {
	case err == nil && coll.Sharded:
		return Collection{}, nil, coded(ErrExists, mongoerr.AlreadyInitialized, "collection %s is already sharded with key %s", ns, coll.Key)
	case err == nil:
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", coll.ModRevision))
	case errorsIs(err, ErrNotFound):
		coll = Collection{NS: ns, UUID: newUUID()}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
	default:
		return Collection{}, nil, err
	}
	coll.Sharded, coll.Key, coll.Unique = true, slices.Clone(opts.Key), opts.Unique
	coll.Epoch = bson.NewObjectID().Hex()

	// Placement: the database's primary first, then the other active
	// shards in name order.
	var active []Shard
	start := 0
	for _, s := range shards {
		if s.State == ShardActive {
			if s.Name == d.PrimaryShard {
				start = len(active)
			}
			active = append(active, s)
		}
	}
	if !slices.ContainsFunc(active, func(s Shard) bool { return s.Name == d.PrimaryShard }) {
		return Collection{}, nil, coded(ErrNotFound, mongoerr.ShardNotFound, "primary shard %q of database %q is not an active shard", d.PrimaryShard, db)
	}
	var chunks []Chunk
	if opts.Key.Hashed() {
		n := opts.NumInitialChunks
		if n == 0 {
			n = 2 * len(active)
		}
		lo := opts.Key.GlobalMin()
		pts := hashSplitPoints(n)
		for i := 0; i < n; i++ {
			var hi bson.Raw
			if i < len(pts) {
				vals := opts.Key.fill(keys.MinKey())
				vals[0] = int64Value(pts[i])
				hi = opts.Key.bound(vals)
			} else {
				hi = opts.Key.GlobalMax()
			}
			chunks = append(chunks, Chunk{Min: lo, Max: hi, Shard: active[(start+i)%len(active)].Name, Version: Version{Major: 1, Minor: uint32(i)}})
			lo = hi
		}
	} else {
		chunks = []Chunk{{Min: opts.Key.GlobalMin(), Max: opts.Key.GlobalMax(), Shard: d.PrimaryShard, Version: Version{Major: 1}}}
	}
	used := map[string]bool{}
	ops := make([]clientv3.Op, 0, len(chunks)+1)
	for i := range chunks {
		ch := &chunks[i]
		ch.UUID = coll.UUID
		ch.MinKey, _ = encodeBoundAnyKey(ch.Min)
		ch.MaxKey, _ = encodeBoundAnyKey(ch.Max)
		ops = append(ops, clientv3.OpPut(c.chunkKey(coll.UUID, ch.MinKey), mustJSON(chunkRecord{
			Min: boundToJSON(ch.Min), Max: boundToJSON(ch.Max), Shard: ch.Shard, Version: ch.Version})))
		used[ch.Shard] = true
		coll.Version = ch.Version // increasing; the last is the highest
	}
	for _, s := range active {
		if used[s.Name] {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.shardKey(s.Name)), "=", s.ModRevision))
		}
	}
	// An unsharded collection has no chunks; make sure none appeared.
	cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.chunkPrefix(coll.UUID)), "=", 0).WithPrefix())
	ops = append(ops, clientv3.OpPut(key, mustJSON(coll)))
	resp, err := c.commit(ctx, "shard collection "+ns, c.cli.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(key)))
	if err != nil {
		return Collection{}, nil, err
	}
	if !resp.Succeeded {
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			var cur Collection
			if json.Unmarshal(kvs[0].Value, &cur) == nil && cur.Sharded {
				return Collection{}, nil, coded(ErrExists, mongoerr.AlreadyInitialized, "collection %s is already sharded with key %s", ns, cur.Key)
			}
		}
		return Collection{}, nil, conflict("database %q, collection %s or a shard changed while sharding it", db, ns)
	}
	coll.ModRevision = resp.Header.Revision
	for i := range chunks {
		chunks[i].ModRevision = resp.Header.Revision
	}
	return coll, chunks, nil
}

// DropCollection deletes a collection and all its chunks in one Txn. A
// later create or shardCollection of the same namespace gets a new uuid and
// epoch. ErrNotFound (NamespaceNotFound) if absent. Concurrent changes to
// the collection (a split, a shardCollection) make it re-read and retry,
// so the drop wins unless the collection disappears.
func (c *Catalog) DropCollection(ctx context.Context, ns string) error {
	if _, _, err := SplitNS(ns); err != nil {
		return err
	}
	key := c.collectionKey(ns)
	for attempt := 0; ; attempt++ {
		coll, err := c.GetCollection(ctx, ns)
		if err != nil {
			return err
		}
		resp, err := c.commit(ctx, "drop collection "+ns, c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", coll.ModRevision)).
			Then(clientv3.OpDelete(key), clientv3.OpDelete(c.chunkPrefix(coll.UUID), clientv3.WithPrefix())))
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		if attempt >= 8 {
			return conflict("collection %s kept changing while dropping it", ns)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
