// Package repl is the data path of a shard's replication (DESIGN §4): a
// secondary's Puller streams its sync source's oplog and applies it with
// storage.ApplyOplog, then reports its durable optime; a primary's Progress
// tracks the members' durable optimes, computes the majority commit point
// and lets writes wait for their write concern.
//
// It owns no roles: who is primary, terms, votes, leases, rollback and
// initial sync belong to the election layer, which creates a Progress when
// its member becomes primary and a Puller when it becomes a secondary
// (today shardd's static mode does both from cluster.yaml, see
// shardd/cmd). It must never write to the store other than through
// ApplyOplog, and never decide on its own that a member is primary.
package repl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// WriteConcern is the replication part of MongoDB's writeConcern: how many
// members must hold a write (durably) before it is acknowledged.
type WriteConcern struct {
	// Majority is w:"majority"; otherwise N members (w:N, 0 or 1 = the
	// primary alone).
	Majority bool
	N        int
	// Timeout is wtimeout; 0 waits without a limit (as MongoDB does).
	Timeout time.Duration
}

// DefaultWriteConcern is used when a request sets none: w:"majority"
// (issue 5's default), no wtimeout.
var DefaultWriteConcern = WriteConcern{Majority: true}

// WriteConcernFromProto converts a request's write concern. A nil one, or
// one with neither a mode nor a number, is DefaultWriteConcern (keeping its
// wtimeout). Modes other than "majority" (tag sets) are refused with
// UnknownReplWriteConcern (79); a negative w with BadValue (2).
func WriteConcernFromProto(wc *shardpb.WriteConcern) (WriteConcern, error) {
	out := DefaultWriteConcern
	if wc == nil {
		return out, nil
	}
	if wc.GetWtimeoutMs() < 0 {
		return WriteConcern{}, mongoerr.New(mongoerr.BadValue, "wtimeout must be non-negative, got %d", wc.GetWtimeoutMs())
	}
	out.Timeout = time.Duration(wc.GetWtimeoutMs()) * time.Millisecond
	switch mode := wc.GetWMode(); {
	case mode == "majority":
	case mode != "":
		return WriteConcern{}, mongoerr.New(mongoerr.UnknownReplWriteConcern, "No write concern mode named '%s' found in replica set configuration", mode)
	case wc.GetW() < 0:
		return WriteConcern{}, mongoerr.New(mongoerr.BadValue, "w has to be a non-negative number, got %d", wc.GetW())
	case wc.GetW() > 0:
		out.Majority, out.N = false, int(wc.GetW())
	}
	return out, nil
}

// ProgressOptions configure a Progress.
type ProgressOptions struct {
	// Self is the primary's member name; Members every member of the
	// replica set, Self included (voting members: they all count).
	Self    string
	Members []string
	// SelfDurable returns the primary's own durable optime
	// (storage.Engine.LastOpTime). Required.
	SelfDurable func() storage.OpTime
	// Term is the primary's term: the commit point only advances to an
	// optime of this term (Raft's rule: an entry of an older term is
	// committed only through a newer entry of the current term). Zero
	// disables the rule (a member without elections, in tests).
	Term uint64
}

// Progress is a primary's view of its replica set's durable optimes. It
// is safe for concurrent use.
//
// Invariant: the commit point never goes back, and it is at most the
// optime that a majority of members (the primary included, with its own
// durable optime) hold durably.
type Progress struct {
	self        string
	members     []string
	majority    int
	selfDurable func() storage.OpTime
	term        uint64

	mu      sync.Mutex
	durable map[string]storage.OpTime // reported, per member other than self
	seen    map[string]time.Time      // last report, per member
	commit  storage.OpTime
	changed chan struct{} // closed and replaced when anything advances
	closed  error         // set by Close: every wait fails with it
}

// NewProgress returns a tracker for opts.Members.
func NewProgress(opts ProgressOptions) (*Progress, error) {
	if opts.SelfDurable == nil {
		return nil, errors.New("repl.NewProgress: SelfDurable is required")
	}
	if !slices.Contains(opts.Members, opts.Self) {
		return nil, fmt.Errorf("repl.NewProgress: self %q is not among the members %v", opts.Self, opts.Members)
	}
	p := &Progress{
		self:        opts.Self,
		members:     slices.Clone(opts.Members),
		majority:    len(opts.Members)/2 + 1,
		selfDurable: opts.SelfDurable,
		term:        opts.Term,
		durable:     map[string]storage.OpTime{},
		seen:        map[string]time.Time{},
		changed:     make(chan struct{}),
	}
	return p, nil
}

// Members returns the replica set's member names.
func (p *Progress) Members() []string { return slices.Clone(p.members) }

// Report records that member holds every entry up to durable, durably.
// Reports never move a member back (an older report arriving late is
// ignored). A name that is not a secondary of the set is refused with
// BadValue.
func (p *Progress) Report(member string, durable storage.OpTime) error {
	if member == p.self || !slices.Contains(p.members, member) {
		return mongoerr.New(mongoerr.BadValue, "member %q is not a secondary of this replica set (members %v, primary %s)", member, p.members, p.self)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[member] = time.Now()
	if durable.Compare(p.durable[member]) <= 0 {
		return nil
	}
	p.durable[member] = durable
	p.advanceLocked()
	p.wakeLocked()
	return nil
}

// MemberDurable returns a member's last reported durable optime (the
// primary's own for Self) and when it last reported (zero for Self and for
// members never heard from).
func (p *Progress) MemberDurable(member string) (storage.OpTime, time.Time) {
	if member == p.self {
		return p.selfDurable(), time.Time{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.durable[member], p.seen[member]
}

// CommitPoint returns the majority commit point.
func (p *Progress) CommitPoint() storage.OpTime {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advanceLocked() // the primary's own durable optime may have moved
	return p.commit
}

// optimesLocked returns every member's durable optime.
func (p *Progress) optimesLocked() []storage.OpTime {
	out := make([]storage.OpTime, 0, len(p.members))
	for _, m := range p.members {
		if m == p.self {
			out = append(out, p.selfDurable())
		} else {
			out = append(out, p.durable[m])
		}
	}
	return out
}

// advanceLocked moves the commit point to the majority optime if that is
// newer and of the current term.
func (p *Progress) advanceLocked() {
	c := MajorityOpTime(p.optimesLocked(), p.majority)
	if p.term != 0 && c.Term != p.term {
		return
	}
	if c.Compare(p.commit) > 0 {
		p.commit = c
	}
}

// MajorityOpTime returns the newest optime held by at least need of the
// given members' optimes: sorted newest first, the need-th one.
func MajorityOpTime(optimes []storage.OpTime, need int) storage.OpTime {
	if need <= 0 || need > len(optimes) {
		return storage.OpTime{}
	}
	s := slices.Clone(optimes)
	slices.SortFunc(s, func(a, b storage.OpTime) int { return b.Compare(a) })
	return s[need-1]
}

func (p *Progress) wakeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// satisfiedLocked reports whether t is held as wc asks.
func (p *Progress) satisfiedLocked(t storage.OpTime, wc WriteConcern) bool {
	if wc.Majority {
		p.advanceLocked()
		return p.commit.Compare(t) >= 0
	}
	n := 0
	for _, o := range p.optimesLocked() {
		if o.Compare(t) >= 0 {
			n++
		}
	}
	return n >= wc.N
}

// WaitFor blocks until the entry at t is held durably as wc asks: by the
// commit point (w:"majority") or by wc.N members (w:N, the primary
// counting itself). It returns nil then; WriteConcernTimeout (64) when
// wc.Timeout passes first (the write itself stays applied, as in MongoDB);
// UnsatisfiableWriteConcern (100) at once when wc.N exceeds the members;
// ctx's error (as a MongoDB error) when the caller gives up.
func (p *Progress) WaitFor(ctx context.Context, t storage.OpTime, wc WriteConcern) error {
	if !wc.Majority && wc.N <= 1 {
		return nil // the primary's own durable write is enough
	}
	if !wc.Majority && wc.N > len(p.members) {
		return mongoerr.New(mongoerr.UnsatisfiableWriteConcern, "Not enough data-bearing nodes: w:%d, the replica set has %d members", wc.N, len(p.members))
	}
	var timeout <-chan time.Time
	if wc.Timeout > 0 {
		tm := time.NewTimer(wc.Timeout)
		defer tm.Stop()
		timeout = tm.C
	}
	for {
		p.mu.Lock()
		ok := p.satisfiedLocked(t, wc)
		ch, closed := p.changed, p.closed
		p.mu.Unlock()
		if closed != nil {
			// Checked before ok: a primary that stepped down acknowledges
			// nothing more, even what its last view says is committed.
			return closed
		}
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-timeout:
			return mongoerr.New(mongoerr.WriteConcernTimeout, "waiting for replication timed out after %s: optime %s, write concern %s, commit point %s",
				wc.Timeout, t, wc, p.CommitPoint())
		case <-ctx.Done():
			code := mongoerr.Interrupted
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				code = mongoerr.MaxTimeMSExpired
			}
			return mongoerr.Wrap(ctx.Err(), code, "waiting for replication of optime %s interrupted: %v", t, ctx.Err())
		}
	}
}

// String formats wc as MongoDB shows it.
func (wc WriteConcern) String() string {
	w := fmt.Sprint(wc.N)
	if wc.Majority {
		w = `"majority"`
	}
	return fmt.Sprintf("{w: %s, wtimeout: %d}", w, wc.Timeout.Milliseconds())
}

// AwaitWriteConcern is WaitFor for a request's write concern: the hook the
// shardd server calls after a write (shardd/server's writeConcernWaiter).
func (p *Progress) AwaitWriteConcern(ctx context.Context, t storage.OpTime, wc *shardpb.WriteConcern) error {
	w, err := WriteConcernFromProto(wc)
	if err != nil {
		return err
	}
	return p.WaitFor(ctx, t, w)
}

// Close ends the term this tracker belongs to (the primary stepped down):
// every WaitFor in progress and to come returns err, and reports are
// refused. It is idempotent; the first error stays.
func (p *Progress) Close(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed == nil {
		p.closed = err
		p.wakeLocked()
	}
}

// Nudge wakes the waiters so that they re-read the primary's own durable
// optime. Local writes need not call it (a write waits only once it is
// durable locally, so its own optime is already counted); a caller that
// changes what SelfDurable returns otherwise may.
func (p *Progress) Nudge() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wakeLocked()
}
