package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:    "killCursors",
		Help:    "close router cursors and their shard cursors",
		Handler: handleKillCursors,
	})
}

func handleKillCursors(_ context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	v, err := req.Doc.LookupErr("cursors")
	arr, ok := v.ArrayOK()
	if err != nil || !ok {
		return errReply(mongoerr.TypeMismatch, "BSON field 'killCursors.cursors' is missing or not an array")
	}
	vals, _ := arr.Values()
	killed, notFound := bson.A{}, bson.A{}
	for _, e := range vals {
		id, ok := e.Int64OK()
		if !ok {
			return errReply(mongoerr.TypeMismatch, "BSON field 'killCursors.cursors' must hold longs, not %s", typeName(e.Type))
		}
		c, found := s.cursors.get(id)
		if !found || c.ns != ns {
			notFound = append(notFound, id)
			continue
		}
		s.cursors.remove(id)
		c.mu.Lock()
		c.killShards()
		c.mu.Unlock()
		killed = append(killed, id)
	}
	return okReply(
		bson.E{Key: "cursorsKilled", Value: killed},
		bson.E{Key: "cursorsNotFound", Value: notFound},
		bson.E{Key: "cursorsAlive", Value: bson.A{}},
		bson.E{Key: "cursorsUnknown", Value: bson.A{}},
	)
}
