package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultPrefix is the root of every catalog key.
const DefaultPrefix = "/psdb"

// RequiredMaxTxnOps is the etcd --max-txn-ops a config server must allow.
// ShardCollection writes all initial chunks in one Txn, so the number of
// operations grows with numInitialChunks (at most MaxInitialChunks); etcd's
// default of 128 is too small for large pre-splits.
const RequiredMaxTxnOps = 2 * MaxInitialChunks

// Catalog is the typed API over the catalog keys in etcd. It holds no
// cached state and is safe for concurrent use; every method is one or a few
// etcd round trips and honours ctx cancellation.
type Catalog struct {
	cli  *clientv3.Client
	root string
	log  zerolog.Logger
	now  func() time.Time
}

// Option configures a Catalog.
type Option func(*Catalog)

// WithPrefix sets the root prefix of all keys (default "/psdb"). Tests use
// distinct prefixes to share one etcd.
func WithPrefix(p string) Option {
	return func(c *Catalog) { c.root = strings.TrimRight(p, "/") }
}

// WithLogger sets the logger used for background work (lease keepalives,
// the chunk map's watch).
func WithLogger(l zerolog.Logger) Option {
	return func(c *Catalog) { c.log = l }
}

// New returns a Catalog over cli. It does not contact etcd.
func New(cli *clientv3.Client, opts ...Option) *Catalog {
	c := &Catalog{cli: cli, root: DefaultPrefix, log: zerolog.Nop(), now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Client returns the etcd client the catalog uses.
func (c *Catalog) Client() *clientv3.Client { return c.cli }

// Prefix returns the root prefix.
func (c *Catalog) Prefix() string { return c.root }

// ---- key schema (the only place keys are built) ----

func (c *Catalog) clusterKey() string                { return c.root + "/cluster" }
func (c *Catalog) shardsPrefix() string              { return c.root + "/shards/" }
func (c *Catalog) shardKey(name string) string       { return c.root + "/shards/" + name }
func (c *Catalog) shardSubPrefix(name string) string { return c.root + "/shards/" + name + "/" }
func (c *Catalog) primaryKey(shard string) string    { return c.root + "/shards/" + shard + "/primary" }
func (c *Catalog) termKey(shard string) string       { return c.root + "/shards/" + shard + "/term" }
func (c *Catalog) databasesPrefix() string           { return c.root + "/databases/" }
func (c *Catalog) databaseKey(db string) string      { return c.root + "/databases/" + db }
func (c *Catalog) collectionsPrefix() string         { return c.root + "/collections/" }
func (c *Catalog) collectionKey(ns string) string    { return c.root + "/collections/" + ns }
func (c *Catalog) chunksPrefix() string              { return c.root + "/chunks/" }
func (c *Catalog) chunkPrefix(uuid string) string    { return c.root + "/chunks/" + uuid + "/" }
func (c *Catalog) chunkKey(uuid string, minEnc []byte) string {
	return c.root + "/chunks/" + uuid + "/" + hex.EncodeToString(minEnc)
}
func (c *Catalog) routersPrefix() string        { return c.root + "/routers/" }
func (c *Catalog) routerKey(id string) string   { return c.root + "/routers/" + id }
func (c *Catalog) balancerLeaderPrefix() string { return c.root + "/balancer/leader" }
func (c *Catalog) balancerSettingsKey() string  { return c.root + "/balancer/settings" }
func (c *Catalog) usersPrefix(db string) string { return c.root + "/users/" + db + "/" }
func (c *Catalog) userKey(db, user string) string {
	return c.root + "/users/" + db + "/" + url.PathEscape(user)
}

// routingRange is the key range [start, end) holding everything ChunkMap
// needs: chunks, cluster, collections, databases, routers and shards sort
// contiguously under the root.
func (c *Catalog) routingRange() (start, end string) {
	return c.root + "/chunks/", c.root + "/shards0"
}

// ---- helpers ----

func (c *Catalog) getJSON(ctx context.Context, key string, v any) (modRev int64, err error) {
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("etcd get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, ErrNotFound
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w: %w", key, ErrCorrupt, err)
	}
	return resp.Kvs[0].ModRevision, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Every record type is a plain struct of JSON-encodable fields
		// (bounds are pre-encoded json.RawMessage); failing here is a bug.
		panic(fmt.Sprintf("catalog: encode %T: %v", v, err))
	}
	return string(b)
}

func (c *Catalog) commit(ctx context.Context, what string, txn clientv3.Txn) (*clientv3.TxnResponse, error) {
	resp, err := txn.Commit()
	if errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrRequestTooLarge) {
		return nil, fmt.Errorf("etcd txn %s: %w (the config server must run etcd with --max-txn-ops >= %d and a --max-request-bytes that fits the request)", what, err, RequiredMaxTxnOps)
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("etcd txn %s: %w", what, ctxErr)
		}
		return nil, fmt.Errorf("etcd txn %s: %w", what, err)
	}
	return resp, nil
}

// newUUID returns a random RFC 4122 version 4 UUID string.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("catalog: crypto/rand: %v", err)) // crypto/rand never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// validName checks a shard, member or router name: it becomes one key
// component, so it must be non-empty and free of '/' and control bytes.
func validName(kind, s string) error {
	if s == "" {
		return invalid("%s name is empty", kind)
	}
	if len(s) > 128 {
		return invalid("%s name %q is longer than 128 bytes", kind, s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return invalid("%s name %q may only contain letters, digits, '-', '_' and '.'", kind, s)
		}
	}
	return nil
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
