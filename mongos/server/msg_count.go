package server

import (
	"context"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:    "count",
		Help:    "count matching documents: summed over the targeted shards, then skip and limit applied",
		Handler: handleCount,
	})
}

func handleCount(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	if req.DB == configDBName {
		return s.configCount(ctx, req, ns)
	}
	filter, err := docArg(req.Doc, "query")
	if err != nil {
		return ErrorReply(err), nil
	}
	skip, err := intArg(req.Doc, "skip", 0)
	if err != nil {
		return ErrorReply(err), nil
	}
	limit, err := intArg(req.Doc, "limit", 0)
	if err != nil {
		return ErrorReply(err), nil
	}
	if skip < 0 {
		return errReply(mongoerr.BadValue, "skip value is negative in count query")
	}
	if ctx, err = readOptions(ctx, req); err != nil {
		return ErrorReply(err), nil
	}
	if limit < 0 {
		limit = -limit // MongoDB: a negative limit counts like its absolute value
	}
	b, rep := s.backend()
	if rep != nil {
		return rep, nil
	}
	rt, err := b.Routing()
	if err != nil {
		return ErrorReply(err), nil
	}
	t, err := targeting.ForQuery(rt, ns, filter)
	if unknownDB(err) {
		return okReply(bson.E{Key: "n", Value: int32(0)})
	}
	if err != nil {
		return ErrorReply(err), nil
	}
	var n int64
	q := newQueryRoute(b, ns, filter, t) // shardversions.go
	err = retryStaleQuery(ctx, b, ns, filter, t.Shards, func(shards []string) (err error) {
		vctx, err := q.attempt(ctx, shards)
		if err != nil {
			return err
		}
		n, err = countShards(vctx, b, ns, shards, filter, skip, limit)
		return err
	})
	if err != nil {
		return ErrorReply(err), nil
	}
	return okReply(bson.E{Key: "n", Value: number(n)})
}

// countShards counts on each shard concurrently. One shard applies skip
// and limit itself; over several, each counts everything matching (capped
// at limit+skip) and the router applies them to the sum: the answer is
// min(max(total-skip, 0), limit), which needs no order.
func countShards(ctx context.Context, b Backend, ns string, shards []string, filter bson.Raw, skip, limit int64) (int64, error) {
	if len(shards) == 1 {
		n, _, err := readShard(ctx, b, shards[0], func(conn ShardConn) (int64, error) {
			return conn.Count(shardCtx(ctx, shards[0]), ns, filter, skip, limit)
		})
		return n, err
	}
	upTo := int64(0)
	if limit > 0 {
		upTo = limit + skip
	}
	counts := make([]int64, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], _, errs[i] = readShard(ctx, b, sh, func(conn ShardConn) (int64, error) { return conn.Count(shardCtx(ctx, sh), ns, filter, 0, upTo) })
		}()
	}
	wg.Wait()
	var total int64
	for i := range shards {
		if errs[i] != nil {
			return 0, errs[i]
		}
		total += counts[i]
	}
	total = max(total-skip, 0)
	if limit > 0 {
		total = min(total, limit)
	}
	return total, nil
}
