package shardclient

import (
	"context"

	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// ReplicationStatus asks the shardd at addr for its replica-set status
// (shaped after replSetGetStatus) over a connection of its own, closed
// before it returns: for callers that ask now and then, such as `psdb
// cluster status` and the router's replSetGetStatus.
func ReplicationStatus(ctx context.Context, addr string) (*shardpb.StatusReply, error) {
	c, err := Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st, err := shardpb.NewReplicationClient(c.conn).Status(ctx, &shardpb.StatusRequest{})
	return st, rpcerr.Error(err)
}
