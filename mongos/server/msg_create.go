package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:    "create",
		Help:    "create a collection on its database's primary shard (the database is created on first use); options are not supported yet",
		Handler: handleCreate,
	})
}

func handleCreate(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
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
	d, ok := rt.Database(req.DB)
	if !ok {
		return errReply(mongoerr.NamespaceNotFound, "database %s not found", req.DB)
	}
	conn, err := b.Shard(d.PrimaryShard)
	if err != nil {
		return ErrorReply(err), nil
	}
	if err := conn.CreateCollection(ctx, ns); err != nil {
		return ErrorReply(err), nil
	}
	return okReply()
}
