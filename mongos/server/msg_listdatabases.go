package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/query"
)

func init() {
	register(Command{
		Name:      "listDatabases",
		Help:      "list the databases of the catalog (sizes are not tracked yet: 0); nameOnly and filter supported",
		Handler:   handleListDatabases,
		AdminOnly: true,
	})
}

func handleListDatabases(_ context.Context, s *Server, req *Request) (bson.Raw, error) {
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
	b, rep := s.backend()
	if rep != nil {
		return rep, nil
	}
	rt, err := b.Routing()
	if err != nil {
		return ErrorReply(err), nil
	}
	arr := bson.A{}
	for _, d := range withConfigDB(rt.Databases()) {
		var entry bson.D
		if nameOnly {
			entry = bson.D{{Key: "name", Value: d.Name}}
		} else {
			entry = bson.D{{Key: "name", Value: d.Name}, {Key: "sizeOnDisk", Value: int64(0)}, {Key: "empty", Value: false}}
		}
		if filter != nil {
			raw, err := bson.Marshal(entry)
			if err != nil || !filter.Match(raw) {
				continue
			}
		}
		arr = append(arr, entry)
	}
	if nameOnly {
		return okReply(bson.E{Key: "databases", Value: arr})
	}
	return okReply(bson.E{Key: "databases", Value: arr}, bson.E{Key: "totalSize", Value: int64(0)}, bson.E{Key: "totalSizeMb", Value: int64(0)})
}
