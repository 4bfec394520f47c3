package replset

import (
	"context"
	"time"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/repl"
	"github.com/psdb/psdb/shardd/storage"
)

// MongoDB's replSetStepDown defaults.
const (
	defaultStepDownSecs = 60
	defaultCatchUpSecs  = 10
)

type stepDownCall struct {
	req  *shardpb.StepDownRequest
	done chan error
}

// StepDown asks the primary to step down (replSetStepDown): writes stop
// at once, a secondary gets up to secondary_catch_up_period_secs to hold
// every entry, then the lease is given up and this member does not stand
// for step_down_secs. Without a caught-up secondary the step-down fails
// with ExceededTimeLimit (262) and the member stays primary, unless force.
func (m *Member) StepDown(ctx context.Context, req *shardpb.StepDownRequest) (*shardpb.StepDownReply, error) {
	call := stepDownCall{req: req, done: make(chan error, 1)}
	select {
	case m.stepDownReq <- call:
	case <-ctx.Done():
		return nil, mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "replSetStepDown interrupted")
	}
	select {
	case err := <-call.done:
		if err != nil {
			return nil, err
		}
		return &shardpb.StepDownReply{}, nil
	case <-ctx.Done():
		return nil, mongoerr.Wrap(ctx.Err(), mongoerr.Interrupted, "replSetStepDown interrupted")
	}
}

// stepDown runs in the run loop.
func (m *Member) stepDown(ctx context.Context, req *shardpb.StepDownRequest) error {
	secs, catchUp := req.GetStepDownSecs(), req.GetSecondaryCatchUpPeriodSecs()
	if secs == 0 {
		secs = defaultStepDownSecs
	}
	if catchUp == 0 && !req.GetForce() {
		catchUp = defaultCatchUpSecs
	}
	if secs < 0 || catchUp < 0 {
		return mongoerr.New(mongoerr.BadValue, "stepDownSecs and secondaryCatchUpPeriodSecs must be non-negative")
	}
	if catchUp > secs {
		return mongoerr.New(mongoerr.BadValue, "stepdown period must be longer than secondaryCatchUpPeriodSecs")
	}
	m.mu.Lock()
	if m.state != StatePrimary {
		m.mu.Unlock()
		return mongoerr.New(mongoerr.NotWritablePrimary, "not primary so can't step down")
	}
	prog := m.prog
	m.stepping = true // no new writes while the secondaries catch up
	m.mu.Unlock()
	last := m.eng.LastOpTime()
	if catchUp > 0 || !req.GetForce() {
		err := prog.WaitFor(ctx, last, repl.WriteConcern{N: 2, Timeout: time.Duration(catchUp) * time.Second})
		if err != nil && !req.GetForce() {
			m.mu.Lock()
			m.stepping = false
			m.mu.Unlock()
			return mongoerr.New(mongoerr.ExceededTimeLimit, "No electable secondaries caught up as of %s; please use the force option to step down anyway (%v)", time.Now().UTC().Format(time.RFC3339), err)
		}
	}
	m.becomeSecondary("replSetStepDown", time.Duration(secs)*time.Second)
	return nil
}

// Status answers replSetGetStatus's questions for this member
// (server.Coordinator). A primary lists every member with its durable
// optime, when it last reported, and its lag: the age of the oldest entry
// it lacks. A secondary lists itself and names its sync source.
func (m *Member) Status(_ context.Context, _ *shardpb.StatusRequest) (*shardpb.StatusReply, error) {
	m.mu.Lock()
	st, prog, lease, source := m.state, m.prog, m.lease, m.syncSource
	m.mu.Unlock()
	last := m.eng.LastOpTime()
	reply := &shardpb.StatusReply{
		Set:         m.o.Set,
		Member:      m.o.Self,
		State:       st.String(),
		Term:        m.eng.Term(),
		Applied:     fromOpTime(last),
		Durable:     fromOpTime(last),
		CommitPoint: fromOpTime(m.CommitPoint()),
		SyncSource:  source,
	}
	if lease != nil {
		reply.LeaseExpiryUnixMs = lease.ValidUntil().UnixMilli()
	}
	now := time.Now()
	self := &shardpb.MemberStatus{Name: m.o.Self, Addr: m.o.Addr, State: st.String(), Applied: fromOpTime(last), Durable: fromOpTime(last), Healthy: true, SyncSource: source}
	if prog == nil {
		reply.Members = []*shardpb.MemberStatus{self}
		return reply, nil
	}
	for _, name := range m.members() {
		if name == m.o.Self {
			reply.Members = append(reply.Members, self)
			continue
		}
		durable, seen := prog.MemberDurable(name)
		ms := &shardpb.MemberStatus{Name: name, Addr: m.peers[name].Addr, Applied: fromOpTime(durable), Durable: fromOpTime(durable), SyncSource: m.o.Self}
		if !seen.IsZero() {
			ms.LastReportUnixMs = seen.UnixMilli()
		}
		// A member that reported within a few lease TTLs is up; it then
		// follows this primary.
		ms.Healthy = !seen.IsZero() && now.Sub(seen) < 5*m.o.LeaseTTL+5*time.Second
		if ms.Healthy {
			ms.State = StateSecondary.String()
		} else {
			ms.State = "(not reachable/healthy)"
		}
		ms.LagMs = m.lag(durable, now)
		reply.Members = append(reply.Members, ms)
	}
	return reply, nil
}

// lag is how long the oldest entry a member lacks has existed (0 when it
// lacks none).
func (m *Member) lag(durable storage.OpTime, now time.Time) int64 {
	if durable.Compare(m.eng.LastOpTime()) >= 0 {
		return 0
	}
	next, err := m.eng.ReadOplog(durable, 1)
	if err != nil || len(next) == 0 {
		return 0
	}
	return max(0, now.Sub(next[0].Wall).Milliseconds())
}
