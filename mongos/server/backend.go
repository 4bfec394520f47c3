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
// metadata) and one pkg/shardclient connection per shard. It connects in
// the background (NewClusterBackend returns at once, so the router serves
// its handshake even while the config servers are starting); until then
// every call fails with NotYetInitialized. Safe for concurrent use.
//
// TEMPORARY: replication does not exist yet, so every operation for a
// shard goes to the FIRST member of that shard in cluster order. The next
// step routes to the shard's primary from its lease (catalog.Primary).
type ClusterBackend struct {
	log    zerolog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	cli    *clientv3.Client
	cat    *catalog.Catalog
	cm     *catalog.ChunkMap
	shards map[string]*shardclient.Client // by shard name; dialled lazily
	closed bool
}

// errNotReady is returned while the backend is still connecting.
var errNotReady = errors.New("router not connected to the config servers yet")

// NewClusterBackend starts connecting to the config servers at endpoints
// (etcd client URLs); it retries until it succeeds or Close is called.
func NewClusterBackend(endpoints []string, log zerolog.Logger) *ClusterBackend {
	ctx, cancel := context.WithCancel(context.Background())
	b := &ClusterBackend{log: log, cancel: cancel, done: make(chan struct{}), shards: map[string]*shardclient.Client{}}
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

func (b *ClusterBackend) state() (*catalog.Catalog, *catalog.ChunkMap, error) {
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

// Shard implements Backend: the connection to the shard's first member
// (see the type's TEMPORARY note), dialled on first use.
func (b *ClusterBackend) Shard(name string) (ShardConn, error) {
	_, cm, err := b.state()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.shards[name]; ok {
		return c, nil
	}
	sh, ok := cm.Shard(name)
	if !ok || len(sh.Members) == 0 {
		return nil, mongoerr.New(mongoerr.ShardNotFound, "shard %q not found", name)
	}
	c, err := shardclient.Dial(context.Background(), sh.Members[0].Addr)
	if err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.HostUnreachable, "dial shard %s at %s: %v", name, sh.Members[0].Addr, err)
	}
	b.shards[name] = c
	return c, nil
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

// Close stops connecting, closes the shard connections, the chunk map and
// the etcd client. Safe to call more than once.
func (b *ClusterBackend) Close() error {
	b.cancel()
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, c := range b.shards {
		c.Close()
	}
	if b.cm != nil {
		b.cm.Close()
		b.cli.Close()
	}
	return nil
}
