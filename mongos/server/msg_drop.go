package server

import (
	"context"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:    "drop",
		Help:    "drop a collection on every shard that may hold it, then its catalog record; dropping a missing collection succeeds (MongoDB 7)",
		Handler: handleDrop,
	})
}

func handleDrop(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
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
	d, ok := rt.Database(req.DB)
	if !ok {
		return okReply(bson.E{Key: "ns", Value: ns})
	}
	shards := []string{d.PrimaryShard}
	coll, known := rt.Collection(ns)
	if known && coll.Sharded {
		// Every shard: a chunk may have left a shard whose copy of the
		// collection still exists.
		for _, sh := range rt.Shards() {
			if !slices.Contains(shards, sh.Name) {
				shards = append(shards, sh.Name)
			}
		}
	}
	nIndexes := 0
	for _, sh := range shards {
		conn, err := b.Shard(sh)
		if err != nil {
			return ErrorReply(err), nil
		}
		n, err := conn.DropCollection(ctx, ns)
		if err != nil && mongoerr.CodeOf(err) != mongoerr.NamespaceNotFound {
			return ErrorReply(err), nil
		}
		nIndexes = max(nIndexes, n)
	}
	if known {
		if err := b.DropCollectionRecord(ctx, ns); err != nil {
			return ErrorReply(err), nil
		}
	}
	if nIndexes == 0 {
		return okReply(bson.E{Key: "ns", Value: ns})
	}
	return okReply(bson.E{Key: "nIndexesWas", Value: int32(nIndexes)}, bson.E{Key: "ns", Value: ns})
}
