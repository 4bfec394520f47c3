package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:    "refreshSessions",
		Help:    "keep logical sessions alive: { refreshSessions: [ <lsid>, ... ] }",
		Handler: handleRefreshSessions,
	})
}

func handleRefreshSessions(_ context.Context, _ *Server, req *Request) (bson.Raw, error) {
	return sessionListReply(req)
}
