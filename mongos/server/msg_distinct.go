package server

import (
	"context"
	"slices"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:    "distinct",
		Help:    "distinct values of a field among matching documents: asked of the targeted shards, merged in MongoDB's order without duplicates",
		Handler: handleDistinct,
	})
}

func handleDistinct(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	kv, err := req.Doc.LookupErr("key")
	if err != nil {
		return errReply(40414, "BSON field 'distinct.key' is missing but a required field")
	}
	key, ok := kv.StringValueOK()
	if !ok {
		return errReply(mongoerr.TypeMismatch, "BSON field 'distinct.key' is the wrong type '%s', expected type 'string'", typeName(kv.Type))
	}
	filter, err := docArg(req.Doc, "query")
	if err != nil {
		return ErrorReply(err), nil
	}
	if ctx, err = readOptions(ctx, req); err != nil {
		return ErrorReply(err), nil
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
		return okReply(bson.E{Key: "values", Value: bson.A{}})
	}
	if err != nil {
		return ErrorReply(err), nil
	}
	var vals []bson.RawValue
	q := newQueryRoute(b, ns, filter, t) // shardversions.go
	err = retryStaleQuery(ctx, b, ns, filter, t.Shards, func(shards []string) (err error) {
		vctx, err := q.attempt(ctx, shards)
		if err != nil {
			return err
		}
		vals, err = distinctShards(vctx, b, ns, key, filter, shards)
		return err
	})
	if err != nil {
		return ErrorReply(err), nil
	}
	arr := make(bson.A, len(vals))
	for i, v := range vals {
		arr[i] = v
	}
	return okReply(bson.E{Key: "values", Value: arr})
}

// distinctShards asks every shard concurrently and merges their answers:
// sorted by keys.Compare (MongoDB's comparison order, which each shard
// uses too) and deduplicated by it, so 1 and 1.0 from two shards count
// once (the first shard's, in shard-name order, is kept).
func distinctShards(ctx context.Context, b Backend, ns, key string, filter bson.Raw, shards []string) ([]bson.RawValue, error) {
	per := make([][]bson.RawValue, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			per[i], _, errs[i] = readShard(ctx, b, sh, func(conn ShardConn) ([]bson.RawValue, error) {
				return conn.Distinct(shardCtx(ctx, sh), ns, key, filter)
			})
		}()
	}
	wg.Wait()
	var all []bson.RawValue
	for i := range shards {
		if errs[i] != nil {
			return nil, errs[i]
		}
		all = append(all, per[i]...)
	}
	if len(shards) == 1 {
		return all, nil
	}
	return mergeDistinct(all), nil
}

// mergeDistinct sorts values in keys.Compare order (stable) and removes
// the values equal to their predecessor.
func mergeDistinct(vals []bson.RawValue) []bson.RawValue {
	slices.SortStableFunc(vals, keys.Compare)
	return slices.CompactFunc(vals, func(a, b bson.RawValue) bool { return keys.Compare(a, b) == 0 })
}
