package targeting

import (
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
)

// maxAttempts bounds how often targeting starts over because the
// collection's chunks changed while it read them.
const maxAttempts = 8

// ForQuery targets a read (find, count, distinct, aggregate's shard part)
// or a multi-document write with filter. Errors: the filter's parse error
// (BadValue ...), ErrUnknownDatabase (NamespaceNotFound), metadata errors,
// ErrMetadataChanging.
func ForQuery(meta Metadata, ns string, filter bson.Raw) (Target, error) {
	if len(filter) == 0 {
		filter = emptyDoc
	}
	f, err := query.ParseFilter(filter)
	if err != nil {
		return Target{}, err
	}
	return ForFilter(meta, ns, f)
}

var emptyDoc = bson.Raw{5, 0, 0, 0, 0}

// ForFilter is ForQuery for a filter the caller has already parsed.
func ForFilter(meta Metadata, ns string, f *query.Filter) (Target, error) {
	return resolve(meta, ns, func(coll catalog.Collection) keyBounds { return bounds(coll.Key, f) })
}

// resolve runs the targeting of a sharded collection under the optimistic
// consistency check: the collection record (epoch and collection version)
// is read before and after the chunk lookups; every chunk change bumps the
// collection version in the same etcd transaction (catalog invariant) and
// a ChunkMap applies a transaction atomically, so an unchanged version
// means every lookup saw the same chunks, and the shard versions read
// belong to them. A changed version starts over.
func resolve(meta Metadata, ns string, bf func(catalog.Collection) keyBounds) (Target, error) {
	for range maxAttempts {
		coll, ok := meta.Collection(ns)
		if !ok || !coll.Sharded {
			return unshardedTarget(meta, ns)
		}
		t, err := shardedTarget(meta, coll, bf(coll))
		if same(meta, coll) {
			return t, err
		}
		// Changed (or dropped) under us: an error may come from that too.
	}
	return Target{}, mongoerr.Wrap(ErrMetadataChanging, mongoerr.ConflictingOperationInProgress,
		"chunks of %s changed during targeting %d times in a row; retry", ns, maxAttempts)
}

func same(meta Metadata, coll catalog.Collection) bool {
	now, ok := meta.Collection(coll.NS)
	return ok && now.Sharded && now.UUID == coll.UUID && now.Epoch == coll.Epoch && now.Version == coll.Version
}

func unshardedTarget(meta Metadata, ns string) (Target, error) {
	db, _, err := catalog.SplitNS(ns)
	if err != nil {
		return Target{}, err
	}
	d, ok := meta.Database(db)
	if !ok {
		return Target{}, mongoerr.Wrap(ErrUnknownDatabase, mongoerr.NamespaceNotFound, "database %q not found", db)
	}
	return Target{
		Kind: OneShard, Shards: []string{d.PrimaryShard},
		Versions:  map[string]ShardVersion{d.PrimaryShard: {}},
		Unsharded: true, DatabaseVersion: d.Version, Reason: ReasonUnsharded,
	}, nil
}

// shardedTarget resolves bounds against the chunks of coll.
func shardedTarget(meta Metadata, coll catalog.Collection, kb keyBounds) (Target, error) {
	ns := coll.NS
	var shards []string
	kind := Shards
	switch {
	case kb.empty:
		// Nothing can match; one shard answers with an empty result, as
		// MongoDB does (it picks the shard of the MinKey chunk).
		ch, err := meta.ChunkFor(ns, fill(len(coll.Key), minKeyValue))
		if err != nil {
			return Target{}, fmt.Errorf("target %s: %w", ns, err)
		}
		shards = []string{ch.Shard}
	case kb.points != nil || kb.ranges != nil:
		for _, vals := range kb.points {
			ch, err := meta.ChunkFor(ns, vals)
			if err != nil {
				return Target{}, fmt.Errorf("target %s: %w", ns, err)
			}
			shards = append(shards, ch.Shard)
		}
		for _, r := range kb.ranges {
			chs, err := meta.ChunksOverlapping(ns, r.lo, r.hi)
			if err != nil {
				return Target{}, fmt.Errorf("target %s: %w", ns, err)
			}
			for _, ch := range chs {
				shards = append(shards, ch.Shard)
			}
		}
		if len(shards) == 0 {
			// Unreachable while chunks tile the key space; fall back to
			// every shard rather than to none.
			all, err := meta.ShardsFor(ns)
			if err != nil {
				return Target{}, fmt.Errorf("target %s: %w", ns, err)
			}
			shards = all
		}
	default:
		all, err := meta.ShardsFor(ns)
		if err != nil {
			return Target{}, fmt.Errorf("target %s: %w", ns, err)
		}
		shards = all
		kind = AllShards
	}
	slices.Sort(shards)
	shards = slices.Compact(shards)
	if len(shards) == 0 {
		return Target{}, mongoerr.New(mongoerr.InternalError, "collection %s has no chunks", ns)
	}
	if kind != AllShards && len(shards) == 1 {
		kind = OneShard
	}
	vers, err := versions(meta, ns, shards)
	if err != nil {
		return Target{}, err
	}
	return Target{Kind: kind, Shards: shards, Versions: vers, Reason: kb.reason}, nil
}

func versions(meta Metadata, ns string, shards []string) (map[string]ShardVersion, error) {
	out := make(map[string]ShardVersion, len(shards))
	for _, s := range shards {
		v, err := meta.ShardVersion(ns, s)
		if err != nil {
			return nil, fmt.Errorf("shard version of %s on %s: %w", ns, s, err)
		}
		out[s] = v
	}
	return out, nil
}

var minKeyValue = bson.RawValue{Type: bson.TypeMinKey}

func fill(n int, v bson.RawValue) []bson.RawValue {
	out := make([]bson.RawValue, n)
	for i := range out {
		out[i] = v
	}
	return out
}
