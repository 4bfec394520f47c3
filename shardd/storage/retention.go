package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Oplog retention (docs/design/initial-sync.md). The oplog grows by one
// entry per write; retention deletes its oldest entries. A member whose
// next entry was deleted on its sync source is told RemoteOplogStale by
// PullOplog and must resync (initial sync).
//
// Truncation keeps the newest entry, and records the newest removed entry
// as the oplog's base (HasOplogEntry holds it), so that a puller whose last
// entry is exactly the base still resumes.

// RetentionPolicy says which oplog entries may be deleted. An entry is
// deleted when the oplog exceeds MaxEntries or MaxBytes, oldest first, but
// never one younger than MinRetention, and never the newest entry.
type RetentionPolicy struct {
	// MaxEntries bounds the number of entries (0: no bound).
	MaxEntries uint64
	// MaxBytes is the oplog's target size as Pebble estimates it on disk
	// (compressed, flushed tables only: recent entries still in the
	// memtable are not counted); 0: no bound.
	MaxBytes int64
	// MinRetention: an entry whose wall time is younger is never deleted
	// (MongoDB's oplogMinRetentionHours); 0: none.
	MinRetention time.Duration
}

// TruncateOplog deletes the oplog entries older than before, but never
// the newest entry, and records the newest deleted entry as the oplog's
// base; it returns how many entries it deleted. It runs under the write
// lock in one small batch (a range deletion). Readers that stream from a
// deleted position get the next held entry, which ApplyOplog refuses as a
// gap; a new PullOplog from there answers RemoteOplogStale.
// It deletes nothing while an initial sync is pending.
func (e *Engine) TruncateOplog(ctx context.Context, before OpTime) (removed int, err error) {
	if err := e.begin(); err != nil {
		return 0, err
	}
	defer e.end()
	if err := e.lock(ctx); err != nil {
		return 0, err
	}
	defer e.unlock()
	if e.syncPending.Load() {
		return 0, nil
	}
	if before.Compare(e.last) > 0 {
		before = e.last // the newest entry stays
	}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixOplog}, UpperBound: oplogKey(before)})
	if err != nil {
		return 0, fmt.Errorf("truncate oplog: %w", err)
	}
	var first, newest OpTime
	found := it.First()
	if found {
		if first, err = decodeOpTime(it.Key()[1:]); err == nil && it.Last() {
			newest, err = decodeOpTime(it.Key()[1:])
		}
	}
	if cerr := errors.Join(it.Error(), it.Close()); cerr != nil || err != nil {
		return 0, fmt.Errorf("truncate oplog: %w", errors.Join(err, cerr))
	}
	if !found {
		return 0, nil
	}
	b := e.db.NewBatch()
	defer func() { _ = b.Close() }()
	_ = b.DeleteRange([]byte{prefixOplog}, successor(oplogKey(newest)), nil)
	_ = b.Set(metaKey(metaOplogBase), encodeOpTime(newest), nil)
	if err := b.Commit(e.writeOptions()); err != nil {
		return 0, fmt.Errorf("truncate oplog before %s: %w", before, err)
	}
	removed = int(newest.Index - first.Index + 1) // indexes grow by one per entry
	e.log.Info().Str("op", "truncateOplog").Stringer("through", newest).Int("removed", removed).Msg("oplog truncated")
	return removed, nil
}

// ApplyRetention deletes the entries the policy allows (now is the
// current wall time, for MinRetention) and returns how many it deleted.
func (e *Engine) ApplyRetention(ctx context.Context, p RetentionPolicy, now time.Time) (int, error) {
	before, ok, err := e.retentionPoint(p, now)
	if err != nil || !ok {
		return 0, err
	}
	return e.TruncateOplog(ctx, before)
}

// retentionPoint returns the optime of the oldest entry the policy keeps;
// ok is false when nothing is to be deleted.
func (e *Engine) retentionPoint(p RetentionPolicy, now time.Time) (OpTime, bool, error) {
	if err := e.begin(); err != nil {
		return OpTime{}, false, err
	}
	defer e.end()
	if e.syncPending.Load() {
		return OpTime{}, false, nil
	}
	last := e.LastOpTime()
	lo, hi := []byte{prefixOplog}, successor(oplogKey(last))
	// cut: every entry with an index up to it exceeds a bound.
	var cut uint64
	if p.MaxEntries > 0 && last.Index > p.MaxEntries {
		cut = last.Index - p.MaxEntries
	}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return OpTime{}, false, fmt.Errorf("oplog retention: %w", err)
	}
	defer func() { _ = it.Close() }()
	ok := it.First()
	if !ok {
		return OpTime{}, false, it.Error()
	}
	var excess int64
	if p.MaxBytes > 0 {
		// From the first held entry: deleted entries whose range deletion
		// is not compacted yet must not count again.
		size, err := e.db.EstimateDiskUsage(it.Key(), hi)
		if err != nil {
			return OpTime{}, false, fmt.Errorf("oplog size: %w", err)
		}
		excess = int64(size) - p.MaxBytes
	}
	if cut == 0 && excess <= 0 {
		return OpTime{}, false, nil
	}
	var removedBytes int64
	for ; ok; ok = it.Next() {
		t, err := decodeOpTime(it.Key()[1:])
		if err != nil {
			return OpTime{}, false, err
		}
		if t.Index > cut && removedBytes >= excess {
			return t, true, nil // the first entry no bound removes
		}
		if p.MinRetention > 0 {
			o, err := decodeOplogEntry(it.Key(), it.Value())
			if err != nil {
				return OpTime{}, false, err
			}
			if now.Sub(o.Wall) < p.MinRetention {
				return t, true, nil // younger entries are kept
			}
		}
		removedBytes += int64(len(it.Key()) + len(it.Value()))
	}
	if err := it.Error(); err != nil {
		return OpTime{}, false, fmt.Errorf("oplog retention: %w", err)
	}
	return last, true, nil // TruncateOplog keeps the newest entry
}
