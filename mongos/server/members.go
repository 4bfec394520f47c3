package server

import (
	"context"
	"sync"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
)

// Read preference modes, as MongoDB spells them.
const (
	prefPrimary            = "primary"
	prefPrimaryPreferred   = "primaryPreferred"
	prefSecondary          = "secondary"
	prefSecondaryPreferred = "secondaryPreferred"
	prefNearest            = "nearest"
)

// validReadPref reports whether mode is one of MongoDB's five modes.
func validReadPref(mode string) bool {
	switch mode {
	case prefPrimary, prefPrimaryPreferred, prefSecondary, prefSecondaryPreferred, prefNearest:
		return true
	}
	return false
}

// selectMember picks the member of a shard that an operation with read
// preference mode goes to ("" is primary; writes use primary). members are
// the shard's member names in catalog order, primary the member the
// catalog names ("" when none holds the lease), exclude the members that
// already failed this operation, rr a round-robin counter. MongoDB's rules
// without latency or staleness data:
//
//   - primary: the primary (or the only member of a one-member shard
//     whose primary the catalog does not name: a standalone shardd);
//   - primaryPreferred: the primary, else a secondary;
//   - secondary: a secondary (a member that is not the primary), in turn;
//   - secondaryPreferred: a secondary, else the primary;
//   - nearest: any member, in turn.
//
// With no candidate it fails with FailedToSatisfyReadPreference (133),
// which the retry table treats as "wait for the catalog".
func selectMember(mode string, members []string, primary string, exclude []string, rr uint64) (string, error) {
	excluded := func(m string) bool {
		for _, x := range exclude {
			if x == m {
				return true
			}
		}
		return false
	}
	prim := ""
	if primary != "" && !excluded(primary) {
		for _, m := range members {
			if m == primary {
				prim = m
				break
			}
		}
	}
	var secs, all []string
	for _, m := range members {
		if excluded(m) {
			continue
		}
		all = append(all, m)
		if m != primary {
			secs = append(secs, m)
		}
	}
	turn := func(c []string) string { return c[rr%uint64(len(c))] }
	switch mode {
	case "", prefPrimary:
		if prim != "" {
			return prim, nil
		}
		if primary == "" && len(members) == 1 && len(all) == 1 {
			// A shard of one member that holds no lease is a standalone
			// shardd (no replication): it serves writes itself. A real
			// one-member set without its lease yet refuses them with
			// NotWritablePrimary, which the router retries.
			return all[0], nil
		}
	case prefPrimaryPreferred:
		if prim != "" {
			return prim, nil
		}
		if len(secs) > 0 {
			return turn(secs), nil
		}
	case prefSecondary:
		if len(secs) > 0 {
			return turn(secs), nil
		}
	case prefSecondaryPreferred:
		if len(secs) > 0 {
			return turn(secs), nil
		}
		if prim != "" {
			return prim, nil
		}
	case prefNearest:
		if len(all) > 0 {
			return turn(all), nil
		}
	default:
		return "", mongoerr.New(mongoerr.FailedToParse, "Could not parse $readPreference mode '%s'", mode)
	}
	if mode == "" {
		mode = prefPrimary
	}
	return "", mongoerr.New(mongoerr.FailedToSatisfyReadPreference,
		"Could not find host matching read preference { mode: %q } (primary %q, members %v, failed %v)", mode, primary, members, exclude)
}

// PrimaryView is what a router knows of a shard's primary: Member ""
// when no member holds the lease (or nothing was observed yet).
type PrimaryView struct {
	Member string
	Term   int64
}

// MemberBackend is a Backend that knows each shard's replica-set members
// and follows its primary; ClusterBackend implements it. The retry helpers
// (retry.go) use it to pick members and wait for failovers; a Backend
// without it sends everything through Shard with no failover retries.
type MemberBackend interface {
	Backend
	// Member returns a connection to the member of shard chosen for the
	// read preference mode ("" and "primary": the primary), skipping the
	// members in exclude, and that member's name.
	Member(ctx context.Context, shard, mode string, exclude []string) (ShardConn, string, error)
	// Primary returns the shard's primary as last observed and a channel
	// closed at the next change of it.
	Primary(shard string) (PrimaryView, <-chan struct{}, error)
}

// shardMembers is one shard's replica set as the router sees it: a
// connection per member (dialled on first use, kept until Close) and the
// primary from catalog.ObservePrimary, maintained by one watcher goroutine
// owned by the ClusterBackend. Safe for concurrent use.
type shardMembers struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	rr     atomic.Uint64

	mu       sync.Mutex
	conns    map[string]*memberConn // by member address
	primary  PrimaryView
	observed bool          // the first observation arrived
	changed  chan struct{} // closed and replaced at every observation
}

func newShardMembers(name string) *shardMembers {
	return &shardMembers{name: name, done: make(chan struct{}), conns: map[string]*memberConn{}, changed: make(chan struct{})}
}

// watch applies the catalog's observations of the primary until ctx is
// done (the backend's Close) and the channel closes.
func (sm *shardMembers) watch(ch <-chan catalog.PrimaryChange) {
	defer close(sm.done)
	for pc := range ch {
		v := PrimaryView{}
		if pc.Present {
			v = PrimaryView{Member: pc.Member, Term: pc.Term}
		}
		sm.mu.Lock()
		sm.primary, sm.observed = v, true
		close(sm.changed)
		sm.changed = make(chan struct{})
		sm.mu.Unlock()
	}
}

// view returns the primary, whether anything was observed, and the change
// channel.
func (sm *shardMembers) view() (PrimaryView, bool, <-chan struct{}) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.primary, sm.observed, sm.changed
}

// conn returns the member's connection, dialling it on first use.
func (sm *shardMembers) conn(m catalog.Member) (*memberConn, error) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if c, ok := sm.conns[m.Addr]; ok {
		return c, nil
	}
	c, err := shardclient.Dial(context.Background(), m.Addr)
	if err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.HostUnreachable, "dial member %s of shard %s at %s: %v", m.Name, sm.name, m.Addr, err)
	}
	mc := &memberConn{Client: c, raw: shardpb.NewShardClient(c.Conn())}
	sm.conns[m.Addr] = mc
	return mc, nil
}

// close stops the watcher (its context is already cancelled by the
// caller) and closes the connections.
func (sm *shardMembers) close() {
	sm.cancel()
	<-sm.done
	sm.mu.Lock()
	defer sm.mu.Unlock()
	for _, c := range sm.conns {
		c.Close()
	}
	sm.conns = map[string]*memberConn{}
}

// readOptionsKey carries a command's ReadOptions to the member
// connection's reads (see memberConn).
type readOptionsKey struct{}

// withReadOptions returns ctx carrying ro for the shard reads made with
// it; nil ro leaves ctx as is.
func withReadOptions(ctx context.Context, ro *shardpb.ReadOptions) context.Context {
	if ro == nil {
		return ctx
	}
	return context.WithValue(ctx, readOptionsKey{}, ro)
}

func readOptionsFrom(ctx context.Context) *shardpb.ReadOptions {
	ro, _ := ctx.Value(readOptionsKey{}).(*shardpb.ReadOptions)
	return ro
}

// memberConn is the ShardConn of one member: a shardclient.Client whose
// reads carry the command's ReadOptions from the context (withReadOptions),
// so a secondary serves reads sent to it with a non-primary preference.
// shardclient's Count, Distinct and Aggregate take no ReadOptions, so
// they are re-issued here on the same gRPC connection.
type memberConn struct {
	*shardclient.Client
	raw shardpb.ShardClient
}

var _ ShardConn = (*memberConn)(nil)

// Find implements ShardConn.
func (c *memberConn) Find(ctx context.Context, ns string, f shardclient.Find) (*shardclient.Batch, error) {
	if f.ReadOptions == nil {
		f.ReadOptions = readOptionsFrom(ctx)
	}
	return c.Client.Find(ctx, ns, f)
}

// Count implements ShardConn.
func (c *memberConn) Count(ctx context.Context, ns string, filter bson.Raw, skip, limit int64) (int64, error) {
	ro := readOptionsFrom(ctx)
	if ro == nil {
		return c.Client.Count(ctx, ns, filter, skip, limit)
	}
	r, err := c.raw.Count(ctx, &shardpb.CountRequest{Ns: ns, Filter: filter, Skip: skip, Limit: limit, ReadOptions: ro})
	if err != nil {
		return 0, rpcerr.Error(err)
	}
	return r.GetN(), nil
}

// Distinct implements ShardConn.
func (c *memberConn) Distinct(ctx context.Context, ns, key string, filter bson.Raw) ([]bson.RawValue, error) {
	ro := readOptionsFrom(ctx)
	if ro == nil {
		return c.Client.Distinct(ctx, ns, key, filter)
	}
	r, err := c.raw.Distinct(ctx, &shardpb.DistinctRequest{Ns: ns, Key: key, Filter: filter, ReadOptions: ro})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	if len(r.GetValues()) == 0 {
		return nil, nil
	}
	vals, err := bson.Raw(r.GetValues()).Values()
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "shard sent malformed distinct values: %v", err)
	}
	return vals, nil
}

// Aggregate implements ShardConn.
func (c *memberConn) Aggregate(ctx context.Context, ns string, pipeline []bson.Raw, batchSize *int32) (*shardclient.Batch, error) {
	ro := readOptionsFrom(ctx)
	if ro == nil {
		return c.Client.Aggregate(ctx, ns, pipeline, batchSize)
	}
	return c.aggregate(ctx, &shardpb.AggregateRequest{Ns: ns, Pipeline: rawDocs(pipeline), BatchSize: batchSize, ReadOptions: ro})
}

// AggregateShardPart implements ShardConn.
func (c *memberConn) AggregateShardPart(ctx context.Context, ns string, pipeline []bson.Raw, batchSize *int32) (*shardclient.Batch, error) {
	ro := readOptionsFrom(ctx)
	if ro == nil {
		return c.Client.AggregateShardPart(ctx, ns, pipeline, batchSize)
	}
	return c.aggregate(ctx, &shardpb.AggregateRequest{Ns: ns, Pipeline: rawDocs(pipeline), BatchSize: batchSize, ReadOptions: ro, ShardPart: true})
}

func (c *memberConn) aggregate(ctx context.Context, req *shardpb.AggregateRequest) (*shardclient.Batch, error) {
	r, err := c.raw.Aggregate(ctx, req)
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	b := &shardclient.Batch{CursorID: r.GetCursorId(), NS: r.GetNs(), Docs: make([]bson.Raw, len(r.GetBatch()))}
	for i, d := range r.GetBatch() {
		b.Docs[i] = d
	}
	return b, nil
}

func rawDocs(docs []bson.Raw) [][]byte {
	out := make([][]byte, len(docs))
	for i, d := range docs {
		out[i] = d
	}
	return out
}

// memberNames returns the names of a shard record's members.
func memberNames(sh catalog.Shard) []string {
	out := make([]string, len(sh.Members))
	for i, m := range sh.Members {
		out[i] = m.Name
	}
	return out
}

// errNoShard is the error for a shard the routing metadata does not list.
func errNoShard(name string) error {
	return mongoerr.New(mongoerr.ShardNotFound, "shard %q not found", name)
}

var _ MemberBackend = (*ClusterBackend)(nil)

// primaryConn is the ShardConn ClusterBackend.Shard returns: every call
// goes to the shard's primary at the time of the call, through callShard
// (reads retried by the table's read column, writes by its plain-write
// column: only when the member refused before doing anything). The data
// commands that need more (read preferences, cursors pinned to a member,
// retryable writes) use callShard themselves; GetMore and KillCursors
// here reach the current primary, which is right only for cursors opened
// through this connection before a failover.
type primaryConn struct {
	b     *ClusterBackend
	shard string
}

var _ ShardConn = primaryConn{}

func onPrimary[T any](ctx context.Context, c primaryConn, kind opKind, call func(ShardConn) (T, error)) (T, error) {
	r, _, err := callShard(ctx, c.b, c.shard, kind, "", call, nil)
	return r, err
}

func (c primaryConn) Insert(ctx context.Context, ns string, docs []bson.Raw, o shardclient.WriteOptions) (*shardclient.WriteResult, error) {
	return onPrimary(ctx, c, writeKindOf(o.Session), func(s ShardConn) (*shardclient.WriteResult, error) { return s.Insert(ctx, ns, docs, o) })
}

func (c primaryConn) Update(ctx context.Context, ns string, stmts []shardclient.UpdateStatement, o shardclient.WriteOptions) (*shardclient.WriteResult, error) {
	return onPrimary(ctx, c, writeKindOf(o.Session), func(s ShardConn) (*shardclient.WriteResult, error) { return s.Update(ctx, ns, stmts, o) })
}

func (c primaryConn) Delete(ctx context.Context, ns string, stmts []shardclient.DeleteStatement, o shardclient.WriteOptions) (*shardclient.WriteResult, error) {
	return onPrimary(ctx, c, writeKindOf(o.Session), func(s ShardConn) (*shardclient.WriteResult, error) { return s.Delete(ctx, ns, stmts, o) })
}

func (c primaryConn) Find(ctx context.Context, ns string, f shardclient.Find) (*shardclient.Batch, error) {
	return onPrimary(ctx, c, opRead, func(s ShardConn) (*shardclient.Batch, error) { return s.Find(ctx, ns, f) })
}

func (c primaryConn) GetMore(ctx context.Context, ns string, id int64, batchSize int32) (*shardclient.Batch, error) {
	return onPrimary(ctx, c, opWrite, func(s ShardConn) (*shardclient.Batch, error) { return s.GetMore(ctx, ns, id, batchSize) })
}

func (c primaryConn) KillCursors(ctx context.Context, ns string, ids ...int64) (killed, notFound []int64, err error) {
	type kn struct{ k, n []int64 }
	r, err := onPrimary(ctx, c, opWrite, func(s ShardConn) (kn, error) {
		k, n, err := s.KillCursors(ctx, ns, ids...)
		return kn{k, n}, err
	})
	return r.k, r.n, err
}

func (c primaryConn) Count(ctx context.Context, ns string, filter bson.Raw, skip, limit int64) (int64, error) {
	return onPrimary(ctx, c, opRead, func(s ShardConn) (int64, error) { return s.Count(ctx, ns, filter, skip, limit) })
}

func (c primaryConn) Aggregate(ctx context.Context, ns string, pipeline []bson.Raw, batchSize *int32) (*shardclient.Batch, error) {
	return onPrimary(ctx, c, opRead, func(s ShardConn) (*shardclient.Batch, error) { return s.Aggregate(ctx, ns, pipeline, batchSize) })
}

func (c primaryConn) AggregateShardPart(ctx context.Context, ns string, pipeline []bson.Raw, batchSize *int32) (*shardclient.Batch, error) {
	return onPrimary(ctx, c, opRead, func(s ShardConn) (*shardclient.Batch, error) {
		return s.AggregateShardPart(ctx, ns, pipeline, batchSize)
	})
}

func (c primaryConn) ListCollections(ctx context.Context, db string) ([]string, error) {
	return onPrimary(ctx, c, opRead, func(s ShardConn) ([]string, error) { return s.ListCollections(ctx, db) })
}

func (c primaryConn) CreateCollection(ctx context.Context, ns string) error {
	_, err := onPrimary(ctx, c, opWrite, func(s ShardConn) (struct{}, error) { return struct{}{}, s.CreateCollection(ctx, ns) })
	return err
}

func (c primaryConn) DropCollection(ctx context.Context, ns string) (int, error) {
	return onPrimary(ctx, c, opWrite, func(s ShardConn) (int, error) { return s.DropCollection(ctx, ns) })
}

func (c primaryConn) FindAndModify(ctx context.Context, ns string, f shardclient.FindAndModify) (*shardclient.FindAndModifyResult, error) {
	return onPrimary(ctx, c, writeKindOf(f.Session), func(s ShardConn) (*shardclient.FindAndModifyResult, error) { return s.FindAndModify(ctx, ns, f) })
}

func (c primaryConn) Distinct(ctx context.Context, ns, key string, filter bson.Raw) ([]bson.RawValue, error) {
	return onPrimary(ctx, c, opRead, func(s ShardConn) ([]bson.RawValue, error) { return s.Distinct(ctx, ns, key, filter) })
}

func (c primaryConn) Explain(ctx context.Context, ns string, f shardclient.Find) (bson.Raw, error) {
	return onPrimary(ctx, c, opRead, func(s ShardConn) (bson.Raw, error) { return s.Explain(ctx, ns, f) })
}

func (c primaryConn) CreateIndexes(ctx context.Context, ns string, specs ...bson.Raw) (*shardclient.CreateIndexesResult, error) {
	return onPrimary(ctx, c, opWrite, func(s ShardConn) (*shardclient.CreateIndexesResult, error) { return s.CreateIndexes(ctx, ns, specs...) })
}

func (c primaryConn) DropIndexes(ctx context.Context, ns string, names ...string) (int, error) {
	return onPrimary(ctx, c, opWrite, func(s ShardConn) (int, error) { return s.DropIndexes(ctx, ns, names...) })
}

func (c primaryConn) DropIndexByKey(ctx context.Context, ns string, key bson.Raw) (int, error) {
	return onPrimary(ctx, c, opWrite, func(s ShardConn) (int, error) { return s.DropIndexByKey(ctx, ns, key) })
}

func (c primaryConn) ListIndexes(ctx context.Context, ns string) ([]bson.Raw, error) {
	return onPrimary(ctx, c, opRead, func(s ShardConn) ([]bson.Raw, error) { return s.ListIndexes(ctx, ns) })
}

// writeKindOf is the opKind of a write with session s.
func writeKindOf(s *shardpb.SessionInfo) opKind {
	if len(s.GetLsid()) > 0 && s.GetTxnNumber() > 0 {
		return opRetryableWrite
	}
	return opWrite
}
