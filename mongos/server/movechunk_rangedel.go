package server

import (
	"context"
	"fmt"
	"time"

	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// scheduleRangeDeletion records the deletion of the moved range on the
// donor shard, after the commit. The commit is done, so the task must not
// be lost with a donor primary that dies in this window (nothing else
// would ever delete the range): a call refused or unanswered because the
// primary is gone or changing is sent again to the shard's current primary
// (the router's member view follows the failover), until moveCleanupTimeout.
// Scheduling is idempotent: a second task for the same range deletes what
// the first left. The call also starts the new primary's range deleter, so
// tasks its predecessor recorded are resumed too.
func (m *mover) scheduleRangeDeletion(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), moveCleanupTimeout)
	defer cancel()
	peer := m.donor
	backoff := 50 * time.Millisecond
	for {
		_, err := peer.cli.DeleteRange(ctx, &shardpb.DeleteRangeRequest{Range: m.rng})
		if err == nil {
			return nil
		}
		err = rpcerr.Error(err)
		if decide(opRetryableWrite, err) != actRetry {
			return err
		}
		m.log.Info().Err(err).Str("donor", peer.addr).Msg("scheduling the range deletion failed; retrying on the donor shard's current primary")
		select {
		case <-ctx.Done():
			return fmt.Errorf("schedule the range deletion on shard %s: %w (last error: %v)", m.chunk.Shard, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		if p, perr := migrationPrimary(ctx, m.ab, m.chunk.Shard); perr == nil {
			peer = p
		}
	}
}
