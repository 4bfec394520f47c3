package cmd

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/opstats"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/replset"
	"github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/storage"
)

// newOpStats returns the member's recorder, with the types of its load
// line created up front.
func newOpStats() *opstats.Recorder {
	return opstats.NewRecorder(opstats.OpInsert, opstats.OpQuery, opstats.OpUpdate, opstats.OpDelete,
		opstats.OpGetMore, opstats.OpCommand, opstats.OpRepl, opstats.OpReplApply)
}

// startLoadReporter starts the member's load line every log.statsInterval
// (package opstats): the calls rec counted plus the member's replication
// gauges (loadGauges). The returned stop ends it and waits; with
// log.statsInterval 0 nothing runs.
func startLoadReporter(ctx context.Context, o Options, n config.Node, rs *replication, srv *server.Server, rec *opstats.Recorder) (stop func()) {
	if o.Cluster.Log.StatsInterval <= 0 {
		return func() {}
	}
	addrs := map[string]string{}
	if sh, ok := o.Cluster.Shard(n.Shard); ok {
		for _, m := range sh.Members {
			addrs[m.Name] = m.Addr
		}
	}
	return opstats.Start(ctx, opstats.ReporterOptions{
		Logger:   rs.log,
		Interval: o.Cluster.Log.StatsInterval,
		Recorder: rec,
		Gauges: func(ctx context.Context) map[string]any {
			g := loadGauges(ctx, rs.member, rs.eng, addrs)
			g["cursors"] = srv.OpenCursors()
			return g
		},
	})
}

// loadGauges are a member's replication fields of its load line:
//
//	state        PRIMARY | SECONDARY | RECOVERING | STARTUP
//	term         the member's term
//	applied      its newest durable oplog entry, "term:index"
//	commitPoint  the majority commit point it knows, "term:index"
//	healthy      primary: its lease is valid and a majority of members
//	             reported recently; secondary: it has a sync source
//	primary only:
//	  membersHealthy  members that reported recently, self included
//	  lagMs           the largest lag of a member: the age of the oldest
//	                  entry it lacks (replSetGetStatus's lag)
//	  memberLagMs     {member: lag} of every other member
//	  commitLagMs     the age of the oldest entry not yet majority-committed
//	secondary only:
//	  syncSource      the member it pulls from
//	  lagMs           its lag as its sync source (the primary) sees it;
//	                  absent when the source cannot say
//
// It asks only this member, except for a secondary's lag, which one
// Status call to the sync source answers (bounded by ctx).
func loadGauges(ctx context.Context, m *replset.Member, eng *storage.Engine, addrs map[string]string) map[string]any {
	st, err := m.Status(ctx, &shardpb.StatusRequest{})
	if err != nil {
		return map[string]any{"state": m.State().String(), "healthy": false, "statusError": err.Error()}
	}
	now := time.Now()
	g := map[string]any{
		"state":       st.GetState(),
		"term":        st.GetTerm(),
		"applied":     opTimeString(st.GetApplied()),
		"commitPoint": opTimeString(st.GetCommitPoint()),
	}
	switch st.GetState() {
	case replset.StatePrimary.String():
		healthy, maxLag := 0, int64(0)
		lags := map[string]any{}
		for _, ms := range st.GetMembers() {
			if ms.GetHealthy() {
				healthy++
			}
			if ms.GetName() == st.GetMember() {
				continue
			}
			lags[ms.GetName()] = ms.GetLagMs()
			maxLag = max(maxLag, ms.GetLagMs())
		}
		leaseOK := st.GetLeaseExpiryUnixMs() > now.UnixMilli()
		g["membersHealthy"] = fmt.Sprintf("%d/%d", healthy, len(st.GetMembers()))
		g["healthy"] = leaseOK && healthy > len(st.GetMembers())/2
		g["lagMs"] = maxLag
		g["memberLagMs"] = lags
		g["commitLagMs"] = commitLag(eng, st.GetCommitPoint(), now)
	case replset.StateSecondary.String():
		src := st.GetSyncSource()
		g["syncSource"] = src
		g["healthy"] = src != ""
		if lag, ok := lagSeenBySource(ctx, addrs[src], st.GetMember()); ok {
			g["lagMs"] = lag
		}
	default:
		g["healthy"] = false
	}
	return g
}

// commitLag is how long the oldest entry after the commit point has
// existed (0 when every entry is majority-committed).
func commitLag(eng *storage.Engine, cp *shardpb.OpTime, now time.Time) int64 {
	next, err := eng.ReadOplog(storage.OpTime{Term: cp.GetTerm(), Index: cp.GetIndex()}, 1)
	if err != nil || len(next) == 0 {
		return 0
	}
	return max(0, now.Sub(next[0].Wall).Milliseconds())
}

// lagSeenBySource asks the sync source at addr for its replica-set status
// and returns self's lag in it; false when the source is unreachable or
// not a primary (a chained source lists only itself).
func lagSeenBySource(ctx context.Context, addr, self string) (int64, bool) {
	if addr == "" {
		return 0, false
	}
	conn, err := grpc.NewClient(addr, shardclient.DialOptions()...)
	if err != nil {
		return 0, false
	}
	defer conn.Close()
	st, err := shardpb.NewReplicationClient(conn).Status(ctx, &shardpb.StatusRequest{})
	if err != nil {
		return 0, false
	}
	for _, ms := range st.GetMembers() {
		if ms.GetName() == self && st.GetState() == replset.StatePrimary.String() {
			return ms.GetLagMs(), true
		}
	}
	return 0, false
}

func opTimeString(t *shardpb.OpTime) string {
	return fmt.Sprintf("%d:%d", t.GetTerm(), t.GetIndex())
}
