package server

import (
	"context"
	"time"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/executor"
)

// SplitVector measures a chunk range of a collection on this member and
// proposes split points (executor.SplitVector; docs/design/splits.md).
// Any member answers, from its own data: the router asks the primary.
// It reads only and is not version-checked: the caller names the range
// itself, and committing a split is the catalog's business.
func (s *Server) SplitVector(ctx context.Context, req *shardpb.SplitVectorRequest) (*shardpb.SplitVectorReply, error) {
	start := time.Now()
	if err := checkNS(req.GetNs()); err != nil {
		return nil, err
	}
	pattern, err := doc("keyPattern", req.GetKeyPattern())
	if err != nil {
		return nil, err
	}
	if pattern == nil {
		return nil, mongoerr.New(mongoerr.BadValue, "splitVector of %s needs a keyPattern", req.GetNs())
	}
	key, err := executor.ParseSplitKey(pattern)
	if err != nil {
		return nil, err
	}
	lo, err := doc("min", req.GetMin())
	if err != nil {
		return nil, err
	}
	hi, err := doc("max", req.GetMax())
	if err != nil {
		return nil, err
	}
	res, err := s.exec.SplitVector(ctx, req.GetNs(), executor.SplitSpec{
		Key: key, Min: lo, Max: hi, MaxChunkBytes: req.GetMaxChunkSizeBytes(),
		Force: req.GetForce(), MaxPoints: int(req.GetMaxSplitPoints()),
	})
	if err != nil {
		return nil, err
	}
	reply := &shardpb.SplitVectorReply{DataSize: res.DataSize, NumDocs: res.NumDocs, Jumbo: res.Jumbo, IndexUsed: res.IndexUsed,
		SplitKeys: make([][]byte, len(res.SplitKeys))}
	for i, k := range res.SplitKeys {
		reply.SplitKeys[i] = k
	}
	if res.Jumbo {
		s.log.Info().Str("ns", req.GetNs()).Int64("docs", res.NumDocs).Int64("bytes", res.DataSize).
			Int("splitKeys", len(res.SplitKeys)).Bool("jumbo", res.Jumbo).Str("index", res.IndexUsed).
			Dur("took", time.Since(start)).Msg("splitVector: chunk range cannot be split (jumbo)")
	}
	return reply, nil
}
