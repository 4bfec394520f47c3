package server

import (
	"context"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/executor"
)

// findSpec validates a FindRequest's fields into an executor spec.
func findSpec(req *shardpb.FindRequest) (executor.FindSpec, error) {
	var spec executor.FindSpec
	if err := checkNS(req.GetNs()); err != nil {
		return spec, err
	}
	var err error
	if spec.Filter, err = doc("filter", req.GetFilter()); err != nil {
		return spec, err
	}
	if spec.Projection, err = doc("projection", req.GetProjection()); err != nil {
		return spec, err
	}
	if spec.Sort, err = doc("sort", req.GetSort()); err != nil {
		return spec, err
	}
	if req.GetSkip() < 0 {
		return spec, mongoerr.New(mongoerr.BadValue, "skip value must be non-negative, but received: %d", req.GetSkip())
	}
	spec.Skip, spec.Limit = req.GetSkip(), req.GetLimit()
	return spec, nil
}

// batchSize returns the requested batch size, def when unset; a negative
// size is BadValue.
func batchSize(set bool, n int32, def int) (int, error) {
	if !set {
		return def, nil
	}
	if n < 0 {
		return 0, mongoerr.New(mongoerr.BadValue, "batchSize value must be non-negative, but received: %d", n)
	}
	return int(n), nil
}

// Find runs a query and returns its first batch; the rest stays in a
// server-side cursor (reading one snapshot) unless it fits.
func (s *Server) Find(ctx context.Context, req *shardpb.FindRequest) (*shardpb.CursorReply, error) {
	spec, err := findSpec(req)
	if err != nil {
		return nil, err
	}
	n, err := batchSize(req.BatchSize != nil, req.GetBatchSize(), DefaultFirstBatch)
	if err != nil {
		return nil, err
	}
	single := req.GetSingleBatch()
	if lim := req.GetLimit(); lim > 0 && n > 0 && int64(n) > lim {
		n = int(lim)
	}
	cctx, cancel := s.cursors.context()
	stop := context.AfterFunc(ctx, cancel) // a cancelled call kills its cursor
	defer stop()
	if cctx, err = s.beginRead(cctx, req); err != nil {
		cancel()
		return nil, err
	}
	cur, err := s.exec.Find(cctx, req.GetNs(), spec)
	if err != nil {
		cancel()
		return nil, err
	}
	reply, err := s.firstBatch(req.GetNs(), cur, cancel, n, single, req.BatchSize != nil && n == 0)
	if err == nil && !stop() {
		// The call was cancelled while the batch was read: nobody will
		// continue this cursor.
		s.cursors.kill([]int64{reply.CursorId})
		return nil, mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "find interrupted")
	}
	return reply, err
}

// firstBatch registers src as a cursor and returns its first batch of up
// to n documents (empty when emptyFirst: batchSize 0 opens the cursor
// without reading). single closes the cursor after this batch.
func (s *Server) firstBatch(ns string, src docSource, cancel context.CancelFunc, n int, single, emptyFirst bool) (*shardpb.CursorReply, error) {
	c, err := s.cursors.add(ns, src, cancel)
	if err != nil {
		cancel()
		_ = src.Close()
		return nil, err
	}
	if emptyFirst {
		s.cursors.release(c, single)
		reply := &shardpb.CursorReply{Ns: ns}
		if !single {
			reply.CursorId = c.id
		}
		return reply, nil
	}
	batch, exhausted, err := c.fill(n)
	if err != nil {
		s.cursors.release(c, true)
		return nil, err
	}
	done := exhausted || single
	s.cursors.release(c, done)
	reply := &shardpb.CursorReply{Ns: ns, Batch: batch}
	if !done {
		reply.CursorId = c.id
	}
	return reply, nil
}

// GetMore returns the next batch of an open cursor.
func (s *Server) GetMore(ctx context.Context, req *shardpb.GetMoreRequest) (*shardpb.CursorReply, error) {
	if req.GetCursorId() == 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "cursor id must not be 0")
	}
	n, err := batchSize(req.BatchSize != nil, req.GetBatchSize(), 0)
	if err != nil {
		return nil, err
	}
	c, err := s.cursors.acquire(req.GetCursorId(), req.GetNs())
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, c.cancel)
	defer stop()
	batch, exhausted, err := c.fill(n)
	if err != nil {
		s.cursors.release(c, true)
		if ctx.Err() != nil {
			return nil, mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "getMore interrupted; cursor %d killed", c.id)
		}
		return nil, err
	}
	if !stop() { // cancelled while reading: the cursor's context is gone
		s.cursors.release(c, true)
		return nil, mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "getMore interrupted; cursor %d killed", c.id)
	}
	s.cursors.release(c, exhausted)
	reply := &shardpb.CursorReply{Ns: c.ns, Batch: batch}
	if !exhausted {
		reply.CursorId = c.id
	}
	return reply, nil
}

// KillCursors closes cursors. Ids that are not open are reported, not an
// error, as in MongoDB.
func (s *Server) KillCursors(_ context.Context, req *shardpb.KillCursorsRequest) (*shardpb.KillCursorsReply, error) {
	killed, notFound := s.cursors.kill(req.GetCursorIds())
	return &shardpb.KillCursorsReply{CursorsKilled: killed, CursorsNotFound: notFound}, nil
}

// Count counts matching documents after skip and limit.
func (s *Server) Count(ctx context.Context, req *shardpb.CountRequest) (*shardpb.CountReply, error) {
	ctx, err := s.beginRead(ctx, req)
	if err != nil {
		return nil, err
	}
	filter, err := doc("filter", req.GetFilter())
	if err != nil {
		return nil, err
	}
	if req.GetSkip() < 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "skip value is negative in count query")
	}
	limit := req.GetLimit()
	if limit < 0 {
		limit = -limit
	}
	n, err := s.exec.Count(ctx, req.GetNs(), filter, req.GetSkip(), limit)
	if err != nil {
		return nil, err
	}
	return &shardpb.CountReply{N: n}, nil
}

// Distinct returns the distinct values of a field as one BSON array.
func (s *Server) Distinct(ctx context.Context, req *shardpb.DistinctRequest) (*shardpb.DistinctReply, error) {
	ctx, err := s.beginRead(ctx, req)
	if err != nil {
		return nil, err
	}
	filter, err := doc("query", req.GetFilter())
	if err != nil {
		return nil, err
	}
	vals, err := s.exec.Distinct(ctx, req.GetNs(), req.GetKey(), filter)
	if err != nil {
		return nil, err
	}
	idx, arr := bsoncore.AppendArrayStart(nil)
	for i, v := range vals {
		arr = bsoncore.AppendValueElement(arr, strconv.Itoa(i), bsoncore.Value{Type: bsoncore.Type(v.Type), Data: v.Value})
	}
	arr, err = bsoncore.AppendArrayEnd(arr, idx)
	if err != nil {
		return nil, err
	}
	return &shardpb.DistinctReply{Values: arr}, nil
}

// Aggregate runs a pipeline and serves its results through a cursor.
func (s *Server) Aggregate(ctx context.Context, req *shardpb.AggregateRequest) (*shardpb.CursorReply, error) {
	ctx, err := s.beginRead(ctx, req)
	if err != nil {
		return nil, err
	}
	pipeline, err := docs("pipeline", req.GetPipeline())
	if err != nil {
		return nil, err
	}
	n, err := batchSize(req.BatchSize != nil, req.GetBatchSize(), DefaultFirstBatch)
	if err != nil {
		return nil, err
	}
	run := s.exec.Aggregate
	if req.GetShardPart() {
		run = s.exec.AggregateShardPart
	}
	out, err := run(ctx, req.GetNs(), pipeline)
	if err != nil {
		return nil, err
	}
	_, cancel := s.cursors.context()
	return s.firstBatch(req.GetNs(), &sliceSource{docs: out}, cancel, n, false, req.BatchSize != nil && n == 0)
}

// Explain returns the queryPlanner section of explain for a find.
func (s *Server) Explain(ctx context.Context, req *shardpb.ExplainRequest) (*shardpb.ExplainReply, error) {
	if req.GetFind() == nil {
		return nil, mongoerr.New(mongoerr.FailedToParse, "explain needs a find request")
	}
	spec, err := findSpec(req.GetFind())
	if err != nil {
		return nil, err
	}
	if err := s.checkVersion(ctx, req.GetFind().GetNs(), req.GetFind().GetShardVersion(), false); err != nil {
		return nil, err
	}
	p, err := s.exec.Plan(req.GetFind().GetNs(), spec)
	if err != nil {
		return nil, err
	}
	b, err := bson.Marshal(p.QueryPlanner(req.GetFind().GetNs()))
	if err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.InternalError, "encode queryPlanner: %v", err)
	}
	return &shardpb.ExplainReply{QueryPlanner: b}, nil
}
