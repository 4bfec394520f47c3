package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name: "getLog",
		Help: "recent log lines kept in memory: { getLog: '*' } lists the logs, " +
			"{ getLog: 'global' } and { getLog: 'startupWarnings' } return them (PSDB keeps none: " +
			"its log goes to the node's log file)",
		Handler:   handleGetLog,
		AdminOnly: true,
	})
}

// logNames are the in-memory logs MongoDB offers; PSDB keeps them empty
// (mongosh shows startupWarnings when it connects).
var logNames = bson.A{"global", "startupWarnings"}

func handleGetLog(_ context.Context, _ *Server, req *Request) (bson.Raw, error) {
	arg := req.Doc.Lookup(req.Name)
	name, ok := arg.StringValueOK()
	if !ok {
		return errReply(mongoerr.TypeMismatch,
			"Argument to getLog must be of type String; found %s of type %s", arg.String(), typeName(arg.Type))
	}
	switch name {
	case "*":
		return okReply(bson.E{Key: "names", Value: logNames})
	case "global", "startupWarnings":
		return okReply(
			bson.E{Key: "totalLinesWritten", Value: int32(0)},
			bson.E{Key: "log", Value: bson.A{}},
		)
	}
	return errReply(mongoerr.OperationFailed, "No log named '%s'", name)
}
