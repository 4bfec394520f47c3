package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/psdb/psdb/integration/checker"
)

// Options control a chaos run.
type Options struct {
	// Scenarios to run, in order (names of Scenarios()).
	Scenarios []string
	// Duration is the least time the load runs in each scenario; a
	// scenario whose faults take longer runs its load until they end
	// (and the cluster accepts writes again). Default 20s.
	Duration time.Duration
	// Writers and Readers are the checker's clients (defaults 4 and 2).
	Writers, Readers int
	// HealTimeout bounds the wait for the cluster to heal after each
	// scenario, and for a failover or restart within one (default 90s).
	HealTimeout time.Duration
	// Repeat runs the whole list of scenarios this many times (default 1);
	// Report.WriteMedians summarizes the repeats.
	Repeat int
	// Database holds one collection per scenario (default "chaos").
	Database string
	// Progress receives one line per step (nil: none).
	Progress io.Writer
}

func (o Options) withDefaults() Options {
	if o.Duration <= 0 {
		o.Duration = 20 * time.Second
	}
	if o.Writers == 0 {
		o.Writers = 4
	}
	if o.Readers == 0 {
		o.Readers = 2
	}
	if o.HealTimeout <= 0 {
		o.HealTimeout = 90 * time.Second
	}
	if o.Database == "" {
		o.Database = "chaos"
	}
	if o.Repeat <= 0 {
		o.Repeat = 1
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// Env is what a scenario's fault script works with: the cluster, its
// collection, the running load and the fault log.
type Env struct {
	C    *Cluster
	NS   string
	Coll *mongo.Collection // the scenario's collection through every router, w:majority, primary reads
	opts Options
	st   *watchedStore

	mu     sync.Mutex
	faults []string
	notes  []string
	bulk   int // documents Prepare loaded (prefix bulkPrefix)
}

// Fault records (and prints) one injected fault.
func (e *Env) Fault(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	e.mu.Lock()
	e.faults = append(e.faults, s)
	e.mu.Unlock()
	e.Logf("fault: %s", s)
}

// Note records an observation for the report (e.g. a failover time).
func (e *Env) Note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	e.mu.Lock()
	e.notes = append(e.notes, s)
	e.mu.Unlock()
	e.Logf("%s", s)
}

// Logf prints a progress line.
func (e *Env) Logf(format string, args ...any) {
	fmt.Fprintf(e.opts.Progress, "%s  %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// Progress waits until the load gets n more inserts acknowledged (the
// cluster accepts writes again), within the heal timeout, and returns how
// long that took.
func (e *Env) Progress(ctx context.Context, n int64) (time.Duration, error) {
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, e.opts.HealTimeout)
	defer cancel()
	if err := e.st.waitAcks(pctx, n); err != nil {
		return time.Since(start), fmt.Errorf("no write progress (%d more acknowledged inserts) within %v: %w", n, e.opts.HealTimeout, err)
	}
	return time.Since(start), nil
}

// HealTimeout is the bound on a failover, restart or heal.
func (e *Env) HealTimeout() time.Duration { return e.opts.HealTimeout }

// Run runs the scenarios one after another on c and returns their results.
// A scenario that cannot run (its fault script or setup fails) is
// reported with its error and the run goes on with the next; one the
// cluster cannot host (too few members, routers or config servers, no
// fault proxies) is reported as skipped. The error is
// only for an unknown scenario name or a cancelled ctx.
func Run(ctx context.Context, c *Cluster, o Options) (*Report, error) {
	o = o.withDefaults()
	scs, err := Select(o.Scenarios)
	if err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now().UTC(), Duration: o.Duration.String(), Writers: o.Writers, Readers: o.Readers,
		Cluster: describe(c)}
	for range o.Repeat {
		for _, sc := range scs {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			res := runScenario(ctx, c, o, sc)
			rep.Results = append(rep.Results, res)
			fmt.Fprintf(o.Progress, "%s  %s: %s\n", time.Now().UTC().Format("15:04:05.000"), sc.Name, res.Verdict())
		}
	}
	rep.Finished = time.Now().UTC()
	return rep, ctx.Err()
}

func describe(c *Cluster) string {
	cfg := c.Config()
	members := 0
	if len(cfg.Shards) > 0 {
		members = len(cfg.Shards[0].Members)
	}
	return fmt.Sprintf("%d config servers, %d shards x %d members, %d routers",
		len(cfg.ConfigServers), len(cfg.Shards), members, len(cfg.Routers))
}

// runScenario prepares the scenario's collection, waits for a healthy
// cluster, runs the load and the fault script together, then verifies the
// history and waits for the cluster to heal.
func runScenario(ctx context.Context, c *Cluster, o Options, sc Scenario) Result {
	res := Result{Scenario: sc.Name, Started: time.Now().UTC()}
	fail := func(err error) Result {
		res.Error = err.Error()
		res.Elapsed = time.Since(res.Started).Round(time.Millisecond).String()
		return res
	}
	if sc.Requires != nil {
		if err := sc.Requires(c.Config()); err != nil {
			res.Skipped, res.Elapsed = err.Error(), "0s"
			return res
		}
	}
	if sc.NeedsProxies && !c.Partitionable() {
		res.Skipped = "the cluster has no fault proxies (boot it with psdb chaos run, without --cluster)"
		res.Elapsed = "0s"
		return res
	}
	e := &Env{C: c, opts: o}
	e.Logf("%s: %s", sc.Name, sc.Summary)
	if _, err := c.WaitHealed(ctx, o.HealTimeout); err != nil {
		return fail(fmt.Errorf("cluster not healthy before the scenario: %w", err))
	}
	coll := strings.ReplaceAll(sc.Name, "-", "_") + "_" + fmt.Sprint(time.Now().Unix())
	e.NS = o.Database + "." + coll
	if err := shardHashed(ctx, c, o.Database, e.NS); err != nil {
		return fail(err)
	}
	e.Coll = c.load.Database(o.Database).Collection(coll, options.Collection().
		SetWriteConcern(writeconcern.Majority()).SetReadPreference(readpref.Primary()))
	e.st = &watchedStore{Store: checker.NewMongoStore(e.Coll), exclude: bulkPrefix}
	if sc.Prepare != nil {
		if err := sc.Prepare(ctx, e); err != nil {
			return fail(fmt.Errorf("prepare: %w", err))
		}
	}

	// The load runs until the fault script has ended and the cluster
	// accepts writes again, and at least Duration; it is then cancelled
	// (operations in flight become indeterminate, which the checker
	// allows either way).
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var (
		hist    *checker.History
		loadErr error
		done    = make(chan struct{})
	)
	loadStart := time.Now()
	go func() {
		defer close(done)
		hist, loadErr = checker.Run(loadCtx, e.st, checker.Workload{
			Writers: o.Writers, Readers: o.Readers, KeyPrefix: sc.Name,
			Duration: 24 * time.Hour, OpTimeout: 15 * time.Second,
		})
	}()
	scriptErr := func() error {
		if _, err := e.Progress(ctx, 20); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if err := sc.Inject(ctx, e); err != nil {
			return err
		}
		if _, err := e.Progress(ctx, 20); err != nil {
			return fmt.Errorf("after the faults: %w", err)
		}
		return nil
	}()
	if scriptErr == nil {
		_ = wait(ctx, time.Until(loadStart.Add(o.Duration)))
	}
	stopLoad()
	<-done
	if loadErr != nil {
		return fail(loadErr)
	}
	res.Faults = e.faults
	res.LoadSeconds = time.Since(loadStart).Seconds()

	// A fault script that stopped half-way may have left nodes down,
	// stopped or cut off: undo that, so the cluster can heal.
	if scriptErr != nil {
		started, err := c.repair()
		e.Note("repair after the failed fault script: started %v (%v)", started, err)
	}
	// Heal first, so the final scans see a whole cluster; then one view
	// through each router.
	healIn, healErr := c.WaitHealed(ctx, o.HealTimeout)
	res.Healed = healErr == nil
	res.HealSeconds = healIn.Seconds()
	if healErr != nil {
		res.HealError = healErr.Error()
	}
	views, err := collectViews(ctx, c, e, hist, o)
	if err != nil {
		res.Error = err.Error()
	}
	r := checker.VerifyViews(ctx, hist, views...)
	r.Scenario, r.Faults = sc.Name, res.FaultSummary()
	res.fill(r)
	if e.bulk > 0 && err == nil {
		lost, dup, berr := verifyBulk(ctx, c, e)
		if berr != nil {
			res.Error = berr.Error()
		}
		res.BulkDocs, res.BulkLost, res.BulkDuplicated = e.bulk, lost, dup
	}
	if scriptErr != nil {
		res.Error = joinErr(res.Error, "fault script: "+scriptErr.Error())
	}
	res.Notes = e.notes
	res.Elapsed = time.Since(res.Started).Round(time.Millisecond).String()
	if !r.OK() {
		e.Logf("%s", r.String())
	}
	return res
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// collectViews scans the collection through each router (retrying until
// the heal timeout: a scan may race a late failover).
func collectViews(ctx context.Context, c *Cluster, e *Env, hist *checker.History, o Options) ([]checker.View, error) {
	var views []checker.View
	for i, d := range c.direct {
		coll := d.Database(o.Database).Collection(e.Coll.Name(), options.Collection().
			SetReadPreference(readpref.Primary()))
		store := &watchedStore{Store: checker.NewMongoStore(coll), exclude: bulkPrefix}
		name := "router " + c.Config().Routers[i].Name
		vctx, cancel := context.WithTimeout(ctx, o.HealTimeout)
		var (
			v   checker.View
			err error
		)
		for {
			sctx, scancel := context.WithTimeout(vctx, 30*time.Second)
			v, err = checker.Collect(sctx, name, store, hist)
			scancel()
			if err == nil || wait(vctx, 200*time.Millisecond) != nil {
				break
			}
		}
		cancel()
		if err != nil {
			return views, fmt.Errorf("final scan through %s: %w", name, err)
		}
		views = append(views, v)
	}
	return views, nil
}

// shardHashed shards ns on {_id: "hashed"} (chunks spread over every
// shard, so every shard's faults hit the load).
func shardHashed(ctx context.Context, c *Cluster, db, ns string) error {
	admin := c.direct[0].Database("admin")
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for _, cmd := range []bson.D{
		{{Key: "enableSharding", Value: db}},
		{{Key: "shardCollection", Value: ns}, {Key: "key", Value: bson.D{{Key: "_id", Value: "hashed"}}}},
	} {
		for {
			last = admin.RunCommand(rctx, cmd).Err()
			if last == nil || wait(rctx, 200*time.Millisecond) != nil {
				break
			}
		}
		if last != nil {
			return fmt.Errorf("%s %s: %w", cmd[0].Key, ns, last)
		}
	}
	for _, d := range c.direct {
		if err := d.Database("admin").RunCommand(rctx, bson.D{{Key: "flushRouterConfig", Value: 1}}).Err(); err != nil {
			return fmt.Errorf("flushRouterConfig: %w", err)
		}
	}
	return nil
}

// bulkPrefix starts the _id of the documents a scenario loads itself
// (migration-kill), which the checker's scans leave out.
const bulkPrefix = "bulk-"

// loadBulk inserts n documents of about 1 KB with _ids bulk-00000...
func loadBulk(ctx context.Context, e *Env, n int) error {
	pad := strings.Repeat("x", 1000)
	const batch = 500
	for from := 0; from < n; from += batch {
		docs := make([]any, 0, batch)
		for i := from; i < min(n, from+batch); i++ {
			docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("%s%06d", bulkPrefix, i)}, {Key: "bulk", Value: true}, {Key: "pad", Value: pad}})
		}
		bctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, err := e.Coll.InsertMany(bctx, docs, options.InsertMany().SetOrdered(false))
		cancel()
		if err != nil {
			return fmt.Errorf("bulk load at %d: %w", from, err)
		}
	}
	e.bulk = n
	return nil
}

// verifyBulk scans the bulk documents through each router and counts the
// missing and the duplicated ones.
func verifyBulk(ctx context.Context, c *Cluster, e *Env) (lost, dup int, err error) {
	for _, d := range c.direct {
		coll := d.Database(e.opts.Database).Collection(e.Coll.Name())
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		seen, serr := scanBulk(sctx, coll)
		cancel()
		if serr != nil {
			return lost, dup, fmt.Errorf("bulk scan: %w", serr)
		}
		for i := range e.bulk {
			switch n := seen[fmt.Sprintf("%s%06d", bulkPrefix, i)]; {
			case n == 0:
				lost++
			case n > 1:
				dup += n - 1
			}
		}
	}
	return lost, dup, nil
}

func scanBulk(ctx context.Context, coll *mongo.Collection) (map[string]int, error) {
	cur, err := coll.Find(ctx, bson.D{{Key: "bulk", Value: true}}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	seen := map[string]int{}
	for cur.Next(ctx) {
		id, ok := cur.Current.Lookup("_id").StringValueOK()
		if !ok {
			return nil, errors.New("bulk document with a non-string _id")
		}
		seen[id]++
	}
	return seen, cur.Err()
}
