package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/balancer"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name: "balancerStatus",
		Help: "the balancer's mode (from the catalog's settings: full or off), whether a round is running, " +
			"the leader router, migrations in flight, the last errors and why the last round moved what it moved",
		Handler:   handleBalancerStatus,
		AdminOnly: true,
	})
	register(Command{
		Name:      "balancerStart",
		Help:      "enable the balancer in the catalog's settings and start a round",
		Handler:   func(ctx context.Context, s *Server, _ *Request) (bson.Raw, error) { return setBalancer(ctx, s, true) },
		AdminOnly: true,
	})
	register(Command{
		Name:      "balancerStop",
		Help:      "disable the balancer in the catalog's settings (a migration in progress finishes)",
		Handler:   func(ctx context.Context, s *Server, _ *Request) (bson.Raw, error) { return setBalancer(ctx, s, false) },
		AdminOnly: true,
	})
}

// handleBalancerStatus answers with MongoDB's fields (mode,
// inBalancerRound, numBalancerRounds) and PSDB's: the leader router,
// inFlight migrations, lastErrors, the last round's verdict and the
// split counters. The mode is the catalog's; the rest is this router's
// own balancer's status when it leads, else the leader's last published
// status.
func handleBalancerStatus(ctx context.Context, s *Server, _ *Request) (bson.Raw, error) {
	_, _, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	bs, err := cat.GetBalancerSettings(ctx)
	if err != nil {
		return ErrorReply(mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the balancer settings: %v", err)), nil
	}
	var st balancer.Status
	if s.opts.Balancer != nil {
		st = s.opts.Balancer.Status()
		st.LeaderID = s.opts.Name
	}
	if !st.Leader {
		pub, ok, err := publishedStatus(ctx, cat)
		if err != nil {
			return ErrorReply(mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the balancer status: %v", err)), nil
		}
		if ok {
			st = pub
		}
		leader, err := cat.BalancerLeader(ctx)
		if err != nil {
			return ErrorReply(mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the balancer leader: %v", err)), nil
		}
		st.LeaderID = leader
		if leader == "" {
			st.InRound, st.InFlight = false, nil
		}
	}
	return okReply(balancerStatusFields(balancerMode(bs), st)...)
}

// balancerStatusFields renders a status as balancerStatus's reply fields.
func balancerStatusFields(mode string, st balancer.Status) []bson.E {
	inFlight := bson.A{}
	for _, m := range st.InFlight {
		inFlight = append(inFlight, migrationDoc(m))
	}
	lastErrors := bson.A{}
	for _, e := range st.LastErrors {
		d := bson.D{}
		if e.Migration.NS != "" {
			d = migrationDoc(e.Migration)
		}
		d = append(d, bson.E{Key: "errmsg", Value: e.Err}, bson.E{Key: "time", Value: bson.NewDateTimeFromTime(e.At)})
		lastErrors = append(lastErrors, d)
	}
	colls := bson.A{}
	for _, c := range st.LastExplanation.Collections {
		loads := bson.D{}
		for _, l := range c.Loads {
			loads = append(loads, bson.E{Key: l.Shard, Value: l.Load})
		}
		colls = append(colls, bson.D{{Key: "ns", Value: c.NS}, {Key: "imbalance", Value: c.Imbalance},
			{Key: "threshold", Value: c.Threshold}, {Key: "dataSize", Value: c.DataSize},
			{Key: "loads", Value: loads}, {Key: "planned", Value: int32(c.Planned)}, {Key: "why", Value: c.Why}})
	}
	lastRound := bson.D{{Key: "verdict", Value: string(st.LastExplanation.Verdict)}, {Key: "message", Value: st.LastExplanation.Message},
		{Key: "collections", Value: colls}}
	if !st.LastRound.IsZero() {
		lastRound = append(lastRound, bson.E{Key: "time", Value: bson.NewDateTimeFromTime(st.LastRound)})
	}
	jumbo := bson.A{}
	for _, ch := range st.Jumbo {
		jumbo = append(jumbo, bson.D{{Key: "min", Value: ch.Min}, {Key: "max", Value: ch.Max}, {Key: "shard", Value: ch.Shard}})
	}
	return []bson.E{
		{Key: "mode", Value: mode},
		{Key: "inBalancerRound", Value: st.InRound},
		{Key: "numBalancerRounds", Value: st.Rounds},
		{Key: "leader", Value: st.LeaderID},
		{Key: "migrationsSucceeded", Value: st.Moved},
		{Key: "chunksSplit", Value: st.Splits},
		{Key: "inFlight", Value: inFlight},
		{Key: "lastErrors", Value: lastErrors},
		{Key: "lastRound", Value: lastRound},
		{Key: "jumboChunks", Value: jumbo},
	}
}

func migrationDoc(m balancer.Migration) bson.D {
	return bson.D{{Key: "ns", Value: m.NS}, {Key: "min", Value: m.Chunk.Min}, {Key: "max", Value: m.Chunk.Max},
		{Key: "from", Value: m.From}, {Key: "to", Value: m.To}, {Key: "reason", Value: string(m.Reason)}}
}

// setBalancer answers balancerStart and balancerStop: it flips the
// enabled flag of the catalog's balancer settings (and wakes the
// balancer, so a start takes effect now rather than after the interval).
func setBalancer(ctx context.Context, s *Server, enabled bool) (bson.Raw, error) {
	_, _, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	bs, err := cat.GetBalancerSettings(ctx)
	if err != nil {
		return ErrorReply(mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the balancer settings: %v", err)), nil
	}
	bs.Enabled = enabled
	if err := cat.SetBalancerSettings(ctx, bs); err != nil {
		return ErrorReply(err), nil
	}
	s.wakeBalancer()
	return okReply()
}
