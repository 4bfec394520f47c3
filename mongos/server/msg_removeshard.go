package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:      "removeShard",
		Aliases:   []string{"removeshard"},
		Help:      "start or follow a shard's draining; the record is removed once it owns no chunk and is no database's primary (moving them is the balancer's and movePrimary's job)",
		Handler:   handleRemoveShard,
		AdminOnly: true,
	})
}

const removeShardNote = "you need to call movePrimary for the dbsToMove; chunks are moved off the shard by the balancer"

// handleRemoveShard answers {removeShard: "<shard>"} as MongoDB does: the
// first call marks the shard draining (state "started"), later calls
// report what remains ("ongoing"), and the call that finds nothing left
// deletes the shard record ("completed"). A shard that already owns
// nothing completes on the first call.
func handleRemoveShard(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	v := req.Doc.Index(0).Value()
	name, ok := v.StringValueOK()
	if !ok {
		return errReply(mongoerr.TypeMismatch, "BSON field 'removeShard.removeShard' is the wrong type '%s', expected type 'string'", typeName(v.Type))
	}
	ab, rt, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	if err := ab.Refresh(ctx); err != nil {
		return ErrorReply(err), nil
	}
	sh, ok := findShard(rt, name)
	if !ok {
		return errReply(mongoerr.ShardNotFound, "Shard %s not found", name)
	}
	started := false
	if sh.State != catalog.ShardDraining {
		others := 0
		for _, o := range rt.Shards() {
			if o.Name != name && o.State == catalog.ShardActive {
				others++
			}
		}
		if others == 0 {
			return errReply(mongoerr.IllegalOperation, "Operation not allowed because it would remove the last shard")
		}
		if _, err := cat.MarkDraining(ctx, name); err != nil {
			return ErrorReply(err), nil
		}
		started = true
		s.wakeBalancer()
	}
	u, err := cat.GetShardUsage(ctx, name)
	if err != nil {
		return ErrorReply(err), nil
	}
	if u.Chunks == 0 && len(u.Databases) == 0 {
		if err := cat.RemoveShard(ctx, name); err != nil {
			return ErrorReply(err), nil
		}
		recordChange(ctx, ab, s.opts.Name, "removeShard", "", s.opts.Logger, bson.E{Key: "shard", Value: name})
		if err := ab.Refresh(ctx); err != nil {
			return ErrorReply(err), nil
		}
		return okReply(bson.E{Key: "msg", Value: "removeshard completed successfully"}, bson.E{Key: "state", Value: "completed"}, bson.E{Key: "shard", Value: name})
	}
	if err := ab.Refresh(ctx); err != nil {
		return ErrorReply(err), nil
	}
	dbs := bson.A{}
	for _, d := range u.Databases {
		dbs = append(dbs, d)
	}
	colls := bson.A{}
	for _, c := range u.Collections {
		colls = append(colls, c)
	}
	if started {
		return okReply(bson.E{Key: "msg", Value: "draining started successfully"}, bson.E{Key: "state", Value: "started"},
			bson.E{Key: "shard", Value: name}, bson.E{Key: "note", Value: removeShardNote},
			bson.E{Key: "dbsToMove", Value: dbs}, bson.E{Key: "collectionsToMove", Value: colls})
	}
	return okReply(bson.E{Key: "msg", Value: "draining ongoing"}, bson.E{Key: "state", Value: "ongoing"},
		bson.E{Key: "remaining", Value: bson.D{
			{Key: "chunks", Value: int64(u.Chunks)},
			{Key: "dbs", Value: int64(len(u.Databases))},
			{Key: "jumboChunks", Value: int64(0)},
		}},
		bson.E{Key: "note", Value: removeShardNote},
		bson.E{Key: "dbsToMove", Value: dbs}, bson.E{Key: "collectionsToMove", Value: colls})
}
