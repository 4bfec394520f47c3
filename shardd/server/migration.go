package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/executor"
	"github.com/psdb/psdb/shardd/migrate"
	"github.com/psdb/psdb/shardd/storage"
)

// The Migration service (docs/design/migrations.md): what a chunk
// migration's recipient pulls from the donor's primary (StartMigration,
// CloneRange, TransferMods, EndMigration), the donor's critical section
// (Enter/LeaveCriticalSection) and the deletion of a range the shard gave
// away (DeleteRange). The orchestration (which shard, when, the catalog
// commit) is not here.

// Defaults of the Migration service.
const (
	// DefaultCriticalSectionTimeout ends a critical section whose
	// migration driver went away (as aborted).
	DefaultCriticalSectionTimeout = 10 * time.Second
	// migrationIdle ends a session (donor or recipient) that no call has
	// used for this long and that is doing nothing (no clone or phase
	// running, no critical section held): its driver, a router, died. It
	// is checked when a new migration starts, so a dead router's session
	// blocks the next migration of its range for at most this long. The
	// router's calls follow one another without pauses (the longest gap
	// is the catalog commit), so a live migration is never taken for
	// idle.
	migrationIdle = 20 * time.Second
)

// migrationService implements shardpb.MigrationServer over the Server's
// store. Safe for concurrent use.
type migrationService struct {
	shardpb.UnimplementedMigrationServer

	s    *Server
	crit *migrate.CriticalSections
	del  *migrate.RangeDeleter

	ctx    context.Context // ends at Close: the range deleter's and the sessions'
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	sessions   map[string]*migrationSession
	recvs      map[string]*recvSession // recipient sessions (migration_recv.go)
	delRunning bool
}

type migrationSession struct {
	src      *migrate.Source
	section  *migrate.Section // held critical section, if any
	lastUsed time.Time
}

func newMigrationService(s *Server) *migrationService {
	ctx, cancel := context.WithCancel(context.Background())
	del := migrate.NewRangeDeleter(s.eng, s.log, 0)
	del.CheckWritable = s.checkWritable
	crit := migrate.NewCriticalSections()
	// A section that ends (committed, aborted or timed out) may end after
	// a commit this shard's routing view has not seen: the version check
	// must catch up with the catalog before trusting its view again.
	crit.OnRelease = func() {
		if inv, ok := s.versions.(viewInvalidator); ok {
			inv.Invalidate()
		}
	}
	return &migrationService{
		s: s, crit: crit, del: del,
		ctx: ctx, cancel: cancel, sessions: map[string]*migrationSession{},
	}
}

// close ends the range deleter and every session (releasing their
// critical sections as aborted and their snapshots).
func (m *migrationService) close() {
	m.cancel()
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ss := range m.sessions {
		m.endLocked(id, ss)
	}
	m.closeRecvsLocked()
}

func (m *migrationService) endLocked(id string, ss *migrationSession) {
	if ss.section != nil {
		ss.section.Leave(false)
	}
	_ = ss.src.Close()
	delete(m.sessions, id)
}

// session returns a live session by id; NoSuchSession (206) otherwise.
func (m *migrationService) session(id string) (*migrationSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ss := m.sessions[id]
	if ss == nil {
		return nil, mongoerr.New(mongoerr.NoSuchSession, "no migration session %q on this member (ended, expired or another primary)", id)
	}
	ss.lastUsed = time.Now()
	return ss, nil
}

// touch marks a session used at the end of a call, so the time a long
// call took does not count as idle.
func (m *migrationService) touch(ss *migrationSession) {
	m.mu.Lock()
	ss.lastUsed = time.Now()
	m.mu.Unlock()
}

// StartMigration opens a donor session on this primary: a snapshot of the
// store for the range's clone. One session per range at a time.
func (m *migrationService) StartMigration(_ context.Context, req *shardpb.StartMigrationRequest) (*shardpb.StartMigrationReply, error) {
	if err := m.s.checkWritable(); err != nil {
		return nil, err
	}
	r, err := migrate.RangeFromProto(req.GetRange())
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return nil, mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
	}
	now := time.Now()
	for id, ss := range m.sessions {
		if (ss.section == nil || ss.section.Released()) && !ss.src.Cloning() && now.Sub(ss.lastUsed) > migrationIdle {
			m.s.log.Info().Str(logging.FieldOp, "migration").Str("session", id).Stringer("range", ss.src.Range()).
				Dur("idle", now.Sub(ss.lastUsed)).Msg("ending an idle migration session: its driver is gone")
			m.endLocked(id, ss)
			continue
		}
		if ss.src.Range().Overlaps(r) {
			return nil, mongoerr.New(mongoerr.ConflictingOperationInProgress, "a migration of %s is running on this shard", ss.src.Range())
		}
	}
	src, err := migrate.NewSource(m.s.eng, r)
	if err != nil {
		return nil, err
	}
	specs, err := src.IndexSpecs()
	if err != nil {
		_ = src.Close()
		return nil, err
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	m.sessions[id] = &migrationSession{src: src, lastUsed: now}
	rep := &shardpb.StartMigrationReply{SessionId: id, SnapshotOpTime: fromOpTime(src.SnapshotOpTime())}
	for _, s := range specs {
		rep.IndexSpecs = append(rep.IndexSpecs, storage.EncodeIndexSpec(s))
	}
	m.s.log.Info().Str(logging.FieldOp, "migration").Str(logging.FieldNS, r.NS).Str("range", r.String()).
		Str("session", id).Stringer("snapshot", src.SnapshotOpTime()).Msg("migration session started")
	return rep, nil
}

// CloneRange streams the range's documents from the session's snapshot,
// then a last chunk with done and the totals.
func (m *migrationService) CloneRange(req *shardpb.CloneRangeRequest, stream shardpb.Migration_CloneRangeServer) error {
	if err := m.s.checkWritable(); err != nil {
		return err
	}
	ss, err := m.session(req.GetSessionId())
	if err != nil {
		return err
	}
	defer m.touch(ss)
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)()
	start := time.Now()
	docs, bytes, err := ss.src.Clone(ctx, 0, 0, func(batch []bson.Raw) error {
		ch := &shardpb.CloneRangeChunk{Documents: make([][]byte, len(batch))}
		for i, d := range batch {
			ch.Documents[i] = d
		}
		return stream.Send(ch)
	})
	if err != nil {
		if m.ctx.Err() != nil {
			return mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
		}
		return err
	}
	m.s.log.Info().Str(logging.FieldOp, "migration").Str(logging.FieldNS, ss.src.Range().NS).Str("session", req.GetSessionId()).
		Int64("docs", docs).Int64("bytes", bytes).Dur(logging.FieldDur, time.Since(start)).Msg("range cloned")
	return stream.Send(&shardpb.CloneRangeChunk{Done: true, Docs: docs, Bytes: bytes,
		Statements: migrate.StatementsProto(ss.src.ClonedStatements())})
}

// TransferMods returns the next mods of the range from the donor's oplog.
// Only a primary serves it: a member that stepped down may roll back what
// it would send.
func (m *migrationService) TransferMods(_ context.Context, req *shardpb.TransferModsRequest) (*shardpb.TransferModsReply, error) {
	if err := m.s.checkWritable(); err != nil {
		return nil, err
	}
	ss, err := m.session(req.GetSessionId())
	if err != nil {
		return nil, err
	}
	defer m.touch(ss)
	mods, through, remaining, err := ss.src.NextMods(int(req.GetMaxEntries()))
	if err != nil {
		return nil, err
	}
	rep := &shardpb.TransferModsReply{ReadThrough: fromOpTime(through), Remaining: remaining, Mods: make([]*shardpb.MigrationMod, len(mods)),
		Statements: migrate.StatementsProto(migrate.ModStatements(mods))}
	for i, md := range mods {
		rep.Mods[i] = migrate.ModProto(md)
	}
	return rep, nil
}

// EnterCriticalSection blocks the writes to the session's range and waits
// for the writes to its namespace already running; afterwards the donor's
// oplog holds the range's last mods.
func (m *migrationService) EnterCriticalSection(ctx context.Context, req *shardpb.CriticalSectionRequest) (*shardpb.CriticalSectionReply, error) {
	if err := m.s.checkWritable(); err != nil {
		return nil, err
	}
	ss, err := m.session(req.GetSessionId())
	if err != nil {
		return nil, err
	}
	defer m.touch(ss)
	timeout := time.Duration(req.GetTimeoutMs()) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultCriticalSectionTimeout
	}
	m.mu.Lock()
	held := ss.section != nil
	m.mu.Unlock()
	if held {
		return &shardpb.CriticalSectionReply{}, nil
	}
	start := time.Now()
	sec, err := m.crit.Enter(ctx, ss.src.Range(), timeout)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	ss.section = sec
	m.mu.Unlock()
	m.s.log.Info().Str(logging.FieldOp, "migration").Str(logging.FieldNS, ss.src.Range().NS).Str("session", req.GetSessionId()).
		Dur(logging.FieldDur, time.Since(start)).Msg("critical section entered")
	return &shardpb.CriticalSectionReply{}, nil
}

// revisionWaiter is implemented by the catalog-backed VersionChecker.
// viewInvalidator is implemented by the catalog-backed VersionChecker
// (shardd/versions): the next write catches up with the catalog first.
type viewInvalidator interface {
	Invalidate()
}

type revisionWaiter interface {
	WaitForRevision(ctx context.Context, rev int64) error
}

// LeaveCriticalSection releases the blocked writes. After a commit
// (committed, commit_revision) the shard's routing view first catches up
// with the commit, so the released writes are refused with StaleConfig by
// their version check and go to the recipient through the router.
func (m *migrationService) LeaveCriticalSection(ctx context.Context, req *shardpb.LeaveCriticalSectionRequest) (*shardpb.CriticalSectionReply, error) {
	ss, err := m.session(req.GetSessionId())
	if err != nil {
		return nil, err
	}
	defer m.touch(ss)
	if rev := req.GetCommitRevision(); rev > 0 {
		if w, ok := m.s.versions.(revisionWaiter); ok {
			if err := w.WaitForRevision(ctx, rev); err != nil {
				return nil, mongoerr.Wrap(err, mongoerr.Interrupted, "waiting for the routing view to reach the commit revision %d: %v", rev, err)
			}
		}
	}
	m.mu.Lock()
	sec := ss.section
	ss.section = nil
	m.mu.Unlock()
	if sec != nil {
		sec.Leave(req.GetCommitted())
	}
	return &shardpb.CriticalSectionReply{}, nil
}

// EndMigration closes a session (an held critical section ends as
// aborted unless it was left before). Ending an unknown session is not an
// error.
func (m *migrationService) EndMigration(_ context.Context, req *shardpb.EndMigrationRequest) (*shardpb.EndMigrationReply, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ss := m.sessions[req.GetSessionId()]; ss != nil {
		m.endLocked(req.GetSessionId(), ss)
	}
	return &shardpb.EndMigrationReply{}, nil
}

// DeleteRange records the deletion of a range this shard gave away and
// runs it in the background; with wait it answers when the range is
// deleted. Without a range it resumes the recorded tasks (a new primary).
func (m *migrationService) DeleteRange(ctx context.Context, req *shardpb.DeleteRangeRequest) (*shardpb.DeleteRangeReply, error) {
	if err := m.s.checkWritable(); err != nil {
		return nil, err
	}
	m.startDeleter()
	if req.GetRange() == nil {
		m.del.Kick()
		return &shardpb.DeleteRangeReply{}, nil
	}
	r, err := migrate.RangeFromProto(req.GetRange())
	if err != nil {
		return nil, err
	}
	id, err := m.del.Schedule(ctx, r)
	if err != nil {
		return nil, err
	}
	if !req.GetWait() {
		return &shardpb.DeleteRangeReply{}, nil
	}
	n, err := m.del.Wait(ctx, id)
	if err != nil {
		return nil, err
	}
	return &shardpb.DeleteRangeReply{Deleted: n}, nil
}

// ResumeRangeDeletions starts the range deleter on the tasks recorded in
// the store: a member that becomes primary calls it, so the ranges its
// predecessor gave away are deleted even if no router asks (DeleteRange
// without a range does the same over gRPC).
func (s *Server) ResumeRangeDeletions() {
	if s.checkWritable() != nil {
		return
	}
	s.migration.startDeleter()
	s.migration.del.Kick()
}

// startDeleter starts the range deleter's goroutine once; it runs until
// close.
func (m *migrationService) startDeleter() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.delRunning || m.ctx.Err() != nil {
		return
	}
	m.delRunning = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_ = m.del.Run(m.ctx, 0)
	}()
}

// beginMigrationWrite is the write path's hook (writes.go): it waits
// while a migration's critical section blocks a write to ns (docs: an
// insert's documents; nil: documents unknown, any section of ns blocks)
// and registers the write as running until done is called. After a wait
// the member's writability is checked again; the version check that
// follows refuses the write with StaleConfig when the range moved.
func (s *Server) beginMigrationWrite(ctx context.Context, ns string, docs [][]byte) (done func(), err error) {
	var raw []bson.Raw
	if docs != nil {
		raw = make([]bson.Raw, len(docs))
		for i, d := range docs {
			raw[i] = d
		}
	}
	done, waited, _, err := s.migration.crit.BeginWrite(ctx, ns, raw)
	if err != nil {
		return nil, err
	}
	if waited {
		if err := s.checkWritable(); err != nil {
			done()
			return nil, err
		}
	}
	return done, nil
}

// ownershipFilterer is implemented by the catalog-backed VersionChecker
// (shardd/versions, ownership.go).
type ownershipFilterer interface {
	OwnershipFilter(ctx context.Context, ns string) (func(bson.Raw) bool, error)
}

// withOwnership is the read path's hook (reads.go): a versioned read
// (v not nil) of a sharded collection skips the documents of chunks this
// shard does not own (orphans: a migration's copy before its commit, a
// donor's copy before its range deletion).
func (s *Server) withOwnership(ctx context.Context, ns string, v *shardpb.ShardVersion) (context.Context, error) {
	if v == nil {
		return ctx, nil
	}
	of, ok := s.versions.(ownershipFilterer)
	if !ok {
		return ctx, nil
	}
	owns, err := of.OwnershipFilter(ctx, ns)
	if err != nil {
		return nil, err
	}
	return executor.WithOwnership(ctx, owns), nil
}
