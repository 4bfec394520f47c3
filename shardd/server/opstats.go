package server

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/psdb/psdb/pkg/opstats"
	"github.com/psdb/psdb/proto/shardpb"
)

// OpStatsInterceptor returns a unary interceptor that records every call's
// type and duration in rec (package opstats, for the member's load line).
// Install it with NewGRPCServer(grpc.ChainUnaryInterceptor(...)): it then
// runs inside dispatch and times the handler. Calls of the Shard service
// are counted as MongoDB's opcounters count commands (Find is a query,
// FindAndModify a command, ...); calls of the Replication and Migration
// services as opstats.OpRepl and opstats.OpMigration; health checks are
// not counted. Streaming calls (oplog pulls, clones) are not counted.
func OpStatsInterceptor(rec *opstats.Recorder) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		op := rpcOpType(info.FullMethod)
		if op == "" {
			return handler(ctx, req)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		rec.Record(op, time.Since(start))
		return resp, err
	}
}

// rpcOpType maps a full gRPC method name ("/psdb.shard.v1.Shard/Insert")
// to its opstats type; "" means not counted.
func rpcOpType(fullMethod string) string {
	service, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return ""
	}
	switch service {
	case shardpb.Shard_ServiceDesc.ServiceName:
		switch method {
		case "Insert":
			return opstats.OpInsert
		case "Update":
			return opstats.OpUpdate
		case "Delete":
			return opstats.OpDelete
		case "Find":
			return opstats.OpQuery
		case "GetMore":
			return opstats.OpGetMore
		}
		return opstats.OpCommand
	case shardpb.Replication_ServiceDesc.ServiceName:
		return opstats.OpRepl
	case shardpb.Migration_ServiceDesc.ServiceName:
		return opstats.OpMigration
	}
	return ""
}
