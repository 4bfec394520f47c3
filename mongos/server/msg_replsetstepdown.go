package server

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
)

func init() {
	register(Command{
		Name: "replSetStepDown",
		Help: "ask a shard's primary to step down through the router: {replSetStepDown: <secs>, shard: <name>, " +
			"stepDownSecs?, secondaryCatchUpPeriodSecs?, force?}; answers {shard, member, ok}",
		Handler:   handleReplSetStepDown,
		AdminOnly: true,
	})
}

// stepDownSlack is the time a forwarded StepDown gets beyond the catch-up
// period it asks for.
const stepDownSlack = 10 * time.Second

// replSetStepDownArgs is a parsed replSetStepDown command.
type replSetStepDownArgs struct {
	shard         string
	secs, catchUp int64
	force         bool
}

// parseReplSetStepDown reads MongoDB's {replSetStepDown: <secs>,
// secondaryCatchUpPeriodSecs, force} plus PSDB's shard field (a router has
// no replica set of its own) and stepDownSecs, which wins over the
// command's value. Zero seconds leave the member's defaults (60 and 10).
func parseReplSetStepDown(doc bson.Raw) (replSetStepDownArgs, error) {
	var a replSetStepDownArgs
	first := doc.Index(0).Value()
	if n, ok := first.AsInt64OK(); ok {
		a.secs = n
	} else if first.Type != bson.TypeNull {
		return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'replSetStepDown.replSetStepDown' is the wrong type '%s', expected a number", typeName(first.Type))
	}
	var err error
	if a.secs, err = intArg(doc, "stepDownSecs", a.secs); err != nil {
		return a, err
	}
	if a.catchUp, err = intArg(doc, "secondaryCatchUpPeriodSecs", 0); err != nil {
		return a, err
	}
	if a.force, err = boolArg(doc, "force", false); err != nil {
		return a, err
	}
	if a.secs < 0 || a.catchUp < 0 {
		return a, mongoerr.New(mongoerr.BadValue, "stepDownSecs and secondaryCatchUpPeriodSecs must be non-negative")
	}
	v, err := doc.LookupErr("shard")
	if err != nil {
		return a, mongoerr.New(mongoerr.BadValue, "replSetStepDown through the router needs {shard: <name>}: the router has no replica set of its own")
	}
	s, ok := v.StringValueOK()
	if !ok {
		return a, mongoerr.New(mongoerr.TypeMismatch, "shard must be a string")
	}
	a.shard = s
	return a, nil
}

// handleReplSetStepDown forwards replSetStepDown to the primary of one
// shard (the member holding the shard's primary lease) and answers once
// that member has stepped down or refused (ExceededTimeLimit without a
// caught-up secondary, unless force). Which member is elected next is up
// to the set; the answer names the member that stepped down.
func handleReplSetStepDown(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	a, err := parseReplSetStepDown(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	_, rt, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	sh, ok := findShard(rt, a.shard)
	if !ok {
		return errReply(mongoerr.ShardNotFound, "shard %q not found", a.shard)
	}
	p, err := cat.GetPrimary(ctx, sh.Name)
	if err != nil {
		return ErrorReply(err), nil
	}
	m, ok := sh.Member(p.Member)
	if !ok {
		return errReply(mongoerr.NotWritablePrimary, "shard %q: the primary lease names member %q, which the shard does not list", sh.Name, p.Member)
	}
	catchUp := a.catchUp
	if catchUp == 0 {
		catchUp = 10
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(catchUp)*time.Second+stepDownSlack)
	defer cancel()
	c, err := shardclient.Dial(ctx, m.Addr)
	if err != nil {
		return ErrorReply(mongoerr.Wrap(err, mongoerr.HostUnreachable, "dial %s of shard %s: %v", m.Addr, sh.Name, err)), nil
	}
	defer c.Close()
	_, err = shardpb.NewReplicationClient(c.Conn()).StepDown(ctx, &shardpb.StepDownRequest{
		StepDownSecs: a.secs, SecondaryCatchUpPeriodSecs: a.catchUp, Force: a.force,
	})
	if err != nil {
		return ErrorReply(rpcerr.Error(err)), nil
	}
	return okReply(bson.E{Key: "shard", Value: sh.Name}, bson.E{Key: "member", Value: m.Name}, bson.E{Key: "host", Value: m.Addr})
}
