package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

// The scale-out scenario (issue 9 part 2): a hashed collection loaded on
// one shard, then shards added one at a time while the workload runs.
// See docs/design/bench.md, "Scale-out scenario".

// ScaleConfig describes a scale-out scenario.
type ScaleConfig struct {
	// Base is the workload (records, document size, threads, ...).
	Base Config `json:"base"`
	// ClusterFile is the cluster.yaml of the running cluster; its first
	// Shards shards take part, in file order.
	ClusterFile string `json:"cluster_file"`
	Shards      int    `json:"shards"`
	// StepDuration is the measurement window of each step, after the
	// balancer converged.
	StepDuration Duration `json:"step_duration"`
	// ConvergeTimeout bounds the wait for the balancer after an addShard.
	ConvergeTimeout Duration `json:"converge_timeout"`
	// Piece is the length of one workload piece while the balancer moves
	// chunks (the step's "moving" phase is a whole number of pieces).
	Piece Duration `json:"piece"`
	// Poll is the period of balancerStatus reads while waiting.
	Poll Duration `json:"poll"`
}

// DefaultScaleConfig returns the command's defaults around base.
func DefaultScaleConfig(base Config) ScaleConfig {
	return ScaleConfig{Base: base, Shards: 4, StepDuration: Duration(60 * time.Second),
		ConvergeTimeout: Duration(5 * time.Minute), Piece: Duration(5 * time.Second), Poll: Duration(500 * time.Millisecond)}
}

// Validate checks sc and fills defaults.
func (sc *ScaleConfig) Validate() error {
	var errs []error
	if sc.ClusterFile == "" {
		errs = append(errs, errors.New("--cluster is required: the scenario removes and adds the shards it lists"))
	}
	if sc.Shards < 2 {
		errs = append(errs, errors.New("--shards must be at least 2"))
	}
	if sc.StepDuration <= 0 {
		errs = append(errs, errors.New("--step-duration must be positive"))
	}
	if sc.ConvergeTimeout <= 0 {
		sc.ConvergeTimeout = Duration(5 * time.Minute)
	}
	if sc.Piece <= 0 {
		sc.Piece = Duration(5 * time.Second)
	}
	if sc.Poll <= 0 {
		sc.Poll = Duration(500 * time.Millisecond)
	}
	if sc.Base.Workload == "load" {
		errs = append(errs, errors.New("the scale-out workload cannot be load (it runs against the loaded records)"))
	}
	if sc.Base.Duration <= 0 {
		sc.Base.Duration = sc.StepDuration
	}
	errs = append(errs, sc.Base.Validate())
	return errors.Join(errs...)
}

// ScaleStep is one step of the scenario: the cluster with Shards shards.
type ScaleStep struct {
	Shards     int      `json:"shards"`
	ShardNames []string `json:"shard_names"`
	// Added is the shard added at the step's start ("" for the first).
	Added string `json:"added,omitempty"`
	// StartS is when the step began (the addShard), in seconds since the
	// workload started.
	StartS float64 `json:"start_s"`
	// ConvergeS is addShard to balanced (balancerStatus verdict balanced,
	// nothing in flight, a round that saw the new shard, chunk counts
	// within the threshold); Converged is false if ConvergeTimeout passed.
	ConvergeS  float64 `json:"converge_s"`
	Converged  bool    `json:"converged"`
	Migrations int64   `json:"migrations"`
	// Moving is the workload while the balancer moved chunks (nil for the
	// first step); Steady is the measurement window after it.
	Moving *Summary `json:"moving,omitempty"`
	Steady Summary  `json:"steady"`
	// ShardOpsPerSec is each shard's share of Steady's operations times
	// Steady's throughput.
	ShardOpsPerSec map[string]float64 `json:"shard_ops_per_sec"`
	// Chunks, Docs and DataBytes are each shard's chunks (config.chunks)
	// and stored documents and BSON bytes (collStats of one member, which
	// include orphans a donor has not deleted yet) at the end of the step.
	Chunks     map[string]int     `json:"chunks"`
	Docs       map[string]int64   `json:"docs"`
	DataBytes  map[string]int64   `json:"data_bytes"`
	DataShare  map[string]float64 `json:"data_share"`
	ChunkShare map[string]float64 `json:"chunk_share"`
	// MaxOpShare is the largest shard's share of the operations.
	MaxOpShare float64 `json:"max_op_share"`
}

// ProjectionPoint is the projected throughput of N machines.
type ProjectionPoint struct {
	Machines  int     `json:"machines"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// Measured is true when a step had this many shards (its balance
	// factor is the measured one).
	Measured bool `json:"measured"`
}

// Projection projects the measured spread to one shard per machine.
type Projection struct {
	Assumption string `json:"assumption"`
	// BaseOpsPerSec is the steady throughput of the one-shard step: what
	// one shard served with the whole machine.
	BaseOpsPerSec float64 `json:"base_ops_per_sec"`
	// Efficiency is the balance factor of the last step: (1/shards) over
	// the busiest shard's share (1 when perfectly even).
	Efficiency float64           `json:"efficiency"`
	Points     []ProjectionPoint `json:"points"`
}

// ScaleReport is the JSON result of `psdb bench scenario scale-out`.
type ScaleReport struct {
	Tool    string      `json:"tool"`
	Version int         `json:"version"`
	Command string      `json:"command"` // "scenario scale-out"
	Config  ScaleConfig `json:"config"`
	Start   time.Time   `json:"start"`
	End     time.Time   `json:"end"`
	// Load is the load of the records on the first shard.
	Load       *Summary    `json:"load,omitempty"`
	Steps      []ScaleStep `json:"steps"`
	Projection Projection  `json:"projection"`
	// Note states what one machine can and cannot show.
	Note      string     `json:"note"`
	Intervals []Interval `json:"intervals"`
	Summary   Summary    `json:"summary"`
}

// ScaleNote is the report's statement about one machine.
const ScaleNote = "Every process (config server, shards, router) and the client share one machine: " +
	"adding shards adds processes, not cores, so total throughput cannot grow with the shard count here. " +
	"What the scenario shows is what does scale: data and operations spread evenly over the shards, " +
	"and latency stays flat while chunks move. The projection assumes one shard per machine."

// ProjectionAssumption states the projection's assumption.
const ProjectionAssumption = "each shard on its own machine like this one, routers and clients scaled out with them; " +
	"N machines serve N times what one shard served alone, times the measured balance factor " +
	"(1/shards over the busiest shard's share of operations), linear until the config server, the routers or the network bound"

// Markers returns chart markers at each addShard and each convergence.
func (r *ScaleReport) Markers() []Marker {
	var ms []Marker
	for _, s := range r.Steps {
		if s.Added == "" {
			continue
		}
		ms = append(ms, Marker{AtS: s.StartS, Label: "+" + s.Added})
		if s.Converged {
			ms = append(ms, Marker{AtS: s.StartS + s.ConvergeS, Label: fmt.Sprintf("%d shards balanced", s.Shards)})
		}
	}
	return ms
}

// Project computes the projection from the steps: for N machines,
// N x the one-shard throughput x the balance factor measured with N
// shards (or with the most shards measured, beyond them).
func Project(steps []ScaleStep, machines []int) Projection {
	p := Projection{Assumption: ProjectionAssumption}
	if len(steps) == 0 {
		return p
	}
	p.BaseOpsPerSec = steps[0].Steady.OpsPerSec
	eff := map[int]float64{}
	last := 0
	for _, s := range steps {
		eff[s.Shards] = balanceFactor(s.Shards, s.MaxOpShare)
		last = max(last, s.Shards)
	}
	p.Efficiency = eff[last]
	for _, n := range machines {
		e, ok := eff[n]
		if !ok {
			e = eff[last]
		}
		p.Points = append(p.Points, ProjectionPoint{Machines: n, OpsPerSec: float64(n) * p.BaseOpsPerSec * e, Measured: ok})
	}
	return p
}

// balanceFactor is (1/n) / maxShare: 1 when n shards take even shares,
// less when the busiest one, which saturates first, takes more.
func balanceFactor(n int, maxShare float64) float64 {
	if n <= 1 || maxShare <= 0 {
		return 1
	}
	return math.Min(1, 1/(float64(n)*maxShare))
}

// shareOf returns each key's part of the sum (empty when it is 0).
func shareOf[V int | int64](m map[string]V) map[string]float64 {
	var sum float64
	for _, v := range m {
		sum += float64(v)
	}
	out := map[string]float64{}
	if sum <= 0 {
		return out
	}
	for k, v := range m {
		out[k] = float64(v) / sum
	}
	return out
}

// finishStep fills a step's derived figures from its measurements.
func finishStep(s *ScaleStep) {
	s.ShardOpsPerSec = map[string]float64{}
	s.MaxOpShare = 0
	for sh, share := range s.Steady.Shards.Share {
		s.ShardOpsPerSec[sh] = share * s.Steady.OpsPerSec
		s.MaxOpShare = math.Max(s.MaxOpShare, share)
	}
	s.DataShare = shareOf(s.Docs)
	s.ChunkShare = shareOf(s.Chunks)
}

// balancerView is the part of a balancerStatus reply the scenario reads.
type balancerView struct {
	Rounds    int64      `bson:"numBalancerRounds"`
	Moved     int64      `bson:"migrationsSucceeded"`
	InFlight  []bson.Raw `bson:"inFlight"`
	LastRound struct {
		Verdict     string `bson:"verdict"`
		Message     string `bson:"message"`
		Collections []struct {
			NS        string `bson:"ns"`
			DataSize  bool   `bson:"dataSize"`
			Threshold int64  `bson:"threshold"`
			Loads     bson.D `bson:"loads"`
		} `bson:"collections"`
	} `bson:"lastRound"`
}

// balanced reports whether the balancer has converged on ns over the
// active shards: the last round's verdict is balanced with nothing in
// flight, that round saw every active shard, and (in chunk-count mode)
// the chunk counts of config.chunks differ by less than the threshold.
// Otherwise it says why not.
func balanced(st balancerView, ns string, active []string, chunks map[string]int) (bool, string) {
	if st.LastRound.Verdict != "balanced" || len(st.InFlight) > 0 {
		return false, fmt.Sprintf("last round %q (%s), %d in flight", st.LastRound.Verdict, st.LastRound.Message, len(st.InFlight))
	}
	for _, c := range st.LastRound.Collections {
		if c.NS != ns {
			continue
		}
		for _, s := range active {
			if !slices.ContainsFunc(c.Loads, func(e bson.E) bool { return e.Key == s }) {
				return false, fmt.Sprintf("the last round (loads %v) predates shard %s", c.Loads, s)
			}
		}
		if !c.DataSize {
			lo, hi := -1, 0
			for _, s := range active {
				n := chunks[s]
				if lo < 0 || n < lo {
					lo = n
				}
				hi = max(hi, n)
			}
			if th := max(c.Threshold, 1); int64(hi-lo) >= th {
				return false, fmt.Sprintf("chunks per shard %v differ by %d (threshold %d)", chunks, hi-lo, th)
			}
		}
		return true, ""
	}
	return false, fmt.Sprintf("the last round does not mention %s", ns)
}

// scaleRun is one scenario in progress.
type scaleRun struct {
	sc       ScaleConfig
	cfg      Config
	cli      *mongo.Client
	cluster  *config.Cluster
	progress *Progress
	ns       string
	start    time.Time
	all      *window
	rep      *ScaleReport
	sm       *ShardMap
}

// ScaleOut runs the scale-out scenario against the running cluster of
// sc.ClusterFile: it removes shards 2..Shards (which must own nothing),
// loads the records hashed on shard 1, measures, then adds the other
// shards one at a time while the workload runs, waiting after each
// addShard for the balancer to converge and measuring StepDuration more.
// The database sc.Base.DB is dropped first.
func ScaleOut(ctx context.Context, cli *mongo.Client, sc ScaleConfig, progress *Progress) (*ScaleReport, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	cl, err := config.Load(sc.ClusterFile, nil)
	if err != nil {
		return nil, fmt.Errorf("cluster description: %w", err)
	}
	if len(cl.Shards) < sc.Shards {
		return nil, fmt.Errorf("%s lists %d shards, the scenario needs %d", sc.ClusterFile, len(cl.Shards), sc.Shards)
	}
	cfg := sc.Base
	cfg.Shard, cfg.Drop = true, true
	r := &scaleRun{sc: sc, cfg: cfg, cli: cli, cluster: cl, progress: progress, ns: cfg.DB + "." + cfg.Coll, all: newWindow(),
		rep: &ScaleReport{Tool: "psdb bench", Version: ReportVersion, Command: "scenario scale-out", Config: sc, Start: time.Now().UTC(), Note: ScaleNote}}
	err = r.run(ctx)
	r.rep.End = time.Now().UTC()
	if !r.start.IsZero() {
		r.rep.Summary = summaryOf(r.all, time.Since(r.start).Seconds(), r.sm)
	}
	r.rep.Projection = Project(r.rep.Steps, []int{1, 2, 4, 8, 16})
	return r.rep, err
}

func (r *scaleRun) event(format string, args ...any) {
	el := 0.0
	if !r.start.IsZero() {
		el = time.Since(r.start).Seconds()
	}
	r.progress.line(fmt.Sprintf("scale-out [%6.1fs] ", el) + fmt.Sprintf(format, args...))
}

func (r *scaleRun) run(ctx context.Context) error {
	names := make([]string, r.sc.Shards)
	for i := range names {
		names[i] = r.cluster.Shards[i].Name
	}
	if err := r.reset(ctx, names); err != nil {
		return err
	}
	r.event("loading %d records of %d B hashed on %s", r.cfg.Records, r.cfg.DocSize, names[0])
	lrep, err := Load(ctx, r.cli, r.cfg, r.progress)
	if lrep != nil {
		r.rep.Load = &lrep.Summary
	}
	if err != nil {
		return err
	}
	if lrep.Summary.Errors > 0 {
		return fmt.Errorf("load: %d errors %v", lrep.Summary.Errors, lrep.Summary.ErrorCodes)
	}
	// Let the split pass cut the loaded collection before measuring.
	if _, _, err := r.waitBalanced(ctx, names[:1], -1); err != nil {
		return fmt.Errorf("after the load: %w", err)
	}
	r.start = time.Now()
	for i := range names {
		step := ScaleStep{Shards: i + 1, ShardNames: slices.Clone(names[:i+1]), StartS: time.Since(r.start).Seconds()}
		if i > 0 {
			step.Added = names[i]
			if err := r.grow(ctx, &step, names[:i+1]); err != nil {
				r.rep.Steps = append(r.rep.Steps, step)
				return err
			}
		}
		w, secs, err := r.measure(ctx, time.Duration(r.sc.StepDuration), fmt.Sprintf("%d shards ", i+1))
		step.Steady = summaryOf(w, secs, r.sm)
		r.placement(ctx, &step)
		finishStep(&step)
		r.rep.Steps = append(r.rep.Steps, step)
		if err != nil {
			return err
		}
	}
	return nil
}

// reset drops the database and removes names[1:] from the cluster; each
// must own nothing (no chunk, no database).
func (r *scaleRun) reset(ctx context.Context, names []string) error {
	if err := r.cli.Database(r.cfg.DB).Drop(ctx); err != nil {
		return fmt.Errorf("dropDatabase %s: %w", r.cfg.DB, err)
	}
	active, err := listShards(ctx, r.cli)
	if err != nil {
		return err
	}
	if !slices.Contains(active, names[0]) {
		return fmt.Errorf("shard %s is not in the cluster (listShards: %v)", names[0], active)
	}
	for _, s := range names[1:] {
		if !slices.Contains(active, s) {
			continue
		}
		if err := r.ownsNothing(ctx, s); err != nil {
			return err
		}
		raw, err := r.cli.Database("admin").RunCommand(ctx, bson.D{{Key: "removeShard", Value: s}}).Raw()
		if err != nil {
			return fmt.Errorf("removeShard %s: %w", s, err)
		}
		if st, _ := raw.Lookup("state").StringValueOK(); st != "completed" {
			return fmt.Errorf("removeShard %s: %s, want completed", s, raw)
		}
		r.event("removed %s (owns nothing; its replica set keeps running)", s)
	}
	return nil
}

// ownsNothing refuses a shard that is the primary of a database or owns
// chunks: removing it would start a drain, not a removal.
func (r *scaleRun) ownsNothing(ctx context.Context, shard string) error {
	cfgDB := r.cli.Database("config")
	n, err := cfgDB.Collection("databases").CountDocuments(ctx, bson.D{{Key: "primary", Value: shard}})
	if err != nil {
		return fmt.Errorf("read config.databases: %w", err)
	}
	c, err := cfgDB.Collection("chunks").CountDocuments(ctx, bson.D{{Key: "shard", Value: shard}})
	if err != nil {
		return fmt.Errorf("read config.chunks: %w", err)
	}
	if n > 0 || c > 0 {
		return fmt.Errorf("shard %s is the primary of %d databases and owns %d chunks: the scenario needs a cluster whose shards after the first own nothing (a fresh one)", shard, n, c)
	}
	return nil
}

// listShards returns the active (not draining) shards, sorted.
func listShards(ctx context.Context, cli *mongo.Client) ([]string, error) {
	var rep struct {
		Shards []struct {
			ID       string `bson:"_id"`
			Draining bool   `bson:"draining"`
		} `bson:"shards"`
	}
	if err := cli.Database("admin").RunCommand(ctx, bson.D{{Key: "listShards", Value: 1}}).Decode(&rep); err != nil {
		return nil, fmt.Errorf("listShards: %w", err)
	}
	var out []string
	for _, s := range rep.Shards {
		if !s.Draining {
			out = append(out, s.ID)
		}
	}
	sort.Strings(out)
	return out, nil
}

func readBalancer(ctx context.Context, cli *mongo.Client) (balancerView, error) {
	var st balancerView
	raw, err := cli.Database("admin").RunCommand(ctx, bson.D{{Key: "balancerStatus", Value: 1}}).Raw()
	if err != nil {
		return st, fmt.Errorf("balancerStatus: %w", err)
	}
	if err := bson.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("decode balancerStatus: %w", err)
	}
	return st, nil
}

// waitBalanced polls until the balancer has converged over want (the
// active shards must be exactly want). It returns the time taken and the
// migrations done since moved0 (migrationsSucceeded before the
// addShard). moved0 < 0 means settling after a load: it then also waits
// for two rounds after its first read, since the split pass that cuts
// the loaded chunks runs in rounds.
func (r *scaleRun) waitBalanced(ctx context.Context, want []string, moved0 int64) (time.Duration, int64, error) {
	t0 := time.Now()
	deadline := t0.Add(time.Duration(r.sc.ConvergeTimeout))
	rounds0 := int64(-1)
	why := "no balancerStatus read yet"
	for {
		ok, w, st, err := r.checkBalanced(ctx, want)
		if err == nil && moved0 < 0 && rounds0 < 0 {
			rounds0 = st.Rounds
			moved0 = st.Moved
		}
		switch {
		case err != nil:
			why = err.Error()
		case !ok:
			why = w
		case rounds0 >= 0 && st.Rounds < rounds0+2:
			why = "waiting for two balancer rounds after the load"
		default:
			return time.Since(t0), st.Moved - moved0, nil
		}
		if time.Now().After(deadline) {
			return time.Since(t0), 0, fmt.Errorf("balancer not converged on %v after %s: %s", want, time.Duration(r.sc.ConvergeTimeout), why)
		}
		select {
		case <-ctx.Done():
			return time.Since(t0), 0, ctx.Err()
		case <-time.After(time.Duration(r.sc.Poll)):
		}
	}
}

func (r *scaleRun) checkBalanced(ctx context.Context, want []string) (bool, string, balancerView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	active, err := listShards(ctx, r.cli)
	if err != nil {
		return false, "", balancerView{}, err
	}
	if !slices.Equal(active, sortedCopy(want)) {
		return false, fmt.Sprintf("active shards %v, want %v", active, want), balancerView{}, nil
	}
	st, err := readBalancer(ctx, r.cli)
	if err != nil {
		return false, "", st, err
	}
	sm, err := LoadShardMap(ctx, r.cli, r.cfg.DB, r.cfg.Coll)
	if err != nil {
		return false, "", st, err
	}
	ok, why := balanced(st, r.ns, active, sm.ChunksPerShard)
	return ok, why, st, nil
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

type convergence struct {
	took    time.Duration
	moved   int64
	addErr  error // the addShard failed
	waitErr error // the balancer did not converge in time (or ctx ended)
}

// grow adds step.Added while the workload runs, in pieces, until the
// balancer converges over shards; the pieces make step.Moving. A
// balancer that does not converge within ConvergeTimeout is recorded
// (Converged false) and the scenario goes on.
func (r *scaleRun) grow(ctx context.Context, step *ScaleStep, shards []string) error {
	st, err := readBalancer(ctx, r.cli)
	if err != nil {
		return err
	}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan convergence, 1)
	r.event("addShard %s under load", step.Added)
	go func() {
		t0 := time.Now()
		if err := r.addShard(gctx, step.Added); err != nil {
			done <- convergence{addErr: err}
			return
		}
		_, moved, err := r.waitBalanced(gctx, shards, st.Moved)
		done <- convergence{took: time.Since(t0), moved: moved, waitErr: err}
	}()
	moving := newWindow()
	var secs float64
	var res convergence
	label := fmt.Sprintf("+%s moving ", step.Added)
	for got := false; !got; {
		w, s, err := r.measure(ctx, time.Duration(r.sc.Piece), label)
		moving.merge(w)
		secs += s
		if err != nil {
			cancel()
			<-done
			return err
		}
		select {
		case res = <-done:
			got = true
		default:
		}
	}
	sum := summaryOf(moving, secs, r.sm)
	step.Moving = &sum
	step.ConvergeS = res.took.Seconds()
	step.Migrations = res.moved
	switch {
	case res.addErr != nil:
		return res.addErr
	case res.waitErr != nil && ctx.Err() != nil:
		return res.waitErr
	case res.waitErr != nil:
		r.event("%v", res.waitErr)
		return nil
	}
	step.Converged = true
	r.event("%d shards balanced %.1fs after addShard %s, %d migrations", len(shards), step.ConvergeS, step.Added, step.Migrations)
	return nil
}

// addShard registers a cluster.yaml shard through the router.
func (r *scaleRun) addShard(ctx context.Context, name string) error {
	var addrs []string
	names := bson.A{}
	for _, s := range r.cluster.Shards {
		if s.Name != name {
			continue
		}
		for _, m := range s.Members {
			addrs = append(addrs, m.Addr)
			names = append(names, m.Name)
		}
	}
	raw, err := r.cli.Database("admin").RunCommand(ctx, bson.D{{Key: "addShard", Value: name + "/" + strings.Join(addrs, ",")},
		{Key: "name", Value: name}, {Key: "memberNames", Value: names}}).Raw()
	if err != nil {
		return fmt.Errorf("addShard %s: %w", name, err)
	}
	if got, _ := raw.Lookup("shardAdded").StringValueOK(); got != name {
		return fmt.Errorf("addShard %s answered %s", name, raw)
	}
	return nil
}

// measure runs the workload for d and returns its window and length.
func (r *scaleRun) measure(ctx context.Context, d time.Duration, label string) (*window, float64, error) {
	e := newEngine(r.cli, r.cfg, r.progress)
	e.label = label
	e.offset = time.Since(r.start).Seconds()
	err := e.runWorkload(ctx, r.cfg.Threads, d, 0)
	secs := 0.0
	if !e.start.IsZero() {
		secs = time.Since(e.start).Seconds()
	}
	r.rep.Intervals = append(r.rep.Intervals, e.intervals...)
	r.all.merge(e.total)
	if sm := e.shards.Load(); sm != nil {
		r.sm = sm
	}
	return e.total, secs, err
}

// placement reads each shard's chunks and stored documents.
func (r *scaleRun) placement(ctx context.Context, step *ScaleStep) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	step.Chunks, step.Docs, step.DataBytes = map[string]int{}, map[string]int64{}, map[string]int64{}
	if sm, err := LoadShardMap(ctx, r.cli, r.cfg.DB, r.cfg.Coll); err == nil {
		r.sm = sm
		for _, s := range step.ShardNames {
			step.Chunks[s] = sm.ChunksPerShard[s]
		}
	}
	for _, s := range r.cluster.Shards {
		if !slices.Contains(step.ShardNames, s.Name) {
			continue
		}
		if n, b, err := shardStats(ctx, s, r.ns); err == nil {
			step.Docs[s.Name], step.DataBytes[s.Name] = n, b
		} else {
			r.event("collStats on %s: %v", s.Name, err)
		}
	}
}

// shardStats asks the shard's members in turn for ns's document count
// and data size (any member answers from its own storage; a secondary
// lags its primary by its replication lag).
func shardStats(ctx context.Context, s config.Shard, ns string) (int64, int64, error) {
	var errs []error
	for _, m := range s.Members {
		cl, err := shardclient.Dial(ctx, m.Addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st, err := cl.CollStats(ctx, ns)
		_ = cl.Close()
		if mongoerr.HasCode(err, mongoerr.NamespaceNotFound) {
			return 0, 0, nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		return st.GetCount(), st.GetSize(), nil
	}
	return 0, 0, errors.Join(errs...)
}

// PrintScale writes the steps as a table, the shares and the projection.
func PrintScale(w io.Writer, r *ScaleReport) {
	if r.Load != nil {
		fmt.Fprintf(w, "load: %d records in %.1fs (%.0f docs/s), %d errors\n", r.Load.Ops, r.Load.DurationS, r.Load.OpsPerSec, r.Load.Errors)
	}
	ops := map[string]bool{}
	for _, s := range r.Steps {
		for n := range s.Steady.PerOp {
			ops[n] = true
		}
	}
	opNames := make([]string, 0, len(ops))
	for n := range ops {
		opNames = append(opNames, n)
	}
	sort.Strings(opNames)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "shards\tadded\tconverge s\tmigrations\tmoving ops/s\tmoving p99 ms\tops/s\tp50 ms\tp99 ms\t")
	for _, n := range opNames {
		fmt.Fprintf(tw, "%s p50/p99 ms\t", n)
	}
	fmt.Fprintln(tw, "errors\tmax op share\t")
	for _, s := range r.Steps {
		conv, mvOps, mvP99 := "-", "-", "-"
		if s.Added != "" {
			conv = fmt.Sprintf("%.1f", s.ConvergeS)
			if !s.Converged {
				conv += " (no)"
			}
		}
		if s.Moving != nil {
			mvOps, mvP99 = fmt.Sprintf("%.0f", s.Moving.OpsPerSec), fmt.Sprintf("%.2f", s.Moving.Latency.P99Ms)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%.0f\t%.2f\t%.2f\t", s.Shards, orDash(s.Added), conv, s.Migrations, mvOps, mvP99,
			s.Steady.OpsPerSec, s.Steady.Latency.P50Ms, s.Steady.Latency.P99Ms)
		for _, n := range opNames {
			l := s.Steady.PerOp[n].Latency
			fmt.Fprintf(tw, "%.2f/%.2f\t", l.P50Ms, l.P99Ms)
		}
		errs := s.Steady.Errors
		if s.Moving != nil {
			errs += s.Moving.Errors
		}
		fmt.Fprintf(tw, "%d\t%.1f%%\t\n", errs, 100*s.MaxOpShare)
	}
	tw.Flush()
	for _, s := range r.Steps {
		fmt.Fprintf(w, "%d shards:", s.Shards)
		for _, sh := range s.ShardNames {
			fmt.Fprintf(w, "  %s ops %.1f%% (%.0f/s) chunks %d docs %d (%.1f%%)", sh, 100*s.Steady.Shards.Share[sh], s.ShardOpsPerSec[sh],
				s.Chunks[sh], s.Docs[sh], 100*s.DataShare[sh])
		}
		fmt.Fprintln(w)
	}
	p := r.Projection
	fmt.Fprintf(w, "projection (%s):\n ", p.Assumption)
	for _, pt := range p.Points {
		m := ""
		if !pt.Measured {
			m = "*"
		}
		fmt.Fprintf(w, " %d machines %.0f ops/s%s;", pt.Machines, pt.OpsPerSec, m)
	}
	fmt.Fprintf(w, " (* balance factor %.2f of the last step)\n", p.Efficiency)
	fmt.Fprintln(w, "note:", r.Note)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
