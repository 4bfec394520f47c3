package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:      "balancerStatus",
		Help:      "the balancer's mode from the catalog's settings (full or off); rounds are not counted yet",
		Handler:   handleBalancerStatus,
		AdminOnly: true,
	})
	register(Command{
		Name:      "balancerStart",
		Help:      "enable the balancer in the catalog's settings",
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

func handleBalancerStatus(ctx context.Context, s *Server, _ *Request) (bson.Raw, error) {
	_, _, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	bs, err := cat.GetBalancerSettings(ctx)
	if err != nil {
		return ErrorReply(mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the balancer settings: %v", err)), nil
	}
	return okReply(bson.E{Key: "mode", Value: balancerMode(bs)}, bson.E{Key: "inBalancerRound", Value: false},
		bson.E{Key: "numBalancerRounds", Value: int64(0)})
}

// setBalancer answers balancerStart and balancerStop: it flips the
// enabled flag of the catalog's balancer settings.
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
	return okReply()
}
