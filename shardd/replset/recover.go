package replset

import (
	"context"
	"fmt"
	"time"

	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/repl"
)

// needResync marks that the next prepare must clone the source.
func (m *Member) needResync() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resync = true
}

// prepare runs before a puller starts: an initial sync when one is needed
// (asked for by needResync, left unfinished by a crash, or this member is
// empty while its source has data).
func (m *Member) prepare(ctx context.Context, p Peer) error {
	m.mu.Lock()
	need := m.resync
	m.mu.Unlock()
	why := "resync requested"
	switch {
	case need:
	case m.eng.InitialSyncPending():
		need, why = true, "an earlier initial sync did not finish"
	case m.eng.LastOpTime().Index == 0:
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := m.peers[p.Name].cli.Status(sctx, &shardpb.StatusRequest{})
		cancel()
		if err != nil {
			return fmt.Errorf("status of %s: %w", p.Name, err)
		}
		if st.GetApplied().GetIndex() > 0 {
			need, why = true, "this member is empty"
		}
	}
	if !need {
		return nil
	}
	m.setRecovering()
	start := time.Now()
	m.log.Info().Str("why", why).Msg("initial sync from " + p.Name)
	at, err := repl.InitialSync(ctx, repl.InitialSyncOptions{Member: m.o.Self, Source: p.Addr, Engine: m.eng, Logger: m.log})
	if err != nil {
		return fmt.Errorf("initial sync from %s: %w", p.Name, err)
	}
	m.mu.Lock()
	m.resync = false
	m.mu.Unlock()
	m.log.Info().Stringer("snapshot", at).Dur("took", time.Since(start)).Msg("initial sync done")
	return nil
}

// rollback returns a diverged member to its source's history.
func (m *Member) rollback(ctx context.Context, p Peer) error {
	start := time.Now()
	at, err := repl.Rollback(ctx, repl.RollbackOptions{Member: m.o.Self, Source: p.Addr, Engine: m.eng, DataDir: m.o.DataDir, Logger: m.log})
	if err != nil {
		return err
	}
	m.log.Info().Stringer("now", at).Dur("took", time.Since(start)).Msg("rollback done")
	return nil
}
