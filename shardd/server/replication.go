package server

import (
	"context"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// replicationNotBuilt answers every Replication call with CommandNotFound
// (gRPC Unimplemented): the service is defined in proto/shard.proto for
// the replication work of issue 5, which replaces this type. Nothing here
// pretends to replicate.
type replicationNotBuilt struct {
	shardpb.UnimplementedReplicationServer
}

func notBuilt(method string) error {
	return mongoerr.New(mongoerr.CommandNotFound, "replication is not built yet: %s is not served by this shardd", method)
}

func (replicationNotBuilt) PullOplog(*shardpb.PullOplogRequest, shardpb.Replication_PullOplogServer) error {
	return notBuilt("PullOplog")
}

func (replicationNotBuilt) ReportProgress(context.Context, *shardpb.ProgressRequest) (*shardpb.ProgressReply, error) {
	return nil, notBuilt("ReportProgress")
}

func (replicationNotBuilt) RequestVote(context.Context, *shardpb.VoteRequest) (*shardpb.VoteReply, error) {
	return nil, notBuilt("RequestVote")
}

func (replicationNotBuilt) Status(context.Context, *shardpb.StatusRequest) (*shardpb.StatusReply, error) {
	return nil, notBuilt("Status")
}

func (replicationNotBuilt) StepDown(context.Context, *shardpb.StepDownRequest) (*shardpb.StepDownReply, error) {
	return nil, notBuilt("StepDown")
}

func (replicationNotBuilt) CloneSnapshot(*shardpb.CloneRequest, shardpb.Replication_CloneSnapshotServer) error {
	return notBuilt("CloneSnapshot")
}
