package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:    "whatsmyuri",
		Help:    "the client's own address as the server sees it: {you: \"host:port\"}",
		Handler: handleWhatsMyURI,
	})
}

func handleWhatsMyURI(_ context.Context, _ *Server, req *Request) (bson.Raw, error) {
	return okReply(bson.E{Key: "you", Value: req.Conn.Remote})
}
