package shardclient

import (
	"context"

	"google.golang.org/grpc"

	"github.com/psdb/psdb/proto/shardpb"
)

// The router sends every data request with the ShardVersion it targeted
// the shard with (docs/design/shard-versions.md). Methods whose options
// have a ShardVersion field take it there; for the others (Count,
// Distinct, Aggregate) and for requests built by hand on a connection
// dialed with DialOptions, the version travels in the context: a request
// made with a context from WithShardVersion gets that version unless it
// already has one.

type shardVersionKey struct{}

// WithShardVersion returns ctx carrying v for the Shard requests made
// with it; nil v leaves ctx as is.
func WithShardVersion(ctx context.Context, v *shardpb.ShardVersion) context.Context {
	if v == nil {
		return ctx
	}
	return context.WithValue(ctx, shardVersionKey{}, v)
}

// ShardVersionFrom returns the version WithShardVersion put in ctx, or nil.
func ShardVersionFrom(ctx context.Context) *shardpb.ShardVersion {
	v, _ := ctx.Value(shardVersionKey{}).(*shardpb.ShardVersion)
	return v
}

// attachShardVersion is the unary client interceptor of DialOptions: it
// sets the context's ShardVersion on a data request that has none for the
// duration of the call, and clears it again afterwards, so a caller that
// sends the same message again with another context sends that context's
// version.
func attachShardVersion(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if v := ShardVersionFrom(ctx); v != nil {
		if slot := versionSlot(req); slot != nil && *slot == nil {
			*slot = v
			defer func() { *slot = nil }()
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// versionSlot returns the ShardVersion field of a data request, nil for
// other messages.
func versionSlot(req any) **shardpb.ShardVersion {
	switch r := req.(type) {
	case *shardpb.InsertRequest:
		return &r.ShardVersion
	case *shardpb.UpdateRequest:
		return &r.ShardVersion
	case *shardpb.DeleteRequest:
		return &r.ShardVersion
	case *shardpb.FindAndModifyRequest:
		return &r.ShardVersion
	case *shardpb.FindRequest:
		return &r.ShardVersion
	case *shardpb.CountRequest:
		return &r.ShardVersion
	case *shardpb.DistinctRequest:
		return &r.ShardVersion
	case *shardpb.AggregateRequest:
		return &r.ShardVersion
	case *shardpb.CreateIndexesRequest:
		return &r.ShardVersion
	case *shardpb.DropIndexesRequest:
		return &r.ShardVersion
	case *shardpb.ExplainRequest:
		if r.GetFind() != nil {
			return &r.Find.ShardVersion
		}
	}
	return nil
}
