package shardclient

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// Find is a find command's query part. BatchSize is the first batch's
// size: nil means the server's default (101 documents), 0 opens the cursor
// without reading (MongoDB's batchSize: 0); see BatchSize.
type Find struct {
	Filter, Projection, Sort bson.Raw
	Skip, Limit              int64
	BatchSize                *int32
	SingleBatch              bool
	ReadOptions              *shardpb.ReadOptions
	ShardVersion             *shardpb.ShardVersion
}

// Batch is a batch of a server-side cursor; CursorID 0 means the cursor is
// exhausted and closed.
type Batch struct {
	CursorID int64
	NS       string
	Docs     []bson.Raw
}

func batch(r *shardpb.CursorReply) *Batch {
	b := &Batch{CursorID: r.GetCursorId(), NS: r.GetNs(), Docs: make([]bson.Raw, len(r.GetBatch()))}
	for i, d := range r.GetBatch() {
		b.Docs[i] = d
	}
	return b
}

// BatchSize returns a pointer to n, for Find.BatchSize and Aggregate.
func BatchSize(n int32) *int32 { return &n }

func (f Find) request(ns string) *shardpb.FindRequest {
	return &shardpb.FindRequest{Ns: ns, Filter: f.Filter, Projection: f.Projection, Sort: f.Sort, Skip: f.Skip,
		Limit: f.Limit, BatchSize: f.BatchSize, SingleBatch: f.SingleBatch, ReadOptions: f.ReadOptions, ShardVersion: f.ShardVersion}
}

// Find runs a query and returns its first batch.
func (c *Client) Find(ctx context.Context, ns string, f Find) (*Batch, error) {
	r, err := c.shard.Find(ctx, f.request(ns))
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	return batch(r), nil
}

// GetMore returns the next batch of cursor id; batchSize <= 0 means as
// many documents as fit in 16 MiB.
func (c *Client) GetMore(ctx context.Context, ns string, id int64, batchSize int32) (*Batch, error) {
	req := &shardpb.GetMoreRequest{CursorId: id, Ns: ns}
	if batchSize > 0 {
		req.BatchSize = &batchSize
	}
	r, err := c.shard.GetMore(ctx, req)
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	return batch(r), nil
}

// KillCursors closes cursors; it returns the ids that were open and those
// that were not.
func (c *Client) KillCursors(ctx context.Context, ns string, ids ...int64) (killed, notFound []int64, err error) {
	r, err := c.shard.KillCursors(ctx, &shardpb.KillCursorsRequest{Ns: ns, CursorIds: ids})
	if err != nil {
		return nil, nil, rpcerr.Error(err)
	}
	return r.GetCursorsKilled(), r.GetCursorsNotFound(), nil
}

// Drain reads the rest of a cursor after first (getMore until exhausted)
// and returns every document. On an error it kills the cursor.
func (c *Client) Drain(ctx context.Context, first *Batch) ([]bson.Raw, error) {
	out := append([]bson.Raw(nil), first.Docs...)
	b := first
	for b.CursorID != 0 {
		next, err := c.GetMore(ctx, first.NS, b.CursorID, 0)
		if err != nil {
			killCtx := context.WithoutCancel(ctx)
			_, _, _ = c.KillCursors(killCtx, first.NS, b.CursorID)
			return out, err
		}
		out = append(out, next.Docs...)
		b = next
	}
	return out, nil
}

// FindAll runs a query and returns all its results.
func (c *Client) FindAll(ctx context.Context, ns string, f Find) ([]bson.Raw, error) {
	b, err := c.Find(ctx, ns, f)
	if err != nil {
		return nil, err
	}
	return c.Drain(ctx, b)
}

// Count counts matching documents after skip and limit (0: none).
func (c *Client) Count(ctx context.Context, ns string, filter bson.Raw, skip, limit int64) (int64, error) {
	r, err := c.shard.Count(ctx, &shardpb.CountRequest{Ns: ns, Filter: filter, Skip: skip, Limit: limit})
	if err != nil {
		return 0, rpcerr.Error(err)
	}
	return r.GetN(), nil
}

// Distinct returns the distinct values of key among matching documents.
func (c *Client) Distinct(ctx context.Context, ns, key string, filter bson.Raw) ([]bson.RawValue, error) {
	r, err := c.shard.Distinct(ctx, &shardpb.DistinctRequest{Ns: ns, Key: key, Filter: filter})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	if len(r.GetValues()) == 0 {
		return nil, nil
	}
	vals, err := bson.Raw(r.GetValues()).Values()
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "shard sent malformed distinct values: %v", err)
	}
	return vals, nil
}

// Aggregate runs a pipeline and returns its first batch of batchSize
// documents (nil: the default 101; 0: none, the cursor is only opened).
func (c *Client) Aggregate(ctx context.Context, ns string, pipeline []bson.Raw, batchSize *int32) (*Batch, error) {
	return c.aggregate(ctx, &shardpb.AggregateRequest{Ns: ns, Pipeline: raws(pipeline), BatchSize: batchSize})
}

// AggregateShardPart runs only the shard part of the pipeline's
// aggregate.Split on the shard (the caller merges the shards' outputs and
// runs the merge part itself) and returns its first batch, as Aggregate.
func (c *Client) AggregateShardPart(ctx context.Context, ns string, pipeline []bson.Raw, batchSize *int32) (*Batch, error) {
	return c.aggregate(ctx, &shardpb.AggregateRequest{Ns: ns, Pipeline: raws(pipeline), BatchSize: batchSize, ShardPart: true})
}

func (c *Client) aggregate(ctx context.Context, req *shardpb.AggregateRequest) (*Batch, error) {
	r, err := c.shard.Aggregate(ctx, req)
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	return batch(r), nil
}

// Explain returns the queryPlanner document of a find.
func (c *Client) Explain(ctx context.Context, ns string, f Find) (bson.Raw, error) {
	r, err := c.shard.Explain(ctx, &shardpb.ExplainRequest{Find: f.request(ns), Verbosity: "queryPlanner"})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	return r.GetQueryPlanner(), nil
}
