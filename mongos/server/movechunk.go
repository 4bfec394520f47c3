package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/grpc"

	"github.com/psdb/psdb/mongos/balancer"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// The orchestration of a chunk migration (docs/design/migrations.md,
// "Orchestration"): the router drives the donor's and the recipient's
// primaries through the Migration service, phase by phase, and commits the
// move in the catalog. Before the commit any failure aborts everything
// (the recipient drops its copy, the donor's critical section ends
// uncommitted, the catalog is unchanged); after the commit nothing is
// rolled back and the donor deletes the range in the background.

// Defaults of MoveChunk.
const (
	// DefaultMoveCatchUpLag: the catch-up ends when the donor's oplog
	// holds at most this many entries the recipient has not read.
	DefaultMoveCatchUpLag = 50
	// DefaultMoveCriticalSection bounds the donor's critical section; it
	// ends by itself (as aborted) after this long.
	DefaultMoveCriticalSection = 10 * time.Second
	// moveCommitAttempts bounds the commit's retries on a concurrent
	// change of the collection version (other chunks moving).
	moveCommitAttempts = 5
	// moveCleanupTimeout bounds the abort and cleanup calls, which run
	// even when the caller's context ended.
	moveCleanupTimeout = 10 * time.Second
)

// MoveChunkOptions tune one migration.
type MoveChunkOptions struct {
	// WaitForDelete: return only once the donor deleted the range.
	WaitForDelete bool
	// CatchUpLag (0: DefaultMoveCatchUpLag) and CriticalSection (0:
	// DefaultMoveCriticalSection).
	CatchUpLag      int64
	CriticalSection time.Duration
	// Logger receives one line per phase.
	Logger zerolog.Logger
	// Server names this router in the changelog; Reason says why the
	// chunk moves ("moveChunk" command, or the balancer's reason).
	Server, Reason string

	// beforeCommit, when set (tests), runs just before the catalog commit;
	// afterPhase after each phase that succeeded.
	beforeCommit func()
	afterPhase   func(phase string)
}

// MoveStats is what a migration did.
type MoveStats struct {
	Docs, Bytes, Mods int64
	// Deleted: documents the donor deleted (with WaitForDelete).
	Deleted int64
	// Committed: the catalog gives the chunk to the recipient (an error
	// returned with Committed set happened after the commit).
	Committed bool
	// Version: the collection version after the commit.
	Version catalog.CollVersion
	// CriticalSection: how long the donor's writes to the range waited.
	CriticalSection time.Duration
	Total           time.Duration
}

// migrationPeer is a shard primary's Migration service and its address.
type migrationPeer struct {
	shard, addr string
	cli         shardpb.MigrationClient
}

// migrationPrimary returns the Migration client of shard's primary.
func migrationPrimary(ctx context.Context, b Backend, shard string) (migrationPeer, error) {
	mb, ok := b.(MemberBackend)
	if !ok {
		return migrationPeer{}, mongoerr.New(mongoerr.CommandNotSupported, "this router's backend cannot reach shard members for a migration")
	}
	conn, _, err := mb.Member(ctx, shard, prefPrimary, nil)
	if err != nil {
		return migrationPeer{}, fmt.Errorf("the primary of shard %s: %w", shard, err)
	}
	gc, ok := conn.(interface {
		Conn() *grpc.ClientConn
		Addr() string
	})
	if !ok {
		return migrationPeer{}, mongoerr.New(mongoerr.CommandNotSupported, "the connection to shard %s carries no Migration service", shard)
	}
	return migrationPeer{shard: shard, addr: gc.Addr(), cli: shardpb.NewMigrationClient(gc.Conn())}, nil
}

// chunkRange is the wire form of a chunk's range.
func chunkRange(ns string, key catalog.ShardKey, ch catalog.Chunk) (*shardpb.MigrationRange, error) {
	kp, err := bson.Marshal(key.Doc())
	if err != nil {
		return nil, fmt.Errorf("encode key pattern of %s: %w", ns, err)
	}
	return &shardpb.MigrationRange{Ns: ns, KeyPattern: kp, Min: ch.Min, Max: ch.Max}, nil
}

// MoveChunk moves chunk of ns (as read from the catalog or the routing
// metadata: its ModRevision is compared at the commit) to shard to, and
// returns once the move is committed in the catalog and this router's
// routing metadata shows it (and, with WaitForDelete, once the donor
// deleted the range). epoch is the collection's epoch the chunk was read
// at: a collection re-created since aborts. An error means the migration
// aborted and ownership is unchanged, except for errors wrapping
// ErrMoveOutcomeUnknown and errors after the commit (range deletion with
// WaitForDelete), which say so.
func MoveChunk(ctx context.Context, ab AdminBackend, cat *catalog.Catalog, ns string, key catalog.ShardKey, chunk catalog.Chunk, epoch string, to string, o MoveChunkOptions) (MoveStats, error) {
	m := &mover{ab: ab, cat: cat, ns: ns, key: key, chunk: chunk, epoch: epoch, to: to, o: o, start: time.Now()}
	if m.o.CatchUpLag <= 0 {
		m.o.CatchUpLag = DefaultMoveCatchUpLag
	}
	if m.o.CriticalSection <= 0 {
		m.o.CriticalSection = DefaultMoveCriticalSection
	}
	m.o.afterPhase = hangAfterPhase(ctx, m.o.afterPhase) // fail point (msg_configurefailpoint.go)
	m.log = o.Logger.With().Str(logging.FieldOp, "moveChunk").Str(logging.FieldNS, ns).
		Str("chunk", fmt.Sprintf("[%s, %s)", chunk.Min, chunk.Max)).Str("from", chunk.Shard).Str("to", to).Logger()
	bounds := []bson.E{{Key: "min", Value: chunk.Min}, {Key: "max", Value: chunk.Max}, {Key: "from", Value: chunk.Shard}, {Key: "to", Value: to}}
	if o.Reason != "" {
		bounds = append(bounds, bson.E{Key: "reason", Value: o.Reason})
	}
	if chunk.Shard != to {
		recordChange(ctx, ab, o.Server, "moveChunk.start", ns, m.log, bounds...)
	}
	err := m.run(ctx)
	m.stats.Total = time.Since(m.start)
	m.stats.Committed = m.committed
	done := append(slices.Clip(bounds),
		bson.E{Key: "clonedDocs", Value: m.stats.Docs}, bson.E{Key: "clonedBytes", Value: m.stats.Bytes},
		bson.E{Key: "catchUpMods", Value: m.stats.Mods},
		bson.E{Key: "criticalSectionMillis", Value: m.stats.CriticalSection.Milliseconds()},
		bson.E{Key: "totalMillis", Value: m.stats.Total.Milliseconds()})
	if err != nil {
		m.log.Warn().Err(err).Dur(logging.FieldDur, m.stats.Total).Bool("committed", m.committed).Msg("migration failed")
		if chunk.Shard != to {
			what := "moveChunk.error"
			if m.committed {
				what = "moveChunk.commit"
			}
			recordChange(ctx, ab, o.Server, what, ns, m.log, append(done, bson.E{Key: "errmsg", Value: err.Error()})...)
		}
		return m.stats, err
	}
	m.log.Info().Dur(logging.FieldDur, m.stats.Total).Int64("docs", m.stats.Docs).Int64("bytes", m.stats.Bytes).
		Int64("mods", m.stats.Mods).Dur("criticalSection", m.stats.CriticalSection).Msg("migration done")
	recordChange(ctx, ab, o.Server, "moveChunk.commit", ns, m.log, done...)
	return m.stats, nil
}

// ErrMoveOutcomeUnknown: the catalog commit's outcome could not be read;
// nothing was rolled back (the recipient keeps its copy, the donor its
// range); the catalog says who owns the chunk.
var ErrMoveOutcomeUnknown = errors.New("migration commit outcome unknown")

type mover struct {
	ab    AdminBackend
	cat   *catalog.Catalog
	ns    string
	key   catalog.ShardKey
	chunk catalog.Chunk
	epoch string
	to    string
	o     MoveChunkOptions
	log   zerolog.Logger
	start time.Time

	donor, recip  migrationPeer
	rng           *shardpb.MigrationRange
	recvID        string
	donorSession  string
	inSection     bool
	sectionStart  time.Time
	committed     bool
	commitUnknown bool
	stats         MoveStats
}

// phase runs one phase and logs it with its duration.
func (m *mover) phase(name string, fn func() error) error {
	t := time.Now()
	err := fn()
	ev := m.log.Info()
	if err != nil {
		ev = m.log.Warn().Err(err)
	}
	ev.Str("phase", name).Dur(logging.FieldDur, time.Since(t)).Int64("docs", m.stats.Docs).Int64("bytes", m.stats.Bytes).
		Int64("mods", m.stats.Mods).Msg("migration phase")
	if err != nil {
		return fmt.Errorf("migration of %s %s from %s to %s, phase %s: %w", m.ns, m.chunk, m.chunk.Shard, m.to, name, rpcerr.Error(err))
	}
	if m.o.afterPhase != nil {
		m.o.afterPhase(name)
	}
	return nil
}

func (m *mover) note(rep *shardpb.RecvChunkReply) {
	m.stats.Docs, m.stats.Bytes, m.stats.Mods = rep.GetClonedDocs(), rep.GetClonedBytes(), rep.GetModsApplied()
}

func (m *mover) run(ctx context.Context) (err error) {
	if m.chunk.Shard == m.to {
		return mongoerr.New(mongoerr.InvalidOptions, "chunk %s of %s is already on shard %s", m.chunk, m.ns, m.to)
	}
	defer func() {
		if err != nil && !m.committed && !m.commitUnknown {
			m.abort()
		}
	}()
	if err := m.connect(ctx); err != nil {
		return err
	}
	if err := m.startRecv(ctx); err != nil {
		return err
	}
	if err := m.clone(ctx); err != nil {
		return err
	}
	if err := m.catchUp(ctx, "catchUp", m.o.CatchUpLag); err != nil {
		return err
	}
	if err := m.enterCriticalSection(ctx); err != nil {
		return err
	}
	if err := m.catchUp(ctx, "drain", 0); err != nil {
		return err
	}
	if err := m.majority(ctx); err != nil {
		return err
	}
	// The donor ends a critical section by itself (as aborted) after
	// CriticalSection and then lets writes go: a commit after that could
	// lose them, so none is attempted past half of it.
	if held := time.Since(m.sectionStart); held > m.o.CriticalSection/2 {
		return mongoerr.New(mongoerr.ExceededTimeLimit, "migration of %s %s: the critical section has been held %v, more than half its bound %v; aborted",
			m.ns, m.chunk, held.Round(time.Millisecond), m.o.CriticalSection)
	}
	var rev int64
	if err := m.phase("commit", func() error {
		var err error
		rev, err = m.commit(ctx)
		return err
	}); err != nil {
		return err
	}
	// After the commit: never roll back.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), moveCleanupTimeout)
	defer cancel()
	m.release(cctx, rev)
	if err := m.phase("refresh", func() error { return m.ab.Refresh(cctx) }); err != nil {
		return err
	}
	if m.o.WaitForDelete {
		return m.waitForDelete(ctx)
	}
	return nil
}

// The steps of a migration, in order. MoveChunk runs them for one chunk;
// movePrimary (moveprimary.go) runs them for every unsharded collection of
// a database, with the critical section entered before the clone and one
// catalog commit for all of them.

// connect finds the donor's and the recipient's primaries.
func (m *mover) connect(ctx context.Context) error {
	return m.phase("connect", func() error {
		var err error
		if m.rng, err = chunkRange(m.ns, m.key, m.chunk); err != nil {
			return err
		}
		if m.donor, err = migrationPrimary(ctx, m.ab, m.chunk.Shard); err != nil {
			return err
		}
		m.recip, err = migrationPrimary(ctx, m.ab, m.to)
		return err
	})
}

// startRecv: the recipient opens the donor's session (StartMigration) and
// prepares its copy.
func (m *mover) startRecv(ctx context.Context) error {
	return m.phase("start", func() error {
		rep, err := m.recip.cli.RecvChunkStart(ctx, &shardpb.RecvChunkStartRequest{Range: m.rng, DonorAddr: m.donor.addr})
		if err != nil {
			return err
		}
		m.recvID, m.donorSession = rep.GetRecvId(), rep.GetDonorSessionId()
		return nil
	})
}

// clone copies the range from the donor's snapshot.
func (m *mover) clone(ctx context.Context) error {
	return m.phase("clone", func() error {
		rep, err := m.recip.cli.RecvChunkClone(ctx, &shardpb.RecvChunkRequest{RecvId: m.recvID})
		if err == nil {
			m.note(rep)
		}
		return err
	})
}

// catchUp applies the donor's oplog for the range until at most maxLag
// entries remain (0: all, the "drain" inside the critical section).
func (m *mover) catchUp(ctx context.Context, name string, maxLag int64) error {
	return m.phase(name, func() error {
		rep, err := m.recip.cli.RecvChunkCatchUp(ctx, &shardpb.RecvChunkRequest{RecvId: m.recvID, MaxLag: maxLag})
		if err == nil {
			m.note(rep)
		}
		return err
	})
}

// enterCriticalSection blocks the donor's writes to the range.
func (m *mover) enterCriticalSection(ctx context.Context) error {
	return m.phase("enterCriticalSection", func() error {
		m.sectionStart = time.Now()
		m.inSection = true // a failed call may still have entered: leave it on abort
		_, err := m.donor.cli.EnterCriticalSection(ctx, &shardpb.CriticalSectionRequest{SessionId: m.donorSession, TimeoutMs: m.o.CriticalSection.Milliseconds()})
		return err
	})
}

// majority waits until both copies are majority-committed before the
// commit: the recipient's (a failover must not lose what becomes the only
// owned copy) and the donor's (the mods were read from its durable oplog).
func (m *mover) majority(ctx context.Context) error {
	return m.phase("majority", func() error {
		if _, err := m.recip.cli.WaitMajority(ctx, &shardpb.WaitMajorityRequest{}); err != nil {
			return fmt.Errorf("recipient %s: %w", m.to, err)
		}
		if _, err := m.donor.cli.WaitMajority(ctx, &shardpb.WaitMajorityRequest{}); err != nil {
			return fmt.Errorf("donor %s: %w", m.chunk.Shard, err)
		}
		return nil
	})
}

// release runs after the commit (ctx must outlive the caller's): the
// range deletion is recorded on the donor before its writes are released,
// so a donor that crashes from here on still deletes the range (its next
// primary resumes the recorded task); then the critical section ends as
// committed at rev and both sessions end. Failures are logged only.
func (m *mover) release(ctx context.Context, rev int64) {
	_ = m.phase("scheduleRangeDeletion", func() error { return m.scheduleRangeDeletion(ctx) })
	_ = m.phase("leaveCriticalSection", func() error {
		_, err := m.donor.cli.LeaveCriticalSection(ctx, &shardpb.LeaveCriticalSectionRequest{SessionId: m.donorSession, Committed: true, CommitRevision: rev})
		m.inSection = false
		m.stats.CriticalSection = time.Since(m.sectionStart)
		return err
	})
	_ = m.phase("endSessions", func() error {
		_, err := m.recip.cli.RecvChunkEnd(ctx, &shardpb.RecvChunkRequest{RecvId: m.recvID})
		_, err2 := m.donor.cli.EndMigration(ctx, &shardpb.EndMigrationRequest{SessionId: m.donorSession})
		return errors.Join(err, err2)
	})
}

// waitForDelete waits until the donor deleted the range.
func (m *mover) waitForDelete(ctx context.Context) error {
	return m.phase("rangeDeletion", func() error {
		rep, err := m.donor.cli.DeleteRange(ctx, &shardpb.DeleteRangeRequest{Range: m.rng, Wait: true})
		if err == nil {
			m.stats.Deleted = rep.GetDeleted()
		}
		return err
	})
}

// commit commits the move with the collection version read right before
// it, retrying while only the collection version moved (other chunks
// migrating); it returns an etcd revision at or after the commit.
func (m *mover) commit(ctx context.Context) (int64, error) {
	for attempt := 1; ; attempt++ {
		coll, err := m.cat.GetCollection(ctx, m.ns)
		if err != nil {
			return 0, err
		}
		if coll.Epoch != m.epoch || coll.UUID != m.chunk.UUID {
			return 0, mongoerr.New(mongoerr.StaleEpoch, "collection %s was dropped or re-created during the migration", m.ns)
		}
		if m.o.beforeCommit != nil {
			m.o.beforeCommit()
		}
		v, err := m.cat.CommitMigration(ctx, m.ns, m.chunk, m.chunk.Shard, m.to, coll.CollVersion())
		if err == nil {
			m.committed = true
			m.stats.Version = v
			_, rev, err := m.cat.ListShards(ctx)
			if err != nil {
				// The donor then releases its writes without waiting for
				// the revision; their version checks still catch up with
				// the catalog before deciding.
				return 0, nil
			}
			return rev, nil
		}
		// Re-read even when ctx ended: the outcome must be known.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), moveCleanupTimeout)
		cur, ok, rerr := m.readChunk(rctx)
		cancel()
		switch {
		case rerr != nil:
			m.commitUnknown = true
			return 0, fmt.Errorf("%w: commit: %v; re-reading the chunk: %v", ErrMoveOutcomeUnknown, err, rerr)
		case ok && cur.Shard == m.to && bytes.Equal(cur.MaxKey, m.chunk.MaxKey):
			// The commit applied although its answer was lost.
			m.committed = true
			return cur.ModRevision, nil
		case !errors.Is(err, catalog.ErrConflict):
			return 0, err
		case !ok || cur.ModRevision != m.chunk.ModRevision || attempt >= moveCommitAttempts:
			return 0, err
		}
	}
}

// readChunk reads the chunk starting at m.chunk's min from the catalog.
func (m *mover) readChunk(ctx context.Context) (catalog.Chunk, bool, error) {
	chunks, _, err := m.cat.ListChunks(ctx, m.chunk.UUID)
	if err != nil {
		return catalog.Chunk{}, false, err
	}
	for _, c := range chunks {
		if bytes.Equal(c.MinKey, m.chunk.MinKey) {
			return c, true, nil
		}
	}
	return catalog.Chunk{}, false, nil
}

// abort undoes a migration that did not commit: the donor's critical
// section ends uncommitted, the recipient drops its copy (and ends the
// donor's session), the donor's session ends. Best effort: a session
// lost with its primary is already gone, a critical section times out.
func (m *mover) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), moveCleanupTimeout)
	defer cancel()
	t := time.Now()
	var errs []error
	if m.inSection && m.donorSession != "" {
		if _, err := m.donor.cli.LeaveCriticalSection(ctx, &shardpb.LeaveCriticalSectionRequest{SessionId: m.donorSession}); err != nil {
			errs = append(errs, fmt.Errorf("leave the critical section: %w", rpcerr.Error(err)))
		}
	}
	var deleted int64
	if m.recvID != "" {
		rep, err := m.recip.cli.RecvChunkEnd(ctx, &shardpb.RecvChunkRequest{RecvId: m.recvID, Abort: true})
		if err != nil {
			errs = append(errs, fmt.Errorf("abort the recipient: %w", rpcerr.Error(err)))
		} else {
			deleted = rep.GetDeleted()
		}
	}
	if m.donorSession != "" {
		if _, err := m.donor.cli.EndMigration(ctx, &shardpb.EndMigrationRequest{SessionId: m.donorSession}); err != nil {
			errs = append(errs, fmt.Errorf("end the donor's session: %w", rpcerr.Error(err)))
		}
	}
	ev := m.log.Info()
	if err := errors.Join(errs...); err != nil {
		ev = m.log.Warn().Err(err)
	}
	ev.Str("phase", "abort").Dur(logging.FieldDur, time.Since(t)).Int64("recipientDeleted", deleted).Msg("migration phase")
}

// Mover carries the balancer's migrations out with MoveChunk
// (balancer.Mover).
type Mover struct {
	Backend AdminBackend
	Logger  zerolog.Logger
	// Server names this router in the changelog.
	Server string
}

var _ balancer.Mover = (*Mover)(nil)

// Move implements balancer.Mover.
func (mv *Mover) Move(ctx context.Context, mg balancer.Migration) error {
	cat, err := mv.Backend.Catalog()
	if err != nil {
		return err
	}
	coll, err := cat.GetCollection(ctx, mg.NS)
	if err != nil {
		return err
	}
	if coll.Epoch != mg.Version.Epoch {
		return mongoerr.New(mongoerr.StaleEpoch, "collection %s was re-created since the plan", mg.NS)
	}
	if mg.Chunk.Shard != mg.From {
		return mongoerr.New(mongoerr.ConflictingOperationInProgress, "planned chunk %s is not on donor %s", mg.Chunk, mg.From)
	}
	st, err := MoveChunk(ctx, mv.Backend, cat, mg.NS, coll.Key, mg.Chunk, mg.Version.Epoch, mg.To, MoveChunkOptions{Logger: mv.Logger, Server: mv.Server, Reason: "balancer: " + string(mg.Reason)})
	if err != nil && st.Committed {
		// The move is committed (the contract's success); what failed
		// after it (refreshing this router) is logged by MoveChunk.
		return nil
	}
	return err
}
