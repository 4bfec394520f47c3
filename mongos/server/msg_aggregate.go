package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/aggregate"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

func init() {
	register(Command{
		Name:    "aggregate",
		Help:    "run an aggregation pipeline: one targeted shard runs it whole; several run its shard part and the router merges them and runs the rest; returns a cursor",
		Handler: handleAggregate,
	})
}

// aggregateArgs is a parsed aggregate command.
type aggregateArgs struct {
	pipeline  []bson.Raw
	batchSize int64
}

func parseAggregate(doc bson.Raw) (aggregateArgs, error) {
	var a aggregateArgs
	var err error
	if a.pipeline, err = docsArg(doc, "pipeline"); err != nil {
		return a, err
	}
	explain, err := boolArg(doc, "explain", false)
	if err != nil {
		return a, err
	}
	if explain {
		return a, mongoerr.New(mongoerr.CommandNotSupported, "explain of aggregate is not supported")
	}
	cur, err := doc.LookupErr("cursor")
	if err != nil {
		return a, mongoerr.New(mongoerr.FailedToParse, "The 'cursor' option is required, except for aggregate with the explain argument")
	}
	cd, ok := cur.DocumentOK()
	if !ok {
		return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'cursor' is the wrong type '%s', expected type 'object'", typeName(cur.Type))
	}
	if a.batchSize, err = intArg(cd, "batchSize", defaultBatchSize); err != nil {
		return a, err
	}
	if a.batchSize < 0 {
		return a, mongoerr.New(51024, "BSON field 'batchSize' value must be >= 0, actual value '%d'", a.batchSize)
	}
	return a, nil
}

func handleAggregate(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	if v := req.Doc.Index(0).Value(); v.Type != bson.TypeString {
		return ErrorReply(collectionless(req.Doc)), nil
	}
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	if req.DB == configDBName {
		return s.configAggregate(ctx, req, ns)
	}
	a, err := parseAggregate(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	if ctx, err = readOptions(ctx, req); err != nil {
		return ErrorReply(err), nil
	}
	// The router parses the pipeline too: bad pipelines fail here with the
	// library's codes, and several shards need its Split.
	p, err := aggregate.Parse(a.pipeline)
	if err != nil {
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
	t, err := targeting.ForQuery(rt, ns, leadingMatch(a.pipeline))
	if unknownDB(err) {
		return cursorReply(0, ns, "firstBatch", nil)
	}
	if err != nil {
		return ErrorReply(err), nil
	}
	var c *routerCursor
	q := newQueryRoute(b, ns, leadingMatch(a.pipeline), t) // shardversions.go
	err = retryStaleQuery(ctx, b, ns, leadingMatch(a.pipeline), t.Shards, func(shards []string) (err error) {
		vctx, err := q.attempt(ctx, shards)
		if err != nil {
			return err
		}
		c, err = openAggregate(vctx, b, ns, shards, a, p)
		return err
	})
	if err != nil {
		return ErrorReply(err), nil
	}
	return s.firstBatch(ctx, c, findArgs{batchSize: a.batchSize})
}

// collectionless answers {aggregate: 1}: the collection-less stages
// ($currentOp, $documents, $listLocalSessions, ...) are not served, and
// MongoDB refuses every other stage without a collection.
func collectionless(doc bson.Raw) error {
	v := doc.Index(0).Value()
	if n, ok := v.AsInt64OK(); !ok || n != 1 {
		return mongoerr.New(mongoerr.FailedToParse, "Invalid command format: the 'aggregate' field must specify a collection name or 1")
	}
	pipeline, err := docsArg(doc, "pipeline")
	if err != nil {
		return err
	}
	if len(pipeline) == 0 {
		return mongoerr.New(mongoerr.InvalidNamespace, "{aggregate: 1} is not valid for an empty pipeline.")
	}
	if _, err := aggregate.Parse(pipeline[:1]); err != nil {
		return err // 40324 Unrecognized pipeline stage name for $currentOp & co.
	}
	name := ""
	if e, err := pipeline[0].IndexErr(0); err == nil {
		name = e.Key()
	}
	return mongoerr.New(mongoerr.InvalidNamespace, "{aggregate: 1} is not valid for '%s'; a collection is required.", name)
}

// openAggregate sends the pipeline to the shards and returns the router
// cursor over the result. One shard runs the whole pipeline and the router
// streams its cursor; several run the shard part of p.Split() (each shard
// splits the same pipeline the same way, so only the pipeline travels), and
// the router merges their outputs in the merge part's MergeSort order and
// runs the merge part over them.
func openAggregate(ctx context.Context, b Backend, ns string, shards []string, a aggregateArgs, p *aggregate.Pipeline) (*routerCursor, error) {
	bs := shardclient.BatchSize(int32(min(a.batchSize, 1<<31-1)))
	c := &routerCursor{ns: ns}
	for _, name := range shards {
		first, conn, err := readShard(ctx, b, name, func(conn ShardConn) (*shardclient.Batch, error) {
			if len(shards) == 1 {
				return conn.Aggregate(shardCtx(ctx, name), ns, a.pipeline, bs)
			}
			return conn.AggregateShardPart(shardCtx(ctx, name), ns, a.pipeline, bs)
		})
		if err == nil {
			c.streams = append(c.streams, &shardStream{shard: name, conn: conn, ns: ns, id: first.CursorID, buf: first.Docs})
			continue
		}
		c.killShards()
		return nil, err
	}
	if len(shards) > 1 {
		_, merge := p.Split()
		srcs := make([]aggregate.Source, len(c.streams))
		for i, st := range c.streams {
			srcs[i] = st
		}
		c.src = merge.Stream(aggregate.MergeStreams(merge.MergeSort(), srcs))
	}
	return c, nil
}

// leadingMatch returns the filter of a first {$match: {...}} stage (nil
// when the pipeline does not start with one): the router targets with it.
func leadingMatch(pipeline []bson.Raw) bson.Raw {
	if len(pipeline) == 0 {
		return nil
	}
	v, err := pipeline[0].LookupErr("$match")
	if err != nil || v.Type != bson.TypeEmbeddedDocument {
		return nil
	}
	return v.Document()
}
