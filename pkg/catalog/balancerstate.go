package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ShardedCollection is a sharded collection with its chunks in key order.
type ShardedCollection struct {
	Collection Collection
	Chunks     []Chunk
}

// ShardingSnapshot is what the balancer plans on: every shard and every
// sharded collection with its chunks, all read at one etcd revision, so a
// chunk never appears on two shards or under a stale collection version.
type ShardingSnapshot struct {
	Shards      []Shard             // sorted by name
	Collections []ShardedCollection // sorted by namespace
	Revision    int64
}

// ReadShardingSnapshot reads all shards, sharded collections and their
// chunks at one revision (the first read's; later reads pin it). It reads
// every chunk record, in pages; it is meant for the balancer's rounds, not
// for request paths (routers use ChunkMap). Read-only.
func (c *Catalog) ReadShardingSnapshot(ctx context.Context) (ShardingSnapshot, error) {
	resp, err := c.cli.Get(ctx, c.shardsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return ShardingSnapshot{}, fmt.Errorf("etcd list shards: %w", err)
	}
	snap := ShardingSnapshot{Revision: resp.Header.Revision}
	for _, kv := range resp.Kvs {
		if strings.Contains(strings.TrimPrefix(string(kv.Key), c.shardsPrefix()), "/") {
			continue // primary and term keys
		}
		var s Shard
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return ShardingSnapshot{}, corrupt(string(kv.Key), err)
		}
		s.ModRevision = kv.ModRevision
		snap.Shards = append(snap.Shards, s)
	}
	cresp, err := c.cli.Get(ctx, c.collectionsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(snap.Revision))
	if err != nil {
		return ShardingSnapshot{}, fmt.Errorf("etcd list collections at revision %d: %w", snap.Revision, err)
	}
	for _, kv := range cresp.Kvs {
		var coll Collection
		if err := json.Unmarshal(kv.Value, &coll); err != nil {
			return ShardingSnapshot{}, corrupt(string(kv.Key), err)
		}
		if !coll.Sharded {
			continue
		}
		coll.ModRevision = kv.ModRevision
		sc := ShardedCollection{Collection: coll}
		p := c.chunkPrefix(coll.UUID)
		if _, err := c.scanRange(ctx, p, clientv3.GetPrefixRangeEnd(p), snap.Revision, func(kv *mvccpb.KeyValue) error {
			ch, err := c.decodeChunk(kv)
			if err != nil {
				return err
			}
			sc.Chunks = append(sc.Chunks, ch)
			return nil
		}); err != nil {
			return ShardingSnapshot{}, fmt.Errorf("chunks of %s: %w", coll.NS, err)
		}
		snap.Collections = append(snap.Collections, sc)
	}
	sort.Slice(snap.Shards, func(i, j int) bool { return snap.Shards[i].Name < snap.Shards[j].Name })
	sort.Slice(snap.Collections, func(i, j int) bool {
		return snap.Collections[i].Collection.NS < snap.Collections[j].Collection.NS
	})
	return snap, nil
}
