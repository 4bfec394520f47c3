package checker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Store is what the workers need from the server. MongoStore implements it
// over a *mongo.Collection; tests implement it in memory. Implementations
// must be safe for concurrent use and must return promptly once ctx is done
// (with an error wrapping ctx.Err() or the driver's timeout error): Run
// relies on that to bound every operation.
type Store interface {
	// InsertOne inserts doc (its first field is a fresh unique _id).
	// Write concern and retryable writes are the caller's configuration.
	InsertOne(ctx context.Context, doc bson.D) error
	// UpdateCounter adds inc to field n of the document with _id id,
	// creating it if missing, and returns n after the update.
	UpdateCounter(ctx context.Context, id string, inc int64) (after int64, err error)
	// ReadCounter reads field n of the document with _id id from the
	// primary; found is false when the document does not exist.
	ReadCounter(ctx context.Context, id string) (n int64, found bool, err error)
	// ScanIDs returns the _id of every document of the collection, as seen
	// by one full scan (duplicates included: finding them is the point).
	ScanIDs(ctx context.Context) ([]string, error)
}

// Workload says how much load Run drives and for how long. At least one
// bound must be set: Duration, MaxOps, or a deadline on Run's context.
type Workload struct {
	// Writers is the number of clients inserting documents with unique
	// _ids "<KeyPrefix>-w<writer>-<seq>".
	Writers int
	// Readers is the number of clients alternating UpdateCounter and
	// ReadCounter on the same counter, cycling over the counters, to check
	// that their reads never go back in time.
	Readers int
	// Duration stops workers from starting new operations after it
	// elapsed; operations in flight complete (bounded by OpTimeout).
	Duration time.Duration
	// MaxOps bounds the number of operations of all clients together; it
	// is split evenly between the clients (a fast client cannot use up the
	// others' share).
	MaxOps int64
	// KeyPrefix starts every _id; default "chk". Use one per run when
	// several runs share a collection.
	KeyPrefix string
	// Counters is the number of counter documents "<KeyPrefix>-c<i>";
	// default 4 (unused when Readers is 0).
	Counters int
	// OpTimeout bounds every single operation, so a hung server cannot
	// hang the test; default 10s.
	OpTimeout time.Duration
	// ErrorBackoff is how long a client waits after an error before its
	// next operation, so a dead cluster is not hammered; default 20ms.
	ErrorBackoff time.Duration
}

// ErrBadWorkload is wrapped by Run's error for an invalid Workload.
var ErrBadWorkload = errors.New("invalid workload")

func (w Workload) withDefaults() Workload {
	if w.KeyPrefix == "" {
		w.KeyPrefix = "chk"
	}
	if w.Counters == 0 {
		w.Counters = 4
	}
	if w.OpTimeout == 0 {
		w.OpTimeout = 10 * time.Second
	}
	if w.ErrorBackoff == 0 {
		w.ErrorBackoff = 20 * time.Millisecond
	}
	return w
}

func (w Workload) validate(ctx context.Context) error {
	switch {
	case w.Writers < 0:
		return fmt.Errorf("%w: Writers %d < 0", ErrBadWorkload, w.Writers)
	case w.Readers < 0:
		return fmt.Errorf("%w: Readers %d < 0", ErrBadWorkload, w.Readers)
	case w.Writers+w.Readers == 0:
		return fmt.Errorf("%w: no Writers and no Readers", ErrBadWorkload)
	case w.Duration < 0:
		return fmt.Errorf("%w: Duration %v < 0", ErrBadWorkload, w.Duration)
	case w.MaxOps < 0:
		return fmt.Errorf("%w: MaxOps %d < 0", ErrBadWorkload, w.MaxOps)
	case w.Counters < 0:
		return fmt.Errorf("%w: Counters %d < 0", ErrBadWorkload, w.Counters)
	case w.OpTimeout < 0:
		return fmt.Errorf("%w: OpTimeout %v < 0", ErrBadWorkload, w.OpTimeout)
	case w.ErrorBackoff < 0:
		return fmt.Errorf("%w: ErrorBackoff %v < 0", ErrBadWorkload, w.ErrorBackoff)
	}
	if _, ok := ctx.Deadline(); !ok && w.Duration == 0 && w.MaxOps == 0 {
		return fmt.Errorf("%w: unbounded: set Duration, MaxOps or a context deadline", ErrBadWorkload)
	}
	return nil
}

// Run drives the workload against store and returns its History. It
// returns once every worker has ended: on ctx cancel (operations in flight
// are cancelled and recorded as indeterminate), after Duration, or after
// MaxOps operations (in-flight operations complete). Every operation has its
// own OpTimeout. The only error is an invalid Workload (ErrBadWorkload).
func Run(ctx context.Context, store Store, w Workload) (*History, error) {
	w = w.withDefaults()
	if err := w.validate(ctx); err != nil {
		return nil, err
	}
	counters := []string(nil)
	if w.Readers > 0 {
		for i := range w.Counters {
			counters = append(counters, w.KeyPrefix+"-c"+strconv.Itoa(i))
		}
	}
	h := newHistory(w.KeyPrefix, counters)

	// stop ends the issuing of new operations; operations themselves run
	// under ctx (plus OpTimeout), so reaching Duration does not turn the
	// operations in flight into spurious timeouts.
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	if w.Duration > 0 {
		var c2 context.CancelFunc
		stop, c2 = context.WithTimeout(stop, w.Duration)
		defer c2()
	}
	r := &runner{ctx: ctx, stop: stop, store: store, w: w, h: h}

	h.started = time.Now()
	var wg sync.WaitGroup
	clients := int64(w.Writers + w.Readers)
	quota := func(client int) int64 {
		if w.MaxOps == 0 {
			return -1 // unlimited
		}
		q := w.MaxOps / clients
		if int64(client) < w.MaxOps%clients {
			q++
		}
		return q
	}
	for i := range w.Writers {
		wg.Go(func() { r.writer(i, quota(i)) })
	}
	for i := range w.Readers {
		wg.Go(func() { r.reader(i, counters, quota(w.Writers+i)) })
	}
	wg.Wait()
	h.mu.Lock()
	h.finished = time.Now()
	h.mu.Unlock()
	return h, nil
}

// runner is the state shared by the workers of one Run.
type runner struct {
	ctx   context.Context // operations run under it
	stop  context.Context // done: start no new operation
	store Store
	w     Workload
	h     *History
}

// next reports whether a worker with *quota operations left (-1:
// unlimited) may start another one, and takes it from the quota.
func (r *runner) next(quota *int64) bool {
	if r.stop.Err() != nil || *quota == 0 {
		return false
	}
	if *quota > 0 {
		*quota--
	}
	return true
}

// backoff waits after an error; it returns early when the run stops.
func (r *runner) backoff() {
	t := time.NewTimer(r.w.ErrorBackoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.stop.Done():
	}
}

func (r *runner) writer(n int, quota int64) {
	client := "w" + strconv.Itoa(n)
	for seq := 0; r.next(&quota); seq++ {
		id := r.w.KeyPrefix + "-w" + strconv.Itoa(n) + "-" + strconv.Itoa(seq)
		doc := bson.D{{Key: "_id", Value: id}, {Key: "writer", Value: int32(n)}, {Key: "seq", Value: int64(seq)}}
		ctx, cancel := context.WithTimeout(r.ctx, r.w.OpTimeout)
		start := time.Now()
		err := r.store.InsertOne(ctx, doc)
		end := time.Now()
		cancel()
		r.h.record(Op{Client: client, Kind: OpInsert, ID: id, Start: start, End: end,
			Outcome: outcomeOf(err), Err: err, ErrKey: ErrorKey(err)})
		if err != nil {
			r.backoff()
		}
	}
}

// reader alternates an increment and a read of the same counter, moving to
// the next counter after each pair, so every read follows a value the
// client itself observed.
func (r *runner) reader(n int, counters []string, quota int64) {
	client := "r" + strconv.Itoa(n)
	for i := 0; len(counters) > 0 && r.next(&quota); i++ {
		id := counters[(n+i/2)%len(counters)]
		op := Op{Client: client, ID: id}
		ctx, cancel := context.WithTimeout(r.ctx, r.w.OpTimeout)
		var err error
		op.Start = time.Now()
		if i%2 == 0 {
			op.Kind, op.Inc = OpUpdate, 1
			op.Value, err = r.store.UpdateCounter(ctx, id, op.Inc)
			op.Found = err == nil
		} else {
			op.Kind = OpRead
			op.Value, op.Found, err = r.store.ReadCounter(ctx, id)
		}
		op.End = time.Now()
		cancel()
		if err != nil {
			op.Value, op.Found = 0, false
		}
		op.Outcome, op.Err, op.ErrKey = outcomeOf(err), err, ErrorKey(err)
		r.h.record(op)
		if err != nil {
			r.backoff()
		}
	}
}
