package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/integration/checker"
	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
)

// newBalancerCluster wraps a running harness cluster in the router
// tests' helpers (countOnShard, chunkShards, primaryOf), with one
// directly connected client per router, and waits until every shard has
// a primary. Unlike newRouterCluster it creates no database: a shard
// that owns nothing can still be removed at once.
func newBalancerCluster(t *testing.T, c *harness.Cluster) *routerCluster {
	t.Helper()
	rc := &routerCluster{c: c, cat: catalog.New(c.EtcdClient(t)), routers: c.ByRole(config.RoleRouter, "")}
	for _, s := range c.Config().Shards {
		rc.shards = append(rc.shards, s.Name)
	}
	for _, r := range rc.routers {
		rc.clients = append(rc.clients, rc.connect(t, r.Addr()))
	}
	for _, s := range rc.shards {
		rc.primaryOf(t, s)
	}
	return rc
}

// tryAdmin runs an admin command through cli, returning its error.
func tryAdmin(ctx context.Context, cli *mongo.Client, cmd bson.D) (bson.Raw, error) {
	return cli.Database("admin").RunCommand(ctx, cmd).Raw()
}

// addShardVia registers the cluster.yaml shard name through cli with
// addShard "<name>/<addr>,..." and the members' cluster.yaml names.
func (rc *routerCluster) addShardVia(t testing.TB, ctx context.Context, cli *mongo.Client, name string) {
	t.Helper()
	var addrs []string
	names := bson.A{}
	for _, s := range rc.c.Config().Shards {
		if s.Name != name {
			continue
		}
		for _, m := range s.Members {
			addrs = append(addrs, m.Addr)
			names = append(names, m.Name)
		}
	}
	if len(addrs) == 0 {
		t.Fatalf("no shard %s in cluster.yaml", name)
	}
	rep := runAdmin(t, ctx, cli, bson.D{{Key: "addShard", Value: name + "/" + strings.Join(addrs, ",")},
		{Key: "name", Value: name}, {Key: "memberNames", Value: names}})
	if got, _ := rep.Lookup("shardAdded").StringValueOK(); got != name {
		t.Fatalf("addShard %s answered %s", name, rep)
	}
}

// activeShards returns the names of the catalog's active shards, sorted.
func (rc *routerCluster) activeShards(t testing.TB, ctx context.Context) []string {
	t.Helper()
	shards, _, err := rc.cat.ListShards(ctx)
	if err != nil {
		t.Fatalf("list shards: %v", err)
	}
	var out []string
	for _, s := range shards {
		if s.State == catalog.ShardActive {
			out = append(out, s.Name)
		}
	}
	sort.Strings(out)
	return out
}

// balStatus is a balancerStatus reply.
type balStatus struct {
	Mode       string     `bson:"mode"`
	InRound    bool       `bson:"inBalancerRound"`
	Rounds     int64      `bson:"numBalancerRounds"`
	Leader     string     `bson:"leader"`
	Moved      int64      `bson:"migrationsSucceeded"`
	Splits     int64      `bson:"chunksSplit"`
	InFlight   []bson.Raw `bson:"inFlight"`
	LastErrors []bson.Raw `bson:"lastErrors"`
	LastRound  struct {
		Verdict     string `bson:"verdict"`
		Message     string `bson:"message"`
		Collections []struct {
			NS        string `bson:"ns"`
			Imbalance int64  `bson:"imbalance"`
			Loads     bson.D `bson:"loads"`
		} `bson:"collections"`
	} `bson:"lastRound"`
	Jumbo []bson.Raw `bson:"jumboChunks"`
}

// readBalancerStatus runs balancerStatus through cli.
func readBalancerStatus(ctx context.Context, cli *mongo.Client) (balStatus, error) {
	var st balStatus
	raw, err := tryAdmin(ctx, cli, bson.D{{Key: "balancerStatus", Value: 1}})
	if err != nil {
		return st, fmt.Errorf("balancerStatus: %w", err)
	}
	if err := bson.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("decode balancerStatus %s: %w", raw, err)
	}
	return st, nil
}

// waitBalanced waits until every active shard owns a number of chunks of
// ns within 1 of the others (threshold 2) and balancerStatus says the
// last round, which saw every active shard, found the cluster balanced
// with nothing in flight. It returns how long that took.
func (rc *routerCluster) waitBalanced(t testing.TB, ctx context.Context, cli *mongo.Client, ns string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	// Fail with the balancer's state rather than with the test's context
	// error when the test's deadline comes first.
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)-5*time.Second)
	}
	harness.Eventually(t, d, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		active := rc.activeShards(t, cctx)
		counts := rc.chunkShards(t, cctx, ns)
		lo, hi := -1, 0
		for _, s := range active {
			n := counts[s]
			if lo < 0 || n < lo {
				lo = n
			}
			hi = max(hi, n)
		}
		st, err := readBalancerStatus(cctx, cli)
		if err != nil {
			return err
		}
		if hi-lo > 1 {
			return fmt.Errorf("chunks of %s per shard %v (active %v); balancer: %d migrations, %d splits, in round %t, %d in flight, last round %q: %s",
				ns, counts, active, st.Moved, st.Splits, st.InRound, len(st.InFlight), st.LastRound.Verdict, st.LastRound.Message)
		}
		if st.LastRound.Verdict != "balanced" || len(st.InFlight) > 0 {
			return fmt.Errorf("chunks per shard %v; last round %q: %s, %d in flight", counts, st.LastRound.Verdict, st.LastRound.Message, len(st.InFlight))
		}
		for _, c := range st.LastRound.Collections {
			if c.NS != ns {
				continue
			}
			for _, s := range active {
				if !slices.ContainsFunc(c.Loads, func(e bson.E) bool { return e.Key == s }) {
					return fmt.Errorf("the last balanced round (loads %v) predates shard %s", c.Loads, s)
				}
			}
			return nil
		}
		return fmt.Errorf("the last round does not mention %s", ns)
	})
	return time.Since(start)
}

// changeDoc is a config.changelog document.
type changeDoc struct {
	ID      string    `bson:"_id"`
	Server  string    `bson:"server"`
	Time    time.Time `bson:"time"`
	What    string    `bson:"what"`
	NS      string    `bson:"ns"`
	Details bson.Raw  `bson:"details"`
}

// readChangelog reads config.changelog through cli, oldest first.
func readChangelog(t testing.TB, ctx context.Context, cli *mongo.Client) []changeDoc {
	t.Helper()
	cur, err := cli.Database("config").Collection("changelog").Find(ctx, bson.D{})
	if err != nil {
		t.Fatalf("find config.changelog: %v", err)
	}
	var out []changeDoc
	if err := cur.All(ctx, &out); err != nil {
		t.Fatalf("read config.changelog: %v", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// detailInt reads a numeric field of a changelog entry's details.
func (c changeDoc) detailInt(f string) int64 {
	v, err := c.Details.LookupErr(f)
	if err != nil {
		return 0
	}
	if n, ok := v.AsInt64OK(); ok {
		return n
	}
	if x, ok := v.DoubleOK(); ok {
		return int64(x)
	}
	return 0
}

// moveKey identifies a migration in the changelog.
func (c changeDoc) moveKey() string {
	return fmt.Sprintf("%s %s %s %s->%s", c.NS, c.Details.Lookup("min"), c.Details.Lookup("max"),
		c.Details.Lookup("from"), c.Details.Lookup("to"))
}

// checkMoveHistory checks that every moveChunk.start of the changelog
// has exactly one outcome (moveChunk.commit or moveChunk.error) after it
// and returns the commits and the errors. Starts recorded by the routers
// named in killed (SIGKILLed mid-migration, so they recorded no outcome)
// are left out.
func checkMoveHistory(t testing.TB, log []changeDoc, killed ...string) (commits, errs []changeDoc) {
	t.Helper()
	open := map[string]int{}
	for _, c := range log {
		switch c.What {
		case "moveChunk.start":
			if slices.Contains(killed, c.Server) {
				t.Logf("changelog: migration %s started by the killed router %s", c.moveKey(), c.Server)
				continue
			}
			open[c.moveKey()]++
		case "moveChunk.commit", "moveChunk.error":
			k := c.moveKey()
			if open[k] == 0 {
				t.Errorf("changelog: %s of %s without a moveChunk.start", c.What, k)
			}
			open[k]--
			if c.What == "moveChunk.commit" {
				commits = append(commits, c)
			} else {
				errs = append(errs, c)
			}
		}
	}
	for k, n := range open {
		if n != 0 {
			t.Errorf("changelog: %d moveChunk.start of %s without an outcome", n, k)
		}
	}
	return commits, errs
}

// moveFigures summarises the migrations of the changelog (throughput
// over the migrations' own durations, critical sections).
func moveFigures(commits []changeDoc) string {
	if len(commits) == 0 {
		return "no migration"
	}
	var docs, bytes, millis int64
	var cs []int64
	for _, c := range commits {
		docs += c.detailInt("clonedDocs")
		bytes += c.detailInt("clonedBytes")
		millis += c.detailInt("totalMillis")
		cs = append(cs, c.detailInt("criticalSectionMillis"))
	}
	slices.Sort(cs)
	pct := func(p float64) int64 { return cs[min(len(cs)-1, int(p*float64(len(cs))))] }
	secs := float64(max(millis, 1)) / 1000
	return fmt.Sprintf("%d migrations: %d docs, %.1f MB in %.1f s of migration (%.0f docs/s, %.2f MB/s, %.0f ms each on average); "+
		"critical section p50 %d ms, p99 %d ms, max %d ms",
		len(commits), docs, float64(bytes)/1e6, secs, float64(docs)/secs, float64(bytes)/1e6/secs,
		float64(millis)/float64(len(commits)), pct(0.5), pct(0.99), cs[len(cs)-1])
}

// checkBalancerErrors accepts the balancer's lastErrors only when each
// is a migration that the changelog shows aborted (moveChunk.error):
// anything else (a failed round, a split pass error) fails the test.
func checkBalancerErrors(t testing.TB, st balStatus, aborted []changeDoc) {
	t.Helper()
	for _, e := range st.LastErrors {
		t.Logf("balancer error: %s", e)
		from, _ := e.Lookup("from").StringValueOK()
		to, _ := e.Lookup("to").StringValueOK()
		if from == "" || to == "" {
			t.Errorf("balancerStatus.lastErrors holds an error that is not a migration's: %s", e)
			continue
		}
		found := false
		for _, c := range aborted {
			if c.Details.Lookup("from").StringValue() == from && c.Details.Lookup("to").StringValue() == to &&
				c.Details.Lookup("min").Equal(e.Lookup("min")) {
				found = true
			}
		}
		if !found {
			t.Errorf("balancerStatus.lastErrors: %s has no moveChunk.error in the changelog", e)
		}
	}
}

// errWorkloadStopped is what a gatedStore answers once closed.
var errWorkloadStopped = errors.New("workload stopped")

// gatedStore lets a test end the checker's workload at a moment it
// chooses with exact outcomes: once closed, no new operation reaches the
// server (it waits for the run's context and fails without being sent),
// and the test waits for the operations already sent before it cancels
// the run. A cancelled run would instead cancel operations in flight,
// whose writes may land after the final scans.
type gatedStore struct {
	checker.Store
	mu       sync.Mutex
	closed   bool
	inFlight int
}

func (g *gatedStore) enter(ctx context.Context) error {
	g.mu.Lock()
	if !g.closed {
		g.inFlight++
		g.mu.Unlock()
		return nil
	}
	g.mu.Unlock()
	<-ctx.Done()
	return fmt.Errorf("%w: %w", errWorkloadStopped, ctx.Err())
}

func (g *gatedStore) exit() {
	g.mu.Lock()
	g.inFlight--
	g.mu.Unlock()
}

func (g *gatedStore) InsertOne(ctx context.Context, doc bson.D) error {
	if err := g.enter(ctx); err != nil {
		return err
	}
	defer g.exit()
	return g.Store.InsertOne(ctx, doc)
}

func (g *gatedStore) UpdateCounter(ctx context.Context, id string, inc int64) (int64, error) {
	if err := g.enter(ctx); err != nil {
		return 0, err
	}
	defer g.exit()
	return g.Store.UpdateCounter(ctx, id, inc)
}

func (g *gatedStore) ReadCounter(ctx context.Context, id string) (int64, bool, error) {
	if err := g.enter(ctx); err != nil {
		return 0, false, err
	}
	defer g.exit()
	return g.Store.ReadCounter(ctx, id)
}

// close stops new operations and reports how many are still running.
func (g *gatedStore) close() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return g.inFlight
}

// gatedWorkload is a checker run over a gatedStore (startGatedWorkload).
type gatedWorkload struct {
	t      testing.TB
	gate   *gatedStore
	cancel context.CancelFunc
	done   chan struct{}
	hist   *checker.History
	err    error
}

// startGatedWorkload runs the checker (writers and counter readers) through
// store until stop.
func startGatedWorkload(t testing.TB, ctx context.Context, store checker.Store, prefix string, writers, readers int) *gatedWorkload {
	ctx, cancel := context.WithCancel(ctx)
	w := &gatedWorkload{t: t, gate: &gatedStore{Store: store}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.hist, w.err = checker.Run(ctx, w.gate, checker.Workload{
			Writers: writers, Readers: readers, Duration: time.Hour, KeyPrefix: prefix, OpTimeout: 20 * time.Second,
		})
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// stop lets the operations in flight finish (each is bounded by its
// OpTimeout), then ends the run and returns its history.
func (w *gatedWorkload) stop() *checker.History {
	w.t.Helper()
	w.gate.close()
	harness.Eventually(w.t, 30*time.Second, func() error {
		if n := w.gate.close(); n > 0 {
			return fmt.Errorf("%d checker operations still in flight", n)
		}
		return nil
	})
	w.cancel()
	<-w.done
	if w.err != nil {
		w.t.Fatal(w.err)
	}
	return w.hist
}

// countMatching counts the documents of coll matching filter, -1 on error.
func countMatching(ctx context.Context, coll *mongo.Collection, filter bson.D) int64 {
	n, err := coll.CountDocuments(ctx, filter)
	if err != nil {
		return -1
	}
	return n
}

// waitMore waits until coll holds at least n more documents matching
// filter than it does now (the workload makes progress).
func waitMore(t testing.TB, ctx context.Context, coll *mongo.Collection, filter bson.D, n int64, d time.Duration) {
	t.Helper()
	var base int64 = -1
	harness.Eventually(t, d, func() error {
		if base < 0 {
			base = countMatching(ctx, coll, filter)
			if base < 0 {
				return fmt.Errorf("count %s failed", coll.Name())
			}
		}
		if got := countMatching(ctx, coll, filter); got < base+n {
			return fmt.Errorf("%d documents in %s, want at least %d", got, coll.Name(), base+n)
		}
		return nil
	})
}

// loadBulk inserts n documents {_id: "bulk-<i>", v: i, pad} into coll in
// unordered batches of 1000, from 4 loaders at once, and returns how
// long it took.
func loadBulk(t testing.TB, ctx context.Context, coll *mongo.Collection, n, pad int) time.Duration {
	t.Helper()
	start := time.Now()
	const batch, loaders = 1000, 4
	next := make(chan int)
	errs := make(chan error, loaders)
	var wg sync.WaitGroup
	for range loaders {
		wg.Go(func() {
			for from := range next {
				docs := make([]any, 0, batch)
				for v := from; v < min(from+batch, n); v++ {
					docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("%s%05d", migBulkPrefix, v)}, {Key: "v", Value: v},
						{Key: "pad", Value: strings.Repeat("x", pad)}})
				}
				if _, err := coll.InsertMany(ctx, docs, unorderedInsert); err != nil {
					errs <- fmt.Errorf("bulk load at %d: %w", from, err)
					return
				}
			}
		})
	}
	var loadErr error
feed:
	for from := 0; from < n; from += batch {
		select {
		case next <- from:
		case loadErr = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if loadErr == nil {
		select {
		case loadErr = <-errs:
		default:
		}
	}
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return time.Since(start)
}

// bulkReader scans the bulk documents of coll over and over until stop;
// every successful scan must return each of the n exactly once.
type bulkReader struct {
	t      testing.TB
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	scans  int
	errs   int
	bad    string
}

func startBulkReader(t testing.TB, ctx context.Context, coll *mongo.Collection, n int) *bulkReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &bulkReader{t: t, cancel: cancel}
	filter := bson.D{{Key: "v", Value: bson.D{{Key: "$gte", Value: 0}}}}
	idOnly := options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}})
	r.wg.Go(func() {
		for ctx.Err() == nil {
			ids, err := scanIDs(ctx, coll, filter, idOnly)
			r.mu.Lock()
			switch {
			case err != nil && ctx.Err() == nil:
				r.errs++
				t.Logf("bulk scan: %v", err)
			case err == nil:
				r.scans++
				if msg := checkBulk(ids, n); msg != "" && r.bad == "" {
					r.bad = msg
				}
			}
			r.mu.Unlock()
		}
	})
	t.Cleanup(r.stopNow)
	return r
}

func (r *bulkReader) stopNow() { r.cancel(); r.wg.Wait() }

// stop ends the scans and fails the test if one saw a duplicate or a
// missing document, or if none succeeded.
func (r *bulkReader) stop() {
	r.t.Helper()
	r.stopNow()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t.Logf("%d full scans of the bulk documents during the test, %d failed", r.scans, r.errs)
	if r.bad != "" {
		r.t.Fatalf("a scan during the test: %s", r.bad)
	}
	if r.scans == 0 {
		r.t.Fatalf("no scan succeeded (%d failed)", r.errs)
	}
}

// verifyWorkload checks the checker's history against a full scan
// through store and returns the view.
func verifyWorkload(t testing.TB, ctx context.Context, store checker.Store, hist *checker.History, scenario, faults string) checker.View {
	t.Helper()
	view, err := checker.Collect(ctx, "router", store, hist)
	if err != nil {
		t.Fatal(err)
	}
	rep := checker.VerifyViews(ctx, hist, view)
	rep.Scenario, rep.Faults = scenario, faults
	t.Log(rep.String())
	if !rep.OK() {
		t.Fatalf("history check failed:\n%s", rep)
	}
	if len(rep.Acked) < 50 {
		t.Fatalf("only %d inserts acknowledged", len(rep.Acked))
	}
	return view
}

// verifyScan checks a full scan and a count of coll through the router:
// every bulk document once, and bulk+checker documents in all.
func verifyScan(t testing.TB, ctx context.Context, coll *mongo.Collection, bulk int, view checker.View) int64 {
	t.Helper()
	ids, err := scanIDs(ctx, coll, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatalf("full scan of %s: %v", coll.Name(), err)
	}
	var bulkIDs []string
	seen := map[string]int{}
	var dups []string
	for _, id := range ids {
		if seen[id]++; seen[id] == 2 {
			dups = append(dups, id)
		}
		if strings.HasPrefix(id, migBulkPrefix) {
			bulkIDs = append(bulkIDs, id)
		}
	}
	if msg := checkBulk(bulkIDs, bulk); msg != "" {
		t.Fatalf("full scan of %s: %s", coll.Name(), msg)
	}
	want := int64(bulk + len(view.IDs))
	if len(dups) > 0 || int64(len(ids)) != want {
		t.Fatalf("full scan of %s: %d documents, want %d (%d bulk + %d checker); duplicated: %v",
			coll.Name(), len(ids), want, bulk, len(view.IDs), dups[:min(len(dups), 10)])
	}
	n, err := coll.CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatalf("count %s: %v", coll.Name(), err)
	}
	if n != want {
		t.Fatalf("count of %s: %d, want %d", coll.Name(), n, want)
	}
	return want
}
