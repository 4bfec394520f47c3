package migrate

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/storage"
)

// DefaultDeleteBatch is the number of documents one range-deletion batch
// deletes (one storage batch, one oplog entry each).
const DefaultDeleteBatch = 500

// RangeDeletionsNS is where a shard keeps its pending range deletions, one
// document per task, as MongoDB's config.rangeDeletions: ordinary
// replicated documents, so a new primary finds the tasks of the old one.
const RangeDeletionsNS = "config.rangeDeletions"

// DeleteRangeDocuments deletes the documents of r from eng in batches of
// at most batch documents (default DefaultDeleteBatch), as local writes
// with one "d" oplog entry each, so the member's secondaries delete them
// too. Each pass scans a snapshot; a document is deleted only if its
// current version still belongs to r (checked under the write lock).
// Passes repeat until one finds nothing, so documents written into the
// range during a pass are deleted as well. It returns how many documents
// it deleted; it is resumable: after an interruption, calling it again
// deletes the rest.
func DeleteRangeDocuments(ctx context.Context, eng *storage.Engine, r Range, batch int) (int64, error) {
	return deleteRange(ctx, eng, r, batch, nil)
}

// deleteRange is DeleteRangeDocuments; check, when set, runs before each
// batch (the member must still be primary).
func deleteRange(ctx context.Context, eng *storage.Engine, r Range, batch int, check func() error) (int64, error) {
	if batch <= 0 {
		batch = DefaultDeleteBatch
	}
	var total int64
	for {
		found := 0
		snap, err := eng.Snapshot()
		if err != nil {
			return total, err
		}
		var ids []bson.RawValue
		flush := func() error {
			if len(ids) == 0 {
				return nil
			}
			if check != nil {
				if err := check(); err != nil {
					return err
				}
			}
			n, _, err := eng.DeleteDocuments(ctx, r.NS, ids, r.Contains)
			total += int64(n)
			ids = ids[:0]
			return err
		}
		_, err = r.Scan(ctx, snap, func(doc bson.Raw) error {
			id, err := doc.LookupErr("_id")
			if err != nil {
				return fmt.Errorf("document of %s without _id: %w", r, storage.ErrCorrupt)
			}
			found++
			ids = append(ids, id)
			if len(ids) >= batch {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		_ = snap.Close()
		if err != nil {
			return total, err
		}
		if found == 0 {
			return total, nil
		}
	}
}

// rangeTask is the stored form of a pending range deletion.
type rangeTask struct {
	ID      bson.ObjectID `bson:"_id"`
	NS      string        `bson:"ns"`
	Key     bson.Raw      `bson:"key"`
	Min     bson.Raw      `bson:"min"`
	Max     bson.Raw      `bson:"max"`
	Created time.Time     `bson:"created"`
}

// RangeDeleter deletes the ranges a donor gave away, in the background.
// Schedule records a task durably in RangeDeletionsNS (a replicated
// insert); Run works through every recorded task, oldest first, deleting
// its range with DeleteRangeDocuments and then the task. A task survives
// a crash or a failover and is resumed by the next Run on the primary.
// It is safe for concurrent use; Run is one goroutine, owned by its
// caller's context.
type RangeDeleter struct {
	eng   *storage.Engine
	log   zerolog.Logger
	batch int
	// CheckWritable, when set, runs before every batch: a member that is
	// no longer primary stops deleting (the task stays recorded for the
	// next primary). Set it before Run.
	CheckWritable func() error

	wake chan struct{}

	mu      sync.Mutex
	waiters map[bson.ObjectID][]chan taskResult
}

type taskResult struct {
	deleted int64
	err     error
}

// NewRangeDeleter returns a deleter over eng; batch <= 0 means
// DefaultDeleteBatch.
func NewRangeDeleter(eng *storage.Engine, log zerolog.Logger, batch int) *RangeDeleter {
	return &RangeDeleter{eng: eng, log: log.With().Str(logging.FieldOp, "rangeDeleter").Logger(), batch: batch,
		wake: make(chan struct{}, 1), waiters: map[bson.ObjectID][]chan taskResult{}}
}

// Schedule records the deletion of r and wakes Run. It returns the task's
// id (for Wait).
func (d *RangeDeleter) Schedule(ctx context.Context, r Range) (bson.ObjectID, error) {
	kp := r.Proto().GetKeyPattern()
	t := rangeTask{ID: bson.NewObjectID(), NS: r.NS, Key: kp, Min: r.Min, Max: r.Max, Created: time.Now().UTC().Truncate(time.Millisecond)}
	doc, err := bson.Marshal(t)
	if err != nil {
		return bson.ObjectID{}, fmt.Errorf("encode range deletion task: %w", err)
	}
	res, err := d.eng.Insert(ctx, RangeDeletionsNS, []bson.Raw{doc}, storage.WriteOptions{Ordered: true})
	if err != nil {
		return bson.ObjectID{}, fmt.Errorf("record range deletion of %s: %w", r, err)
	}
	if res[0].Err != nil {
		return bson.ObjectID{}, fmt.Errorf("record range deletion of %s: %w", r, res[0].Err)
	}
	d.Kick()
	return t.ID, nil
}

// Kick makes Run look for tasks (a new primary resuming its predecessor's).
func (d *RangeDeleter) Kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Wait returns when task id is done (its range deleted and the task
// removed), with the number of documents deleted, or when ctx ends. A task
// that is already done (or unknown) is waited for until the next pass of
// Run finishes without it.
func (d *RangeDeleter) Wait(ctx context.Context, id bson.ObjectID) (int64, error) {
	ch := make(chan taskResult, 1)
	d.mu.Lock()
	d.waiters[id] = append(d.waiters[id], ch)
	d.mu.Unlock()
	d.Kick()
	select {
	case r := <-ch:
		return r.deleted, r.err
	case <-ctx.Done():
		d.mu.Lock()
		list := d.waiters[id]
		for i, c := range list {
			if c == ch {
				d.waiters[id] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(d.waiters[id]) == 0 {
			delete(d.waiters, id)
		}
		d.mu.Unlock()
		return 0, mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "waiting for range deletion: %v", ctx.Err())
	}
}

// Pending returns the recorded tasks' ranges, oldest first.
func (d *RangeDeleter) Pending() ([]Range, error) {
	tasks, err := d.tasks()
	if err != nil {
		return nil, err
	}
	out := make([]Range, 0, len(tasks))
	for _, t := range tasks {
		r, err := NewRange(t.NS, t.Key, t.Min, t.Max)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (d *RangeDeleter) tasks() ([]rangeTask, error) {
	snap, err := d.eng.Snapshot()
	if err != nil {
		return nil, err
	}
	defer func() { _ = snap.Close() }()
	it, err := snap.ScanIDRange(RangeDeletionsNS, storage.IDRange{}, false)
	if err != nil {
		return nil, err
	}
	defer func() { _ = it.Close() }()
	var out []rangeTask
	for it.Next() {
		var t rangeTask
		if err := bson.Unmarshal(it.Doc(), &t); err != nil {
			return nil, fmt.Errorf("range deletion task %s: %v: %w", it.ID(), err, storage.ErrCorrupt)
		}
		out = append(out, t)
	}
	return out, it.Err() // ObjectIds grow with time: oldest first
}

// Run deletes the recorded ranges until ctx ends: one pass over every
// task at start and whenever Schedule or Kick wakes it. A failed task is
// logged and retried after retry (default 1 s). It returns ctx's error.
func (d *RangeDeleter) Run(ctx context.Context, retry time.Duration) error {
	if retry <= 0 {
		retry = time.Second
	}
	var timer <-chan time.Time
	for {
		failed := d.pass(ctx)
		timer = nil
		if failed {
			timer = time.After(retry)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.wake:
		case <-timer:
		}
	}
}

// pass works through the recorded tasks once; it reports whether one
// failed.
func (d *RangeDeleter) pass(ctx context.Context) (failed bool) {
	tasks, err := d.tasks()
	if err != nil {
		d.log.Warn().Err(err).Msg("cannot read the range deletion tasks")
		return true
	}
	seen := map[bson.ObjectID]bool{}
	for _, t := range tasks {
		if ctx.Err() != nil {
			return false
		}
		seen[t.ID] = true
		n, err := d.runTask(ctx, t)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn().Err(err).Str(logging.FieldNS, t.NS).Msg("range deletion failed; retrying later")
			}
			failed = true
			continue
		}
		d.finish(t.ID, taskResult{deleted: n})
	}
	// Waiters of tasks that are not recorded (done before they waited).
	d.mu.Lock()
	var gone []bson.ObjectID
	for id := range d.waiters {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	d.mu.Unlock()
	for _, id := range gone {
		// Done before the waiter came, unless it was recorded after this
		// pass read the tasks (the next pass, which Wait kicked, runs it).
		_, found, err := d.eng.Get(RangeDeletionsNS, bson.RawValue{Type: bson.TypeObjectID, Value: id[:]})
		if err == nil && !found {
			d.finish(id, taskResult{})
		}
	}
	return failed
}

func (d *RangeDeleter) runTask(ctx context.Context, t rangeTask) (int64, error) {
	r, err := NewRange(t.NS, t.Key, t.Min, t.Max)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if d.CheckWritable != nil {
		if err := d.CheckWritable(); err != nil {
			return 0, err
		}
	}
	n, err := deleteRange(ctx, d.eng, r, d.batch, d.CheckWritable)
	if err != nil {
		return n, err
	}
	idv := bson.RawValue{Type: bson.TypeObjectID, Value: t.ID[:]}
	if _, err := d.eng.Delete(ctx, RangeDeletionsNS, idv); err != nil {
		return n, fmt.Errorf("remove range deletion task of %s: %w", r, err)
	}
	d.log.Info().Str(logging.FieldNS, r.NS).Str("range", r.String()).Int64("docs", n).
		Dur(logging.FieldDur, time.Since(start)).Msg("range deleted")
	return n, nil
}

func (d *RangeDeleter) finish(id bson.ObjectID, r taskResult) {
	d.mu.Lock()
	list := d.waiters[id]
	delete(d.waiters, id)
	d.mu.Unlock()
	for _, ch := range list {
		ch <- r
	}
}
