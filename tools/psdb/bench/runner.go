package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Connect returns a driver client for cfg: its write concern and read
// preference, a pool large enough for maxThreads workers, and retryable
// writes and reads as the driver defaults them.
func Connect(cfg Config, maxThreads int) (*mongo.Client, error) {
	wc, err := cfg.writeConcern()
	if err != nil {
		return nil, err
	}
	rp, err := cfg.readPref()
	if err != nil {
		return nil, err
	}
	o := options.Client().ApplyURI(cfg.URI).SetWriteConcern(wc).SetReadPreference(rp).
		SetMaxPoolSize(uint64(max(maxThreads, cfg.Threads)) + 4).
		SetServerSelectionTimeout(15 * time.Second)
	cli, err := mongo.Connect(o)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.URI, err)
	}
	return cli, nil
}

// Prepare drops the collection if cfg.Drop, and shards it hashed on _id
// if cfg.Shard (enableSharding, then shardCollection; a collection
// already sharded on that key is left as it is).
func Prepare(ctx context.Context, cli *mongo.Client, cfg Config) error {
	coll := cli.Database(cfg.DB).Collection(cfg.Coll)
	if cfg.Drop {
		if err := coll.Drop(ctx); err != nil {
			return fmt.Errorf("drop %s.%s: %w", cfg.DB, cfg.Coll, err)
		}
	}
	if !cfg.Shard {
		return nil
	}
	admin := cli.Database("admin")
	if err := admin.RunCommand(ctx, bson.D{{Key: "enableSharding", Value: cfg.DB}}).Err(); err != nil {
		return fmt.Errorf("enableSharding %s: %w", cfg.DB, err)
	}
	ns := cfg.DB + "." + cfg.Coll
	err := admin.RunCommand(ctx, bson.D{{Key: "shardCollection", Value: ns},
		{Key: "key", Value: bson.D{{Key: "_id", Value: "hashed"}}}}).Err()
	if err != nil {
		// Already sharded on the same key: fine (re-running a load).
		sm, lerr := LoadShardMap(ctx, cli, cfg.DB, cfg.Coll)
		if lerr == nil && sm.Sharded && sm.Key.Hashed() && sm.OnID() {
			return nil
		}
		return fmt.Errorf("shardCollection %s {_id: \"hashed\"}: %w", ns, err)
	}
	return nil
}

// Progress writes the live progress line. On a terminal the line is
// rewritten in place (\r); otherwise one line is written per interval.
type Progress struct {
	w        io.Writer
	terminal bool
	last     int
}

// NewProgress returns a progress writer to w (nil: none).
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *Progress) line(s string) {
	if p == nil || p.w == nil {
		return
	}
	if p.terminal {
		pad := ""
		if n := p.last - len(s); n > 0 {
			pad = strings.Repeat(" ", n)
		}
		p.last = len(s)
		fmt.Fprint(p.w, "\r"+s+pad)
		return
	}
	fmt.Fprintln(p.w, s)
}

// done ends a terminal's in-place line.
func (p *Progress) done() {
	if p != nil && p.w != nil && p.terminal && p.last > 0 {
		fmt.Fprintln(p.w)
		p.last = 0
	}
}

// docGen builds documents and field values from a shared random pool.
type docGen struct {
	fields   int
	fieldLen int
	names    []string
	pool     []byte
}

func newDocGen(cfg Config) *docGen {
	g := &docGen{fields: cfg.Fields, fieldLen: max(1, cfg.DocSize/cfg.Fields)}
	for i := range g.fields {
		g.names = append(g.names, fmt.Sprintf("field%d", i))
	}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	g.pool = make([]byte, max(64<<10, 2*g.fieldLen))
	for i := range g.pool {
		g.pool[i] = alphabet[r.IntN(len(alphabet))]
	}
	return g
}

func (g *docGen) value(r *rand.Rand) string {
	off := r.IntN(len(g.pool) - g.fieldLen)
	return string(g.pool[off : off+g.fieldLen])
}

func (g *docGen) doc(r *rand.Rand, n int64) bson.D {
	d := make(bson.D, 0, g.fields+1)
	d = append(d, bson.E{Key: "_id", Value: KeyName(n)})
	for _, name := range g.names {
		d = append(d, bson.E{Key: name, Value: g.value(r)})
	}
	return d
}

// engine runs workers and the reporter for one run or load.
type engine struct {
	cfg      Config
	cli      *mongo.Client
	coll     *mongo.Collection
	progress *Progress
	label    string // progress line prefix

	recs      []*Recorder
	total     *window
	intervals []Interval
	shards    atomic.Pointer[ShardMap]
	start     time.Time
	// offset shifts the time series (the steps of a peak search share one).
	offset float64
}

func newEngine(cli *mongo.Client, cfg Config, progress *Progress) *engine {
	return &engine{cfg: cfg, cli: cli, coll: cli.Database(cfg.DB).Collection(cfg.Coll), progress: progress, total: newWindow()}
}

func (e *engine) refreshShards(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if sm, err := LoadShardMap(ctx, e.cli, e.cfg.DB, e.cfg.Coll); err == nil {
		e.shards.Store(sm)
	}
}

// execute runs threads workers (work(ctx, worker index, recorder) until
// it returns) and reports once per interval until they are all done.
func (e *engine) execute(ctx context.Context, threads int, work func(ctx context.Context, i int, rec *Recorder)) {
	e.recs = make([]*Recorder, threads)
	for i := range e.recs {
		e.recs[i] = NewRecorder()
	}
	e.refreshShards(ctx)
	e.start = time.Now()
	var wg sync.WaitGroup
	for i := range threads {
		wg.Go(func() { work(ctx, i, e.recs[i]) })
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(time.Duration(e.cfg.Interval))
	defer tick.Stop()
	last := e.start
	for n := 1; ; n++ {
		select {
		case <-finished:
			e.collect(time.Now(), last)
			e.progress.done()
			return
		case now := <-tick.C:
			e.collect(now, last)
			last = now
			if n%5 == 0 {
				e.refreshShards(ctx)
			}
		}
	}
}

// collect drains every recorder into one interval ending at now.
func (e *engine) collect(now, last time.Time) {
	w := newWindow()
	for _, r := range e.recs {
		w.merge(r.drain())
	}
	secs := now.Sub(last).Seconds()
	if secs <= 0 {
		return
	}
	elapsed := now.Sub(e.start).Seconds()
	iv := intervalOf(w, e.offset+elapsed, secs)
	// A final sliver of an interval is too short for a meaningful rate:
	// it counts in the totals, not in the time series.
	if secs >= time.Duration(e.cfg.Interval).Seconds()/2 {
		e.intervals = append(e.intervals, iv)
	}
	e.total.merge(w)
	ops, errs := e.total.totals()
	var b strings.Builder
	fmt.Fprintf(&b, "%s[%6.1fs] %9.0f ops/s", e.label, elapsed, iv.OpsPerSec)
	for _, name := range w.opNames() {
		o := iv.Ops[name]
		fmt.Fprintf(&b, "  %s %.0f/s p99 %.2fms", name, o.OpsPerSec, o.P99Ms)
	}
	fmt.Fprintf(&b, "  total %d ops, %d errors", ops, errs)
	e.progress.line(b.String())
}

func (e *engine) report(command string) *Report {
	end := time.Now()
	secs := end.Sub(e.start).Seconds()
	return &Report{
		Tool: "psdb bench", Version: ReportVersion, Command: command, Config: e.cfg,
		Start: e.start.UTC(), End: end.UTC(), Intervals: e.intervals,
		Summary: summaryOf(e.total, secs, e.shards.Load()),
	}
}

func (e *engine) seed(i int) *rand.Rand {
	s := e.cfg.Seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	return rand.New(rand.NewPCG(s, uint64(i)+1))
}

// Load inserts cfg.Records records with cfg.Threads workers, each taking
// batches of cfg.BatchSize consecutive records and inserting them with
// one unordered insertMany. Operation counts are documents; latencies
// are per batch.
func Load(ctx context.Context, cli *mongo.Client, cfg Config, progress *Progress) (*Report, error) {
	if err := Prepare(ctx, cli, cfg); err != nil {
		return nil, err
	}
	e := newEngine(cli, cfg, progress)
	e.label = "load "
	gen := newDocGen(cfg)
	var next atomic.Int64
	e.execute(ctx, cfg.Threads, func(ctx context.Context, i int, rec *Recorder) {
		r := e.seed(i)
		for ctx.Err() == nil {
			from := next.Add(int64(cfg.BatchSize)) - int64(cfg.BatchSize)
			if from >= cfg.Records {
				return
			}
			to := min(from+int64(cfg.BatchSize), cfg.Records)
			docs := make([]any, 0, to-from)
			for n := from; n < to; n++ {
				docs = append(docs, gen.doc(r, n))
			}
			e.insertBatch(ctx, rec, docs)
		}
	})
	if err := ctx.Err(); err != nil {
		return e.report("load"), fmt.Errorf("load interrupted: %w", err)
	}
	return e.report("load"), nil
}

func (e *engine) insertBatch(ctx context.Context, rec *Recorder, docs []any) {
	opCtx, cancel := context.WithTimeout(ctx, time.Duration(e.cfg.OpTimeout))
	defer cancel()
	t0 := time.Now()
	_, err := e.coll.InsertMany(opCtx, docs, options.InsertMany().SetOrdered(false))
	d := time.Since(t0)
	if ctx.Err() != nil {
		return // interrupted: not a measurement
	}
	n := int64(len(docs))
	sm := e.shards.Load()
	var bwe mongo.BulkWriteException
	failed := map[int]bool{}
	if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
		for _, we := range bwe.WriteErrors {
			failed[we.Index] = true
			rec.RecordErrors(OpInsert, 1, codeName(we.Code))
		}
		err = nil
	}
	if err != nil {
		rec.Record(OpInsert, d, n, ErrorCode(err), "")
		return
	}
	rec.Record(OpInsert, d, n-int64(len(failed)), "", "")
	if sm == nil {
		return
	}
	for i, doc := range docs {
		if failed[i] {
			continue
		}
		if id, ok := doc.(bson.D)[0].Value.(string); ok {
			rec.AddShard(sm.Owner(id), 1)
		}
	}
}
