package server

import (
	"context"
	"net"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func init() {
	register(Command{
		Name: "serverStatus",
		Help: "the router's state: host, version, process, uptime, connections " +
			"{ current, available, totalCreated }, network requests and per-command counters",
		Handler: handleServerStatus,
	})
}

func handleServerStatus(_ context.Context, s *Server, req *Request) (bson.Raw, error) {
	now := s.opts.Now()
	up := now.Sub(s.started)
	cur := s.currentConns()
	host := s.host
	if _, port, err := net.SplitHostPort(req.Conn.Local); err == nil {
		host += ":" + port
	}
	return okReply(
		bson.E{Key: "host", Value: host},
		bson.E{Key: "version", Value: ServerVersion},
		bson.E{Key: "process", Value: "mongos"},
		bson.E{Key: "pid", Value: int64(os.Getpid())},
		bson.E{Key: "uptime", Value: up.Seconds()},
		bson.E{Key: "uptimeMillis", Value: up.Milliseconds()},
		bson.E{Key: "uptimeEstimate", Value: int64(up / time.Second)},
		bson.E{Key: "localTime", Value: bson.NewDateTimeFromTime(now)},
		bson.E{Key: "connections", Value: bson.D{
			{Key: "current", Value: int32(cur)},
			{Key: "available", Value: int32(s.opts.MaxConnections - cur)},
			{Key: "totalCreated", Value: s.stats.totalCreated.Load()},
		}},
		bson.E{Key: "network", Value: bson.D{
			{Key: "numRequests", Value: s.stats.requests.Load()},
		}},
		bson.E{Key: "metrics", Value: bson.D{
			{Key: "commands", Value: s.stats.commandsDoc()},
		}},
	)
}
