package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/pkg/shardversion"
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
	coll, _ := rt.Collection(ns)
	shards := make([]string, len(docs))
	vers := make([]targeting.ShardVersion, len(docs))
	errs := make([]error, len(docs))
	for i, d := range docs {
		docs[i] = withID(d)
		if coll.Sharded {
			if errs[i] = targeting.RequireShardKey(coll.Key, docs[i]); errs[i] != nil {
				continue
			}
		}
		shards[i], vers[i], errs[i] = targeting.ForInsert(rt, ns, docs[i])
	}
	o := runBatched(shards, errs, ordered, func(shard string, idx []int, ordered bool) (*shardclient.WriteResult, error) {
		ver, err := batchVersion(pick(vers, idx)) // shardversions.go
		if err != nil {
			return nil, err
		}
		retarget := func(rt Routing, idx []int) (sh string, err error) {
			sh, ver, err = retargetVersioned(idx, func(i int) (targeting.Target, error) { return insertTarget(rt, ns, docs[i]) })
			return sh, err
		}
		return sendWrite(ctx, b, shard, idx, ordered, opts, retarget, func(conn ShardConn, wo shardclient.WriteOptions) (*shardclient.WriteResult, error) {
			wo.ShardVersion = shardversion.Proto(ver)
			return conn.Insert(ctx, ns, pick(docs, idx), wo)
		})
	})
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
