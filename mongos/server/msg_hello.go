package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/wire"
)

// Handshake values announced by hello. The wire versions bound what
// drivers speak: every supported driver accepts minWireVersion 0 with a
// maxWireVersion from 17 to 21; 17 (MongoDB 6.0) keeps the Go driver
// v1.11 that benchmark tools embed working, and drivers of MongoDB 7 and 8
// all still accept it.
const (
	MinWireVersion = 0
	MaxWireVersion = 17
	// MaxWriteBatchSize is the largest number of statements in one write
	// command (MongoDB's maxWriteBatchSize).
	MaxWriteBatchSize = 100_000
	// LogicalSessionTimeoutMinutes is announced so that drivers use
	// sessions and retryable writes.
	LogicalSessionTimeoutMinutes = 30
)

func init() {
	register(Command{
		Name:    "hello",
		Help:    "describe the server: a mongos (msg: \"isdbgrid\"), its limits and wire versions",
		Handler: handleHello,
	})
	register(Command{
		Name:    "isMaster",
		Aliases: []string{"ismaster"},
		Help:    "legacy name of hello: the same reply, with ismaster instead of isWritablePrimary",
		Handler: handleHello,
	})
}

// handleHello answers hello, isMaster and ismaster as a mongos does. It
// does not announce compression (none is spoken) nor topologyVersion (the
// streaming hello protocol is not implemented), so drivers poll with plain
// hello and never ask for exhaust.
func handleHello(_ context.Context, s *Server, req *Request) (bson.Raw, error) {
	helloOk := false
	if v, err := req.Doc.LookupErr("helloOk"); err == nil {
		b, ok := v.BooleanOK()
		if !ok {
			// Drivers always send a boolean; MongoDB's IDL parser refuses
			// anything else.
			return errReply(mongoerr.TypeMismatch,
				"BSON field '%s.helloOk' is the wrong type '%s', expected type 'bool'", req.Name, typeName(v.Type))
		}
		helloOk = b
	}
	primaryField := "isWritablePrimary"
	if req.Name != "hello" {
		primaryField = "ismaster"
	}
	fields := []bson.E{
		{Key: primaryField, Value: true},
		{Key: "msg", Value: "isdbgrid"},
		{Key: "maxBsonObjectSize", Value: int32(wire.MaxBSONObjectSize)},
		{Key: "maxMessageSizeBytes", Value: s.opts.MaxMessageBytes},
		{Key: "maxWriteBatchSize", Value: int32(MaxWriteBatchSize)},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(s.opts.Now())},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(LogicalSessionTimeoutMinutes)},
		{Key: "connectionId", Value: number(req.Conn.ID)},
		{Key: "maxWireVersion", Value: int32(MaxWireVersion)},
		{Key: "minWireVersion", Value: int32(MinWireVersion)},
		{Key: "readOnly", Value: false},
	}
	if helloOk && req.Name != "hello" {
		// A client that may switch to hello says so in its legacy
		// handshake; the server confirms it understands hello.
		fields = append(fields, bson.E{Key: "helloOk", Value: true})
	}
	return okReply(fields...)
}
