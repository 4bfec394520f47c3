// Package versions is shardd's catalog-backed shard-version checker
// (server.VersionChecker): it decides whether a request the router
// targeted with a given ShardVersion may run on this member's shard, from
// the shard's view of the routing metadata in a catalog.ChunkMap, and
// answers StaleConfig (13388) with MongoDB's errInfo when not. The rule is
// shardversion.Matches; docs/design/shard-versions.md has the protocol.
//
// A mismatch is never answered from a view that may be behind: the
// checker first catches up with the catalog (a linearizable etcd read for
// the current revision, then waiting until the chunk map reflects it) and
// decides again, so a router newer than this shard's cache is served, and
// only a router older than the catalog is refused. A write catches up
// before it is decided at all, so it is never accepted from a view that
// missed a change.
//
// It must never change the catalog, and never answer "matches" from
// anything but the chunk map.
package versions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardversion"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/server"
)

// Defaults of Options.
const (
	DefaultOpenTimeout    = 5 * time.Second
	DefaultRefreshTimeout = 5 * time.Second
)

// Options configure a Checker.
type Options struct {
	// Catalog is the catalog the routing metadata is read from. Required.
	Catalog *catalog.Catalog
	// Shard is the name of this member's shard. Required.
	Shard string
	// Logger should carry the node and shard fields.
	Logger zerolog.Logger
	// OpenTimeout bounds one attempt to load the routing metadata on first
	// use (default DefaultOpenTimeout).
	OpenTimeout time.Duration
	// RefreshTimeout bounds one catch-up with the catalog (default
	// DefaultRefreshTimeout).
	RefreshTimeout time.Duration
	// Term returns the member's current replication term. With it, a
	// write to a sharded collection whose version matches the view is
	// decided from the view once the checker has caught up with the
	// catalog in the current term (see Check); nil: every write catches
	// up first.
	Term func() uint64
}

// routing is the part of *catalog.ChunkMap the checker reads.
type routing interface {
	Collection(ns string) (catalog.Collection, bool)
	Database(name string) (catalog.Database, bool)
	ShardVersion(ns, shard string) (catalog.CollVersion, error)
	WaitForRevision(ctx context.Context, rev int64) error
}

// Checker implements server.VersionChecker over the catalog. It is safe
// for concurrent use. It loads the routing metadata (catalog.OpenChunkMap)
// on the first versioned request, so a member starts serving while the
// config servers are still coming up; Close stops the chunk map's watch.
type Checker struct {
	cat            *catalog.Catalog
	shard          string
	log            zerolog.Logger
	openTimeout    time.Duration
	refreshTimeout time.Duration
	term           func() uint64

	// caughtUpTerm is 1 + the term in which the last catch-up started (0:
	// none yet, or invalidated); gen counts Invalidate calls, so a
	// catch-up that started before one does not restore the trust.
	caughtUpTerm atomic.Uint64
	gen          atomic.Uint64

	// rt is the loaded routing metadata (nil until loaded).
	rt atomic.Pointer[routingRef]

	mu      sync.Mutex
	opening chan struct{} // closed when the running load attempt ends
	closed  bool

	// Catch-ups are shared (refresh): callers that arrive while one runs
	// share the next one, which starts after it.
	rmu       sync.Mutex
	running   bool
	idle      chan struct{} // closed when the running catch-up ends
	pending   *round        // the next catch-up, not started yet
	refreshes atomic.Int64  // catch-ups done (tests, metrics)
}

type routingRef struct {
	r     routing
	close func()
}

type round struct {
	done chan struct{}
	err  error
}

var _ server.VersionChecker = (*Checker)(nil)

// New returns a Checker. It does not contact etcd.
func New(opts Options) (*Checker, error) {
	if opts.Catalog == nil {
		return nil, errors.New("versions.New: Options.Catalog is required")
	}
	if opts.Shard == "" {
		return nil, errors.New("versions.New: Options.Shard is required")
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.RefreshTimeout <= 0 {
		opts.RefreshTimeout = DefaultRefreshTimeout
	}
	return &Checker{cat: opts.Catalog, shard: opts.Shard, openTimeout: opts.OpenTimeout, refreshTimeout: opts.RefreshTimeout, term: opts.Term,
		log: opts.Logger.With().Str(logging.FieldOp, "shardversion").Logger()}, nil
}

// Close stops the chunk map's watch. Later checks fail with
// ShutdownInProgress.
func (c *Checker) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	if ref := c.rt.Swap(nil); ref != nil && ref.close != nil {
		ref.close()
	}
}

// Check implements server.VersionChecker: nil when v matches this shard's
// view of ns (shardversion.Matches), a *shardversion.StaleConfigError
// when it does not. The view is never behind the catalog when it refuses,
// nor when it accepts a write:
//
//   - a read is decided from the chunk map when it matches; a mismatch
//     first catches up with the catalog and decides again, so a router
//     newer than this shard is served, not refused;
//   - a write catches up first, so it is refused even when the router
//     and this shard both missed the same change (their old versions
//     would agree), unless viewTrusted: a sharded version, and a catch-up
//     done in the member's current term since the last Invalidate. A
//     catch-up costs one etcd read, shared by the writes that arrive
//     together.
//
// Errors: Interrupted when ctx ends first, NotYetInitialized while the
// routing metadata cannot be loaded, ShutdownInProgress after Close,
// HostUnreachable when a write cannot catch up (the config servers are
// unreachable).
func (c *Checker) Check(ctx context.Context, ns string, v *shardpb.ShardVersion, write bool) error {
	if v == nil {
		return nil
	}
	received := shardversion.FromProto(v)
	rt, err := c.routing(ctx)
	if err != nil {
		return err
	}
	caughtUp := false
	if write && !c.viewTrusted(received) {
		if err := c.refresh(ctx, rt); err != nil {
			if ctx.Err() != nil {
				return interrupted(ctx, ns)
			}
			return mongoerr.Wrap(err, mongoerr.HostUnreachable,
				"shard %s cannot confirm the routing of %s with the config servers before a write: %v", c.shard, ns, err)
		}
		caughtUp = true
	}
	view, err := c.view(rt, ns)
	if err != nil {
		return err
	}
	if c.matches(rt, ns, received, view) {
		return nil
	}
	if !caughtUp {
		// This shard's view may be the stale one (the router saw a
		// migration, a drop or a shardCollection that the watch has not
		// delivered yet): catch up before refusing.
		if err := c.refresh(ctx, rt); err != nil {
			if ctx.Err() != nil {
				return interrupted(ctx, ns)
			}
			// Refusing is safe: the router refreshes and retries.
			c.log.Warn().Err(err).Str(logging.FieldNS, ns).Msg("cannot catch up with the catalog; answering StaleConfig from the cached view")
		} else if view, err = c.view(rt, ns); err != nil {
			return err
		}
		if c.matches(rt, ns, received, view) {
			return nil
		}
	}
	return shardversion.Stale(shardversion.StaleInfo{NS: ns, Received: received, Wanted: view.Wanted(), ShardID: c.shard})
}

// matches is shardversion.Matches plus the database rule: an unsharded
// collection lives on its database's primary shard, so a request that
// says UNSHARDED is stale on any other shard (the router missed a
// movePrimary). A database the catalog does not know yet (created by this
// very request) is anyone's.
func (c *Checker) matches(rt routing, ns string, received catalog.CollVersion, view shardversion.View) bool {
	if !shardversion.Matches(received, view) {
		return false
	}
	if view.Sharded {
		return true
	}
	db, _, _ := strings.Cut(ns, ".")
	d, ok := rt.Database(db)
	return !ok || d.PrimaryShard == "" || d.PrimaryShard == c.shard
}

// viewTrusted reports whether a write with version received may be
// decided from the chunk map's view without catching up with the catalog
// first. It may when the write is to a sharded collection (a version, not
// UNSHARDED) and the checker has caught up in this member's current term:
// the ownership of a sharded collection's chunks changes only by a
// migration, whose donor lets no write to the range go on before its own
// view shows the commit (the critical section waits for the commit's
// revision), and a recipient's view that lags the router's is a mismatch,
// which catches up before deciding. A new primary catches up once, as its
// predecessor may have released a migration's writes its watch has not
// delivered yet. UNSHARDED writes still catch up every time: the changes
// that make them stale (shardCollection, movePrimary, a drop and
// re-creation) are not fenced on this shard.
func (c *Checker) viewTrusted(received catalog.CollVersion) bool {
	if c.term == nil || shardversion.IsUnsharded(received) {
		return false
	}
	t := c.caughtUpTerm.Load()
	return t != 0 && t == c.term()+1
}

// Invalidate makes the next write catch up with the catalog before it is
// decided (a migration's critical section ended on this shard).
func (c *Checker) Invalidate() {
	c.gen.Add(1)
	c.caughtUpTerm.Store(0)
}

func interrupted(ctx context.Context, ns string) error {
	return mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "shard version check of %s interrupted: %v", ns, ctx.Err())
}

// Refresh makes the checker's view at least as new as the catalog was
// when Refresh was called. A migration's donor calls it (or
// WaitForRevision with the commit's revision) before it lets writes to the
// moved range go on, so no request with the old version is accepted after
// the commit.
func (c *Checker) Refresh(ctx context.Context) error {
	rt, err := c.routing(ctx)
	if err != nil {
		return err
	}
	return c.refresh(ctx, rt)
}

// WaitForRevision waits until the checker's view reflects etcd revision
// rev (for example a migration commit's).
func (c *Checker) WaitForRevision(ctx context.Context, rev int64) error {
	rt, err := c.routing(ctx)
	if err != nil {
		return err
	}
	return rt.WaitForRevision(ctx, rev)
}

// Refreshes returns how many catch-ups with the catalog were made.
func (c *Checker) Refreshes() int64 { return c.refreshes.Load() }

// view returns this shard's view of ns.
func (c *Checker) view(rt routing, ns string) (shardversion.View, error) {
	if coll, ok := rt.Collection(ns); !ok || !coll.Sharded {
		return shardversion.View{}, nil // the common case, answered without building an error
	}
	v, err := rt.ShardVersion(ns, c.shard)
	switch {
	case err == nil:
		return shardversion.View{Sharded: true, Version: v}, nil
	case errors.Is(err, catalog.ErrNotFound):
		// Unknown, dropped or unsharded: an unsharded collection (one
		// that does not exist yet is created unsharded).
		return shardversion.View{}, nil
	}
	return shardversion.View{}, fmt.Errorf("shard version of %s on %s: %w", ns, c.shard, err)
}

// routing returns the routing metadata, loading it on first use. One
// caller loads while the others wait for it (or their ctx).
func (c *Checker) routing(ctx context.Context) (routing, error) {
	for {
		if ref := c.rt.Load(); ref != nil {
			return ref.r, nil
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, mongoerr.New(mongoerr.ShutdownInProgress, "shard %s is shutting down", c.shard)
		}
		if ref := c.rt.Load(); ref != nil {
			c.mu.Unlock()
			return ref.r, nil
		}
		if ch := c.opening; ch != nil {
			c.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "waiting for the routing metadata: %v", ctx.Err())
			}
		}
		ch := make(chan struct{})
		c.opening = ch
		c.mu.Unlock()

		// The load is shared: it must not end because this caller left.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.openTimeout)
		cm, err := c.cat.OpenChunkMap(octx)
		cancel()
		c.mu.Lock()
		c.opening = nil
		close(ch)
		if err == nil {
			if c.closed {
				c.mu.Unlock()
				cm.Close()
				return nil, mongoerr.New(mongoerr.ShutdownInProgress, "shard %s is shutting down", c.shard)
			}
			c.rt.Store(&routingRef{r: cm, close: cm.Close})
		}
		c.mu.Unlock()
		if err != nil {
			return nil, mongoerr.Wrap(err, mongoerr.NotYetInitialized,
				"shard %s cannot load the routing metadata from the config servers to check the shard version: %v", c.shard, err)
		}
		c.log.Info().Msg("routing metadata loaded for shard version checks")
		return cm, nil
	}
}

// refresh catches up with the catalog: one linearizable etcd read gives
// the current revision, then the chunk map is waited for until it
// reflects it. A caller shares the first catch-up that STARTS after it
// arrived (one that was already running may have read an older revision
// than the router's), so a burst of stale requests costs one or two etcd
// reads, not one each.
func (c *Checker) refresh(ctx context.Context, rt routing) error {
	c.rmu.Lock()
	if c.pending == nil {
		c.pending = &round{done: make(chan struct{})}
	}
	r := c.pending
	for c.running {
		idle := c.idle
		c.rmu.Unlock()
		select {
		case <-r.done:
			return r.err
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.rmu.Lock()
	}
	if c.pending != r {
		// Another caller led r while this one waited.
		c.rmu.Unlock()
		<-r.done
		return r.err
	}
	c.running, c.pending, c.idle = true, nil, make(chan struct{})
	c.rmu.Unlock()

	// Shared by every caller of r: not cancelled by this one leaving.
	var term uint64
	if c.term != nil {
		term = c.term()
	}
	gen := c.gen.Load()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.refreshTimeout)
	err := c.catchUp(rctx, rt)
	cancel()
	if err == nil && c.term != nil && c.gen.Load() == gen {
		c.caughtUpTerm.Store(term + 1)
	}
	c.refreshes.Add(1)

	c.rmu.Lock()
	r.err = err
	close(r.done)
	c.running = false
	close(c.idle)
	c.rmu.Unlock()
	return err
}

func (c *Checker) catchUp(ctx context.Context, rt routing) error {
	// ListShards is a linearizable read of a few keys; its revision is
	// the catalog's revision now.
	_, rev, err := c.cat.ListShards(ctx)
	if err != nil {
		return fmt.Errorf("read the catalog revision: %w", err)
	}
	if err := rt.WaitForRevision(ctx, rev); err != nil {
		return fmt.Errorf("wait for the chunk map to reach revision %d: %w", rev, err)
	}
	return nil
}
