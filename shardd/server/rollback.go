package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// Rollback answers a diverged member (docs/design/rollback.md): on one
// snapshot of this store, at optime P (waited for until durable), it finds
// the common point among the member's newest entries and streams this
// member's entries after it up to P and its version at P of every
// document either side's entries after the common point touched — or
// says resync_required (Snapshot.PlanRollback decides). The first chunk
// carries found, resync_required, reason, common_point and
// snapshot_op_time; then come the entries, the documents and the
// retryable-write records of the sessions those entries carry; chunks are
// bounded by MaxBatchBytes; the last one has
// done set. A member whose term is newer than this one's is refused with
// StaleTerm (135): this member is not a sync source to roll back to.
func (r *Replication) Rollback(req *shardpb.RollbackRequest, stream shardpb.Replication_RollbackServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(r.stopping, cancel)()
	if r.stopping.Err() != nil {
		return mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
	}
	if term := r.eng.Term(); req.GetTerm() > term {
		return mongoerr.New(mongoerr.StaleTerm, "sync source is at term %d, older than the rolling-back member's term %d", term, req.GetTerm())
	}
	if n := len(req.GetLocalTail()); n == 0 || n > storage.RollbackTailEntries {
		return mongoerr.New(mongoerr.BadValue, "rollback: %d entries in the member's oplog tail, want 1 to %d", n, storage.RollbackTailEntries)
	}
	tail := make([]storage.OplogEntry, 0, len(req.GetLocalTail()))
	for _, b := range req.GetLocalTail() {
		en, err := storage.DecodeOplogEntry(b)
		if err != nil {
			return err
		}
		tail = append(tail, en)
	}
	log := r.log.With().Str(logging.FieldOp, "rollback").Str("member", req.GetMember()).Logger()

	snap, err := r.eng.Snapshot()
	if err != nil {
		return err
	}
	defer func() { _ = snap.Close() }()
	p, err := snap.OpTime()
	if err != nil {
		return err
	}
	// The member will store what the snapshot holds as durable: wait
	// until it is durable here too.
	for cur := r.eng.LastOpTime(); cur.Compare(p) < 0; cur = r.eng.LastOpTime() {
		if _, err := r.eng.WaitDurable(ctx, cur); err != nil {
			if r.stopping.Err() != nil {
				return mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
			}
			return err
		}
	}
	plan, err := snap.PlanRollback(tail)
	if err != nil {
		return err
	}
	_ = snap.Close()

	first := &shardpb.RollbackChunk{
		Found:          plan.Found,
		ResyncRequired: plan.Resync != "",
		Reason:         plan.Resync,
		CommonPoint:    fromOpTime(plan.Common),
		SnapshotOpTime: fromOpTime(plan.SnapshotOpTime),
	}
	if plan.Resync != "" {
		log.Warn().Str("reason", plan.Resync).Int("tail", len(tail)).Stringer("snapshot", p).Msg("rollback refused: member must resync")
		first.Done = true
		return stream.Send(first)
	}
	log.Info().Stringer("common", plan.Common).Stringer("snapshot", p).Int("entries", len(plan.Entries)).
		Int("docs", len(plan.Docs)).Int("sessions", len(plan.Sessions)).Msg("member rolling back")
	chunk, size := first, 0
	send := func() error {
		if err := stream.Send(chunk); err != nil {
			return err
		}
		chunk, size = &shardpb.RollbackChunk{}, 0
		return nil
	}
	for _, en := range plan.Entries {
		b := storage.EncodeOplogEntry(en)
		if size > 0 && size+len(b) > r.opts.MaxBatchBytes {
			if err := send(); err != nil {
				return err
			}
		}
		chunk.Entries = append(chunk.Entries, b)
		size += len(b)
	}
	for _, d := range plan.Docs {
		rd := &shardpb.RefetchedDoc{Ns: d.NS, Id: idDoc(d.ID), Doc: d.Doc}
		n := len(rd.Ns) + len(rd.Id) + len(rd.Doc)
		if size > 0 && size+n > r.opts.MaxBatchBytes {
			if err := send(); err != nil {
				return err
			}
		}
		chunk.Docs = append(chunk.Docs, rd)
		size += n
	}
	for _, ss := range plan.Sessions {
		rs := &shardpb.RefetchedSession{Lsid: ss.LSID}
		n := len(ss.LSID)
		for _, rec := range ss.Records {
			rs.Statements = append(rs.Statements, &shardpb.RefetchedStatement{
				TxnNumber: rec.TxnNumber, StmtId: rec.StmtID, OpTime: fromOpTime(rec.Record.OpTime), Result: rec.Record.Result,
			})
			n += 32 + len(rec.Record.Result)
		}
		if size > 0 && size+n > r.opts.MaxBatchBytes {
			if err := send(); err != nil {
				return err
			}
		}
		chunk.Sessions = append(chunk.Sessions, rs)
		size += n
	}
	chunk.Done = true
	return stream.Send(chunk)
}

// idDoc returns {_id: id}.
func idDoc(id bson.RawValue) []byte {
	idx, b := bsoncore.AppendDocumentStart(nil)
	b = bsoncore.AppendValueElement(b, "_id", bsoncore.Value{Type: bsoncore.Type(id.Type), Data: id.Value})
	b, _ = bsoncore.AppendDocumentEnd(b, idx)
	return b
}
