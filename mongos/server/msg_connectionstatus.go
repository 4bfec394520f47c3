package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:    "connectionStatus",
		Help:    "the connection's authenticated users and roles (none: PSDB has no authentication)",
		Handler: handleConnectionStatus,
	})
}

func handleConnectionStatus(_ context.Context, _ *Server, req *Request) (bson.Raw, error) {
	showPrivileges := false
	if v, err := req.Doc.LookupErr("showPrivileges"); err == nil {
		b, ok := v.BooleanOK()
		if !ok {
			return errReply(mongoerr.TypeMismatch,
				"BSON field 'connectionStatus.showPrivileges' is the wrong type '%s', expected type 'bool'", typeName(v.Type))
		}
		showPrivileges = b
	}
	auth := bson.D{
		{Key: "authenticatedUsers", Value: bson.A{}},
		{Key: "authenticatedUserRoles", Value: bson.A{}},
	}
	if showPrivileges {
		auth = append(auth, bson.E{Key: "authenticatedUserPrivileges", Value: bson.A{}})
	}
	return okReply(bson.E{Key: "authInfo", Value: auth})
}
