package server

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:      "enableSharding",
		Aliases:   []string{"enablesharding"},
		Help:      "create a database in the catalog (on primaryShard if given, else on the active shard that is primary of fewest databases); idempotent",
		Handler:   handleEnableSharding,
		AdminOnly: true,
	})
}

// handleEnableSharding answers {enableSharding: "<db>", primaryShard?}.
// Since MongoDB 6 every database may hold sharded collections, so the
// command only makes sure the database exists, on primaryShard when given.
func handleEnableSharding(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	v := req.Doc.Index(0).Value()
	name, ok := v.StringValueOK()
	if !ok {
		return errReply(mongoerr.TypeMismatch, "BSON field 'enableSharding.enableSharding' is the wrong type '%s', expected type 'string'", typeName(v.Type))
	}
	if err := catalog.ValidateDBName(name); err != nil {
		return errReply(mongoerr.InvalidNamespace, "invalid db name specified: %s", name)
	}
	var primary string
	if pv, err := req.Doc.LookupErr("primaryShard"); err == nil && pv.Type != bson.TypeNull {
		if primary, ok = pv.StringValueOK(); !ok {
			return errReply(mongoerr.TypeMismatch, "BSON field 'enableSharding.primaryShard' is the wrong type '%s', expected type 'string'", typeName(pv.Type))
		}
	}
	switch name {
	case configDBName:
		return okReply() // the config database is always "sharded"
	case "admin", "local":
		return errReply(mongoerr.InvalidOptions, "can't shard %s database", name)
	}
	ab, rt, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	if primary == "" {
		if err := ab.EnsureDatabase(ctx, name); err != nil {
			return ErrorReply(err), nil
		}
		return okReply()
	}
	if _, ok := rt.Database(name); !ok {
		d, err := cat.CreateDatabaseOn(ctx, name, primary)
		switch {
		case err == nil, errors.Is(err, catalog.ErrExists) && d.Name == name && d.PrimaryShard == primary:
		case errors.Is(err, catalog.ErrExists) && d.Name == name:
			return existingPrimary(name, d.PrimaryShard, primary)
		default:
			return ErrorReply(err), nil
		}
		if err := ab.Refresh(ctx); err != nil {
			return ErrorReply(err), nil
		}
		return okReply()
	}
	d, _ := rt.Database(name)
	if d.PrimaryShard != primary {
		if _, ok := findShard(rt, primary); !ok {
			return errReply(mongoerr.ShardNotFound, "shard %s not found", primary)
		}
		return existingPrimary(name, d.PrimaryShard, primary)
	}
	return okReply()
}

func existingPrimary(db, have, want string) (bson.Raw, error) {
	return errReply(mongoerr.NamespaceExists, "database %s already exists with primary shard %s, not the requested %s (use movePrimary)", db, have, want)
}
