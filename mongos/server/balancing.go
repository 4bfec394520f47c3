package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/balancer"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/logging"
)

// The router's side of balancing: the adapters that let package balancer
// split chunks (Splitter), publish its status (StatusPublisher) and move
// chunks (Mover, in movechunk.go) through this router's backend, and the
// changelog entries every chunk change records. The decisions stay in
// package balancer; nothing here plans.

// BalancerHandle is the part of *balancer.Balancer the commands use.
type BalancerHandle interface {
	Status() balancer.Status
	// Wake starts the leader's next round now (balancerStart, addShard,
	// removeShard).
	Wake()
}

var _ BalancerHandle = (*balancer.Balancer)(nil)

// wakeBalancer wakes this router's balancer, if it runs one. Only the
// leader's wake matters; another router's is harmless.
func (s *Server) wakeBalancer() {
	if s.opts.Balancer != nil {
		s.opts.Balancer.Wake()
	}
}

// Splitter splits oversized chunks for the balancer with SplitIfNeeded.
type Splitter struct {
	Backend AdminBackend
	// Server names the router in the changelog.
	Server string
	Logger zerolog.Logger
}

var _ balancer.Splitter = (*Splitter)(nil)

// SplitOversized implements balancer.Splitter.
func (sp *Splitter) SplitOversized(ctx context.Context, coll balancer.Collection, maxBytes int64) (balancer.SplitResult, error) {
	var res balancer.SplitResult
	var errs []error
	for _, ch := range coll.Chunks {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		out, err := SplitIfNeeded(ctx, sp.Backend, coll.NS, ch.Chunk, maxBytes)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out.Jumbo {
			res.Jumbo = append(res.Jumbo, ch.Chunk)
		}
		if len(out.Chunks) > 1 {
			res.Split++
			sp.Logger.Info().Str(logging.FieldOp, "split").Str(logging.FieldNS, coll.NS).Stringer("chunk", ch.Chunk).
				Int("pieces", len(out.Chunks)).Int64("dataSize", out.DataSize).Int64("docs", out.NumDocs).Msg("split an oversized chunk")
			what := "split"
			if len(out.Chunks) > 2 {
				what = "multi-split"
			}
			recordChange(ctx, sp.Backend, sp.Server, what, coll.NS, sp.Logger,
				bson.E{Key: "before", Value: bson.D{{Key: "min", Value: ch.Min}, {Key: "max", Value: ch.Max}, {Key: "shard", Value: ch.Shard}}},
				bson.E{Key: "number", Value: int32(len(out.Chunks))},
				bson.E{Key: "dataSize", Value: out.DataSize}, bson.E{Key: "numDocs", Value: out.NumDocs})
		}
	}
	return res, errors.Join(errs...)
}

// StatusPublisher stores the balancer leader's status in the catalog.
type StatusPublisher struct{ Backend AdminBackend }

var _ balancer.Publisher = StatusPublisher{}

// PublishStatus implements balancer.Publisher.
func (p StatusPublisher) PublishStatus(ctx context.Context, st balancer.Status) error {
	cat, err := p.Backend.Catalog()
	if err != nil {
		return err
	}
	doc, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode balancer status: %w", err)
	}
	return cat.PutBalancerStatus(ctx, doc)
}

// publishedStatus reads the leader's last published status (ok false if
// none was published).
func publishedStatus(ctx context.Context, cat *catalog.Catalog) (balancer.Status, bool, error) {
	doc, err := cat.GetBalancerStatus(ctx)
	if err != nil || doc == nil {
		return balancer.Status{}, false, err
	}
	var st balancer.Status
	if err := json.Unmarshal(doc, &st); err != nil {
		return balancer.Status{}, false, fmt.Errorf("decode the published balancer status: %w", err)
	}
	return st, true, nil
}

// recordChange appends a changelog entry; a failure is logged, never
// returned: the history must not fail the change it records.
func recordChange(ctx context.Context, b AdminBackend, server, what, ns string, log zerolog.Logger, details ...bson.E) {
	cat, err := b.Catalog()
	if err == nil {
		err = appendChange(ctx, cat, server, what, ns, details...)
	}
	if err != nil {
		log.Warn().Err(err).Str("what", what).Str(logging.FieldNS, ns).Msg("cannot record the change in the changelog")
	}
}

func appendChange(ctx context.Context, cat *catalog.Catalog, server, what, ns string, details ...bson.E) error {
	d, err := bson.MarshalExtJSON(bson.D(details), true, false)
	if err != nil {
		return fmt.Errorf("encode changelog details: %w", err)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return cat.AppendChangelog(cctx, catalog.ChangelogEntry{Server: server, What: what, NS: ns, Details: string(d)})
}

// changelogDoc is a config.changelog document in MongoDB's shape.
func changelogDoc(e catalog.ChangelogEntry) bson.D {
	doc := bson.D{{Key: "_id", Value: e.ID}, {Key: "server", Value: e.Server}, {Key: "clientAddr", Value: ""},
		{Key: "time", Value: bson.NewDateTimeFromTime(e.Time)}, {Key: "what", Value: e.What}, {Key: "ns", Value: e.NS}}
	var details bson.D
	if e.Details != "" && bson.UnmarshalExtJSON([]byte(e.Details), true, &details) == nil {
		doc = append(doc, bson.E{Key: "details", Value: details})
	} else {
		doc = append(doc, bson.E{Key: "details", Value: bson.D{}})
	}
	return doc
}
