package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Run runs cfg's workload with cfg.Threads workers until cfg.Duration
// has passed or cfg.Ops operations have started, whichever comes first,
// against records loaded earlier (Load). Workload "load" is Load.
func Run(ctx context.Context, cli *mongo.Client, cfg Config, progress *Progress) (*Report, error) {
	if cfg.Workload == "load" {
		return Load(ctx, cli, cfg, progress)
	}
	e := newEngine(cli, cfg, progress)
	if err := e.runWorkload(ctx, cfg.Threads, time.Duration(cfg.Duration), cfg.Ops); err != nil {
		return e.report("run"), err
	}
	return e.report("run"), nil
}

// runWorkload runs the workload with threads workers for d (0: no time
// bound) or ops operations (0: no count bound).
func (e *engine) runWorkload(ctx context.Context, threads int, d time.Duration, ops int64) error {
	w, err := LookupWorkload(e.cfg.Workload)
	if err != nil {
		return err
	}
	dist := e.cfg.Distribution
	if dist == "" {
		dist = w.Distribution
	}
	e.cfg.Distribution = dist
	newChooser, err := chooserFactory(dist, e.cfg.Records)
	if err != nil {
		return err
	}
	inserts := NewInsertCounter(e.cfg.Records)
	if w.Mix[OpInsert] > 0 {
		// Inserts continue after the highest key present (an earlier run
		// of D or E inserted past Records), so they never collide.
		next, err := e.nextRecord(ctx)
		if err != nil {
			return err
		}
		if next > e.cfg.Records {
			inserts = NewInsertCounter(next)
		}
	}
	gen := newDocGen(e.cfg)
	var budget atomic.Int64
	budget.Store(ops)
	var deadline time.Time
	if d > 0 {
		deadline = time.Now().Add(d)
	}
	e.execute(ctx, threads, func(ctx context.Context, i int, rec *Recorder) {
		wk := &worker{e: e, rec: rec, r: e.seed(i), keys: newChooser(), ops: newOpChooser(w), gen: gen, inserts: inserts, maxScan: max(w.MaxScan, 1)}
		for ctx.Err() == nil {
			if !deadline.IsZero() && !time.Now().Before(deadline) {
				return
			}
			if ops > 0 && budget.Add(-1) < 0 {
				return
			}
			wk.one(ctx)
		}
	})
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("run interrupted: %w", err)
	}
	return nil
}

// nextRecord returns one more than the record number of the highest
// record key in the collection (0 if there is none).
func (e *engine) nextRecord(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(e.cfg.OpTimeout))
	defer cancel()
	var doc struct {
		ID any `bson:"_id"`
	}
	err := e.coll.FindOne(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: keyPrefix}, {Key: "$lt", Value: keyPrefix + ":"}}}},
		options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}}).SetProjection(bson.D{{Key: "_id", Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find the highest record key: %w", err)
	}
	id, _ := doc.ID.(string)
	n, ok := ParseKey(id)
	if !ok {
		return 0, nil
	}
	return n + 1, nil
}

// worker is one client thread of a workload.
type worker struct {
	e       *engine
	rec     *Recorder
	r       *rand.Rand
	keys    KeyChooser
	ops     *opChooser
	gen     *docGen
	inserts *InsertCounter
	maxScan int
}

// one runs one operation and records it (nothing when ctx ended: an
// interrupted operation is not a measurement).
func (w *worker) one(ctx context.Context) {
	op := w.ops.next(w.r)
	opCtx, cancel := context.WithTimeout(ctx, time.Duration(w.e.cfg.OpTimeout))
	defer cancel()
	sm := w.e.shards.Load()
	coll := w.e.coll
	var (
		err   error
		shard string
	)
	t0 := time.Now()
	switch op {
	case OpRead:
		id := KeyName(w.keys.Next(w.r, w.inserts.Limit()))
		shard = sm.Owner(id)
		err = coll.FindOne(opCtx, bson.D{{Key: "_id", Value: id}}).Err()
	case OpUpdate:
		id := KeyName(w.keys.Next(w.r, w.inserts.Limit()))
		shard = sm.Owner(id)
		err = w.update(opCtx, id)
	case OpRMW:
		id := KeyName(w.keys.Next(w.r, w.inserts.Limit()))
		shard = sm.Owner(id)
		// Read the record, then write one of its fields back changed
		// (YCSB's read-modify-write), as one operation.
		if err = coll.FindOne(opCtx, bson.D{{Key: "_id", Value: id}}).Err(); err == nil {
			err = w.update(opCtx, id)
		}
	case OpScan:
		id := KeyName(w.keys.Next(w.r, w.inserts.Limit()))
		shard = sm.ScanOwner(id)
		n := int64(1 + w.r.IntN(w.maxScan))
		cur, ferr := coll.Find(opCtx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: id}}}},
			options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(n).SetBatchSize(int32(n)))
		if err = ferr; err == nil {
			var docs []bson.Raw
			err = cur.All(opCtx, &docs)
		}
	case OpInsert:
		n := w.inserts.Next()
		doc := w.gen.doc(w.r, n)
		shard = sm.Owner(KeyName(n))
		if _, err = coll.InsertOne(opCtx, doc); err == nil {
			w.inserts.Ack(n)
		}
	}
	d := time.Since(t0)
	if ctx.Err() != nil {
		return
	}
	w.rec.Record(op, d, 1, ErrorCode(err), shard)
}

func (w *worker) update(ctx context.Context, id string) error {
	field := w.gen.names[w.r.IntN(len(w.gen.names))]
	_, err := w.e.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: field, Value: w.gen.value(w.r)}}}})
	return err
}
