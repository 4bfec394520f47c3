package server

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// sessionListReply is the reply of endSessions, killSessions and
// refreshSessions: their argument must be an array of documents (session
// ids), as MongoDB's parser requires; the router holds no per-session
// state to act on yet (cursors and retryable writes will attach to lsid).
func sessionListReply(req *Request) (bson.Raw, error) {
	arg := req.Doc.Lookup(req.Name)
	arr, ok := arg.ArrayOK()
	if !ok {
		return errReply(mongoerr.TypeMismatch,
			"BSON field '%s.%s' is the wrong type '%s', expected type 'array'", req.Name, req.Name, typeName(arg.Type))
	}
	vals, err := arr.Values()
	if err != nil {
		return errReply(mongoerr.InvalidBSON, "%s: %v", req.Name, err)
	}
	for _, v := range vals {
		if _, ok := v.DocumentOK(); !ok {
			return errReply(mongoerr.TypeMismatch,
				"BSON field '%s.%s' is the wrong type '%s', expected type 'object'", req.Name, req.Name, typeName(v.Type))
		}
	}
	return okReply()
}
