package main

import (
	"context"
	"strconv"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/configsvr/server"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/opstats"
)

// startLoadReporter starts the config server member's load line every
// log.statsInterval (package opstats). The config server serves no
// MongoDB operations, so the line carries gauges only (etcdGauges). The
// returned stop ends it and waits; with log.statsInterval 0 nothing runs.
func startLoadReporter(ctx context.Context, cl *config.Cluster, node config.Node, log zerolog.Logger, srv *server.Server) (stop func()) {
	if cl.Log.StatsInterval <= 0 {
		return func() {}
	}
	return opstats.Start(ctx, opstats.ReporterOptions{
		Logger:   log,
		Interval: cl.Log.StatsInterval,
		Gauges: func(ctx context.Context) map[string]any {
			return etcdGauges(ctx, srv, node)
		},
	})
}

// etcdGauges are the member's fields of its load line, from etcd's own
// status of this member:
//
//	etcdLeader  name of the etcd leader ("" while there is none)
//	isLeader    whether this member is the leader
//	raftTerm    etcd's raft term; raftIndex its raft index
//	dbSize      bytes of the etcd database file; dbSizeInUse the bytes in use
//	members     etcd members
//	healthy     a leader exists and etcd reports no errors
//	statusError set when etcd could not be asked (healthy is then false)
func etcdGauges(ctx context.Context, srv *server.Server, node config.Node) map[string]any {
	cli := srv.Client()
	st, err := cli.Status(ctx, "http://"+node.Addr)
	if err != nil {
		return map[string]any{"healthy": false, "statusError": err.Error()}
	}
	g := map[string]any{
		"isLeader":    st.Leader != 0 && st.Leader == st.Header.GetMemberId(),
		"raftTerm":    st.RaftTerm,
		"raftIndex":   st.RaftIndex,
		"dbSize":      st.DbSize,
		"dbSizeInUse": st.DbSizeInUse,
		"healthy":     st.Leader != 0 && len(st.Errors) == 0,
	}
	if len(st.Errors) > 0 {
		g["etcdErrors"] = st.Errors
	}
	leader := ""
	if st.Leader != 0 {
		leader = strconv.FormatUint(st.Leader, 16) // the member id, unless the list names it
	}
	if ml, err := cli.MemberList(ctx); err == nil {
		g["members"] = len(ml.Members)
		for _, m := range ml.Members {
			if m.ID == st.Leader && m.Name != "" {
				leader = m.Name
			}
		}
	}
	g["etcdLeader"] = leader
	return g
}
