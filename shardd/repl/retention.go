package repl

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/shardd/storage"
)

// DefaultRetentionInterval is the pause between two retention passes.
const DefaultRetentionInterval = time.Minute

// RetentionOptions configure RunOplogRetention.
type RetentionOptions struct {
	// Engine is the member's store. Required.
	Engine *storage.Engine
	// Policy says which entries may be deleted (config: shard's oplog
	// settings, see docs/design/initial-sync.md).
	Policy storage.RetentionPolicy
	// Interval is the pause between passes (default DefaultRetentionInterval).
	Interval time.Duration
	// Logger should carry the node, role and shard fields.
	Logger zerolog.Logger
	// Now is the wall clock (default time.Now); tests set it.
	Now func() time.Time
}

// RetentionPolicyOf converts a shard's configured oplog retention
// (config.Cluster.OplogRetentionOf) to the storage policy.
func RetentionPolicyOf(r config.OplogRetention) storage.RetentionPolicy {
	p := storage.RetentionPolicy{MaxBytes: int64(r.MaxBytes), MinRetention: r.MinRetention}
	if r.MaxEntries > 0 {
		p.MaxEntries = uint64(r.MaxEntries)
	}
	return p
}

// RunOplogRetention deletes the oplog entries the policy allows, once at
// start and then every Interval, until ctx ends (it then returns ctx's
// error). Every member runs it, primary or secondary: a member's oplog is
// what its chained pullers and a new primary's followers read. A failed
// pass is logged and retried at the next interval; while an initial sync
// is pending nothing is deleted. The caller owns the goroutine.
func RunOplogRetention(ctx context.Context, o RetentionOptions) error {
	if o.Engine == nil {
		return errors.New("repl.RunOplogRetention: Engine is required")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultRetentionInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger.With().Str(logging.FieldOp, "oplogRetention").Logger()
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		start := time.Now()
		n, err := o.Engine.ApplyRetention(ctx, o.Policy, o.Now())
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, storage.ErrClosed):
			return err
		case err != nil:
			log.Warn().Err(err).Msg("oplog retention pass failed")
		case n > 0:
			log.Debug().Int("removed", n).Dur(logging.FieldDur, time.Since(start)).Msg("oplog truncated")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
