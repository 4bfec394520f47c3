package server

import (
	"context"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/query"
)

func init() {
	register(Command{
		Name:    "listCollections",
		Help:    "list a database's collections: those on its primary shard and the sharded ones of the catalog; nameOnly and filter supported",
		Handler: handleListCollections,
	})
}

func handleListCollections(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	filterDoc, err := docArg(req.Doc, "filter")
	if err != nil {
		return ErrorReply(err), nil
	}
	nameOnly, err := boolArg(req.Doc, "nameOnly", false)
	if err != nil {
		return ErrorReply(err), nil
	}
	var filter *query.Filter
	if filterDoc != nil {
		if filter, err = query.ParseFilter(filterDoc); err != nil {
			return ErrorReply(err), nil
		}
	}
	if req.DB == configDBName {
		return configListCollections(filter, nameOnly)
	}
	ns := req.DB + ".$cmd.listCollections"
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
		return cursorReply(0, ns, "firstBatch", nil)
	}
	conn, err := b.Shard(d.PrimaryShard)
	if err != nil {
		return ErrorReply(err), nil
	}
	shardNames, err := conn.ListCollections(ctx, req.DB)
	if err != nil {
		return ErrorReply(err), nil
	}
	var names []string
	for _, n := range shardNames {
		// The shard names collections by namespace ("db.coll").
		if db, coll, ok := splitColl(n); ok && db == req.DB {
			n = coll
		}
		names = append(names, n)
	}
	uuids := map[string]string{}
	for _, c := range rt.Collections(req.DB) {
		_, name, _ := splitColl(c.NS)
		uuids[name] = c.UUID
		if c.Sharded && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var docs []bson.Raw
	for _, name := range names {
		entry := bson.D{{Key: "name", Value: name}, {Key: "type", Value: "collection"}}
		if !nameOnly {
			info := bson.D{{Key: "readOnly", Value: false}}
			entry = append(entry, bson.E{Key: "options", Value: bson.D{}}, bson.E{Key: "info", Value: info},
				bson.E{Key: "idIndex", Value: bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "name", Value: "_id_"}}})
		}
		raw, err := bson.Marshal(entry)
		if err != nil {
			return ErrorReply(err), nil
		}
		if filter != nil && !filter.Match(raw) {
			continue
		}
		docs = append(docs, raw)
	}
	return cursorReply(0, ns, "firstBatch", docs)
}

// splitColl splits "db.coll" at the first dot.
func splitColl(ns string) (db, coll string, ok bool) {
	for i := 0; i < len(ns); i++ {
		if ns[i] == '.' {
			return ns[:i], ns[i+1:], true
		}
	}
	return ns, "", false
}
