package shardclient

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// CreateCollection creates an empty collection.
func (c *Client) CreateCollection(ctx context.Context, ns string) error {
	_, err := c.shard.CreateCollection(ctx, &shardpb.CreateCollectionRequest{Ns: ns})
	return rpcerr.Error(err)
}

// DropCollection drops a collection; it returns how many indexes it had.
func (c *Client) DropCollection(ctx context.Context, ns string) (int, error) {
	r, err := c.shard.DropCollection(ctx, &shardpb.DropCollectionRequest{Ns: ns})
	if err != nil {
		return 0, rpcerr.Error(err)
	}
	return int(r.GetNIndexesWas()), nil
}

// CreateIndexesResult is createIndexes' answer.
type CreateIndexesResult struct {
	NumIndexesBefore, NumIndexesAfter int
	CreatedCollectionAutomatically    bool
	Note                              string
}

// CreateIndexes builds indexes from MongoDB index specs {key, name,
// unique, sparse}.
func (c *Client) CreateIndexes(ctx context.Context, ns string, specs ...bson.Raw) (*CreateIndexesResult, error) {
	r, err := c.shard.CreateIndexes(ctx, &shardpb.CreateIndexesRequest{Ns: ns, Specs: raws(specs)})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	return &CreateIndexesResult{NumIndexesBefore: int(r.GetNumIndexesBefore()), NumIndexesAfter: int(r.GetNumIndexesAfter()),
		CreatedCollectionAutomatically: r.GetCreatedCollectionAutomatically(), Note: r.GetNote()}, nil
}

// DropIndexes drops indexes by name ("*": all but _id_); it returns how
// many indexes the collection had.
func (c *Client) DropIndexes(ctx context.Context, ns string, names ...string) (int, error) {
	r, err := c.shard.DropIndexes(ctx, &shardpb.DropIndexesRequest{Ns: ns, Names: names})
	if err != nil {
		return 0, rpcerr.Error(err)
	}
	return int(r.GetNIndexesWas()), nil
}

// DropIndexByKey drops the index with the given key pattern.
func (c *Client) DropIndexByKey(ctx context.Context, ns string, key bson.Raw) (int, error) {
	r, err := c.shard.DropIndexes(ctx, &shardpb.DropIndexesRequest{Ns: ns, KeyPattern: key})
	if err != nil {
		return 0, rpcerr.Error(err)
	}
	return int(r.GetNIndexesWas()), nil
}

// ListIndexes returns the index documents {v, key, name, unique?, sparse?}.
func (c *Client) ListIndexes(ctx context.Context, ns string) ([]bson.Raw, error) {
	r, err := c.shard.ListIndexes(ctx, &shardpb.ListIndexesRequest{Ns: ns})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	out := make([]bson.Raw, len(r.GetSpecs()))
	for i, s := range r.GetSpecs() {
		out[i] = s
	}
	return out, nil
}

// ListCollections returns the namespaces of db ("" for all), sorted.
func (c *Client) ListCollections(ctx context.Context, db string) ([]string, error) {
	r, err := c.shard.ListCollections(ctx, &shardpb.ListCollectionsRequest{Db: db})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	out := make([]string, len(r.GetCollections()))
	for i, ci := range r.GetCollections() {
		out[i] = ci.GetNs()
	}
	return out, nil
}

// CollStats returns a collection's statistics.
func (c *Client) CollStats(ctx context.Context, ns string) (*shardpb.CollStatsReply, error) {
	r, err := c.shard.CollStats(ctx, &shardpb.CollStatsRequest{Ns: ns})
	return r, rpcerr.Error(err)
}

// Validate checks a collection.
func (c *Client) Validate(ctx context.Context, ns string) (*shardpb.ValidateReply, error) {
	r, err := c.shard.Validate(ctx, &shardpb.ValidateRequest{Ns: ns})
	return r, rpcerr.Error(err)
}
