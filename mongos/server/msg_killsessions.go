package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:    "killSessions",
		Help:    "kill logical sessions and their operations: { killSessions: [ { id: <UUID> }, ... ] }",
		Handler: handleKillSessions,
	})
}

func handleKillSessions(_ context.Context, _ *Server, req *Request) (bson.Raw, error) {
	return sessionListReply(req)
}
