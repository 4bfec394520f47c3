package balancer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/logging"
)

// Source reads what a round plans on.
type Source interface {
	// Read returns the cluster state (with Now set) and the settings, read
	// as one consistent view where the source allows. Cancelling ctx
	// abandons the read with ctx's error.
	Read(ctx context.Context) (ClusterState, Settings, error)
}

// Mover carries one migration through all its phases (clone, catch-up,
// critical section, commit, release; range deletion may go on after it
// returns).
type Mover interface {
	// Move returns nil once the chunk is committed to m.To in the
	// catalog, or an error once the migration is aborted and ownership
	// is unchanged (nothing half-owned in either case). It commits with
	// catalog.CommitMigration passing m.Chunk as planned (its ModRevision
	// makes the commit fail if the chunk was split or moved since the
	// plan) and the collection version read just before the commit, not
	// at the start: other migrations of the same collection, between
	// other shards, may commit meanwhile (re-read and retry on
	// ErrConflict while m.Chunk is unchanged). An epoch other than
	// m.Version's means the collection was re-created: abort.
	// Cancelling ctx (leadership lost, shutdown) aborts a migration that
	// has not committed yet; Move still returns only when the outcome is
	// known.
	Move(ctx context.Context, m Migration) error
}

// Elector is the balancer election: *catalog.Catalog implements it.
type Elector interface {
	// CampaignBalancer blocks until id leads or ctx is done (then it
	// returns ctx's error).
	CampaignBalancer(ctx context.Context, id string, ttl time.Duration) (*catalog.Leadership, error)
}

// Splitter splits chunks that grew past the maximum chunk size; a round
// runs it (at most once per Interval) before it plans.
type Splitter interface {
	// SplitOversized measures every chunk of coll and splits those larger
	// than maxBytes (at the median, a hashed chunk at its hash midpoint).
	// It reports how many chunks it split and the chunks it could not
	// split although they are too large (jumbo). A failure on one chunk
	// is returned after the others were tried.
	SplitOversized(ctx context.Context, coll Collection, maxBytes int64) (SplitResult, error)
}

// SplitResult is what one SplitOversized call did.
type SplitResult struct {
	Split int
	Jumbo []catalog.Chunk
}

// Publisher stores the leader's Status where every router reads it
// (balancerStatus answered by any router); *catalog.Catalog's
// PutBalancerStatus behind a small adapter implements it.
type Publisher interface {
	PublishStatus(ctx context.Context, s Status) error
}

// Options configure a Balancer.
type Options struct {
	// ID names this router in the election (its router id).
	ID      string
	Elector Elector
	Source  Source
	Mover   Mover
	// Splitter (optional) splits oversized chunks before planning.
	Splitter Splitter
	// Publisher (optional) receives the status after every change.
	Publisher Publisher
	// Interval is the pause after a round that moved nothing or had a
	// failed move; a round whose moves all succeeded is followed at once
	// by the next. Default 10 s.
	Interval time.Duration
	// LeaseTTL is the election session's lease: how long a dead leader
	// keeps the role. Default 10 s.
	LeaseTTL time.Duration
	// RetryDelay is the pause after a failed campaign. Default 1 s.
	RetryDelay time.Duration
	Logger     zerolog.Logger
}

// MaxLastErrors is how many failed moves Status keeps.
const MaxLastErrors = 16

// MoveError is a failed migration.
type MoveError struct {
	Migration Migration
	Err       string
	At        time.Time
}

// Status is a snapshot of the balancer for balancerStatus.
type Status struct {
	// Mode is "full" or "off" as of the last settings read by a round
	// (MongoDB's balancerStatus mode); "" before the first round. Only
	// the leader reads settings: other routers answer balancerStatus
	// from the catalog.
	Mode string
	// Leader reports whether this balancer holds the election.
	Leader bool
	// InRound reports whether a round is running.
	InRound bool
	// Rounds counts completed rounds (as leader, over all leaderships).
	Rounds int64
	// Moved counts migrations that succeeded.
	Moved int64
	// InFlight are the migrations of the running round not finished yet.
	InFlight []Migration
	// LastErrors are the most recent failed migrations and round errors
	// (a round error has a zero Migration), oldest first.
	LastErrors []MoveError
	// LastExplanation is the planner's explanation of the last round.
	LastExplanation Explanation
	// LeaderID is the router that produced this status.
	LeaderID string
	// LastRound is when the last round ended.
	LastRound time.Time
	// Splits counts chunks split by the balancer's split passes; Jumbo
	// are the chunks the last pass found too large but unsplittable.
	Splits int64
	Jumbo  []catalog.Chunk
}

// Balancer runs balancing rounds while it leads. Safe for concurrent use:
// Status and Wake may be called from any goroutine while Run runs.
type Balancer struct {
	opts Options
	log  zerolog.Logger
	wake chan struct{}

	// lastSplitPass is when the last split pass started, and
	// movedLastRound whether the last round moved chunks; both owned by
	// the goroutine running rounds.
	lastSplitPass  time.Time
	movedLastRound bool
	// woken is set by Wake: the next round runs a split pass.
	woken atomic.Bool

	mu      sync.Mutex
	running bool
	st      Status
}

// New checks opts and returns a Balancer; Run starts it.
func New(opts Options) (*Balancer, error) {
	switch {
	case opts.ID == "":
		return nil, errors.New("balancer: Options.ID is empty")
	case opts.Elector == nil || opts.Source == nil || opts.Mover == nil:
		return nil, errors.New("balancer: Options.Elector, Source and Mover are required")
	case opts.Interval < 0 || opts.LeaseTTL < 0 || opts.RetryDelay < 0:
		return nil, errors.New("balancer: negative Interval, LeaseTTL or RetryDelay")
	}
	if opts.Interval == 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 10 * time.Second
	}
	if opts.RetryDelay == 0 {
		opts.RetryDelay = time.Second
	}
	return &Balancer{opts: opts, log: opts.Logger.With().Str(logging.FieldOp, "balancer").Logger(), wake: make(chan struct{}, 1)}, nil
}

// Status returns a copy of the current status.
func (b *Balancer) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.st
	s.InFlight = slices.Clone(s.InFlight)
	s.LastErrors = slices.Clone(s.LastErrors)
	s.Jumbo = slices.Clone(s.Jumbo)
	return s
}

// publish hands the status to the Publisher, if any (best effort: a
// failure only delays what other routers see).
func (b *Balancer) publish(ctx context.Context) {
	if b.opts.Publisher == nil {
		return
	}
	st := b.Status()
	st.LeaderID = b.opts.ID
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := b.opts.Publisher.PublishStatus(pctx, st); err != nil {
		b.log.Debug().Err(err).Msg("publish balancer status")
	}
}

// Wake makes a leader start its next round now instead of after Interval
// (balancerStart, addShard). It never blocks.
func (b *Balancer) Wake() {
	b.woken.Store(true)
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Run campaigns for the balancer election and, while it leads, runs
// rounds. Losing leadership cancels the running round's moves (through
// their context) and waits for them, then campaigns again. Run returns
// nil when ctx is done, after resigning; it returns an error only if the
// Balancer is already running.
func (b *Balancer) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return errors.New("balancer: Run called twice")
	}
	b.running = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.running = false
		b.mu.Unlock()
	}()
	for ctx.Err() == nil {
		l, err := b.opts.Elector.CampaignBalancer(ctx, b.opts.ID, b.opts.LeaseTTL)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			b.log.Warn().Err(err).Msg("balancer campaign failed")
			if !sleep(ctx, b.opts.RetryDelay) {
				return nil
			}
			continue
		}
		b.lead(ctx, l)
	}
	return nil
}

// lead runs rounds until ctx is done or leadership is lost, then resigns.
func (b *Balancer) lead(ctx context.Context, l *catalog.Leadership) {
	lctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(l.Ctx, func() { cancel(context.Cause(l.Ctx)) })
	b.setLeader(true)
	b.log.Info().Str("router", b.opts.ID).Msg("balancer leading")
	for {
		clean := b.round(lctx)
		if lctx.Err() != nil {
			break
		}
		wait := b.opts.Interval
		if clean {
			wait = 0
		}
		if !b.pause(lctx, wait) {
			break
		}
	}
	b.setLeader(false)
	b.log.Info().Str("router", b.opts.ID).AnErr("cause", context.Cause(lctx)).Msg("balancer no longer leading")
	stop()
	cancel(nil)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer rcancel()
	if err := l.Resign(rctx); err != nil {
		b.log.Debug().Err(err).Msg("balancer resign")
	}
}

func (b *Balancer) pause(ctx context.Context, d time.Duration) bool {
	if d == 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-b.wake:
		return true
	}
}

// round runs one round: read, plan, move in parallel, wait. It reports
// whether it moved chunks with no failure (then the next round follows at
// once).
func (b *Balancer) round(ctx context.Context) bool {
	defer func() {
		b.mu.Lock()
		b.st.InRound = false
		b.st.InFlight = nil
		b.st.Rounds++
		b.st.LastRound = time.Now()
		b.mu.Unlock()
		b.publish(ctx)
	}()
	state, settings, err := b.opts.Source.Read(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn().Err(err).Msg("balancer round could not read the cluster state")
			b.recordError(Migration{}, fmt.Errorf("read cluster state: %w", err))
		}
		return false
	}
	// A round of a stopped balancer only reads the settings: it is not
	// "in a balancer round" (sh.isBalancerRunning()).
	b.mu.Lock()
	b.st.InRound = settings.Enabled
	b.mu.Unlock()
	if b.splitPass(ctx, state, settings) {
		if state, settings, err = b.opts.Source.Read(ctx); err != nil {
			if ctx.Err() == nil {
				b.recordError(Migration{}, fmt.Errorf("read cluster state after splits: %w", err))
			}
			return false
		}
	}
	b.markJumbo(&state)
	b.movedLastRound = false
	migs, ex := plan(state, settings)
	b.mu.Lock()
	b.st.Mode = "off"
	if settings.Enabled {
		b.st.Mode = "full"
	}
	b.st.LastExplanation = ex
	b.st.InFlight = slices.Clone(migs)
	b.mu.Unlock()
	if len(migs) == 0 {
		b.log.Debug().Str("verdict", string(ex.Verdict)).Str("why", ex.Message).Msg("balancer round moves nothing")
		return false
	}
	b.log.Info().Int("migrations", len(migs)).Msg("balancer round starts migrations")
	b.publish(ctx)
	var g errgroup.Group
	var failed atomic.Bool
	for _, m := range migs {
		g.Go(func() error {
			start := time.Now()
			err := b.opts.Mover.Move(ctx, m)
			b.finish(m)
			defer b.publish(ctx)
			ev := b.log.Info()
			if err != nil {
				ev = b.log.Warn().Err(err)
				failed.Store(true)
				b.recordError(m, err)
			} else {
				b.mu.Lock()
				b.st.Moved++
				b.mu.Unlock()
			}
			ev.Str(logging.FieldNS, m.NS).Str("from", m.From).Str("to", m.To).Str("reason", string(m.Reason)).
				Stringer("chunk", m.Chunk).Dur(logging.FieldDur, time.Since(start)).Msg("balancer migration ended")
			return nil
		})
	}
	_ = g.Wait() // moves record their own errors
	b.movedLastRound = !failed.Load()
	return !failed.Load()
}

// splitPass runs the Splitter over every collection when it is due
// (enabled, and Interval since the last pass) and reports whether it
// split anything (the round then re-reads the state).
func (b *Balancer) splitPass(ctx context.Context, state ClusterState, settings Settings) bool {
	if b.opts.Splitter == nil || !settings.Enabled || settings.ChunkSizeBytes <= 0 || !b.splitDue() {
		return false
	}
	b.lastSplitPass = time.Now()
	split := 0
	var jumbo []catalog.Chunk
	for _, c := range state.Collections {
		res, err := b.opts.Splitter.SplitOversized(ctx, c, settings.ChunkSizeBytes)
		split += res.Split
		jumbo = append(jumbo, res.Jumbo...)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			b.log.Warn().Err(err).Str(logging.FieldNS, c.NS).Msg("balancer split pass")
			b.recordError(Migration{NS: c.NS}, fmt.Errorf("split pass of %s: %w", c.NS, err))
		}
	}
	b.mu.Lock()
	b.st.Splits += int64(split)
	b.st.Jumbo = jumbo
	b.mu.Unlock()
	if split > 0 {
		b.log.Info().Int("split", split).Int("jumbo", len(jumbo)).Dur(logging.FieldDur, time.Since(b.lastSplitPass)).Msg("balancer split oversized chunks")
	}
	return split > 0
}

// maxSplitGap bounds the time between split passes while rounds keep
// moving chunks.
const maxSplitGap = 5 * time.Minute

// splitDue decides whether this round runs a split pass. A pass measures
// every chunk (one SplitVector each), so it runs at the first round, after
// a Wake (addShard, balancerStart: new shards need chunks to receive), and
// after an idle round once Interval has passed; not between the rounds of
// a run of migrations (convergence must be bounded by copy speed, not by
// measuring), except every maxSplitGap.
func (b *Balancer) splitDue() bool {
	woken := b.woken.Swap(false)
	since := time.Since(b.lastSplitPass)
	switch {
	case b.lastSplitPass.IsZero(), woken, since >= maxSplitGap:
		return true
	case b.movedLastRound:
		return false
	}
	return since >= b.opts.Interval
}

// markJumbo flags the chunks the last split pass found jumbo, so the
// planner leaves them where they are.
func (b *Balancer) markJumbo(state *ClusterState) {
	b.mu.Lock()
	jumbo := slices.Clone(b.st.Jumbo)
	b.mu.Unlock()
	if len(jumbo) == 0 {
		return
	}
	for ci := range state.Collections {
		for i := range state.Collections[ci].Chunks {
			ch := &state.Collections[ci].Chunks[i]
			for _, j := range jumbo {
				if j.UUID == ch.UUID && string(j.MinKey) == string(ch.MinKey) && string(j.MaxKey) == string(ch.MaxKey) {
					ch.Jumbo = true
				}
			}
		}
	}
}

func (b *Balancer) setLeader(v bool) {
	b.mu.Lock()
	b.st.Leader = v
	b.mu.Unlock()
}

// finish drops m from the in-flight list.
func (b *Balancer) finish(m Migration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.st.InFlight = slices.DeleteFunc(b.st.InFlight, func(x Migration) bool {
		return x.NS == m.NS && string(x.Chunk.MinKey) == string(m.Chunk.MinKey)
	})
}

func (b *Balancer) recordError(m Migration, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.st.LastErrors = append(b.st.LastErrors, MoveError{Migration: m, Err: err.Error(), At: time.Now()})
	if n := len(b.st.LastErrors); n > MaxLastErrors {
		b.st.LastErrors = slices.Delete(b.st.LastErrors, 0, n-MaxLastErrors)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// CatalogSource reads the state from the catalog: shards, sharded
// collections and chunks at one revision, and the stored settings. It
// reports no jumbo chunks, no data sizes and no in-flight migrations (the
// catalog records none of them yet).
type CatalogSource struct {
	Catalog *catalog.Catalog
	// Now is the clock for the active window; nil means time.Now.
	Now func() time.Time
}

// Read implements Source.
func (s CatalogSource) Read(ctx context.Context) (ClusterState, Settings, error) {
	set, err := s.Catalog.GetBalancerSettings(ctx)
	if err != nil {
		return ClusterState{}, Settings{}, fmt.Errorf("balancer settings: %w", err)
	}
	snap, err := s.Catalog.ReadShardingSnapshot(ctx)
	if err != nil {
		return ClusterState{}, Settings{}, fmt.Errorf("sharding snapshot: %w", err)
	}
	return StateFromSnapshot(snap, s.now()), SettingsFromCatalog(set), nil
}

func (s CatalogSource) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// StateFromSnapshot converts a catalog snapshot into a ClusterState.
func StateFromSnapshot(snap catalog.ShardingSnapshot, now time.Time) ClusterState {
	st := ClusterState{Now: now}
	for _, s := range snap.Shards {
		st.Shards = append(st.Shards, Shard{Name: s.Name, Draining: s.State == catalog.ShardDraining})
	}
	for _, sc := range snap.Collections {
		c := Collection{NS: sc.Collection.NS, Version: sc.Collection.CollVersion(), Chunks: make([]Chunk, len(sc.Chunks))}
		for i, ch := range sc.Chunks {
			c.Chunks[i] = Chunk{Chunk: ch}
		}
		st.Collections = append(st.Collections, c)
	}
	return st
}
