package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/migrate"
)

// The recipient side of the Migration service (MongoDB's _recvChunkStart
// and friends): the orchestrator (the router's moveChunk) tells the
// recipient's primary to pull a range from the donor's primary, phase by
// phase, each phase one unary call so the orchestrator can put the
// donor's critical section between the catch-up and the drain. A session
// holds a migrate.Recipient and its connection to the donor; it lives in
// this primary's memory and ends with RecvChunkEnd (abort drops the
// copy), at Close, or when unused for migrationIdle (at the next start).

type recvSession struct {
	mu       sync.Mutex // one phase at a time
	rc       *migrate.Recipient
	donor    *shardclient.Client
	lastUsed time.Time
}

func (rs *recvSession) reply(id string) *shardpb.RecvChunkReply {
	return &shardpb.RecvChunkReply{
		RecvId: id, DonorSessionId: rs.rc.Session(), LastOpTime: fromOpTime(rs.rc.Last),
		ClonedDocs: rs.rc.ClonedDocs, ClonedBytes: rs.rc.ClonedBytes, ModsApplied: rs.rc.ModsApplied,
	}
}

// closeRecvsLocked closes every recipient session's donor connection
// (m.mu held; the copies stay as orphans, dropped by the next Start of an
// overlapping range).
func (m *migrationService) closeRecvsLocked() {
	for id, rs := range m.recvs {
		_ = rs.donor.Close()
		delete(m.recvs, id)
	}
}

// recvCtx is ctx ended also by the service's Close.
func (m *migrationService) recvCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// recv returns a live recipient session by id; NoSuchSession otherwise.
func (m *migrationService) recv(id string) (*recvSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := m.recvs[id]
	if rs == nil {
		return nil, mongoerr.New(mongoerr.NoSuchSession, "no recipient migration session %q on this member (ended, expired or another primary)", id)
	}
	rs.lastUsed = time.Now()
	return rs, nil
}

// RecvChunkStart dials the donor's primary, opens its session and
// prepares the local copy (Recipient.Start).
func (m *migrationService) RecvChunkStart(ctx context.Context, req *shardpb.RecvChunkStartRequest) (*shardpb.RecvChunkReply, error) {
	if err := m.s.checkWritable(); err != nil {
		return nil, err
	}
	r, err := migrate.RangeFromProto(req.GetRange())
	if err != nil {
		return nil, err
	}
	if req.GetDonorAddr() == "" {
		return nil, mongoerr.New(mongoerr.BadValue, "RecvChunkStart needs the donor's address")
	}
	// A range this shard gave away and has not deleted yet would be
	// deleted again after the copy arrives: refuse until the deletion is
	// done (MongoDB waits for it), and make sure it runs.
	pending, err := m.del.Pending()
	if err != nil {
		return nil, err
	}
	for _, p := range pending {
		if p.Overlaps(r) {
			m.startDeleter()
			m.del.Kick()
			return nil, mongoerr.New(mongoerr.ConflictingOperationInProgress, "range %s overlaps %s, whose deletion on this shard is still pending; retry once it is done", r, p)
		}
	}
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return nil, mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
	}
	if m.recvs == nil {
		m.recvs = map[string]*recvSession{}
	}
	now := time.Now()
	for id, rs := range m.recvs {
		// A phase running holds rs.mu: never idle.
		if rs.mu.TryLock() {
			if now.Sub(rs.lastUsed) > migrationIdle {
				m.s.log.Info().Str(logging.FieldOp, "migration").Str("recv", id).Stringer("range", rs.rc.Range()).
					Dur("idle", now.Sub(rs.lastUsed)).Msg("ending an idle recipient session: its driver is gone")
				_ = rs.donor.Close()
				delete(m.recvs, id)
			}
			rs.mu.Unlock()
		}
	}
	m.mu.Unlock()
	ctx, cancel := m.recvCtx(ctx)
	defer cancel()
	donor, err := shardclient.Dial(ctx, req.GetDonorAddr())
	if err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.HostUnreachable, "dial the donor at %s: %v", req.GetDonorAddr(), err)
	}
	rc := migrate.NewRecipient(m.s.eng, shardpb.NewMigrationClient(donor.Conn()), r)
	if err := rc.Start(ctx); err != nil {
		_ = rc.End(context.WithoutCancel(ctx))
		_ = donor.Close()
		return nil, err
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	rs := &recvSession{rc: rc, donor: donor, lastUsed: time.Now()}
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		_, _ = rc.Abort(context.WithoutCancel(ctx))
		_ = donor.Close()
		return nil, mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
	}
	m.recvs[id] = rs
	m.mu.Unlock()
	m.s.log.Info().Str(logging.FieldOp, "migration").Str(logging.FieldNS, r.NS).Str("range", r.String()).
		Str("recv", id).Str("donor", req.GetDonorAddr()).Str("session", rc.Session()).Msg("recipient session started")
	return rs.reply(id), nil
}

// phase runs fn on a recipient session, on a primary.
func (m *migrationService) recvPhase(ctx context.Context, id string, fn func(context.Context, *recvSession, *shardpb.RecvChunkReply) error) (*shardpb.RecvChunkReply, error) {
	if err := m.s.checkWritable(); err != nil {
		return nil, err
	}
	rs, err := m.recv(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := m.recvCtx(ctx)
	defer cancel()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	defer func() {
		m.mu.Lock()
		rs.lastUsed = time.Now()
		m.mu.Unlock()
	}()
	rep := &shardpb.RecvChunkReply{}
	if err := fn(ctx, rs, rep); err != nil {
		return nil, err
	}
	out := rs.reply(id)
	out.Remaining, out.Deleted = rep.Remaining, rep.Deleted
	return out, nil
}

// RecvChunkClone copies the range from the donor's snapshot.
func (m *migrationService) RecvChunkClone(ctx context.Context, req *shardpb.RecvChunkRequest) (*shardpb.RecvChunkReply, error) {
	return m.recvPhase(ctx, req.GetRecvId(), func(ctx context.Context, rs *recvSession, _ *shardpb.RecvChunkReply) error {
		return rs.rc.Clone(ctx)
	})
}

// RecvChunkCatchUp applies the donor's mods until its remaining entries
// are at most max_lag (0: none, the drain inside the critical section).
func (m *migrationService) RecvChunkCatchUp(ctx context.Context, req *shardpb.RecvChunkRequest) (*shardpb.RecvChunkReply, error) {
	return m.recvPhase(ctx, req.GetRecvId(), func(ctx context.Context, rs *recvSession, rep *shardpb.RecvChunkReply) error {
		for {
			remaining, _, err := rs.rc.TransferOnce(ctx, 0)
			if err != nil {
				return err
			}
			if remaining <= req.GetMaxLag() {
				rep.Remaining = remaining
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	})
}

// RecvChunkEnd ends a recipient session: it closes the donor's session
// and, with abort, drops what was copied of the range. Ending an unknown
// session is not an error (nothing to drop: an earlier end, or a lost
// session whose copy is an orphan deleted by the next start).
func (m *migrationService) RecvChunkEnd(ctx context.Context, req *shardpb.RecvChunkRequest) (*shardpb.RecvChunkReply, error) {
	m.mu.Lock()
	rs := m.recvs[req.GetRecvId()]
	delete(m.recvs, req.GetRecvId())
	m.mu.Unlock()
	if rs == nil {
		return &shardpb.RecvChunkReply{RecvId: req.GetRecvId()}, nil
	}
	ctx, cancel := m.recvCtx(ctx)
	defer cancel()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	defer rs.donor.Close()
	rep := rs.reply(req.GetRecvId())
	if req.GetAbort() {
		n, err := rs.rc.Abort(ctx)
		if err != nil {
			return nil, fmt.Errorf("abort the recipient copy: %w", err)
		}
		rep.Deleted = n
		m.s.log.Info().Str(logging.FieldOp, "migration").Str("recv", req.GetRecvId()).Int64("deleted", n).Msg("recipient session aborted")
		return rep, nil
	}
	if err := rs.rc.End(ctx); err != nil {
		return nil, fmt.Errorf("end the donor's session: %w", err)
	}
	return rep, nil
}

// WaitMajority waits until this primary's last optime is
// majority-committed.
func (m *migrationService) WaitMajority(ctx context.Context, _ *shardpb.WaitMajorityRequest) (*shardpb.WaitMajorityReply, error) {
	if err := m.s.checkWritable(); err != nil {
		return nil, err
	}
	t := m.s.eng.LastOpTime()
	if w, ok := m.s.repl.(writeConcernWaiter); ok {
		if err := w.AwaitWriteConcern(ctx, t, nil); err != nil {
			return nil, err
		}
	}
	return &shardpb.WaitMajorityReply{OpTime: fromOpTime(t)}, nil
}
