package main

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/mongos/balancer"
	"github.com/psdb/psdb/mongos/server"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
)

// balancerLeaseTTL is the balancer election's lease: how long a dead
// leader keeps the role before another router takes it over.
const balancerLeaseTTL = 5 * time.Second

// backendCatalog gives the balancer the catalog of a backend that may
// still be connecting: until it is, campaigns and reads fail (and the
// balancer retries).
type backendCatalog struct{ b *server.ClusterBackend }

// CampaignBalancer implements balancer.Elector.
func (c backendCatalog) CampaignBalancer(ctx context.Context, id string, ttl time.Duration) (*catalog.Leadership, error) {
	cat, err := c.b.Catalog()
	if err != nil {
		return nil, err
	}
	return cat.CampaignBalancer(ctx, id, ttl)
}

// Read implements balancer.Source.
func (c backendCatalog) Read(ctx context.Context) (balancer.ClusterState, balancer.Settings, error) {
	cat, err := c.b.Catalog()
	if err != nil {
		return balancer.ClusterState{}, balancer.Settings{}, err
	}
	return balancer.CatalogSource{Catalog: cat}.Read(ctx)
}

// newBalancer builds this router's balancer: every router campaigns, one
// leads; the others only answer balancerStatus from what the leader
// publishes.
func newBalancer(cl *config.Cluster, node config.Node, b *server.ClusterBackend, log zerolog.Logger) (*balancer.Balancer, error) {
	bc := backendCatalog{b: b}
	return balancer.New(balancer.Options{
		ID:        node.Name,
		Elector:   bc,
		Source:    bc,
		Mover:     &server.Mover{Backend: b, Logger: log, Server: node.Name},
		Splitter:  &server.Splitter{Backend: b, Logger: log, Server: node.Name},
		Publisher: server.StatusPublisher{Backend: b},
		Interval:  cl.Sharding.BalancerInterval,
		LeaseTTL:  balancerLeaseTTL,
		Logger:    log,
	})
}
