package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// movePrimary (docs/design/migrations.md, "movePrimary"): a database's
// unsharded collections live on its primary shard; movePrimary copies
// each of them to the new primary with the migration protocol (the whole
// _id range as the "chunk") and switches the database's primary in one
// catalog transaction. Unlike a chunk migration, the donor's critical
// section is entered before the clone, as MongoDB's movePrimary blocks
// writes to the database's unsharded collections while it runs: there is
// no catch-up, and the commit covers every collection at once. A stale
// router's request to the old primary is refused by the shard's version
// check (an UNSHARDED request is stale on a shard that is not the
// database's primary) and retried at the new one.

// MovePrimaryCriticalSection bounds how long movePrimary may block the
// donor's writes to the database (the donor ends the section by itself,
// as aborted, after this; the commit is not attempted past half of it).
const MovePrimaryCriticalSection = 2 * time.Minute

// MovePrimaryStats is what a movePrimary did.
type MovePrimaryStats struct {
	Collections []string
	Docs, Bytes int64
	// Blocked is how long the donor's writes to the collections waited.
	Blocked time.Duration
}

func init() {
	register(Command{
		Name:    "movePrimary",
		Aliases: []string{"moveprimary"},
		Help: "move a database's primary shard, with its unsharded collections, to another shard: " +
			"{movePrimary: <db>, to: <shard>}",
		Handler:   handleMovePrimary,
		AdminOnly: true,
	})
}

func handleMovePrimary(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	v := req.Doc.Index(0).Value()
	db, ok := v.StringValueOK()
	if !ok || db == "" {
		return errReply(mongoerr.TypeMismatch, "BSON field 'movePrimary.movePrimary' is the wrong type '%s', expected type 'string'", typeName(v.Type))
	}
	tv, err := req.Doc.LookupErr("to")
	if err != nil {
		return errReply(mongoerr.FailedToParse, "BSON field 'movePrimary.to' is missing but a required field")
	}
	to, ok := tv.StringValueOK()
	if !ok || to == "" {
		return errReply(mongoerr.TypeMismatch, "BSON field 'movePrimary.to' is the wrong type '%s', expected type 'string'", typeName(tv.Type))
	}
	if db == "admin" || db == "config" || db == "local" {
		return errReply(mongoerr.InvalidOptions, "Can't move primary for %s database", db)
	}
	ab, _, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	start := time.Now()
	st, err := MovePrimary(ctx, ab, cat, db, to, s.opts.Name, s.opts.Logger)
	if err != nil {
		return ErrorReply(err), nil
	}
	return okReply(bson.E{Key: "primary", Value: to}, bson.E{Key: "collections", Value: int32(len(st.Collections))},
		bson.E{Key: "millis", Value: time.Since(start).Milliseconds()})
}

// MovePrimary moves db's primary to shard to with its unsharded
// collections. An error means nothing changed in the catalog (the copies
// made on to are dropped), except errors wrapping ErrMoveOutcomeUnknown.
func MovePrimary(ctx context.Context, ab AdminBackend, cat *catalog.Catalog, db, to, server string, log0 zerolog.Logger) (MovePrimaryStats, error) {
	var st MovePrimaryStats
	if err := ab.Refresh(ctx); err != nil {
		return st, err
	}
	d, err := cat.GetDatabase(ctx, db)
	if errors.Is(err, catalog.ErrNotFound) {
		return st, mongoerr.New(mongoerr.NamespaceNotFound, "Database %s not found", db)
	}
	if err != nil {
		return st, err
	}
	rt, err := ab.Routing()
	if err != nil {
		return st, err
	}
	target, ok := findShard(rt, to)
	if !ok {
		return st, mongoerr.New(mongoerr.ShardNotFound, "Shard %s not found", to)
	}
	if d.PrimaryShard == to {
		return st, nil // MongoDB answers ok: it is already the primary
	}
	if target.State != catalog.ShardActive {
		return st, mongoerr.New(mongoerr.IllegalOperation, "movePrimary of %s to %s: that shard is draining", db, to)
	}
	from := d.PrimaryShard
	log := log0.With().Str(logging.FieldOp, "movePrimary").Str("db", db).Str("from", from).Str("to", to).Logger()

	// The unsharded collections are those the donor holds that the
	// catalog does not shard.
	donorConn, err := ab.Shard(from)
	if err != nil {
		return st, err
	}
	names, err := donorConn.ListCollections(ctx, db)
	if err != nil {
		return st, fmt.Errorf("list the collections of %s on %s: %w", db, from, err)
	}
	slices.Sort(names)
	idKey := catalog.ShardKey{{Field: "_id"}}
	whole := catalog.Chunk{Min: mustRawDoc(bson.D{{Key: "_id", Value: bson.MinKey{}}}), Max: mustRawDoc(bson.D{{Key: "_id", Value: bson.MaxKey{}}}), Shard: from}
	var movers []*mover
	for _, name := range names {
		// The shard lists full namespaces.
		name = strings.TrimPrefix(name, db+".")
		ns := db + "." + name
		if c, ok := rt.Collection(ns); (ok && c.Sharded) || strings.HasPrefix(name, "system.") {
			continue
		}
		movers = append(movers, &mover{ab: ab, cat: cat, ns: ns, key: idKey, chunk: whole, to: to, start: time.Now(),
			o:   MoveChunkOptions{CriticalSection: MovePrimaryCriticalSection, Logger: log},
			log: log.With().Str(logging.FieldNS, ns).Logger()})
		st.Collections = append(st.Collections, ns)
	}
	recordChange(ctx, ab, server, "movePrimary.start", db, log, bson.E{Key: "from", Value: from}, bson.E{Key: "to", Value: to},
		bson.E{Key: "collections", Value: int32(len(movers))})
	committed, unknown := false, false
	defer func() {
		if !committed && !unknown {
			for _, m := range movers {
				m.abort()
			}
		}
	}()
	blockStart := time.Now()
	for _, m := range movers {
		if err := m.connect(ctx); err != nil {
			return st, err
		}
		if err := m.startRecv(ctx); err != nil {
			return st, err
		}
		if err := m.enterCriticalSection(ctx); err != nil {
			return st, err
		}
		if err := m.clone(ctx); err != nil {
			return st, err
		}
		if err := m.catchUp(ctx, "drain", 0); err != nil {
			return st, err
		}
		if err := m.majority(ctx); err != nil {
			return st, err
		}
		st.Docs += m.stats.Docs
		st.Bytes += m.stats.Bytes
	}
	if time.Since(blockStart) > MovePrimaryCriticalSection/2 {
		return st, mongoerr.New(mongoerr.ExceededTimeLimit, "movePrimary of %s: the copy took %v, longer than half the critical section's bound (%v); aborted",
			db, time.Since(blockStart).Round(time.Millisecond), MovePrimaryCriticalSection)
	}
	nd, err := cat.SetPrimaryShard(ctx, db, to, d.ModRevision)
	if err != nil {
		// Re-read even when ctx ended: the outcome must be known.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), moveCleanupTimeout)
		cur, rerr := cat.GetDatabase(rctx, db)
		cancel()
		switch {
		case rerr != nil:
			unknown = true
			return st, fmt.Errorf("%w: movePrimary commit: %v; re-reading the database: %v", ErrMoveOutcomeUnknown, err, rerr)
		case cur.PrimaryShard != to:
			return st, err
		}
		nd = cur
	}
	committed = true
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), moveCleanupTimeout)
	defer cancel()
	for _, m := range movers {
		m.committed = true
		m.release(cctx, nd.ModRevision)
	}
	st.Blocked = time.Since(blockStart)
	// The donor's copies: deleted by the recorded range deletions, and
	// the emptied collections dropped (best effort; a leftover is
	// invisible, every request to it is stale).
	for _, m := range movers {
		if err := m.waitForDelete(cctx); err == nil {
			if _, err := donorConn.DropCollection(cctx, m.ns); err != nil {
				log.Warn().Err(err).Str(logging.FieldNS, m.ns).Msg("movePrimary: drop the donor's copy")
			}
		}
	}
	if err := ab.Refresh(cctx); err != nil {
		log.Warn().Err(err).Msg("movePrimary committed; refreshing the routing metadata failed")
	}
	log.Info().Int("collections", len(movers)).Int64("docs", st.Docs).Int64("bytes", st.Bytes).Dur("blocked", st.Blocked).Msg("movePrimary done")
	recordChange(ctx, ab, server, "movePrimary.commit", db, log, bson.E{Key: "from", Value: from}, bson.E{Key: "to", Value: to},
		bson.E{Key: "collections", Value: int32(len(movers))}, bson.E{Key: "clonedDocs", Value: st.Docs},
		bson.E{Key: "clonedBytes", Value: st.Bytes}, bson.E{Key: "blockedMillis", Value: st.Blocked.Milliseconds()})
	return st, nil
}

func mustRawDoc(d bson.D) bson.Raw {
	b, err := bson.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("marshal %v: %v", d, err)) // a literal of two keys: cannot fail
	}
	return b
}
