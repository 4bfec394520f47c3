package shardclient

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// SplitVector asks for split points of one chunk range (the Shard
// service's SplitVector; docs/design/splits.md).
type SplitVector struct {
	KeyPattern bson.Raw // the shard key, {a: 1} or {k: "hashed"}
	Min, Max   bson.Raw // the chunk's bounds [Min, Max)
	// MaxChunkBytes > 0: points cutting a larger range into pieces of
	// about half of it; 0 without Force only measures the range.
	MaxChunkBytes int64
	Force         bool // one point at the median (hash midpoint when hashed)
	MaxPoints     int32
}

// SplitVectorResult is the shard's answer.
type SplitVectorResult struct {
	SplitKeys []bson.Raw // increasing, strictly inside (Min, Max)
	DataSize  int64
	NumDocs   int64
	Jumbo     bool // too large (or forced) but one key value only
	IndexUsed string
}

// SplitVector measures a chunk range and returns its split points.
func (c *Client) SplitVector(ctx context.Context, ns string, sv SplitVector) (*SplitVectorResult, error) {
	r, err := c.shard.SplitVector(ctx, &shardpb.SplitVectorRequest{
		Ns: ns, KeyPattern: sv.KeyPattern, Min: sv.Min, Max: sv.Max,
		MaxChunkSizeBytes: sv.MaxChunkBytes, Force: sv.Force, MaxSplitPoints: sv.MaxPoints,
	})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	out := &SplitVectorResult{DataSize: r.GetDataSize(), NumDocs: r.GetNumDocs(), Jumbo: r.GetJumbo(),
		IndexUsed: r.GetIndexUsed(), SplitKeys: make([]bson.Raw, len(r.GetSplitKeys()))}
	for i, k := range r.GetSplitKeys() {
		out.SplitKeys[i] = k
	}
	return out, nil
}

// ChunkSize measures a chunk range: its documents' bytes and count.
func (c *Client) ChunkSize(ctx context.Context, ns string, keyPattern, lo, hi bson.Raw) (dataSize, numDocs int64, err error) {
	r, err := c.SplitVector(ctx, ns, SplitVector{KeyPattern: keyPattern, Min: lo, Max: hi})
	if err != nil {
		return 0, 0, err
	}
	return r.DataSize, r.NumDocs, nil
}
