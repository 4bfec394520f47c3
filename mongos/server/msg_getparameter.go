package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name: "getParameter",
		Help: "get server parameters: { getParameter: 1, <name>: 1 }, { getParameter: '*' } for all, " +
			"{ getParameter: { showDetails: true, allParameters: true } } with details. " +
			"Parameters: cursorTimeoutMillis, featureCompatibilityVersion, logLevel, quiet",
		Handler:   handleGetParameter,
		AdminOnly: true,
	})
}

// serverParameter is one parameter getParameter knows.
type serverParameter struct {
	name                 string
	value                func(s *Server) any
	atRuntime, atStartup bool
}

// serverParameters are the parameters the router reports, sorted by name.
// featureCompatibilityVersion is reported although a real mongos has none
// (it answers "no option found to get"): mongosh asks for it when it
// connects and shows it, and 7.0 matches ServerVersion.
var serverParameters = []serverParameter{
	{name: "cursorTimeoutMillis", value: func(s *Server) any { return s.opts.CursorTimeout.Milliseconds() }, atRuntime: false, atStartup: true},
	{name: "featureCompatibilityVersion", value: func(*Server) any { return bson.D{{Key: "version", Value: "7.0"}} }},
	{name: "logLevel", value: func(*Server) any { return int32(0) }, atRuntime: false, atStartup: true},
	{name: "quiet", value: func(*Server) any { return false }, atRuntime: false, atStartup: true},
}

func handleGetParameter(_ context.Context, s *Server, req *Request) (bson.Raw, error) {
	arg := req.Doc.Lookup(req.Name)
	all, details := false, false
	switch arg.Type {
	case bson.TypeString:
		all = arg.StringValue() == "*"
	case bson.TypeEmbeddedDocument:
		opts := arg.Document()
		elems, err := opts.Elements()
		if err != nil {
			return errReply(mongoerr.InvalidBSON, "getParameter options: %v", err)
		}
		for _, e := range elems {
			b, ok := e.Value().BooleanOK()
			switch {
			case e.Key() != "showDetails" && e.Key() != "allParameters":
				return errReply(40415, "BSON field 'getParameter.%s' is an unknown field.", e.Key())
			case !ok:
				return errReply(mongoerr.TypeMismatch,
					"BSON field 'getParameter.%s' is the wrong type '%s', expected type 'bool'", e.Key(), typeName(e.Value().Type))
			case e.Key() == "showDetails":
				details = b
			default:
				all = b
			}
		}
	}
	var fields []bson.E
	for _, p := range serverParameters {
		if !all {
			if _, err := req.Doc.LookupErr(p.name); err != nil {
				continue
			}
		}
		v := p.value(s)
		if details {
			v = bson.D{
				{Key: "value", Value: v},
				{Key: "settableAtRuntime", Value: p.atRuntime},
				{Key: "settableAtStartup", Value: p.atStartup},
			}
		}
		fields = append(fields, bson.E{Key: p.name, Value: v})
	}
	if len(fields) == 0 {
		return errReply(mongoerr.InvalidOptions, "no option found to get")
	}
	return okReply(fields...)
}
