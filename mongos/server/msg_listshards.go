package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:      "listShards",
		Aliases:   []string{"listshards"},
		Help:      "list the shards of the catalog: {_id, host: \"<shard>/<member addrs>\", state: 1, draining?}",
		Handler:   handleListShards,
		AdminOnly: true,
	})
}

func handleListShards(_ context.Context, s *Server, _ *Request) (bson.Raw, error) {
	_, rt, _, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	arr := bson.A{}
	for _, sh := range rt.Shards() {
		arr = append(arr, shardDoc(sh))
	}
	return okReply(bson.E{Key: "shards", Value: arr})
}
