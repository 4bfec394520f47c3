package server

import (
	"context"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/executor"
	"github.com/psdb/psdb/shardd/storage"
)

// Retryable writes (docs/design/retryable-writes.md): a write request
// with a SessionInfo (a non-empty lsid and txn_number > 0) runs each
// statement as a retryable statement (lsid, txn_number, stmt id): a
// statement recorded already answers its recorded result without writing,
// the others run and record theirs. A statement id of -1 (MongoDB's
// uninitialized id) opts that statement out: it runs as an ordinary write.
// Multi updates and limit-0 deletes with an id are refused with
// InvalidOptions (72), as MongoDB does. The reply's op_time is the newest
// entry recording one of the request's statements, so a retry's reply
// equals the first one.

// uninitializedStmtID is MongoDB's kUninitializedStmtId: not retryable.
const uninitializedStmtID = -1

// retryable is one request's retryable-write session; a nil *retryable is
// a request without one (every method accepts it).
type retryable struct {
	lsid []byte
	txn  int64
	ids  []int32
	// at is the newest entry that recorded one of the statements.
	at storage.OpTime
	// plain is set when a statement ran as an ordinary write.
	plain bool
}

// retryableOf returns the retryable-write session of a request of n
// statements (nil when it has none). A request whose txnNumber is older
// than the session's newest is refused as a whole with TransactionTooOld
// (225), as MongoDB refuses it when it checks the session out.
func (s *Server) retryableOf(si *shardpb.SessionInfo, n int) (*retryable, error) {
	if si == nil || si.GetTxnNumber() == 0 {
		return nil, nil
	}
	if len(si.GetLsid()) == 0 {
		return nil, mongoerr.New(mongoerr.InvalidOptions, "Transaction number requires a session ID to also be specified")
	}
	if si.GetTxnNumber() < 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "txnNumber %d must be positive", si.GetTxnNumber())
	}
	if ids := si.GetStmtIds(); len(ids) != 0 && len(ids) != n {
		return nil, mongoerr.New(mongoerr.BadValue, "%d statement ids for %d statements", len(ids), n)
	}
	rt := &retryable{lsid: si.GetLsid(), txn: si.GetTxnNumber(), ids: si.GetStmtIds()}
	if _, _, err := s.eng.LookupStatement(storage.Statement{LSID: rt.lsid, TxnNumber: rt.txn}); err != nil {
		return nil, err
	}
	return rt, nil
}

// statement returns statement i's identity; false when it is not
// retryable (no session, or the uninitialized id).
func (rt *retryable) statement(i int) (storage.Statement, bool) {
	if rt == nil {
		return storage.Statement{}, false
	}
	id := int32(i)
	if len(rt.ids) != 0 {
		id = rt.ids[i]
	}
	if id == uninitializedStmtID {
		rt.plain = true
		return storage.Statement{}, false
	}
	return storage.Statement{LSID: rt.lsid, TxnNumber: rt.txn, StmtID: id}, true
}

// note takes the optime of an entry that recorded a statement.
func (rt *retryable) note(at storage.OpTime) {
	if at.Compare(rt.at) > 0 {
		rt.at = at
	}
}

// insertStmts are the storage statements of an insert of n documents.
func (rt *retryable) insertStmts(n int) []storage.StmtWrite {
	if rt == nil {
		return nil
	}
	out := make([]storage.StmtWrite, n)
	for i := range out {
		if st, ok := rt.statement(i); ok {
			out[i] = storage.StmtWrite{Statement: st}
		}
	}
	return out
}

// noteInsert takes document i's result of a retryable insert.
func (rt *retryable) noteInsert(i int, r storage.WriteResult) {
	if rt == nil || r.Err != nil {
		return
	}
	if _, ok := rt.statement(i); ok {
		rt.note(r.OpTime)
	}
}

// opTime is the reply's op_time: without a session, the newest entry when
// the request ended if it wrote (Server.opTime); with one, the newest entry
// recording its statements, and the former too if a statement ran as an
// ordinary write.
func (s *Server) replyOpTime(rt *retryable, wrote bool) *shardpb.OpTime {
	if rt == nil {
		return s.opTime(wrote)
	}
	t := rt.at
	if rt.plain && wrote {
		if last := s.eng.LastOpTime(); last.Compare(t) > 0 {
			t = last
		}
	}
	if t.IsZero() {
		return nil
	}
	return &shardpb.OpTime{Term: t.Term, Index: t.Index}
}

// update runs update statement i, as a retryable statement when it is one.
func (s *Server) update(ctx context.Context, ns string, spec executor.UpdateSpec, rt *retryable, i int) (executor.UpdateResult, error) {
	st, ok := rt.statement(i)
	if !ok {
		return s.exec.Update(ctx, ns, spec)
	}
	res, at, err := s.exec.RetryableUpdate(ctx, ns, spec, st)
	rt.note(at)
	return res, err
}

// delete runs delete statement i, as a retryable statement when it is one.
func (s *Server) delete(ctx context.Context, ns string, spec executor.DeleteSpec, rt *retryable, i int) (int64, error) {
	st, ok := rt.statement(i)
	if !ok {
		return s.exec.Delete(ctx, ns, spec)
	}
	n, at, err := s.exec.RetryableDelete(ctx, ns, spec, st)
	rt.note(at)
	return n, err
}

// findAndModify runs findAndModify, as a retryable statement (id 0 or
// stmt_ids[0]) when the request has a session.
func (s *Server) findAndModify(ctx context.Context, ns string, spec executor.FindAndModifySpec, rt *retryable) (executor.FindAndModifyResult, error) {
	st, ok := rt.statement(0)
	if !ok {
		return s.exec.FindAndModify(ctx, ns, spec)
	}
	res, at, err := s.exec.RetryableFindAndModify(ctx, ns, spec, st)
	rt.note(at)
	return res, err
}
