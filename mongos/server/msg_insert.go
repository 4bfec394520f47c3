package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/shardclient"
)

func init() {
	register(Command{
		Name:    "insert",
		Help:    "insert documents: each goes to the shard owning its shard key (the database primary when unsharded); the database is created on first use",
		Handler: handleInsert,
	})
}

func handleInsert(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	docs, err := docsArg(req.Doc, "documents")
	if err != nil {
		return ErrorReply(err), nil
	}
	ordered, err := boolArg(req.Doc, "ordered", true)
	if err != nil {
		return ErrorReply(err), nil
	}
	opts, err := parseCmdOptions(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	b, rep := s.backend()
	if rep != nil {
		return rep, nil
	}
	if err := b.EnsureDatabase(ctx, req.DB); err != nil {
		return ErrorReply(err), nil
	}
	rt, err := b.Routing()
	if err != nil {
		return ErrorReply(err), nil
	}
	// target also refuses a document without the full shard key, which
	// targeting alone would send to the chunk of its missing fields' null.
	target := func(rt Routing, i int) (targeting.Target, error) {
		if coll, ok := rt.Collection(ns); ok && coll.Sharded {
			if err := targeting.RequireShardKey(coll.Key, docs[i]); err != nil {
				return targeting.Target{}, err
			}
		}
		return insertTarget(rt, ns, docs[i]) // shardversions.go
	}
	targets := make([]targeting.Target, len(docs))
	errs := make([]error, len(docs))
	for i, d := range docs {
		docs[i] = withID(d)
		targets[i], errs[i] = target(rt, i)
	}
	w := &writeRoute{ctx: ctx, b: b, opts: opts, target: target, // writeretarget.go
		call: func(conn ShardConn, idx []int, wo shardclient.WriteOptions) (*shardclient.WriteResult, error) {
			return conn.Insert(ctx, ns, pick(docs, idx), wo)
		},
	}
	o := runTargeted(targets, errs, ordered, w.sender(targets))
	return o.reply(false)
}

// withID returns doc with a generated ObjectId _id first when it has none
// (drivers add one; the router needs it to target a key containing _id).
func withID(doc bson.Raw) bson.Raw {
	if _, err := doc.LookupErr("_id"); err == nil {
		return doc
	}
	elems, err := doc.Elements()
	if err != nil {
		return doc
	}
	d := make(bson.D, 0, len(elems)+1)
	d = append(d, bson.E{Key: "_id", Value: bson.NewObjectID()})
	for _, e := range elems {
		d = append(d, bson.E{Key: e.Key(), Value: e.Value()})
	}
	out, err := bson.Marshal(d)
	if err != nil {
		return doc
	}
	return out
}
