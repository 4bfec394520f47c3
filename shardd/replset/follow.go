package replset

import (
	"context"
	"errors"
	"time"

	"github.com/psdb/psdb/shardd/repl"
)

// follower owns the goroutine that keeps a secondary in step with its
// sync source: a repl.Puller, and the recovery steps when the puller
// cannot go on (rollback after a divergence, initial sync when the
// source's oplog no longer reaches back far enough). Its methods are
// called only from the member's run loop, so its fields need no lock.
type follower struct {
	m      *Member
	source string
	cancel context.CancelFunc
	done   chan struct{}
}

func newFollower(m *Member) *follower { return &follower{m: m} }

// follow makes p the sync source, restarting the puller if it was
// another member. Calling it again with the same source changes nothing.
func (f *follower) follow(ctx context.Context, p Peer) {
	if f.source == p.Name && f.done != nil {
		return
	}
	f.stop()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	f.source, f.cancel, f.done = p.Name, cancel, done
	f.m.mu.Lock()
	f.m.syncSource = p.Name
	f.m.mu.Unlock()
	go func() {
		defer close(done)
		f.run(cctx, p)
	}()
}

// stop ends the follower's goroutine and waits for it.
func (f *follower) stop() {
	cancel, done := f.cancel, f.done
	f.source, f.cancel, f.done = "", nil, nil
	if cancel == nil {
		return
	}
	cancel()
	<-done
	f.m.mu.Lock()
	f.m.syncSource, f.m.puller = "", nil
	f.m.mu.Unlock()
}

// run pulls from p until ctx ends, recovering from divergence and
// staleness on the way.
func (f *follower) run(ctx context.Context, p Peer) {
	m := f.m
	log := m.log.With().Str("syncSource", p.Name).Logger()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if err := m.prepare(ctx, p); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn().Err(err).Dur("retryIn", backoff).Msg("cannot prepare to follow the sync source")
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		pl, err := repl.NewPuller(repl.PullerOptions{Member: m.o.Self, Source: p.Addr, Engine: m.eng, Logger: log, OnApply: m.o.OnApply})
		if err != nil {
			log.Error().Err(err).Msg("cannot create the puller")
			return
		}
		m.mu.Lock()
		m.puller = pl
		if m.state == StateRecovering {
			m.state = StateSecondary
		}
		m.mu.Unlock()
		log.Info().Stringer("from", m.eng.LastOpTime()).Msg("following")
		err = pl.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, repl.ErrDiverged):
			log.Warn().Err(err).Msg("diverged from the sync source; rolling back")
			m.setRecovering()
			if rerr := m.rollback(ctx, p); rerr != nil {
				if errors.Is(rerr, repl.ErrResyncRequired) {
					log.Warn().Err(rerr).Msg("rollback impossible; resyncing")
					m.needResync()
				} else if ctx.Err() == nil {
					log.Error().Err(rerr).Msg("rollback failed; retrying")
					sleep(ctx, backoff)
				}
			}
		case errors.Is(err, repl.ErrTooStale):
			log.Warn().Err(err).Msg("fell off the sync source's oplog; resyncing")
			m.setRecovering()
			m.needResync()
		default:
			log.Warn().Err(err).Msg("puller stopped")
			sleep(ctx, backoff)
		}
	}
}

func (m *Member) setRecovering() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == StateSecondary {
		m.state = StateRecovering
	}
	m.puller = nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
