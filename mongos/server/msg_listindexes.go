package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:    "listIndexes",
		Help:    "list a collection's indexes, read from one shard (the primary shard, or the owner of the collection's first chunk when sharded); returns a cursor",
		Handler: handleListIndexes,
	})
}

func handleListIndexes(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	batchSize := int64(defaultBatchSize)
	if cur, err := docArg(req.Doc, "cursor"); err != nil {
		return ErrorReply(err), nil
	} else if cur != nil {
		if batchSize, err = intArg(cur, "batchSize", defaultBatchSize); err != nil {
			return ErrorReply(err), nil
		}
		if batchSize < 0 {
			return errReply(51024, "BSON field 'batchSize' value must be >= 0, actual value '%d'", batchSize)
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
	shards, err := indexShards(rt, ns)
	if err != nil {
		return ErrorReply(err), nil
	}
	var specs []bson.Raw
	shard := ""
	for _, sh := range shards {
		conn, err := b.Shard(sh)
		if err != nil {
			return ErrorReply(err), nil
		}
		specs, err = conn.ListIndexes(ctx, ns)
		if err == nil {
			shard = sh
			break
		}
		if !mongoerr.HasCode(err, mongoerr.NamespaceNotFound) {
			return ErrorReply(err), nil
		}
	}
	if shard == "" {
		return errReply(mongoerr.NamespaceNotFound, "ns does not exist: %s", ns)
	}
	// The cursor namespace is MongoDB's "<db>.$cmd.listIndexes.<coll>";
	// the specs are all in the router already, served like a find's
	// documents (batchSize, getMore, killCursors).
	c := &routerCursor{ns: req.DB + ".$cmd.listIndexes." + ns[len(req.DB)+1:], streams: []*shardStream{{shard: shard, buf: specs}}}
	return s.firstBatch(ctx, c, findArgs{batchSize: batchSize})
}

// indexShards lists the shards listIndexes may ask, best first: the
// primary shard of an unsharded collection; for a sharded one the owner
// of the MinKey chunk (as MongoDB's mongos), then the other owners of
// chunks, for a shard that never received a document or an index of the
// collection has no copy of it. Every shard owning chunks has the same
// indexes when they were built through the router.
func indexShards(rt Routing, ns string) ([]string, error) {
	coll, ok := rt.Collection(ns)
	if !ok || !coll.Sharded {
		return collectionShards(rt, ns)
	}
	vals := make([]bson.RawValue, len(coll.Key))
	for i := range vals {
		vals[i] = bson.RawValue{Type: bson.TypeMinKey}
	}
	ch, err := rt.ChunkFor(ns, vals)
	if err != nil {
		return nil, err
	}
	all, err := rt.ShardsFor(ns)
	if err != nil {
		return nil, err
	}
	out := []string{ch.Shard}
	for _, sh := range all {
		if sh != ch.Shard {
			out = append(out, sh)
		}
	}
	return out, nil
}
