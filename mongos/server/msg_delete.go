package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

func init() {
	register(Command{
		Name:    "delete",
		Help:    "delete documents: targeted by each statement's filter; limit-1 deletes without the shard key try the targeted shards one at a time",
		Handler: handleDelete,
	})
}

func parseDeletes(doc bson.Raw) ([]shardclient.DeleteStatement, error) {
	raw, err := docsArg(doc, "deletes")
	if err != nil {
		return nil, err
	}
	out := make([]shardclient.DeleteStatement, len(raw))
	for i, st := range raw {
		q, err := docArg(st, "q")
		if err != nil {
			return nil, err
		}
		if q == nil {
			return nil, mongoerr.New(40414, "BSON field 'delete.deletes.q' is missing but a required field")
		}
		if _, lerr := st.LookupErr("limit"); lerr != nil {
			return nil, mongoerr.New(40414, "BSON field 'delete.deletes.limit' is missing but a required field")
		}
		limit, err := intArg(st, "limit", 0)
		if err != nil {
			return nil, err
		}
		if limit != 0 && limit != 1 {
			return nil, mongoerr.New(mongoerr.FailedToParse, "The limit field in delete objects must be 0 or 1. Got %d", limit)
		}
		out[i] = shardclient.DeleteStatement{Filter: q, Limit: limit}
	}
	return out, nil
}

func handleDelete(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	stmts, err := parseDeletes(req.Doc)
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
	rt, err := b.Routing()
	if err != nil {
		return ErrorReply(err), nil
	}
	if _, ok := rt.Database(req.DB); !ok {
		return (&writeOutcome{}).reply(false)
	}
	targets := make([]targeting.Target, len(stmts))
	errs := make([]error, len(stmts))
	for i, st := range stmts {
		targets[i], errs[i] = targeting.ForDelete(rt, ns, st.Filter, st.Limit == 1)
	}
	w := &writeRoute{ctx: ctx, b: b, opts: opts, // writeretarget.go
		target: func(rt Routing, i int) (targeting.Target, error) {
			return targeting.ForDelete(rt, ns, stmts[i].Filter, stmts[i].Limit == 1)
		},
		call: func(conn ShardConn, idx []int, wo shardclient.WriteOptions) (*shardclient.WriteResult, error) {
			return conn.Delete(ctx, ns, pick(stmts, idx), wo)
		},
	}
	o := runTargeted(targets, errs, ordered, w.sender(targets))
	return o.reply(false)
}
