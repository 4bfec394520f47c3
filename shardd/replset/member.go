package replset

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/repl"
	"github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/storage"
)

// Leases is what a member needs of the catalog: the shard's primary lease
// and its terms. *catalog.Catalog implements it.
type Leases interface {
	AcquirePrimaryTerm(ctx context.Context, shard, member string, ttl time.Duration, term int64) (*catalog.PrimaryLease, error)
	ObservePrimary(ctx context.Context, shard string) <-chan catalog.PrimaryChange
	GetPrimary(ctx context.Context, shard string) (catalog.PrimaryInfo, error)
	ElectionView(ctx context.Context, shard string) (term int64, primary catalog.PrimaryInfo, present bool, err error)
}

// ProgressSetter is the Replication service's hook that installs a
// primary's progress tracker (nil on a secondary); *server.Replication
// implements it.
type ProgressSetter interface {
	SetProgress(p server.ProgressTracker)
}

// Peer is another member of the replica set.
type Peer struct {
	Name, Addr string
}

// Options configure a Member.
type Options struct {
	// Set is the shard (replica set) name; Self this member's name and
	// Addr its address; Peers the other members.
	Set, Self, Addr string
	Peers           []Peer
	// Engine is the member's open store; DataDir its data directory
	// (rollback files go under it).
	Engine  *storage.Engine
	DataDir string
	// Leases is the catalog.
	Leases Leases
	// LeaseTTL is the primary lease's TTL (default 1s).
	LeaseTTL time.Duration
	// ElectionBackoff bounds the randomized delay before standing
	// (default 200ms); the delay is drawn from [backoff/4, backoff].
	ElectionBackoff time.Duration
	// Logger should carry the node, role and shard fields.
	Logger zerolog.Logger
	// OnApply is the puller's repl.PullerOptions.OnApply (nil: none).
	OnApply func(entries int, d time.Duration)
	// OnPrimary, if set, is called (on its own goroutine) each time this
	// member becomes primary, with the new term: the shard resumes the
	// work a primary owns, such as recorded range deletions.
	OnPrimary func(term uint64)
}

// State is a member's replica-set state, named as replSetGetStatus does.
type State int

const (
	StateStartup State = iota
	StateSecondary
	StatePrimary
	StateRecovering // rolling back or resyncing: serves no reads
)

func (s State) String() string {
	switch s {
	case StateSecondary:
		return "SECONDARY"
	case StatePrimary:
		return "PRIMARY"
	case StateRecovering:
		return "RECOVERING"
	}
	return "STARTUP"
}

// Code is replSetGetStatus's numeric state.
func (s State) Code() int32 {
	switch s {
	case StatePrimary:
		return 1
	case StateSecondary:
		return 2
	case StateRecovering:
		return 3
	}
	return 0
}

// Member is one replica-set member. Create it with New, hand it to the
// Replication service as its Coordinator and progress hook (Attach), then
// Run it. Its methods are safe for concurrent use.
type Member struct {
	o     Options
	log   zerolog.Logger
	eng   *storage.Engine
	peers map[string]*peerConn

	// stepDownReq carries StepDown requests into the run loop.
	stepDownReq chan stepDownCall

	mu   sync.Mutex
	repl ProgressSetter // set by Attach
	// Guarded by mu:
	state         State
	lease         *catalog.PrimaryLease // held while primary
	prog          *repl.Progress        // the primary term's tracker
	stepping      bool                  // a step-down is waiting for catch-up: no writes
	observed      catalog.PrimaryChange // newest view of the lease key
	stepDownUntil time.Time             // no candidacy before this
	syncSource    string                // member pulled from
	puller        *repl.Puller          // the current follower's puller
	resync        bool                  // the follower must clone its source first
}

type peerConn struct {
	Peer
	conn *grpc.ClientConn
	cli  shardpb.ReplicationClient
}

// New returns a member in the STARTUP state.
func New(o Options) (*Member, error) {
	if o.Engine == nil || o.Leases == nil || o.Set == "" || o.Self == "" {
		return nil, errors.New("replset.New: Set, Self, Engine and Leases are required")
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = time.Second
	}
	if o.ElectionBackoff <= 0 {
		o.ElectionBackoff = 200 * time.Millisecond
	}
	m := &Member{o: o, log: o.Logger, eng: o.Engine, peers: map[string]*peerConn{}, stepDownReq: make(chan stepDownCall)}
	for _, p := range o.Peers {
		if p.Name == o.Self {
			continue
		}
		conn, err := grpc.NewClient(p.Addr, shardclient.DialOptions()...)
		if err != nil {
			m.closePeers()
			return nil, fmt.Errorf("replset: client for %s at %s: %w", p.Name, p.Addr, err)
		}
		m.peers[p.Name] = &peerConn{Peer: p, conn: conn, cli: shardpb.NewReplicationClient(conn)}
	}
	return m, nil
}

// Attach gives the member the Replication service's progress hook. Call
// it before Run.
func (m *Member) Attach(r ProgressSetter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.repl = r
}

func (m *Member) closePeers() {
	for _, p := range m.peers {
		_ = p.conn.Close()
	}
}

// members returns every member name, self included, sorted.
func (m *Member) members() []string {
	names := []string{m.o.Self}
	for n := range m.peers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (m *Member) majority() int { return (len(m.peers)+1)/2 + 1 }

// State returns the member's state.
func (m *Member) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// CheckWritable is the write path's gate (server.Coordinator): only a
// primary whose lease is still valid, and that is not stepping down,
// accepts writes.
func (m *Member) CheckWritable() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != StatePrimary || m.stepping {
		return mongoerr.New(mongoerr.NotWritablePrimary, "not primary: %s is %s", m.o.Self, m.state)
	}
	if !time.Now().Before(m.lease.ValidUntil()) {
		return mongoerr.New(mongoerr.NotWritablePrimary, "not primary: the primary lease of %s term %d could not be renewed in time", m.o.Set, m.lease.Term)
	}
	return nil
}

// CheckReadable is the read path's gate: reads with read preference
// primary (the default) run on the primary only; any other preference
// runs on a primary or secondary, never on a member that is rolling back
// or resyncing.
func (m *Member) CheckReadable(pref string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch pref {
	case "", "primary":
		if m.state != StatePrimary {
			return mongoerr.New(mongoerr.NotPrimaryNoSecondaryOk, "not primary and secondaryOk=false: %s is %s", m.o.Self, m.state)
		}
	case "primaryPreferred", "secondary", "secondaryPreferred", "nearest":
		if m.state != StatePrimary && m.state != StateSecondary {
			return mongoerr.New(mongoerr.NotPrimaryOrSecondary, "%s is %s: it serves no reads", m.o.Self, m.state)
		}
	default:
		return mongoerr.New(mongoerr.FailedToParse, "unknown read preference mode %q", pref)
	}
	return nil
}

// CommitPoint is the commit point as this member knows it: its own on a
// primary, the one its sync source last sent on a secondary.
func (m *Member) CommitPoint() storage.OpTime {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.prog != nil:
		return m.prog.CommitPoint()
	case m.puller != nil:
		return m.puller.CommitPoint()
	}
	return storage.OpTime{}
}

// Run runs the member until ctx ends; it then gives up the lease if it
// holds one (so that another member is elected at once) and returns.
func (m *Member) Run(ctx context.Context) error {
	defer m.closePeers()
	m.mu.Lock()
	m.state = StateSecondary
	m.mu.Unlock()
	obs := m.o.Leases.ObservePrimary(ctx, m.o.Set)
	f := newFollower(m)
	defer f.stop()

	var (
		electionTimer *time.Timer
		electionC     <-chan time.Time
		leaseDone     <-chan struct{}
	)
	disarm := func() {
		if electionTimer != nil {
			electionTimer.Stop()
			electionTimer, electionC = nil, nil
		}
	}
	defer disarm()
	arm := func(extra time.Duration) {
		if electionTimer != nil {
			return
		}
		b := m.o.ElectionBackoff
		d := b/4 + rand.N(b-b/4+1) + extra
		m.mu.Lock()
		if wait := time.Until(m.stepDownUntil); wait > d {
			d = wait + rand.N(b/4+1)
		}
		m.mu.Unlock()
		electionTimer = time.NewTimer(d)
		electionC = electionTimer.C
	}
	// reconcile brings the follower and the election timer in line with
	// the newest observation while the member is not primary.
	reconcile := func() {
		m.mu.Lock()
		st, o := m.state, m.observed
		m.mu.Unlock()
		if st == StatePrimary {
			disarm()
			return
		}
		if o.Present && o.Member != m.o.Self {
			disarm()
			if p, ok := m.peers[o.Member]; ok {
				f.follow(ctx, p.Peer)
			}
			return
		}
		// No primary (or a key left by this member's previous life, which
		// expires by itself): keep pulling from whoever we followed (the
		// old primary may still serve durable entries), and stand later.
		arm(0)
	}
	for {
		select {
		case <-ctx.Done():
			m.stepDownNow("shutting down", 0)
			return nil
		case ch, ok := <-obs:
			if !ok {
				m.stepDownNow("shutting down", 0)
				return nil
			}
			m.mu.Lock()
			m.observed = ch
			m.mu.Unlock()
			m.log.Debug().Bool("present", ch.Present).Str("primary", ch.Member).Int64("term", ch.Term).Msg("primary lease observed")
			reconcile()
		case <-electionC:
			electionTimer, electionC = nil, nil
			m.mu.Lock()
			o := m.observed
			m.mu.Unlock()
			if o.Present && o.Member != m.o.Self {
				reconcile()
				continue
			}
			lease, err := m.runElection(ctx, f)
			if err != nil {
				m.log.Info().Err(err).Msg("election not won")
				arm(0)
				continue
			}
			if err := m.becomePrimary(ctx, lease, f); err != nil {
				m.log.Error().Err(err).Msg("cannot take the primary role; giving the lease up")
				_ = lease.Revoke(context.Background())
				m.becomeSecondary("step-up failed", 0)
				arm(m.o.ElectionBackoff)
				continue
			}
			leaseDone = lease.Done()
		case <-leaseDone:
			leaseDone = nil
			m.mu.Lock()
			var why error
			if m.lease != nil {
				why = m.lease.Err()
			}
			m.mu.Unlock()
			m.becomeSecondary(fmt.Sprintf("lease ended: %v", why), 0)
			reconcile()
		case call := <-m.stepDownReq:
			err := m.stepDown(ctx, call.req)
			call.done <- err
			if err == nil {
				leaseDone = nil
				reconcile()
			}
		}
	}
}

// stepDownNow leaves the primary role (if held) without waiting.
func (m *Member) stepDownNow(why string, cooldown time.Duration) {
	m.mu.Lock()
	primary := m.state == StatePrimary
	m.mu.Unlock()
	if primary {
		m.becomeSecondary(why, cooldown)
	}
}

// becomePrimary takes the primary role for lease's term: the follower
// stops (no more entries of older terms are applied), the engine stamps
// the new term, a progress tracker for the term starts, and a no-op entry
// of the term is written so the commit point can reach it.
func (m *Member) becomePrimary(ctx context.Context, lease *catalog.PrimaryLease, f *follower) error {
	f.stop()
	term := uint64(lease.Term)
	if err := m.eng.SetTerm(ctx, term); err != nil {
		return fmt.Errorf("set term %d: %w", term, err)
	}
	prog, err := repl.NewProgress(repl.ProgressOptions{Self: m.o.Self, Members: m.members(), SelfDurable: m.eng.LastOpTime, Term: term})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.state, m.lease, m.prog, m.stepping, m.syncSource, m.puller = StatePrimary, lease, prog, false, "", nil
	r := m.repl
	m.mu.Unlock()
	if r != nil {
		r.SetProgress(prog)
	}
	if at, err := m.eng.AppendNoop(ctx, noopMessage("new primary", m.o.Self, term)); err != nil {
		m.log.Warn().Err(err).Msg("cannot write the no-op entry of the new term")
	} else {
		m.log.Debug().Stringer("optime", at).Msg("no-op entry of the new term written")
	}
	m.log.Info().Uint64("term", term).Stringer("last", m.eng.LastOpTime()).Time("leaseValidUntil", lease.ValidUntil()).Msg("became primary")
	if m.o.OnPrimary != nil {
		go m.o.OnPrimary(term)
	}
	return nil
}

// becomeSecondary leaves the primary role: writes are refused from now
// on, pending write-concern waits fail, the lease is revoked (so the next
// election need not wait for its expiry), and no candidacy happens for
// cooldown.
func (m *Member) becomeSecondary(why string, cooldown time.Duration) {
	m.mu.Lock()
	lease, prog, r := m.lease, m.prog, m.repl
	wasPrimary := m.state == StatePrimary
	m.state, m.lease, m.prog, m.stepping = StateSecondary, nil, nil, false
	if cooldown > 0 {
		m.stepDownUntil = time.Now().Add(cooldown)
	}
	m.mu.Unlock()
	if r != nil {
		r.SetProgress(nil)
	}
	if prog != nil {
		prog.Close(mongoerr.New(mongoerr.PrimarySteppedDown, "primary stepped down (%s) before the write concern was satisfied", why))
	}
	if lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := lease.Revoke(ctx); err != nil {
			m.log.Warn().Err(err).Msg("cannot revoke the primary lease; it expires by itself")
		}
		cancel()
	}
	if wasPrimary {
		m.log.Info().Str("why", why).Stringer("last", m.eng.LastOpTime()).Msg("stepped down to secondary")
	}
}
