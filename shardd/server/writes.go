package server

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/executor"
	"github.com/psdb/psdb/shardd/storage"
)

// Every acknowledged write is synced to this node's disk (j:true). With
// replication on (Options.Replication is a *Replication), a write is
// refused on a member that is not primary, and after it is applied it
// waits for its write concern (replication.go); a write concern that is
// not met is reported as the reply's writeConcernError, the write stays.
// A session (SessionInfo) makes the statements retryable (session.go).
// A versioned request is checked first (versions.go): a stale router gets
// StaleConfig before any statement runs.

// maxWriteBatch is MongoDB's maxWriteBatchSize: statements per write.
const maxWriteBatch = 100000

// writeError builds the reply entry of statement i's failure. A duplicate
// key carries MongoDB's keyPattern and keyValue as info.
func writeError(i int, err error) *shardpb.WriteError {
	err = clientError(err)
	var info bson.Raw
	var dk *storage.DuplicateKeyError
	if errors.As(err, &dk) {
		if b, merr := bson.Marshal(bson.D{{Key: "keyPattern", Value: dk.KeyPattern}, {Key: "keyValue", Value: dk.KeyValue}}); merr == nil {
			info = b
		}
	}
	return &shardpb.WriteError{Index: int32(i), Error: rpcerr.Proto(err, info)}
}

// stopsBatch reports whether a statement's error ends an unordered batch
// too: an error without a MongoDB code is a failure of the node (storage,
// shutdown), not of the statement, so later statements are not attempted.
func stopsBatch(err error) bool {
	_, ok := mongoerr.As(clientError(err))
	return !ok || mongoerr.CodeOf(clientError(err)) == mongoerr.InterruptedAtShutdown
}

// opTime is the optime reported for a request that wrote something: the
// newest entry of the log when it finished, which is at or after the
// request's own last entry (waiting for it is conservative).
func (s *Server) opTime(wrote bool) *shardpb.OpTime {
	if !wrote {
		return nil
	}
	t := s.eng.LastOpTime()
	return &shardpb.OpTime{Term: t.Term, Index: t.Index}
}

// Insert inserts documents, creating the collection if needed. Each
// document is checked on its own; failures are write errors by index.
func (s *Server) Insert(ctx context.Context, req *shardpb.InsertRequest) (*shardpb.WriteReply, error) {
	done, err := s.beginWrite(ctx, req, req.GetDocuments())
	if err != nil {
		return nil, err
	}
	defer done()
	if n := len(req.GetDocuments()); n == 0 || n > maxWriteBatch {
		return nil, mongoerr.New(mongoerr.InvalidLength, "Write batch sizes must be between 1 and %d. Got %d operations.", maxWriteBatch, n)
	}
	rt, err := s.retryableOf(req.GetSession(), len(req.GetDocuments()))
	if err != nil {
		return nil, err
	}
	in := make([]bson.Raw, len(req.GetDocuments()))
	for i, d := range req.GetDocuments() {
		in[i] = d // validated per document by the engine (InvalidBSON as a write error)
	}
	results, err := s.eng.Insert(ctx, req.GetNs(), in, storage.WriteOptions{Ordered: req.GetOrdered(), Stmts: rt.insertStmts(len(in))})
	if err != nil {
		return nil, err
	}
	reply := &shardpb.WriteReply{}
	for i, r := range results {
		if r.Err != nil {
			reply.WriteErrors = append(reply.WriteErrors, writeError(i, r.Err))
			continue
		}
		reply.N++
		rt.noteInsert(i, r)
	}
	reply.OpTime = s.replyOpTime(rt, reply.N > 0)
	reply.WriteConcernError = s.awaitWriteConcern(ctx, req.GetWriteConcern(), reply.OpTime)
	return reply, nil
}

// Update runs update statements in order; ordered stops at the first
// failed statement.
func (s *Server) Update(ctx context.Context, req *shardpb.UpdateRequest) (*shardpb.WriteReply, error) {
	done, err := s.beginWrite(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	defer done()
	if ctx, err = s.withShardKeyCheck(ctx, req); err != nil {
		return nil, err
	}
	if n := len(req.GetUpdates()); n == 0 || n > maxWriteBatch {
		return nil, mongoerr.New(mongoerr.InvalidLength, "Write batch sizes must be between 1 and %d. Got %d operations.", maxWriteBatch, n)
	}
	rt, err := s.retryableOf(req.GetSession(), len(req.GetUpdates()))
	if err != nil {
		return nil, err
	}
	reply := &shardpb.WriteReply{}
	wrote := false
	for i, st := range req.GetUpdates() {
		spec, err := updateSpec(st)
		var res executor.UpdateResult
		if err == nil {
			res, err = s.update(ctx, req.GetNs(), spec, rt, i)
		}
		if err != nil {
			reply.WriteErrors = append(reply.WriteErrors, writeError(i, err))
			if req.GetOrdered() || stopsBatch(err) {
				break
			}
			continue
		}
		reply.N += res.Matched
		reply.NModified += res.Modified
		if res.UpsertedID.Type != 0 {
			reply.N++
			reply.Upserted = append(reply.Upserted, &shardpb.Upserted{Index: int32(i), Id: valueDoc(res.UpsertedID)})
		}
		wrote = wrote || res.Modified > 0 || res.UpsertedID.Type != 0
	}
	reply.OpTime = s.replyOpTime(rt, wrote)
	reply.WriteConcernError = s.awaitWriteConcern(ctx, req.GetWriteConcern(), reply.OpTime)
	return reply, nil
}

func updateSpec(st *shardpb.UpdateStatement) (executor.UpdateSpec, error) {
	var spec executor.UpdateSpec
	var err error
	if spec.Filter, err = doc("q", st.GetFilter()); err != nil {
		return spec, err
	}
	if len(st.GetUpdate()) == 0 {
		return spec, mongoerr.New(mongoerr.FailedToParse, "update statement is missing its update document (u)")
	}
	if spec.Update, err = doc("u", st.GetUpdate()); err != nil {
		return spec, err
	}
	if spec.ArrayFilters, err = docs("arrayFilters", st.GetArrayFilters()); err != nil {
		return spec, err
	}
	spec.Multi, spec.Upsert = st.GetMulti(), st.GetUpsert()
	return spec, nil
}

// Delete runs delete statements in order; ordered stops at the first
// failed statement.
func (s *Server) Delete(ctx context.Context, req *shardpb.DeleteRequest) (*shardpb.WriteReply, error) {
	done, err := s.beginWrite(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	defer done()
	if n := len(req.GetDeletes()); n == 0 || n > maxWriteBatch {
		return nil, mongoerr.New(mongoerr.InvalidLength, "Write batch sizes must be between 1 and %d. Got %d operations.", maxWriteBatch, n)
	}
	rt, err := s.retryableOf(req.GetSession(), len(req.GetDeletes()))
	if err != nil {
		return nil, err
	}
	reply := &shardpb.WriteReply{}
	for i, st := range req.GetDeletes() {
		filter, err := doc("q", st.GetFilter())
		if err == nil && st.GetLimit() != 0 && st.GetLimit() != 1 {
			err = mongoerr.New(mongoerr.FailedToParse, "The limit field in delete objects must be 0 or 1. Got %d", st.GetLimit())
		}
		var n int64
		if err == nil {
			n, err = s.delete(ctx, req.GetNs(), executor.DeleteSpec{Filter: filter, Limit: st.GetLimit()}, rt, i)
		}
		if err != nil {
			reply.WriteErrors = append(reply.WriteErrors, writeError(i, err))
			if req.GetOrdered() || stopsBatch(err) {
				break
			}
			continue
		}
		reply.N += n
	}
	reply.OpTime = s.replyOpTime(rt, reply.N > 0)
	reply.WriteConcernError = s.awaitWriteConcern(ctx, req.GetWriteConcern(), reply.OpTime)
	return reply, nil
}

// FindAndModify changes or removes one document and returns it.
func (s *Server) FindAndModify(ctx context.Context, req *shardpb.FindAndModifyRequest) (*shardpb.FindAndModifyReply, error) {
	done, merr := s.beginWrite(ctx, req, nil)
	if merr != nil {
		return nil, merr
	}
	defer done()
	if ctx, merr = s.withShardKeyCheck(ctx, req); merr != nil {
		return nil, merr
	}
	var spec executor.FindAndModifySpec
	var err error
	if spec.Filter, err = doc("query", req.GetFilter()); err != nil {
		return nil, err
	}
	if spec.Sort, err = doc("sort", req.GetSort()); err != nil {
		return nil, err
	}
	if spec.Update, err = doc("update", req.GetUpdate()); err != nil {
		return nil, err
	}
	if spec.Fields, err = doc("fields", req.GetFields()); err != nil {
		return nil, err
	}
	if spec.ArrayFilters, err = docs("arrayFilters", req.GetArrayFilters()); err != nil {
		return nil, err
	}
	spec.Remove, spec.New, spec.Upsert = req.GetRemove(), req.GetNew(), req.GetUpsert()
	rt, err := s.retryableOf(req.GetSession(), 1)
	if err != nil {
		return nil, err
	}
	res, err := s.findAndModify(ctx, req.GetNs(), spec, rt)
	if err != nil {
		return nil, err
	}
	reply := &shardpb.FindAndModifyReply{
		Value:           res.Value,
		Matched:         res.Matched,
		UpdatedExisting: res.Updated,
		UpsertedId:      valueDoc(res.UpsertedID),
	}
	reply.OpTime = s.replyOpTime(rt, res.Matched || res.UpsertedID.Type != 0)
	reply.WriteConcernError = s.awaitWriteConcern(ctx, req.GetWriteConcern(), reply.OpTime)
	return reply, nil
}
