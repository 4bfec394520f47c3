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
		Name:    "update",
		Help:    "update documents: targeted by each statement's filter; single-document updates without the shard key try the targeted shards one at a time",
		Handler: handleUpdate,
	})
}

func parseUpdates(doc bson.Raw) ([]shardclient.UpdateStatement, error) {
	raw, err := docsArg(doc, "updates")
	if err != nil {
		return nil, err
	}
	out := make([]shardclient.UpdateStatement, len(raw))
	for i, st := range raw {
		q, err := docArg(st, "q")
		if err != nil {
			return nil, err
		}
		u, err := st.LookupErr("u")
		if err != nil || (u.Type != bson.TypeEmbeddedDocument && u.Type != bson.TypeArray) {
			return nil, mongoerr.New(mongoerr.FailedToParse, "update statement %d needs 'u', a document or a pipeline", i)
		}
		multi, err := boolArg(st, "multi", false)
		if err != nil {
			return nil, err
		}
		upsert, err := boolArg(st, "upsert", false)
		if err != nil {
			return nil, err
		}
		var af []bson.Raw
		if _, lerr := st.LookupErr("arrayFilters"); lerr == nil {
			if af, err = docsArg(st, "arrayFilters"); err != nil {
				return nil, err
			}
		}
		if q == nil {
			q = bson.Raw{5, 0, 0, 0, 0}
		}
		out[i] = shardclient.UpdateStatement{Filter: q, Update: bson.Raw(u.Value), ArrayFilters: af, Multi: multi, Upsert: upsert}
	}
	return out, nil
}

func handleUpdate(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	stmts, err := parseUpdates(req.Doc)
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
	if req.DB == configDBName {
		return s.handleConfigUpdate(ctx, ns, stmts)
	}
	b, rep := s.backend()
	if rep != nil {
		return rep, nil
	}
	for _, st := range stmts {
		if st.Upsert {
			if err := b.EnsureDatabase(ctx, req.DB); err != nil {
				return ErrorReply(err), nil
			}
			break
		}
	}
	rt, err := b.Routing()
	if err != nil {
		return ErrorReply(err), nil
	}
	if _, ok := rt.Database(req.DB); !ok {
		return (&writeOutcome{}).reply(true)
	}
	targets := make([]targeting.Target, len(stmts))
	errs := make([]error, len(stmts))
	target := func(rt Routing, i int) (targeting.Target, error) {
		st := stmts[i]
		t, err := targeting.ForUpdate(rt, ns, st.Filter, st.Update, st.Multi, st.Upsert)
		if err == nil && st.Upsert && t.NeedsOneDocSemantics {
			err = mongoerr.New(mongoerr.ShardKeyNotFound,
				"this router cannot yet run a single-document upsert whose filter lacks the full shard key of %s", ns)
		}
		return t, err
	}
	for i := range stmts {
		targets[i], errs[i] = target(rt, i)
	}
	w := &writeRoute{ctx: ctx, b: b, opts: opts, target: target, // writeretarget.go
		call: func(conn ShardConn, idx []int, wo shardclient.WriteOptions) (*shardclient.WriteResult, error) {
			return conn.Update(ctx, ns, pick(stmts, idx), wo)
		},
	}
	o := runTargeted(targets, errs, ordered, w.sender(targets))
	return o.reply(true)
}
