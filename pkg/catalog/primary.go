package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// ttlSeconds rounds a TTL up to whole seconds (etcd leases are in seconds).
func ttlSeconds(ttl time.Duration) int64 {
	s := int64(math.Ceil(ttl.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}

// PrimaryLease is a held primary lease of one shard. It is safe for
// concurrent use. Its two goroutines (renewal and key watch) are owned by
// the lease and end when the lease is lost or revoked.
type PrimaryLease struct {
	Shard   string
	Member  string
	Term    int64
	LeaseID clientv3.LeaseID
	// TTL is the TTL etcd granted.
	TTL time.Duration

	c      *Catalog
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup

	mu        sync.Mutex
	validTill time.Time // conservative end of the lease (see ValidUntil)
	lost      error
}

// Done is closed when the lease is lost (keepalive failed for the TTL, the
// lease expired or was revoked, the primary key was deleted or rewritten)
// or given up with Revoke.
func (l *PrimaryLease) Done() <-chan struct{} { return l.done }

// Err returns why the lease ended (nil while held).
func (l *PrimaryLease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// ValidUntil is a conservative bound on when etcd may expire the lease:
// the time the last successful renewal request was sent plus the TTL,
// minus 5% of the TTL for clock rate differences. A primary must stop
// accepting writes once time.Now() passes it (fencing, DESIGN §4).
func (l *PrimaryLease) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validTill
}

// Context returns a context that is cancelled when the lease ends or
// parent is done: leadership as a context for the primary's write path.
func (l *PrimaryLease) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		select {
		case <-l.done:
			cancel(fmt.Errorf("primary lease of %s term %d lost: %w", l.Shard, l.Term, ErrPrimaryHeld))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// Revoke gives the lease up: it stops the keepalive and revokes the etcd
// lease, which deletes the primary key at once so a new election can
// start. Safe to call more than once.
func (l *PrimaryLease) Revoke(ctx context.Context) error {
	l.end(fmt.Errorf("primary lease of %s revoked", l.Shard))
	l.wg.Wait()
	_, err := l.c.cli.Revoke(ctx, l.LeaseID)
	if err != nil && !isLeaseNotFound(err) {
		return fmt.Errorf("revoke primary lease of %s: %w", l.Shard, err)
	}
	return nil
}

func (l *PrimaryLease) end(why error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return
	}
	l.lost = why
	l.cancel()
	close(l.done)
}

// AcquirePrimary takes the primary lease of shard for member, with a new
// term. In one Txn: the shard exists, no primary key exists, and the term
// key is unchanged since read; then the primary key {member, term} is put
// under a fresh etcd lease and the term key set to last+1 — so terms only
// grow and at most one member holds the lease. ErrPrimaryHeld if another
// (or the same) member holds it, ErrConflict if a concurrent acquisition
// moved the term, ErrNotFound (ShardNotFound) for an unknown shard.
func (c *Catalog) AcquirePrimary(ctx context.Context, shard, member string, ttl time.Duration) (*PrimaryLease, error) {
	return c.acquirePrimary(ctx, shard, member, ttl, 0)
}

// AcquirePrimaryTerm is AcquirePrimary for exactly term: it fails with
// ErrConflict unless the last term handed out is term-1. An election uses
// it because its voters promised that term (DESIGN §4).
func (c *Catalog) AcquirePrimaryTerm(ctx context.Context, shard, member string, ttl time.Duration, term int64) (*PrimaryLease, error) {
	if term < 1 {
		return nil, fmt.Errorf("acquire primary of %s: term %d must be positive", shard, term)
	}
	return c.acquirePrimary(ctx, shard, member, ttl, term)
}

func (c *Catalog) acquirePrimary(ctx context.Context, shard, member string, ttl time.Duration, want int64) (*PrimaryLease, error) {
	tresp, err := c.cli.Get(ctx, c.termKey(shard))
	if err != nil {
		return nil, fmt.Errorf("etcd get term of %s: %w", shard, err)
	}
	var last termRecord
	var termCmp clientv3.Cmp
	if len(tresp.Kvs) == 0 {
		termCmp = clientv3.Compare(clientv3.CreateRevision(c.termKey(shard)), "=", 0)
	} else {
		if err := json.Unmarshal(tresp.Kvs[0].Value, &last); err != nil {
			return nil, corrupt(c.termKey(shard), err)
		}
		termCmp = clientv3.Compare(clientv3.ModRevision(c.termKey(shard)), "=", tresp.Kvs[0].ModRevision)
	}
	if want > 0 && last.Term != want-1 {
		return nil, coded(ErrConflict, mongoerr.ElectionInProgress, "term %d of shard %q is taken: the last term handed out is %d", want, shard, last.Term)
	}
	// The lease's countdown starts no earlier than this.
	sent := time.Now()
	grant, err := c.cli.Grant(ctx, ttlSeconds(ttl))
	if err != nil {
		return nil, fmt.Errorf("etcd grant lease for primary of %s: %w", shard, err)
	}
	term := last.Term + 1
	resp, err := c.commit(ctx, "acquire primary of "+shard, c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(c.shardKey(shard)), ">", 0),
			clientv3.Compare(clientv3.CreateRevision(c.primaryKey(shard)), "=", 0),
			termCmp).
		Then(clientv3.OpPut(c.primaryKey(shard), mustJSON(PrimaryInfo{Member: member, Term: term}), clientv3.WithLease(grant.ID)),
			clientv3.OpPut(c.termKey(shard), mustJSON(termRecord{Term: term}))).
		Else(clientv3.OpGet(c.shardKey(shard)), clientv3.OpGet(c.primaryKey(shard))))
	if err != nil {
		c.revokeQuietly(grant.ID)
		return nil, err
	}
	if !resp.Succeeded {
		c.revokeQuietly(grant.ID)
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return nil, coded(ErrNotFound, mongoerr.ShardNotFound, "shard %q not found", shard)
		}
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			var p PrimaryInfo
			_ = json.Unmarshal(kvs[0].Value, &p)
			return nil, coded(ErrPrimaryHeld, mongoerr.ElectionInProgress, "shard %q already has primary %q in term %d", shard, p.Member, p.Term)
		}
		return nil, coded(ErrConflict, mongoerr.ElectionInProgress, "term of shard %q moved during the acquisition", shard)
	}
	rev := resp.Header.Revision
	lctx, cancel := context.WithCancel(context.Background())
	l := &PrimaryLease{Shard: shard, Member: member, Term: term, LeaseID: grant.ID,
		TTL: time.Duration(grant.TTL) * time.Second, c: c, cancel: cancel, done: make(chan struct{})}
	l.validTill = sent.Add(l.TTL - l.TTL/20)
	wch := c.cli.Watch(lctx, c.primaryKey(shard), clientv3.WithRev(rev+1))
	l.wg.Add(2)
	go l.keepAlive(lctx)
	go l.watch(lctx, wch)
	c.log.Info().Str("shard", shard).Str("member", member).Int64("term", term).Msg("primary lease acquired")
	return l, nil
}

// keepAlive renews the lease every TTL/4 with KeepAliveOnce, timing each
// request itself: etcd renews the lease when it receives the request, so
// "sent + TTL" is a lower bound on the lease's end, which ValidUntil
// reports (minus 5%). clientv3's KeepAlive does not say when the request
// behind an answer was sent, and with a 1 s TTL its 500 ms cadence leaves
// no usable margin. A renewal that has not answered by ValidUntil, or an
// answer saying the lease is gone, ends the lease.
func (l *PrimaryLease) keepAlive(ctx context.Context) {
	defer l.wg.Done()
	every := max(l.TTL/4, 100*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		deadline := l.ValidUntil()
		if !time.Now().Before(deadline) {
			l.end(fmt.Errorf("primary lease of %s term %d: not renewed within the TTL", l.Shard, l.Term))
			// We no longer act as primary; if etcd still holds the lease,
			// free the key now so an election need not wait for expiry.
			l.c.revokeQuietly(l.LeaseID)
			return
		}
		sent := time.Now()
		kctx, cancel := context.WithDeadline(ctx, deadline)
		resp, err := l.c.cli.KeepAliveOnce(kctx, l.LeaseID)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && resp.TTL > 0:
			ttl := time.Duration(resp.TTL) * time.Second
			l.mu.Lock()
			if v := sent.Add(ttl - ttl/20); v.After(l.validTill) {
				l.validTill = v
			}
			l.mu.Unlock()
		case err == nil || isLeaseNotFound(err):
			l.end(fmt.Errorf("primary lease of %s term %d expired", l.Shard, l.Term))
			return
		default:
			l.c.log.Warn().Err(err).Str("shard", l.Shard).Msg("primary lease renewal failed; retrying until the TTL runs out")
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watch ends the lease when its key is deleted or rewritten by anyone
// else (an operator, a bug): the key, not just the lease, is the truth.
func (l *PrimaryLease) watch(ctx context.Context, wch clientv3.WatchChan) {
	defer l.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case wr, ok := <-wch:
			if !ok {
				if ctx.Err() == nil {
					l.end(fmt.Errorf("primary lease of %s: watch ended", l.Shard))
				}
				return
			}
			if err := wr.Err(); err != nil {
				l.end(fmt.Errorf("primary lease of %s: watch: %w", l.Shard, err))
				return
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					l.end(fmt.Errorf("primary key of %s term %d deleted", l.Shard, l.Term))
					return
				}
				var p PrimaryInfo
				if json.Unmarshal(ev.Kv.Value, &p) != nil || p.Term != l.Term || ev.Kv.Lease != int64(l.LeaseID) {
					l.end(fmt.Errorf("primary key of %s rewritten by another holder", l.Shard))
					return
				}
			}
		}
	}
}

func (c *Catalog) revokeQuietly(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = c.cli.Revoke(ctx, id) // best effort: the lease expires by itself otherwise
}

// GetPrimary returns the current primary of a shard; ErrNotFound if no
// member holds the lease.
func (c *Catalog) GetPrimary(ctx context.Context, shard string) (PrimaryInfo, error) {
	var p PrimaryInfo
	_, err := c.getJSON(ctx, c.primaryKey(shard), &p)
	if err == ErrNotFound {
		return PrimaryInfo{}, coded(ErrNotFound, mongoerr.NotYetInitialized, "shard %q has no primary", shard)
	}
	return p, err
}

// ElectionView reads, at one revision, the last term handed out for a
// shard and its current primary (present false when none holds the
// lease). A candidate that sees no primary here knows that any primary
// appearing later gets a term newer than the one it read.
func (c *Catalog) ElectionView(ctx context.Context, shard string) (term int64, primary PrimaryInfo, present bool, err error) {
	resp, err := c.cli.Txn(ctx).Then(clientv3.OpGet(c.termKey(shard)), clientv3.OpGet(c.primaryKey(shard))).Commit()
	if err != nil {
		return 0, PrimaryInfo{}, false, fmt.Errorf("etcd read term and primary of %s: %w", shard, err)
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		var t termRecord
		if err := json.Unmarshal(kvs[0].Value, &t); err != nil {
			return 0, PrimaryInfo{}, false, corrupt(c.termKey(shard), err)
		}
		term = t.Term
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := json.Unmarshal(kvs[0].Value, &primary); err != nil {
			return 0, PrimaryInfo{}, false, corrupt(c.primaryKey(shard), err)
		}
		present = true
	}
	return term, primary, present, nil
}

// CurrentTerm returns the last term handed out for a shard (0 if none).
func (c *Catalog) CurrentTerm(ctx context.Context, shard string) (int64, error) {
	var t termRecord
	_, err := c.getJSON(ctx, c.termKey(shard), &t)
	if err == ErrNotFound {
		return 0, nil
	}
	return t.Term, err
}

// PrimaryChange is one observation of a shard's primary key. Present is
// false when no member holds the lease (Member empty, Term 0).
type PrimaryChange struct {
	PrimaryInfo
	Present  bool
	Revision int64
}

// ObservePrimary sends the shard's current primary, then every change,
// until ctx is done; the channel is closed then. A slow reader only delays
// later sends (the channel has a small buffer). It survives watch
// cancellation and compaction by re-reading the key.
func (c *Catalog) ObservePrimary(ctx context.Context, shard string) <-chan PrimaryChange {
	out := make(chan PrimaryChange, 4)
	go func() {
		defer close(out)
		key := c.primaryKey(shard)
		send := func(ch PrimaryChange) bool {
			select {
			case out <- ch:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for ctx.Err() == nil {
			resp, err := c.cli.Get(ctx, key)
			if err != nil {
				if !sleepCtx(ctx, 100*time.Millisecond) {
					return
				}
				continue
			}
			cur := PrimaryChange{Revision: resp.Header.Revision}
			if len(resp.Kvs) > 0 && json.Unmarshal(resp.Kvs[0].Value, &cur.PrimaryInfo) == nil {
				cur.Present = true
			}
			if !send(cur) {
				return
			}
			wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for wr := range c.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					ch := PrimaryChange{Revision: ev.Kv.ModRevision}
					if ev.Type == mvccpb.PUT && json.Unmarshal(ev.Kv.Value, &ch.PrimaryInfo) == nil {
						ch.Present = true
					}
					if !send(ch) {
						wcancel()
						return
					}
				}
			}
			wcancel()
		}
	}()
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func isLeaseNotFound(err error) bool { return errorsIs(err, rpctypes.ErrLeaseNotFound) }
