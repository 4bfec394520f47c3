package server

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:    "moveChunk",
		Aliases: []string{"movechunk"},
		Help: "move a chunk to another shard: {moveChunk: ns, find: <query> | bounds: [min, max], to: <shard>, " +
			"_waitForDelete: <bool>}",
		Handler:   handleMoveChunk,
		AdminOnly: true,
	})
}

// moveChunkArgs is a parsed moveChunk command; exactly one of find and
// bounds is set.
type moveChunkArgs struct {
	ns                   string
	find                 bson.Raw
	boundsMin, boundsMax bson.Raw
	to                   string
	waitForDelete        bool
}

func parseMoveChunk(doc bson.Raw) (moveChunkArgs, error) {
	var a moveChunkArgs
	v := doc.Index(0).Value()
	ns, ok := v.StringValueOK()
	if !ok {
		return a, mongoerr.New(mongoerr.BadValue, "collection name has invalid type %s", typeName(v.Type))
	}
	if _, _, err := catalog.SplitNS(ns); err != nil {
		return a, mongoerr.New(mongoerr.InvalidNamespace, "Invalid namespace specified '%s'", ns)
	}
	a.ns = ns
	tv, err := doc.LookupErr("to")
	if err != nil {
		return a, mongoerr.New(40414, "BSON field 'moveChunk.to' is missing but a required field")
	}
	if a.to, ok = tv.StringValueOK(); !ok {
		return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'moveChunk.to' is the wrong type '%s', expected type 'string'", typeName(tv.Type))
	}
	if a.find, err = docArg(doc, "find"); err != nil {
		return a, err
	}
	if len(a.find) <= 5 {
		a.find = nil
	}
	if bv, err := doc.LookupErr("bounds"); err == nil && bv.Type != bson.TypeNull {
		arr, ok := bv.ArrayOK()
		if !ok {
			return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'moveChunk.bounds' is the wrong type '%s', expected type 'array'", typeName(bv.Type))
		}
		vals, err := arr.Values()
		if err != nil {
			return a, mongoerr.New(mongoerr.InvalidBSON, "moveChunk.bounds: %v", err)
		}
		if len(vals) != 2 {
			return a, mongoerr.New(mongoerr.BadValue, "bounds must hold exactly a lower and an upper bound, got %d values", len(vals))
		}
		var ok0, ok1 bool
		a.boundsMin, ok0 = vals[0].DocumentOK()
		a.boundsMax, ok1 = vals[1].DocumentOK()
		if !ok0 || !ok1 {
			return a, mongoerr.New(mongoerr.TypeMismatch, "moveChunk.bounds must hold two documents")
		}
	}
	switch {
	case a.find != nil && a.boundsMin != nil:
		return a, mongoerr.New(mongoerr.BadValue, "cannot specify bounds and query at the same time")
	case a.find == nil && a.boundsMin == nil:
		return a, mongoerr.New(mongoerr.BadValue, "need to specify either a find query, or both lower and upper bounds.")
	}
	if wv, err := doc.LookupErr("_waitForDelete"); err == nil {
		switch wv.Type {
		case bson.TypeBoolean:
			a.waitForDelete = wv.Boolean()
		case bson.TypeNull:
		default:
			n, ok := wv.AsInt64OK()
			if !ok {
				return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'moveChunk._waitForDelete' is the wrong type '%s', expected type 'bool'", typeName(wv.Type))
			}
			a.waitForDelete = n != 0
		}
	}
	return a, nil
}

// handleMoveChunk is MongoDB's moveChunk command: it refreshes the
// routing metadata, finds the chunk (by a document's shard key or by its
// exact bounds) and runs MoveChunk, answering {millis, ok} once the move
// is committed and this router routes by it. A chunk already on the
// target shard is a no-op, as in MongoDB.
func handleMoveChunk(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	start := time.Now()
	a, err := parseMoveChunk(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	req.NS = a.ns
	ab, rt, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	if err := ab.Refresh(ctx); err != nil {
		return ErrorReply(err), nil
	}
	if rt, err = ab.Routing(); err != nil {
		return ErrorReply(err), nil
	}
	coll, ok := rt.Collection(a.ns)
	if !ok || !coll.Sharded {
		return errReply(mongoerr.NamespaceNotSharded, "Collection %s is not sharded.", a.ns)
	}
	to, ok := findShard(rt, a.to)
	if !ok {
		return errReply(mongoerr.ShardNotFound, "Could not move chunk in '%s' to shard '%s' because that shard does not exist", a.ns, a.to)
	}
	chunk, err := chunkByFindOrBounds(rt, a.ns, coll.Key, a.find, a.boundsMin, a.boundsMax)
	if err != nil {
		return ErrorReply(err), nil
	}
	if chunk.Shard == to.Name {
		s.opts.Logger.Info().Str("ns", a.ns).Str("chunk", chunk.String()).Msg("moveChunk: the chunk is already on the destination shard")
		return okReply(bson.E{Key: "millis", Value: time.Since(start).Milliseconds()})
	}
	if to.State != catalog.ShardActive {
		return errReply(mongoerr.IllegalOperation, "Could not move chunk in '%s' to shard '%s' because that shard is draining", a.ns, a.to)
	}
	if _, err := MoveChunk(ctx, ab, cat, a.ns, coll.Key, chunk, coll.Epoch, to.Name, MoveChunkOptions{
		WaitForDelete: a.waitForDelete, Logger: s.opts.Logger, Server: s.opts.Name, Reason: "moveChunk",
	}); err != nil {
		return ErrorReply(err), nil
	}
	return okReply(bson.E{Key: "millis", Value: time.Since(start).Milliseconds()})
}
