package executor

import (
	"context"

	"github.com/psdb/psdb/shardd/storage"
)

// SnapshotWait is called by a read once its snapshot is open, with the
// optime of the snapshot's newest entry; the read goes on only when it
// returns nil. readConcern "majority" uses it to wait until that optime is
// majority-committed, so the read sees committed data only and nothing
// newer (the snapshot is fixed before the wait).
type SnapshotWait func(ctx context.Context, at storage.OpTime) error

type snapshotWaitKey struct{}

// WithSnapshotWait returns a context whose reads call w after opening
// their snapshot.
func WithSnapshotWait(ctx context.Context, w SnapshotWait) context.Context {
	return context.WithValue(ctx, snapshotWaitKey{}, w)
}

// waitSnapshot runs the context's SnapshotWait, if any, for snap.
func waitSnapshot(ctx context.Context, snap *storage.Snapshot) error {
	w, _ := ctx.Value(snapshotWaitKey{}).(SnapshotWait)
	if w == nil {
		return nil
	}
	at, err := snap.OpTime()
	if err != nil {
		return err
	}
	return w(ctx, at)
}
