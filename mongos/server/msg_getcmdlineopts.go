package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:      "getCmdLineOpts",
		Help:      "the router's command line: argv and the parsed options",
		Handler:   handleGetCmdLineOpts,
		AdminOnly: true,
	})
}

func handleGetCmdLineOpts(_ context.Context, s *Server, _ *Request) (bson.Raw, error) {
	argv := bson.A{}
	for _, a := range s.opts.CmdLine {
		argv = append(argv, a)
	}
	parsed := bson.M{}
	for k, v := range s.opts.Parsed {
		parsed[k] = v
	}
	return okReply(
		bson.E{Key: "argv", Value: argv},
		bson.E{Key: "parsed", Value: parsed},
	)
}
