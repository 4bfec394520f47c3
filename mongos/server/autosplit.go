package server

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

// Splitting chunks that grew too large (docs/design/splits.md): the
// owning shard measures the chunk and proposes split points
// (SplitVector), the router commits them with catalog.SplitChunk (one
// etcd Txn that bumps the collection's minor version). Splits move no
// data, so they never wait for a shard.

// splitVectorConn is the part of a shard connection that computes split
// points; *shardclient.Client has it.
type splitVectorConn interface {
	SplitVector(ctx context.Context, ns string, sv shardclient.SplitVector) (*shardclient.SplitVectorResult, error)
}

var _ splitVectorConn = (*shardclient.Client)(nil)

// splitVectorOn asks the primary of the chunk's shard for the chunk's
// size and split points (retried across a failover like any read).
func splitVectorOn(ctx context.Context, b Backend, ns string, key catalog.ShardKey, chunk catalog.Chunk, maxBytes int64, force bool) (*shardclient.SplitVectorResult, error) {
	pattern, err := bson.Marshal(key.Doc())
	if err != nil {
		return nil, fmt.Errorf("encode key pattern of %s: %w", ns, err)
	}
	sv := shardclient.SplitVector{KeyPattern: pattern, Min: chunk.Min, Max: chunk.Max,
		MaxChunkBytes: maxBytes, Force: force, MaxPoints: catalog.MaxInitialChunks}
	res, _, err := callShard(ctx, b, chunk.Shard, opRead, "", func(c ShardConn) (*shardclient.SplitVectorResult, error) {
		s, ok := c.(splitVectorConn)
		if !ok {
			return nil, mongoerr.New(mongoerr.CommandNotSupported, "the connection to shard %s cannot compute split points", chunk.Shard)
		}
		return s.SplitVector(ctx, ns, sv)
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("splitVector of chunk %s of %s on shard %s: %w", chunk, ns, chunk.Shard, err)
	}
	return res, nil
}

// SplitOutcome is what SplitIfNeeded did.
type SplitOutcome struct {
	// Chunks are the chunks the split produced, in key order; nil when
	// the chunk was not split.
	Chunks []catalog.Chunk
	// DataSize and NumDocs measure the chunk before the split; when the
	// shard's whole collection is within the maximum they are its totals
	// on that shard instead (an upper bound: the chunk is not read).
	DataSize, NumDocs int64
	// Jumbo: the chunk is larger than the maximum but all of its
	// documents share one shard-key value, so it cannot be split.
	Jumbo bool
}

// SplitIfNeeded asks the owner of chunk whether it is larger than
// maxChunkSize and, if so, splits it into pieces of about maxChunkSize/2
// (MongoDB's rule; a hashed chunk at equal hash ranges) in one catalog
// transaction, and waits until this router's routing metadata shows the
// split. chunk must be as read from the catalog or the routing metadata
// (its ModRevision is compared): a chunk changed since then fails with
// ConflictingOperationInProgress and the caller re-reads. maxChunkSize
// must be positive.
func SplitIfNeeded(ctx context.Context, b AdminBackend, ns string, chunk catalog.Chunk, maxChunkSize int64) (SplitOutcome, error) {
	if maxChunkSize <= 0 {
		return SplitOutcome{}, mongoerr.New(mongoerr.BadValue, "maxChunkSize must be positive, got %d", maxChunkSize)
	}
	cat, err := b.Catalog()
	if err != nil {
		return SplitOutcome{}, err
	}
	rt, err := b.Routing()
	if err != nil {
		return SplitOutcome{}, err
	}
	coll, ok := rt.Collection(ns)
	if !ok || !coll.Sharded {
		if coll, err = cat.GetCollection(ctx, ns); err != nil {
			return SplitOutcome{}, err
		}
		if !coll.Sharded {
			return SplitOutcome{}, mongoerr.New(mongoerr.NamespaceNotSharded, "collection %s is not sharded", ns)
		}
	}
	if chunk.UUID != "" && chunk.UUID != coll.UUID {
		return SplitOutcome{}, mongoerr.New(mongoerr.StaleEpoch, "collection %s was dropped and re-created since chunk %s was read", ns, chunk)
	}
	res, err := splitVectorOn(ctx, b, ns, coll.Key, chunk, maxChunkSize, false)
	if err != nil {
		return SplitOutcome{}, err
	}
	out := SplitOutcome{DataSize: res.DataSize, NumDocs: res.NumDocs, Jumbo: res.Jumbo}
	if len(res.SplitKeys) == 0 {
		return out, nil
	}
	out.Chunks, err = commitSplit(ctx, b, cat, ns, chunk, res.SplitKeys...)
	return out, err
}

// SplitIfNeeded is the package function over this router's backend.
func (s *Server) SplitIfNeeded(ctx context.Context, ns string, chunk catalog.Chunk, maxChunkSize int64) (SplitOutcome, error) {
	b, rep := s.backend()
	if rep != nil {
		return SplitOutcome{}, mongoerr.New(mongoerr.NotYetInitialized, "this router has no connection to the cluster")
	}
	ab, ok := b.(AdminBackend)
	if !ok {
		return SplitOutcome{}, mongoerr.New(mongoerr.CommandNotSupported, "this router's backend has no catalog access")
	}
	return SplitIfNeeded(ctx, ab, ns, chunk, maxChunkSize)
}

// commitSplit commits split points with catalog.SplitChunk and waits for
// the routing metadata to show the result.
func commitSplit(ctx context.Context, b AdminBackend, cat *catalog.Catalog, ns string, chunk catalog.Chunk, points ...bson.Raw) ([]catalog.Chunk, error) {
	chunks, err := cat.SplitChunk(ctx, ns, chunk, points...)
	if err != nil {
		return nil, err // ConflictingOperationInProgress when the chunk changed: re-read and retry
	}
	if err := b.Refresh(ctx); err != nil {
		return chunks, fmt.Errorf("split of %s committed; refreshing the routing metadata: %w", ns, err)
	}
	return chunks, nil
}
