package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

// Routing is the routing metadata the data commands read: what targeting
// needs plus the listings. *catalog.ChunkMap implements it. It must be
// safe for concurrent use.
type Routing interface {
	targeting.Metadata
	Databases() []catalog.Database
	Collections(db string) []catalog.Collection
	Shards() []catalog.Shard
}

var _ Routing = (*catalog.ChunkMap)(nil)

// ShardConn is the part of a shard's client the data commands use;
// *shardclient.Client implements it. It must be safe for concurrent use.
type ShardConn interface {
	Insert(ctx context.Context, ns string, docs []bson.Raw, o shardclient.WriteOptions) (*shardclient.WriteResult, error)
	Update(ctx context.Context, ns string, stmts []shardclient.UpdateStatement, o shardclient.WriteOptions) (*shardclient.WriteResult, error)
	Delete(ctx context.Context, ns string, stmts []shardclient.DeleteStatement, o shardclient.WriteOptions) (*shardclient.WriteResult, error)
	Find(ctx context.Context, ns string, f shardclient.Find) (*shardclient.Batch, error)
	GetMore(ctx context.Context, ns string, id int64, batchSize int32) (*shardclient.Batch, error)
	KillCursors(ctx context.Context, ns string, ids ...int64) (killed, notFound []int64, err error)
	Count(ctx context.Context, ns string, filter bson.Raw, skip, limit int64) (int64, error)
	Aggregate(ctx context.Context, ns string, pipeline []bson.Raw, batchSize *int32) (*shardclient.Batch, error)
	AggregateShardPart(ctx context.Context, ns string, pipeline []bson.Raw, batchSize *int32) (*shardclient.Batch, error)
	ListCollections(ctx context.Context, db string) ([]string, error)
	CreateCollection(ctx context.Context, ns string) error
	DropCollection(ctx context.Context, ns string) (int, error)
	FindAndModify(ctx context.Context, ns string, f shardclient.FindAndModify) (*shardclient.FindAndModifyResult, error)
	Distinct(ctx context.Context, ns, key string, filter bson.Raw) ([]bson.RawValue, error)
	Explain(ctx context.Context, ns string, f shardclient.Find) (bson.Raw, error)
	CreateIndexes(ctx context.Context, ns string, specs ...bson.Raw) (*shardclient.CreateIndexesResult, error)
	DropIndexes(ctx context.Context, ns string, names ...string) (int, error)
	DropIndexByKey(ctx context.Context, ns string, key bson.Raw) (int, error)
	ListIndexes(ctx context.Context, ns string) ([]bson.Raw, error)
}

var _ ShardConn = (*shardclient.Client)(nil)

// Backend is what the data commands (insert, find, ...) reach the cluster
// through: the routing metadata, one connection per shard and the few
// catalog writes the router makes. Implementations must be safe for
// concurrent use. A Backend that is not ready yet answers every call with
// a NotYetInitialized (94) error.
type Backend interface {
	// Routing returns the routing metadata.
	Routing() (Routing, error)
	// Shard returns the connection to a shard.
	Shard(name string) (ShardConn, error)
	// EnsureDatabase creates a database if absent and returns once Routing
	// shows it.
	EnsureDatabase(ctx context.Context, name string) error
	// DropCollectionRecord removes a collection's catalog record (and its
	// chunks) and returns once Routing no longer shows it.
	DropCollectionRecord(ctx context.Context, ns string) error
}

// backend returns the server's Backend, or an error reply when none is
// configured.
func (s *Server) backend() (Backend, bson.Raw) {
	if s.opts.Backend == nil {
		return nil, ErrorReply(mongoerr.New(mongoerr.NotYetInitialized, "this router has no connection to the cluster"))
	}
	return s.opts.Backend, nil
}

// ClusterBackend is the Backend of a running router: an etcd client to the
// config servers, the catalog's ChunkMap (a watched cache of the routing
// metadata) and, per shard, one pkg/shardclient connection per replica-set
// member plus the shard's primary as catalog.ObservePrimary reports it
// (one watcher goroutine per shard, started on the shard's first use and
// stopped by Close). Writes and primary reads go to the primary; other read
// preferences pick a member with selectMember (members.go). It connects in
// the background (NewClusterBackend returns at once, so the router serves
// its handshake even while the config servers are starting); until then
// a call waits for the connection, up to connectWait, and then fails with
// NotYetInitialized. Safe for concurrent use.
type ClusterBackend struct {
	log    zerolog.Logger
	ctx    context.Context // the backend's lifetime; parent of the watchers
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	cli    *clientv3.Client
	cat    *catalog.Catalog
	cm     *catalog.ChunkMap
	shards map[string]*shardMembers // by shard name; created on first use
	closed bool
}

// errNotReady is returned while the backend is still connecting.
var errNotReady = errors.New("router not connected to the config servers yet")

// NewClusterBackend starts connecting to the config servers at endpoints
// (etcd client URLs); it retries until it succeeds or Close is called.
func NewClusterBackend(endpoints []string, log zerolog.Logger) *ClusterBackend {
	ctx, cancel := context.WithCancel(context.Background())
	b := &ClusterBackend{log: log, ctx: ctx, cancel: cancel, done: make(chan struct{}), shards: map[string]*shardMembers{}}
	go b.connect(ctx, endpoints)
	return b
}

// connect is owned by the backend; it ends on success or when Close
// cancels ctx.
func (b *ClusterBackend) connect(ctx context.Context, endpoints []string) {
	defer close(b.done)
	delay := 100 * time.Millisecond
	for {
		err := b.connectOnce(ctx, endpoints)
		if err == nil {
			b.log.Info().Strs("endpoints", endpoints).Msg("connected to the config servers")
			return
		}
		b.log.Warn().Err(err).Dur("retry_in", delay).Msg("cannot open the routing metadata")
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func (b *ClusterBackend) connectOnce(ctx context.Context, endpoints []string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Context: ctx})
	if err != nil {
		return fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	cat := catalog.New(cli, catalog.WithLogger(b.log))
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cm, err := cat.OpenChunkMap(octx)
	if err != nil {
		cli.Close()
		return fmt.Errorf("open the chunk map: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cm.Close()
		cli.Close()
		return nil
	}
	b.cli, b.cat, b.cm = cli, cat, cm
	return nil
}

// connectWait bounds how long a command waits for the backend's first
// connection to the config servers before it fails with NotYetInitialized:
// a router started (or restarted) together with the config servers takes
// commands at once, and drivers do not retry NotYetInitialized.
const connectWait = 10 * time.Second

func (b *ClusterBackend) state() (*catalog.Catalog, *catalog.ChunkMap, error) {
	b.mu.Lock()
	cat, cm := b.cat, b.cm
	b.mu.Unlock()
	if cm != nil {
		return cat, cm, nil
	}
	t := time.NewTimer(connectWait)
	defer t.Stop()
	select {
	case <-b.done: // connected, or closed
	case <-t.C:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cm == nil {
		return nil, nil, mongoerr.Wrap(errNotReady, mongoerr.NotYetInitialized, "%s", errNotReady.Error())
	}
	return b.cat, b.cm, nil
}

// Routing implements Backend.
func (b *ClusterBackend) Routing() (Routing, error) {
	_, cm, err := b.state()
	if err != nil {
		return nil, err
	}
	return cm, nil
}

// firstObservation bounds how long a call waits for a shard watcher's
// first report of the primary (normally one etcd read away).
const firstObservation = 5 * time.Second

// Shard implements Backend: a connection that sends each call to the
// shard's primary at the time of the call, retrying across a failover as
// the retry table says (primaryConn in members.go). The data commands
// that pick members or carry sessions use Member and Primary directly
// (retry.go).
func (b *ClusterBackend) Shard(name string) (ShardConn, error) {
	if _, _, err := b.members(name); err != nil {
		return nil, err
	}
	return primaryConn{b: b, shard: name}, nil
}

// members returns the shard's record and its member set, starting the
// set's primary watcher on first use.
func (b *ClusterBackend) members(name string) (*shardMembers, catalog.Shard, error) {
	cat, cm, err := b.state()
	if err != nil {
		return nil, catalog.Shard{}, err
	}
	sh, ok := cm.Shard(name)
	if !ok || len(sh.Members) == 0 {
		return nil, catalog.Shard{}, errNoShard(name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, catalog.Shard{}, mongoerr.New(mongoerr.ShutdownInProgress, "router backend closed")
	}
	sm, ok := b.shards[name]
	if !ok {
		sm = newShardMembers(name)
		var wctx context.Context
		wctx, sm.cancel = context.WithCancel(b.ctx)
		go sm.watch(cat.ObservePrimary(wctx, name))
		b.shards[name] = sm
	}
	return sm, sh, nil
}

// Member implements MemberBackend. It waits (bounded by ctx and
// firstObservation) for the shard watcher's first report.
func (b *ClusterBackend) Member(ctx context.Context, shard, mode string, exclude []string) (ShardConn, string, error) {
	sm, sh, err := b.members(shard)
	if err != nil {
		return nil, "", err
	}
	v, observed, ch := sm.view()
	if !observed {
		t := time.NewTimer(firstObservation)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		v, _, _ = sm.view()
	}
	name, err := selectMember(mode, memberNames(sh), v.Member, exclude, sm.rr.Add(1))
	if err != nil {
		return nil, "", err
	}
	m, _ := sh.Member(name)
	c, err := sm.conn(m)
	if err != nil {
		return nil, "", err
	}
	return c, name, nil
}

// retryLog is the logger of callShard's retries.
func (b *ClusterBackend) retryLog() zerolog.Logger { return b.log }

// Primary implements MemberBackend.
func (b *ClusterBackend) Primary(shard string) (PrimaryView, <-chan struct{}, error) {
	sm, _, err := b.members(shard)
	if err != nil {
		return PrimaryView{}, nil, err
	}
	v, _, ch := sm.view()
	return v, ch, nil
}

// EnsureDatabase implements Backend.
func (b *ClusterBackend) EnsureDatabase(ctx context.Context, name string) error {
	if name == configDBName {
		return errConfigReadOnly(name)
	}
	cat, cm, err := b.state()
	if err != nil {
		return err
	}
	if _, ok := cm.Database(name); ok {
		return nil
	}
	if _, err := cat.EnsureDatabase(ctx, name, nil); err != nil {
		return err
	}
	return b.waitFor(ctx, cm, func() bool { _, ok := cm.Database(name); return ok })
}

// DropCollectionRecord implements Backend.
func (b *ClusterBackend) DropCollectionRecord(ctx context.Context, ns string) error {
	cat, cm, err := b.state()
	if err != nil {
		return err
	}
	if err := cat.DropCollection(ctx, ns); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return err
	}
	return b.waitFor(ctx, cm, func() bool { _, ok := cm.Collection(ns); return !ok })
}

// waitFor waits until the chunk map reflects the latest etcd revision and
// cond holds.
func (b *ClusterBackend) waitFor(ctx context.Context, cm *catalog.ChunkMap, cond func() bool) error {
	b.mu.Lock()
	cli := b.cli
	b.mu.Unlock()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the catalog revision: %v", err)
	}
	if err := cm.WaitForRevision(ctx, resp.Header.Revision); err != nil {
		return mongoerr.Wrap(err, mongoerr.HostUnreachable, "wait for the routing metadata: %v", err)
	}
	if !cond() {
		return mongoerr.New(mongoerr.ConflictingOperationInProgress, "routing metadata changed concurrently; retry")
	}
	return nil
}

// Close stops connecting and the primary watchers, closes the member
// connections, the chunk map and the etcd client. Safe to call more than
// once.
func (b *ClusterBackend) Close() error {
	b.cancel()
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, sm := range b.shards {
		sm.close()
	}
	if b.cm != nil {
		b.cm.Close()
		b.cli.Close()
	}
	return nil
}
