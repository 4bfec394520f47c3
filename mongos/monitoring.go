package main

import (
	"context"
	"maps"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/mongos/server"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/opstats"
)

// startLoadReporter starts the router's load line (package opstats) every
// log.statsInterval, with the commands rec counted and the router's gauges
// (connections, cursors, config servers and shard primaries reached). The
// returned stop ends it and waits; with log.statsInterval 0 nothing runs.
func startLoadReporter(ctx context.Context, cl *config.Cluster, log zerolog.Logger, rec *opstats.Recorder, srv *server.Server, b *server.ClusterBackend) (stop func()) {
	if cl.Log.StatsInterval <= 0 {
		return func() {}
	}
	return opstats.Start(ctx, opstats.ReporterOptions{
		Logger:   log,
		Interval: cl.Log.StatsInterval,
		Recorder: rec,
		Gauges: func(context.Context) map[string]any {
			g := srv.LoadGauges()
			maps.Copy(g, b.LoadGauges())
			return g
		},
	})
}
