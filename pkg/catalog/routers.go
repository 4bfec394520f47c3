package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Registration is a router's leased registration. Safe for concurrent use;
// it owns the keepalive goroutine, which ends with Close or when the lease
// is lost (Done is closed then; register again to come back).
type Registration struct {
	Router
	LeaseID clientv3.LeaseID

	c      *Catalog
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Done is closed when the registration's lease is lost or Close was called.
func (r *Registration) Done() <-chan struct{} { return r.done }

// Close stops the keepalive and revokes the lease, removing the
// registration at once.
func (r *Registration) Close(ctx context.Context) error {
	r.cancel()
	<-r.done
	if _, err := r.c.cli.Revoke(ctx, r.LeaseID); err != nil && !isLeaseNotFound(err) {
		return fmt.Errorf("revoke router %s registration: %w", r.ID, err)
	}
	return nil
}

// RegisterRouter writes <root>/routers/<id> = {id, addr} under a lease of
// ttl kept alive until Close or loss. A second registration of the same id
// replaces the first.
func (c *Catalog) RegisterRouter(ctx context.Context, id, addr string, ttl time.Duration) (*Registration, error) {
	if err := validName("router", id); err != nil {
		return nil, err
	}
	if addr == "" {
		return nil, invalid("router %q has no address", id)
	}
	grant, err := c.cli.Grant(ctx, ttlSeconds(ttl))
	if err != nil {
		return nil, fmt.Errorf("etcd grant lease for router %s: %w", id, err)
	}
	r := Router{ID: id, Addr: addr}
	if _, err := c.cli.Put(ctx, c.routerKey(id), mustJSON(r), clientv3.WithLease(grant.ID)); err != nil {
		c.revokeQuietly(grant.ID)
		return nil, fmt.Errorf("etcd put router %s: %w", id, err)
	}
	kctx, cancel := context.WithCancel(context.Background())
	ka, err := c.cli.KeepAlive(kctx, grant.ID)
	if err != nil {
		cancel()
		c.revokeQuietly(grant.ID)
		return nil, fmt.Errorf("etcd keepalive for router %s: %w", id, err)
	}
	reg := &Registration{Router: r, LeaseID: grant.ID, c: c, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(reg.done)
		for range ka { // drains until the lease is lost or kctx ends
		}
		if kctx.Err() == nil {
			c.log.Warn().Str("router", id).Msg("router registration lease lost")
		}
	}()
	return reg, nil
}

// ListRouters returns the live router registrations sorted by id.
func (c *Catalog) ListRouters(ctx context.Context) ([]Router, error) {
	resp, err := c.cli.Get(ctx, c.routersPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd list routers: %w", err)
	}
	out := make([]Router, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r Router
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, corrupt(string(kv.Key), err)
		}
		out = append(out, r)
	}
	return out, nil
}
