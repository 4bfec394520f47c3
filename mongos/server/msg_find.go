package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
	"github.com/psdb/psdb/pkg/shardclient"
)

func init() {
	register(Command{
		Name:    "find",
		Help:    "query a collection: targets the shards from the filter, merges their sorted streams, applies skip/limit; returns a cursor",
		Handler: handleFind,
	})
}

// defaultBatchSize is MongoDB's first-batch size.
const defaultBatchSize = 101

// findArgs is a parsed find command.
type findArgs struct {
	filter, projection, sort bson.Raw
	skip, limit, batchSize   int64
	singleBatch              bool
}

func parseFind(doc bson.Raw) (findArgs, error) {
	var a findArgs
	var err error
	if a.filter, err = docArg(doc, "filter"); err != nil {
		return a, err
	}
	if a.projection, err = docArg(doc, "projection"); err != nil {
		return a, err
	}
	if a.sort, err = docArg(doc, "sort"); err != nil {
		return a, err
	}
	if a.skip, err = intArg(doc, "skip", 0); err != nil {
		return a, err
	}
	if a.limit, err = intArg(doc, "limit", 0); err != nil {
		return a, err
	}
	if a.batchSize, err = intArg(doc, "batchSize", defaultBatchSize); err != nil {
		return a, err
	}
	if a.singleBatch, err = boolArg(doc, "singleBatch", false); err != nil {
		return a, err
	}
	switch {
	case a.skip < 0:
		return a, mongoerr.New(51024, "BSON field 'skip' value must be >= 0, actual value '%d'", a.skip)
	case a.limit < 0:
		return a, mongoerr.New(51024, "BSON field 'limit' value must be >= 0, actual value '%d'", a.limit)
	case a.batchSize < 0:
		return a, mongoerr.New(51024, "BSON field 'batchSize' value must be >= 0, actual value '%d'", a.batchSize)
	}
	return a, nil
}

func handleFind(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	if req.DB == configDBName {
		return s.configFind(ctx, req, ns)
	}
	a, err := parseFind(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	if ctx, err = readOptions(ctx, req); err != nil {
		return ErrorReply(err), nil
	}
	var sortSpec *query.Sort
	if len(a.sort) > 5 {
		if sortSpec, err = query.ParseSort(a.sort); err != nil {
			return ErrorReply(err), nil
		}
	}
	b, rep := s.backend()
	if rep != nil {
		return rep, nil
	}
	rt, err := b.Routing()
	if err != nil {
		return ErrorReply(err), nil
	}
	t, err := targeting.ForQuery(rt, ns, a.filter)
	if unknownDB(err) {
		return cursorReply(0, ns, "firstBatch", nil)
	}
	if err != nil {
		return ErrorReply(err), nil
	}
	var c *routerCursor
	q := newQueryRoute(b, ns, a.filter, t) // shardversions.go
	err = retryStaleQuery(ctx, b, ns, a.filter, t.Shards, func(shards []string) (err error) {
		vctx, err := q.attempt(ctx, shards)
		if err != nil {
			return err
		}
		c, err = openCursor(vctx, b, ns, shards, a, sortSpec)
		return err
	})
	if err != nil {
		return ErrorReply(err), nil
	}
	return s.firstBatch(ctx, c, a)
}

// openCursor sends the query to shards and returns the router cursor over
// their streams. One shard gets the query as is; several get limit+skip
// and skip 0, and the router applies skip and limit after the merge.
func openCursor(ctx context.Context, b Backend, ns string, shards []string, a findArgs, sortSpec *query.Sort) (*routerCursor, error) {
	f := shardclient.Find{Filter: a.filter, Projection: a.projection, Sort: a.sort, Skip: a.skip, Limit: a.limit,
		BatchSize: shardclient.BatchSize(int32(min(a.batchSize, 1<<31-1)))}
	c := &routerCursor{ns: ns}
	if len(shards) > 1 {
		if a.limit > 0 {
			f.Limit = a.limit + a.skip
		}
		f.Skip = 0
		c.skip, c.limit, c.sort = a.skip, a.limit, sortSpec
		if sortSpec != nil && len(a.projection) > 5 {
			// The merge compares sort keys, which the projection may
			// remove: the shards return whole documents and the router
			// projects after the merge. A positional projection needs the
			// shard's match position, so it stays on the shards.
			p, err := query.ParseProjection(a.projection)
			if err != nil {
				return nil, err
			}
			if !p.UsesPositional() {
				f.Projection, c.proj = nil, p
			}
		}
	}
	for _, name := range shards {
		first, conn, err := readShard(ctx, b, name, func(conn ShardConn) (*shardclient.Batch, error) { return conn.Find(shardCtx(ctx, name), ns, f) })
		if err == nil {
			c.streams = append(c.streams, &shardStream{shard: name, conn: conn, ns: ns, id: first.CursorID, buf: first.Docs})
			continue
		}
		c.killShards()
		return nil, err
	}
	return c, nil
}

// firstBatch answers a find from a freshly opened cursor, registering it
// when documents remain.
func (s *Server) firstBatch(ctx context.Context, c *routerCursor, a findArgs) (bson.Raw, error) {
	n := int(a.batchSize)
	if a.batchSize == 0 {
		n = -1 // batchSize 0: open the cursor, return nothing
	}
	var docs []bson.Raw
	done := false
	if n != -1 {
		var err error
		if docs, done, err = c.batch(ctx, n); err != nil {
			c.killShards()
			return ErrorReply(err), nil
		}
	} else {
		done = c.exhausted()
	}
	if done || a.singleBatch {
		c.killShards()
		return cursorReply(0, c.ns, "firstBatch", docs)
	}
	id := s.cursors.add(c)
	return cursorReply(id, c.ns, "firstBatch", docs)
}

// cursorReply is {cursor: {id, ns, <batchName>: docs}, ok: 1}.
func cursorReply(id int64, ns, batchName string, docs []bson.Raw) (bson.Raw, error) {
	arr := make(bson.A, len(docs))
	for i, d := range docs {
		arr[i] = d
	}
	return okReply(bson.E{Key: "cursor", Value: bson.D{
		{Key: "id", Value: id}, {Key: "ns", Value: ns}, {Key: batchName, Value: arr},
	}})
}
