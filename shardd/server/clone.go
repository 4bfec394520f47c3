package server

import (
	"context"
	"time"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// CloneSnapshot streams a consistent snapshot of this member's store to a
// member doing an initial sync (docs/design/initial-sync.md): for each
// collection, a first chunk with its index specs (storage.EncodeIndexSpec,
// _id_ included) then its documents, in chunks of at most MaxBatchEntries
// documents and MaxBatchBytes bytes (a chunk always holds at least one
// document, so a large one travels alone); then the snapshot's
// retryable-write statement records (storage.Snapshot.ScanSessions) in
// chunks without ns, bounded the same way; then a last chunk with done and
// snapshot_op_time, the optime of the newest oplog entry the snapshot
// contains. That entry is durable before the last chunk is sent. Any
// member may serve it (a secondary too); one whose own initial sync is
// unfinished answers NotYetInitialized (94).
func (r *Replication) CloneSnapshot(req *shardpb.CloneRequest, stream shardpb.Replication_CloneSnapshotServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(r.stopping, cancel)()
	if r.stopping.Err() != nil {
		return mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
	}
	if r.eng.InitialSyncPending() {
		return mongoerr.New(mongoerr.NotYetInitialized, "this member's own initial sync is not finished: it cannot be cloned")
	}
	log := r.log.With().Str(logging.FieldOp, "cloneSnapshot").Str("member", req.GetMember()).Logger()
	start := time.Now()
	snap, err := r.eng.Snapshot()
	if err != nil {
		return err
	}
	defer func() { _ = snap.Close() }()
	at, err := snap.OpTime()
	if err != nil {
		return err
	}
	log.Info().Stringer("snapshot", at).Msg("clone started")
	var docs, bytes int64
	colls := snap.Collections()
	for _, c := range colls {
		n, b, err := r.cloneCollection(ctx, stream, snap, c.NS)
		docs, bytes = docs+n, bytes+b
		if err != nil {
			return r.cloneErr(err)
		}
	}
	recs, err := r.cloneSessions(ctx, stream, snap)
	if err != nil {
		return r.cloneErr(err)
	}
	// The snapshot may show entries not yet synced (writes are visible
	// before their WAL sync): the clone must not be ahead of what survives
	// a crash of this member.
	for {
		cur := r.eng.LastOpTime()
		if cur.Compare(at) >= 0 {
			break
		}
		if _, err := r.eng.WaitDurable(ctx, cur); err != nil {
			return r.cloneErr(err)
		}
	}
	if err := stream.Send(&shardpb.CloneChunk{Done: true, SnapshotOpTime: fromOpTime(at)}); err != nil {
		return err
	}
	log.Info().Stringer("snapshot", at).Int("collections", len(colls)).Int64("docs", docs).Int64("bytes", bytes).
		Int64("statements", recs).Dur(logging.FieldDur, time.Since(start)).Msg("clone sent")
	return nil
}

// cloneErr maps the end of a clone by Stop to InterruptedAtShutdown.
func (r *Replication) cloneErr(err error) error {
	if r.stopping.Err() != nil {
		return mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
	}
	return err
}

// cloneCollection sends one collection's chunks; it returns the documents
// and bytes sent.
func (r *Replication) cloneCollection(ctx context.Context, stream shardpb.Replication_CloneSnapshotServer, snap *storage.Snapshot, ns string) (docs, bytes int64, err error) {
	specs, err := snap.ListIndexes(ns)
	if err != nil {
		return 0, 0, err
	}
	chunk := &shardpb.CloneChunk{Ns: ns}
	for _, s := range specs {
		chunk.IndexSpecs = append(chunk.IndexSpecs, storage.EncodeIndexSpec(s))
	}
	it, err := snap.ScanIDRange(ns, storage.IDRange{}, false)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = it.Close() }()
	size := 0
	for it.Next() {
		d := it.Doc()
		if len(chunk.Documents) > 0 && (len(chunk.Documents) >= r.opts.MaxBatchEntries || size+len(d) > r.opts.MaxBatchBytes) {
			if err := stream.Send(chunk); err != nil {
				return docs, bytes, err
			}
			chunk, size = &shardpb.CloneChunk{Ns: ns}, 0
		}
		if err := ctx.Err(); err != nil {
			return docs, bytes, err
		}
		chunk.Documents = append(chunk.Documents, d)
		size += len(d)
		docs++
		bytes += int64(len(d))
	}
	if err := it.Err(); err != nil {
		return docs, bytes, err
	}
	// The last chunk (the first, with the specs, for an empty collection).
	return docs, bytes, stream.Send(chunk)
}

// cloneSessions sends the snapshot's statement records in chunks of at
// most MaxBatchEntries records and MaxBatchBytes bytes (a session may span
// chunks); it returns the records sent.
func (r *Replication) cloneSessions(ctx context.Context, stream shardpb.Replication_CloneSnapshotServer, snap *storage.Snapshot) (int64, error) {
	var sent int64
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		page, next, err := snap.ScanSessions(after, r.opts.MaxBatchEntries, r.opts.MaxBatchBytes)
		if err != nil {
			return sent, err
		}
		if len(page) == 0 {
			return sent, nil
		}
		chunk := &shardpb.CloneChunk{Sessions: make([]*shardpb.RefetchedSession, 0, len(page))}
		for _, ss := range page {
			rs := &shardpb.RefetchedSession{Lsid: ss.LSID, Statements: make([]*shardpb.RefetchedStatement, 0, len(ss.Records))}
			for _, rec := range ss.Records {
				rs.Statements = append(rs.Statements, &shardpb.RefetchedStatement{
					TxnNumber: rec.TxnNumber, StmtId: rec.StmtID, OpTime: fromOpTime(rec.Record.OpTime), Result: rec.Record.Result,
				})
			}
			sent += int64(len(ss.Records))
			chunk.Sessions = append(chunk.Sessions, rs)
		}
		if err := stream.Send(chunk); err != nil {
			return sent, err
		}
		if next == nil {
			return sent, nil
		}
		after = next
	}
}
