package replset

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// voteTimeout bounds one round of vote requests.
const voteTimeout = 500 * time.Millisecond

// errElection reasons, for logs and tests.
var (
	errNoMajority = errors.New("no majority of votes")
	errNewerPeer  = errors.New("a member has a newer log")
	errPrimary    = errors.New("a primary holds the lease")
)

// ballot is the tally of one election as data: which members answered,
// which granted, and the newest log seen. decide applies DESIGN §4's rule.
type ballot struct {
	self     storage.OpTime
	members  int
	answered int // self included
	granted  int // self included
	newer    string
	newest   storage.OpTime
}

func newBallot(self storage.OpTime, members int) *ballot {
	return &ballot{self: self, members: members, answered: 1, granted: 1}
}

// add records one member's answer.
func (b *ballot) add(member string, granted bool, last storage.OpTime) {
	b.answered++
	if granted {
		b.granted++
	}
	if last.Compare(b.self) > 0 && last.Compare(b.newest) > 0 {
		b.newer, b.newest = member, last
	}
}

// decide: a majority of the members (the candidate included) granted, and
// no answer showed a log newer than the candidate's.
func (b *ballot) decide() error {
	if b.newer != "" {
		return fmt.Errorf("%w: %s is at %s, this member at %s", errNewerPeer, b.newer, b.newest, b.self)
	}
	if need := b.members/2 + 1; b.granted < need {
		return fmt.Errorf("%w: %d of %d members granted (%d answered), %d needed", errNoMajority, b.granted, b.members, b.answered, need)
	}
	return nil
}

// runElection stands for the next term. On success the lease is held and
// the caller makes the member primary.
func (m *Member) runElection(ctx context.Context, f *follower) (*catalog.PrimaryLease, error) {
	start := time.Now()
	// Term and lease at one revision: with no primary there, any primary
	// that appears later has a term newer than last, so the promise below
	// can never make this member refuse a legitimate primary's entries.
	last, p, present, err := m.o.Leases.ElectionView(ctx, m.o.Set)
	if err != nil {
		return nil, fmt.Errorf("read the last term: %w", err)
	}
	if present {
		return nil, fmt.Errorf("%w: %s in term %d", errPrimary, p.Member, p.Term)
	}
	term := uint64(last) + 1
	// The candidate's own promise: from now on it applies nothing of an
	// older term, so its log is final for this comparison.
	self, err := m.eng.Vote(ctx, term)
	if err != nil {
		return nil, fmt.Errorf("promise term %d: %w", term, err)
	}
	b := newBallot(self, len(m.peers)+1)
	vctx, cancel := context.WithTimeout(ctx, voteTimeout)
	defer cancel()
	type answer struct {
		name  string
		reply *shardpb.VoteReply
		err   error
	}
	answers := make(chan answer, len(m.peers))
	for _, p := range m.peers {
		go func() {
			r, err := p.cli.RequestVote(vctx, &shardpb.VoteRequest{Candidate: m.o.Self, Term: term, Last: fromOpTime(self)})
			answers <- answer{p.Name, r, err}
		}()
	}
	for range m.peers {
		a := <-answers
		if a.err != nil {
			m.log.Debug().Str("peer", a.name).Err(rpcerr.Error(a.err)).Msg("no vote answer")
			continue
		}
		b.add(a.name, a.reply.GetGranted(), toOpTime(a.reply.GetLast()))
		if !a.reply.GetGranted() {
			m.log.Debug().Str("peer", a.name).Str("reason", a.reply.GetReason()).Msg("vote refused")
		}
	}
	if err := b.decide(); err != nil {
		return nil, fmt.Errorf("term %d: %w", term, err)
	}
	lease, err := m.o.Leases.AcquirePrimaryTerm(ctx, m.o.Set, m.o.Self, m.o.LeaseTTL, int64(term))
	if err != nil {
		return nil, fmt.Errorf("term %d: take the lease: %w", term, err)
	}
	m.log.Info().Uint64("term", term).Int("votes", b.granted).Int("answers", b.answered).
		Dur("took", time.Since(start)).Msg("election won")
	return lease, nil
}

// RequestVote answers a candidate (server.Coordinator). The vote is
// granted when no primary holds the lease, the candidate's log is at
// least as new as this member's, and the term is not older than one
// already promised; the promise is durable before the answer.
func (m *Member) RequestVote(ctx context.Context, req *shardpb.VoteRequest) (*shardpb.VoteReply, error) {
	term := req.GetTerm()
	cand := toOpTime(req.GetLast())
	refuse := func(format string, args ...any) (*shardpb.VoteReply, error) {
		return &shardpb.VoteReply{Granted: false, Term: m.eng.PromisedTerm(), Last: fromOpTime(m.eng.LastOpTime()), Reason: fmt.Sprintf(format, args...)}, nil
	}
	if _, ok := m.peers[req.GetCandidate()]; !ok {
		return nil, mongoerr.New(mongoerr.BadValue, "%q is not a member of replica set %s", req.GetCandidate(), m.o.Set)
	}
	if term < m.eng.VotedTerm() {
		return refuse("term %d is older than term %d, promised already", term, m.eng.VotedTerm())
	}
	m.mu.Lock()
	st, obs := m.state, m.observed
	m.mu.Unlock()
	if st == StatePrimary {
		return refuse("%s is primary", m.o.Self)
	}
	if obs.Present {
		// Our view may be late: ask etcd before refusing.
		p, err := m.o.Leases.GetPrimary(ctx, m.o.Set)
		if err == nil {
			return refuse("%s holds the primary lease in term %d", p.Member, p.Term)
		}
		if !errors.Is(err, catalog.ErrNotFound) {
			return refuse("cannot read the primary lease: %v", err)
		}
	}
	// Compare against the log as it stands under the promise: Vote takes
	// the write lock, so no entry slips in between the comparison and the
	// promise. A candidate behind us gets no promise at all.
	if last := m.eng.LastOpTime(); cand.Compare(last) < 0 {
		return refuse("candidate's last entry %s is older than %s", cand, last)
	}
	last, err := m.eng.Vote(ctx, term)
	if err != nil {
		return nil, fmt.Errorf("record the vote for term %d: %w", term, err)
	}
	if cand.Compare(last) < 0 {
		// An entry was applied while we decided: the promise stands (it
		// only makes this member refuse older terms) but the vote is no.
		return refuse("candidate's last entry %s is older than %s", cand, last)
	}
	m.log.Info().Str("candidate", req.GetCandidate()).Uint64("term", term).Stringer("candidateLast", cand).Stringer("last", last).Msg("vote granted")
	return &shardpb.VoteReply{Granted: true, Term: term, Last: fromOpTime(last)}, nil
}

func toOpTime(p *shardpb.OpTime) storage.OpTime {
	return storage.OpTime{Term: p.GetTerm(), Index: p.GetIndex()}
}

func fromOpTime(t storage.OpTime) *shardpb.OpTime {
	return &shardpb.OpTime{Term: t.Term, Index: t.Index}
}

// noopMessage is the document of the no-op entry that opens a term.
func noopMessage(msg, member string, term uint64) bson.Raw {
	b, _ := bson.Marshal(bson.D{{Key: "msg", Value: msg}, {Key: "member", Value: member}, {Key: "term", Value: int64(term)}})
	return b
}
