package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:         "getMore",
		Help:         "return the next batch of a router cursor",
		Handler:      handleGetMore,
		OwnMaxTimeMS: true,
	})
}

func handleGetMore(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	v := req.Doc.Index(0).Value()
	id, ok := v.Int64OK()
	if !ok {
		return errReply(mongoerr.TypeMismatch, "BSON field 'getMore.getMore' is the wrong type '%s', expected type 'long'", typeName(v.Type))
	}
	cv, err := req.Doc.LookupErr("collection")
	coll, isStr := cv.StringValueOK()
	if err != nil || !isStr {
		return errReply(mongoerr.TypeMismatch, "BSON field 'getMore.collection' is missing or not a string")
	}
	ns := req.DB + "." + coll
	req.NS = ns
	n, err := intArg(req.Doc, "batchSize", 0)
	if err != nil {
		return ErrorReply(err), nil
	}
	if n < 0 {
		return errReply(mongoerr.BadValue, "Batch size for getMore must be positive, but received: %d", n)
	}
	c, found := s.cursors.get(id)
	if !found {
		return errReply(mongoerr.CursorNotFound, "cursor id %d not found", id)
	}
	if c.ns != ns {
		return errReply(mongoerr.Unauthorized, "Requested getMore on namespace '%s', but cursor belongs to a different namespace %s", ns, c.ns)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	docs, done, err := c.batch(ctx, int(n))
	c.lastUse = s.opts.Now()
	if err != nil || done {
		s.cursors.remove(id)
		c.killShards()
		if err != nil {
			return ErrorReply(err), nil
		}
		return cursorReply(0, ns, "nextBatch", docs)
	}
	return cursorReply(id, ns, "nextBatch", docs)
}
