package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name:      "getShardMap",
		Help:      "the shards' connection strings by name: {map, hosts, connStrings}",
		Handler:   handleGetShardMap,
		AdminOnly: true,
	})
}

func handleGetShardMap(_ context.Context, s *Server, _ *Request) (bson.Raw, error) {
	_, rt, _, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	m, hosts, conns := bson.D{}, bson.D{}, bson.D{}
	for _, sh := range rt.Shards() {
		h := shardHost(sh)
		m = append(m, bson.E{Key: sh.Name, Value: h})
		conns = append(conns, bson.E{Key: h, Value: sh.Name})
		for _, mem := range sh.Members {
			hosts = append(hosts, bson.E{Key: mem.Addr, Value: sh.Name})
		}
	}
	return okReply(bson.E{Key: "map", Value: m}, bson.E{Key: "hosts", Value: hosts}, bson.E{Key: "connStrings", Value: conns})
}
