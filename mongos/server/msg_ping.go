package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:    "ping",
		Help:    "check that the server answers: {ok: 1}",
		Handler: handlePing,
	})
}

func handlePing(context.Context, *Server, *Request) (bson.Raw, error) {
	return okReply()
}
