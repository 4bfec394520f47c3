package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:    "listCommands",
		Help:    "every command the router knows, sorted by name, with its help text",
		Handler: handleListCommands,
	})
}

func handleListCommands(_ context.Context, s *Server, _ *Request) (bson.Raw, error) {
	cmds := make(bson.D, 0, len(s.table.names))
	for _, n := range s.table.names {
		c, _ := s.table.lookup(n)
		cmds = append(cmds, bson.E{Key: n, Value: bson.D{
			{Key: "help", Value: c.Help},
			{Key: "requiresAuth", Value: false},
			{Key: "secondaryOk", Value: true},
			{Key: "adminOnly", Value: c.AdminOnly},
			{Key: "apiVersions", Value: bson.A{}},
			{Key: "deprecatedApiVersions", Value: bson.A{}},
		}})
	}
	return okReply(bson.E{Key: "commands", Value: cmds})
}
