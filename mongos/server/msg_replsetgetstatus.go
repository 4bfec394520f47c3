package server

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
)

func init() {
	register(Command{
		Name: "replSetGetStatus",
		Help: "the replica-set status of every shard (or of {shard: <name>}) through the router: " +
			"{shards: {<shard>: {set, myState, term, members: [...]}}}",
		Handler:   handleReplSetGetStatus,
		AdminOnly: true,
	})
}

// statusTimeout bounds the Status call to one member.
const statusTimeout = 2 * time.Second

// handleReplSetGetStatus answers per shard with a replSetGetStatus-shaped
// document, asked of the shard's primary (which knows every member's
// progress) or, without a primary, put together from each member's own
// answer. A mongos answers replSetGetStatus with an error; PSDB's router
// answers for its shards instead, under "shards".
func handleReplSetGetStatus(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	_, rt, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	only := ""
	if v, err := req.Doc.LookupErr("shard"); err == nil {
		str, ok := v.StringValueOK()
		if !ok {
			return errReply(mongoerr.TypeMismatch, "shard must be a string")
		}
		only = str
	}
	shards := bson.D{}
	found := false
	for _, sh := range rt.Shards() {
		if only != "" && sh.Name != only {
			continue
		}
		found = true
		shards = append(shards, bson.E{Key: sh.Name, Value: shardReplStatus(ctx, cat, sh)})
	}
	if only != "" && !found {
		return errReply(mongoerr.ShardNotFound, "shard %q not found", only)
	}
	return okReply(bson.E{Key: "shards", Value: shards})
}

// shardReplStatus asks the primary, else every member.
func shardReplStatus(ctx context.Context, cat *catalog.Catalog, sh catalog.Shard) bson.D {
	if p, err := cat.GetPrimary(ctx, sh.Name); err == nil {
		if m, ok := sh.Member(p.Member); ok {
			if st, err := memberStatus(ctx, m.Addr); err == nil && st.GetState() == "PRIMARY" {
				return replStatusDoc(sh, st, nil)
			}
		}
	}
	// No (reachable) primary: each member speaks for itself.
	var own []*shardpb.StatusReply
	errs := map[string]error{}
	for _, m := range sh.Members {
		st, err := memberStatus(ctx, m.Addr)
		if err != nil {
			errs[m.Name] = err
			continue
		}
		own = append(own, st)
	}
	merged := &shardpb.StatusReply{Set: sh.Name, State: "SECONDARY"}
	for _, st := range own {
		merged.Members = append(merged.Members, st.GetMembers()...)
		merged.Term = max(merged.Term, st.GetTerm())
	}
	return replStatusDoc(sh, merged, errs)
}

// memberStatus is one member's Status, bounded by statusTimeout.
func memberStatus(ctx context.Context, addr string) (*shardpb.StatusReply, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	return shardclient.ReplicationStatus(ctx, addr)
}

// stateCode is replSetGetStatus's numeric state.
var stateCode = map[string]int32{"STARTUP": 0, "PRIMARY": 1, "SECONDARY": 2, "RECOVERING": 3}

// replStatusDoc shapes a member's Status answer as replSetGetStatus does:
// set, myState, term, members [{_id, name, health, state, stateStr,
// optime, syncSourceHost, ...}]. Optimes are PSDB's {t: term, i: index}
// rather than MongoDB's timestamps. Members that did not answer are listed
// with health 0 and the reason.
func replStatusDoc(sh catalog.Shard, st *shardpb.StatusReply, errs map[string]error) bson.D {
	byName := map[string]*shardpb.MemberStatus{}
	for _, m := range st.GetMembers() {
		byName[m.GetName()] = m
	}
	members := bson.A{}
	for i, m := range sh.Members {
		d := bson.D{{Key: "_id", Value: int32(i)}, {Key: "name", Value: m.Addr}, {Key: "member", Value: m.Name}}
		ms, ok := byName[m.Name]
		switch {
		case ok && ms.GetHealthy():
			state := ms.GetState()
			d = append(d,
				bson.E{Key: "health", Value: 1.0},
				bson.E{Key: "state", Value: stateCode[state]},
				bson.E{Key: "stateStr", Value: state},
				bson.E{Key: "optime", Value: bson.D{{Key: "t", Value: int64(ms.GetApplied().GetTerm())}, {Key: "i", Value: int64(ms.GetApplied().GetIndex())}}},
				bson.E{Key: "lagMillis", Value: ms.GetLagMs()},
				bson.E{Key: "syncSourceHost", Value: sourceHost(sh, ms.GetSyncSource())},
			)
			if ms.GetLastReportUnixMs() > 0 {
				d = append(d, bson.E{Key: "lastHeartbeatRecv", Value: bson.DateTime(ms.GetLastReportUnixMs())})
			}
		default:
			msg := "not reachable or not healthy"
			if err := errs[m.Name]; err != nil {
				msg = err.Error()
				if e := (*mongoerr.Error)(nil); errors.As(err, &e) {
					msg = e.Msg
				}
			}
			d = append(d, bson.E{Key: "health", Value: 0.0}, bson.E{Key: "state", Value: int32(8)},
				bson.E{Key: "stateStr", Value: "(not reachable/healthy)"}, bson.E{Key: "lastHeartbeatMessage", Value: msg})
		}
		members = append(members, d)
	}
	out := bson.D{
		{Key: "set", Value: sh.Name},
		{Key: "date", Value: bson.DateTime(time.Now().UnixMilli())},
		{Key: "myState", Value: stateCode[st.GetState()]},
		{Key: "term", Value: int64(st.GetTerm())},
	}
	if cp := st.GetCommitPoint(); cp != nil {
		out = append(out, bson.E{Key: "optimes", Value: bson.D{{Key: "lastCommittedOpTime", Value: bson.D{{Key: "t", Value: int64(cp.GetTerm())}, {Key: "i", Value: int64(cp.GetIndex())}}}}})
	}
	if ms := st.GetLeaseExpiryUnixMs(); ms > 0 {
		out = append(out, bson.E{Key: "electionLeaseExpiry", Value: bson.DateTime(ms)})
	}
	return append(out, bson.E{Key: "members", Value: members}, bson.E{Key: "ok", Value: 1.0})
}

func sourceHost(sh catalog.Shard, member string) string {
	if m, ok := sh.Member(member); ok {
		return m.Addr
	}
	return ""
}
