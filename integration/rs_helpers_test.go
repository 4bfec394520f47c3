package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
)

// replSet talks to the members of one shard over their gRPC API, the way a
// router does: it finds the primary by asking each member's status and
// sends writes there, moving on when a member answers NotWritablePrimary
// or is unreachable.
type replSet struct {
	t       testing.TB
	c       *harness.Cluster
	shard   string
	names   []string
	mu      sync.Mutex
	clients map[string]*shardclient.Client
	primary atomic.Value // string: the member last seen as primary
}

func newReplSet(t testing.TB, c *harness.Cluster, shard string) *replSet {
	r := &replSet{t: t, c: c, shard: shard, clients: map[string]*shardclient.Client{}}
	for _, p := range c.ByRole(config.RoleShard, shard) {
		r.names = append(r.names, p.Name())
	}
	r.primary.Store("")
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, cl := range r.clients {
			_ = cl.Close()
		}
	})
	return r
}

// client returns the member's client (one connection per member; the
// dial options reconnect quickly after a restart).
func (r *replSet) client(name string) *shardclient.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cl := r.clients[name]; cl != nil {
		return cl
	}
	cl, err := shardclient.Dial(context.Background(), r.c.Process(name).Addr())
	if err != nil {
		r.t.Fatal(err)
	}
	r.clients[name] = cl
	return cl
}

func (r *replSet) repl(name string) shardpb.ReplicationClient {
	return shardpb.NewReplicationClient(r.client(name).Conn())
}

// status returns a member's status, or an error when it does not answer.
func (r *replSet) status(ctx context.Context, name string) (*shardpb.StatusReply, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := r.repl(name).Status(ctx, &shardpb.StatusRequest{})
	return st, rpcerr.Error(err)
}

// primaries returns the members that say they are primary.
func (r *replSet) primaries(ctx context.Context) map[string]*shardpb.StatusReply {
	out := map[string]*shardpb.StatusReply{}
	for _, n := range r.names {
		if !r.c.Process(n).Running() {
			continue
		}
		if st, err := r.status(ctx, n); err == nil && st.GetState() == "PRIMARY" {
			out[n] = st
		}
	}
	return out
}

// waitPrimary waits until exactly one running member is primary and
// returns it.
func (r *replSet) waitPrimary(d time.Duration) string {
	r.t.Helper()
	var name string
	harness.Eventually(r.t, d, func() error {
		ps := r.primaries(context.Background())
		if len(ps) != 1 {
			return fmt.Errorf("%d primaries", len(ps))
		}
		for n := range ps {
			name = n
		}
		return nil
	})
	r.primary.Store(name)
	return name
}

// retryable reports whether a write may be sent to another member: the
// member is not primary (any more) or cannot be reached.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	c := mongoerr.CodeOf(err)
	return c.Retryable() || c.NotPrimary() || c == mongoerr.StaleTerm
}

// onPrimary runs op against the primary, following it through failovers
// until ctx ends: an op that fails with a retryable error is sent again
// to the next member that says it is primary. It returns the member that
// answered.
func (r *replSet) onPrimary(ctx context.Context, op func(ctx context.Context, cl *shardclient.Client) error) (string, error) {
	var last error
	for {
		name, _ := r.primary.Load().(string)
		if name == "" {
			for n := range r.primaries(ctx) {
				name = n
				r.primary.Store(n)
			}
		}
		if name != "" {
			octx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := op(octx, r.client(name))
			cancel()
			if err == nil {
				return name, nil
			}
			last = err
			if !retryable(err) && !errors.Is(err, context.DeadlineExceeded) && mongoerr.CodeOf(err) != mongoerr.MaxTimeMSExpired {
				return name, err
			}
			r.primary.CompareAndSwap(name, "")
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no primary answered: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// majority is the default write concern, spelled out.
var majority = &shardpb.WriteConcern{WMode: "majority"}

// docOf marshals a document.
func docOf(t testing.TB, d bson.D) bson.Raw {
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// idsOn returns every _id (as a string) of ns on one member, read as a
// secondary read would be.
func (r *replSet) idsOn(ctx context.Context, name, ns string) ([]string, error) {
	cl := r.client(name)
	docs, err := cl.FindAll(ctx, ns, shardclient.Find{Projection: docOf(r.t, bson.D{{Key: "_id", Value: 1}}),
		ReadOptions: &shardpb.ReadOptions{ReadPreference: "secondaryPreferred"}})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(docs))
	for _, d := range docs {
		v := d.Lookup("_id")
		if s, ok := v.StringValueOK(); ok {
			ids = append(ids, s)
		} else {
			ids = append(ids, v.String())
		}
	}
	return ids, nil
}

// waitConverged waits until every running member has the same last
// optime and returns it.
func (r *replSet) waitConverged(d time.Duration) *shardpb.OpTime {
	r.t.Helper()
	var at *shardpb.OpTime
	harness.Eventually(r.t, d, func() error {
		var first *shardpb.OpTime
		for _, n := range r.names {
			st, err := r.status(context.Background(), n)
			if err != nil {
				return fmt.Errorf("%s: %v", n, err)
			}
			if st.GetState() != "PRIMARY" && st.GetState() != "SECONDARY" {
				return fmt.Errorf("%s is %s", n, st.GetState())
			}
			if first == nil {
				first = st.GetApplied()
				continue
			}
			if st.GetApplied().GetTerm() != first.GetTerm() || st.GetApplied().GetIndex() != first.GetIndex() {
				return fmt.Errorf("%s at %v, %s at %v", r.names[0], first, n, st.GetApplied())
			}
		}
		at = first
		return nil
	})
	return at
}
