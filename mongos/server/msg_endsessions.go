package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:    "endSessions",
		Help:    "end logical sessions: { endSessions: [ <lsid>, ... ] }",
		Handler: handleEndSessions,
	})
}

func handleEndSessions(_ context.Context, _ *Server, req *Request) (bson.Raw, error) {
	return sessionListReply(req)
}
