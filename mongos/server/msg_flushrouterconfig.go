package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:      "flushRouterConfig",
		Aliases:   []string{"flushrouterconfig"},
		Help:      "bring this router's routing metadata up to the catalog's latest revision",
		Handler:   handleFlushRouterConfig,
		AdminOnly: true,
	})
}

// handleFlushRouterConfig waits until the chunk map has applied every
// catalog change committed before the call. The chunk map is a watched
// cache, so there is nothing to drop: catching up is the whole refresh.
func handleFlushRouterConfig(ctx context.Context, s *Server, _ *Request) (bson.Raw, error) {
	ab, _, _, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	if err := ab.Refresh(ctx); err != nil {
		return ErrorReply(err), nil
	}
	return okReply(bson.E{Key: "flushed", Value: true})
}
