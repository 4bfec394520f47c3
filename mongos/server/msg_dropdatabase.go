package server

import (
	"context"
	"errors"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name: "dropDatabase",
		Help: "drop a database: every collection on every shard, then the database's catalog record " +
			"with its collections and chunks (one transaction); a missing database succeeds",
		Handler: handleDropDatabase,
	})
}

// handleDropDatabase answers {dropDatabase: 1} on the request's database
// as MongoDB does ({dropped: <db>, ok: 1}; ok alone for a missing one).
// The shards drop first: a failure leaves the catalog record, so the
// command can be run again.
func handleDropDatabase(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	db := req.DB
	switch db {
	case "admin", "config", "local":
		return errReply(mongoerr.IllegalOperation, "Cannot drop '%s' database", db)
	}
	ab, rt, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	if _, ok := rt.Database(db); !ok {
		return okReply()
	}
	names, err := databaseCollections(ctx, ab, rt, db)
	if err != nil {
		return ErrorReply(err), nil
	}
	for _, ns := range names {
		for _, sh := range rt.Shards() {
			conn, err := ab.Shard(sh.Name)
			if err != nil {
				return ErrorReply(err), nil
			}
			if _, err := conn.DropCollection(ctx, ns); err != nil && mongoerr.CodeOf(err) != mongoerr.NamespaceNotFound {
				return ErrorReply(err), nil
			}
		}
	}
	if err := cat.DropDatabase(ctx, db); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return ErrorReply(err), nil
	}
	if err := ab.Refresh(ctx); err != nil {
		return ErrorReply(err), nil
	}
	return okReply(bson.E{Key: "dropped", Value: db})
}

// databaseCollections returns the namespaces of db that the catalog or
// any shard knows, sorted.
func databaseCollections(ctx context.Context, ab AdminBackend, rt Routing, db string) ([]string, error) {
	seen := map[string]bool{}
	for _, c := range rt.Collections(db) {
		seen[c.NS] = true
	}
	for _, sh := range rt.Shards() {
		conn, err := ab.Shard(sh.Name)
		if err != nil {
			return nil, err
		}
		names, err := conn.ListCollections(ctx, db)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !strings.HasPrefix(n, db+".") {
				n = db + "." + n
			}
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for ns := range seen {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out, nil
}
