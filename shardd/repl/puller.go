package repl

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// Puller errors that end Run, testable with errors.Is: the puller cannot
// continue from where it is, and the election/rollback layer must act.
var (
	// ErrDiverged: the local oplog is not a prefix of the source's (the
	// source answered OplogStartMissing, or applying its entries failed
	// with storage.ErrOplogDiverged). The member must roll back to the
	// common point.
	ErrDiverged = errors.New("oplog diverged from the sync source")
	// ErrTooStale: the source no longer holds the entries after the local
	// last optime (RemoteOplogStale). The member must resync.
	ErrTooStale = errors.New("fell off the sync source's oplog")
)

// Backoff defaults of PullerOptions.
const (
	DefaultMinBackoff = 50 * time.Millisecond
	DefaultMaxBackoff = 2 * time.Second
)

// PullerOptions configure a Puller.
type PullerOptions struct {
	// Member is this member's name, sent with every request.
	Member string
	// Source is the sync source's gRPC address.
	Source string
	// Engine is this member's store; the Puller is its only writer.
	Engine *storage.Engine
	// Logger should carry the node, role and shard fields.
	Logger zerolog.Logger
	// MinBackoff and MaxBackoff bound the delay before reconnecting after
	// an error (doubling, with jitter; reset after a batch was applied).
	MinBackoff, MaxBackoff time.Duration
	// OnApply, if set, is called after each batch is applied with its
	// number of entries and how long applying took (the load line's
	// opstats.OpReplApply). It must be quick.
	OnApply func(entries int, d time.Duration)
}

// Puller keeps a secondary's store up to date with its sync source: it
// streams the source's oplog after the local last optime, applies each
// batch with storage.ApplyOplog (durable when it returns), and reports the
// local durable optime with ReportProgress. It is safe for concurrent use;
// Run is called once.
type Puller struct {
	opts   PullerOptions
	client *shardclient.Client
	repl   shardpb.ReplicationClient
	log    zerolog.Logger

	mu      sync.Mutex
	commit  storage.OpTime // the source's commit point, as last heard
	lastErr error
	batches int64
}

// NewPuller returns a Puller; nothing runs before Run. The connection to
// the source is made lazily and re-made by gRPC after failures.
func NewPuller(opts PullerOptions) (*Puller, error) {
	if opts.Engine == nil || opts.Member == "" || opts.Source == "" {
		return nil, errors.New("repl.NewPuller: Engine, Member and Source are required")
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	c, err := shardclient.Dial(context.Background(), opts.Source)
	if err != nil {
		return nil, err
	}
	return &Puller{
		opts:   opts,
		client: c,
		repl:   shardpb.NewReplicationClient(c.Conn()),
		log:    opts.Logger.With().Str("syncSource", opts.Source).Logger(),
	}, nil
}

// CommitPoint returns the source's commit point as last heard (in a batch
// or a progress reply).
func (p *Puller) CommitPoint() storage.OpTime {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.commit
}

// LastError returns the error of the last failed attempt (nil once a batch
// was applied since).
func (p *Puller) LastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

func (p *Puller) noteCommit(c *shardpb.OpTime) {
	if c == nil {
		return
	}
	t := storage.OpTime{Term: c.GetTerm(), Index: c.GetIndex()}
	p.mu.Lock()
	if t.Compare(p.commit) > 0 {
		p.commit = t
	}
	p.mu.Unlock()
}

// Run pulls and reports until ctx ends (then it returns ctx's error) or
// the puller cannot continue (an error wrapping ErrDiverged or
// ErrTooStale). Transient errors (source down, stream cut) are retried
// with backoff, never in a hot loop. Run closes the connection when it
// returns. It runs two loops, both owned by Run and stopped by it: the
// pull loop and the progress reporter.
func (p *Puller) Run(ctx context.Context) error {
	defer p.client.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.reportLoop(ctx)
	}()
	err := p.pullLoop(ctx)
	cancel()
	wg.Wait()
	return err
}

// backoff is a doubling delay with jitter.
type backoff struct{ min, max, cur time.Duration }

func (b *backoff) reset() { b.cur = 0 }

// wait sleeps for the next delay or until ctx ends.
func (b *backoff) wait(ctx context.Context) error {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	d := b.cur/2 + rand.N(b.cur/2+1) // jitter: [cur/2, cur]
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Puller) pullLoop(ctx context.Context) error {
	b := backoff{min: p.opts.MinBackoff, max: p.opts.MaxBackoff}
	for {
		progressed, err := p.pullOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrDiverged) || errors.Is(err, ErrTooStale) {
			p.log.Error().Err(err).Msg("replication stopped")
			p.setErr(err)
			return err
		}
		p.setErr(err)
		if progressed {
			b.reset()
		}
		p.log.Warn().Err(err).Msg("oplog stream ended; reconnecting")
		if err := b.wait(ctx); err != nil {
			return err
		}
	}
}

func (p *Puller) setErr(err error) {
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}

// pullOnce runs one stream: from the local last optime until an error.
// progressed reports whether a batch was applied.
func (p *Puller) pullOnce(ctx context.Context) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	after := p.opts.Engine.LastOpTime()
	stream, err := p.repl.PullOplog(ctx, &shardpb.PullOplogRequest{
		Member: p.opts.Member,
		After:  &shardpb.OpTime{Term: after.Term, Index: after.Index},
		Term:   p.opts.Engine.PromisedTerm(),
	})
	if err != nil {
		return false, fmt.Errorf("pull oplog from %s: %w", p.opts.Source, rpcerr.Error(err))
	}
	for {
		batch, err := stream.Recv()
		if err != nil {
			err = rpcerr.Error(err)
			switch mongoerr.CodeOf(err) {
			case mongoerr.OplogStartMissing:
				return progressed, fmt.Errorf("%w: %v", ErrDiverged, err)
			case mongoerr.RemoteOplogStale:
				return progressed, fmt.Errorf("%w: %v", ErrTooStale, err)
			}
			return progressed, fmt.Errorf("pull oplog from %s: %w", p.opts.Source, err)
		}
		p.noteCommit(batch.GetCommitPoint())
		entries := make([]storage.OplogEntry, 0, len(batch.GetEntries()))
		for _, b := range batch.GetEntries() {
			e, err := storage.DecodeOplogEntry(b)
			if err != nil {
				return progressed, fmt.Errorf("batch from %s: %w", p.opts.Source, err)
			}
			entries = append(entries, e)
		}
		start := time.Now()
		if err := p.opts.Engine.ApplyOplogFrom(ctx, batch.GetTerm(), entries); err != nil {
			if errors.Is(err, storage.ErrOplogDiverged) {
				return progressed, fmt.Errorf("%w: %v", ErrDiverged, err)
			}
			// A gap cannot happen on one stream (the source sends in order
			// from our position); reconnecting restarts from LastOpTime.
			return progressed, fmt.Errorf("apply batch from %s: %w", p.opts.Source, err)
		}
		progressed = true
		if p.opts.OnApply != nil {
			p.opts.OnApply(len(entries), time.Since(start))
		}
		p.mu.Lock()
		p.batches++
		p.lastErr = nil
		p.mu.Unlock()
		if d := time.Since(start); d >= 100*time.Millisecond {
			p.log.Info().Str(logging.FieldOp, "applyOplog").Int("entries", len(entries)).Dur(logging.FieldDur, d).Msg("slow batch")
		}
	}
}

// reportLoop sends the local durable optime to the source whenever it
// advances (coalescing: a report carries the newest value), and once at
// start. Failed reports are retried with backoff.
func (p *Puller) reportLoop(ctx context.Context) {
	b := backoff{min: p.opts.MinBackoff, max: p.opts.MaxBackoff}
	var reported storage.OpTime
	first := true
	for {
		cur := p.opts.Engine.LastOpTime()
		if !first && cur.Compare(reported) <= 0 {
			var err error
			if cur, err = p.opts.Engine.WaitDurable(ctx, reported); err != nil {
				return // ctx ended or the engine closed
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		reply, err := p.repl.ReportProgress(rctx, &shardpb.ProgressRequest{
			Member:  p.opts.Member,
			Term:    p.opts.Engine.PromisedTerm(),
			Applied: &shardpb.OpTime{Term: cur.Term, Index: cur.Index},
			Durable: &shardpb.OpTime{Term: cur.Term, Index: cur.Index},
		})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Debug().Err(rpcerr.Error(err)).Msg("progress report failed; retrying")
			if b.wait(ctx) != nil {
				return
			}
			continue
		}
		b.reset()
		first = false
		reported = cur
		p.noteCommit(reply.GetCommitPoint())
	}
}
