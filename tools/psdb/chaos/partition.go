package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/faultproxy"
	"github.com/psdb/psdb/pkg/launcher"
	"github.com/psdb/psdb/pkg/shardclient"
)

// link names a directed connection between two nodes: from dials to.
type link struct{ from, to string }

func closeLinks(links map[link]*faultproxy.Proxy) {
	for _, p := range links {
		_ = p.Close()
	}
}

// upPartitionable starts the cluster of cfg (written at lopts.ConfigPath)
// with a fault proxy on every link a shard member dials: to each other
// member of its shard and to each config server. Members find each other
// and the config servers only through cluster.yaml, so each member runs
// with a cluster.yaml of its own (cluster-<member>.yaml, next to the
// shared one) in which those addresses are its proxies'; config servers
// and routers run with the shared file, whose addresses are the real ones
// (routers learn the members' addresses from the catalog, which the config
// server fills from its file). Start order is the launcher's: config
// servers, each shard's members (a group at a time), routers.
func upPartitionable(ctx context.Context, cfg *config.Cluster, dir string, lopts launcher.Options) (procs []*launcher.Process, links map[link]*faultproxy.Proxy, err error) {
	links = map[link]*faultproxy.Proxy{}
	defer func() {
		if err != nil {
			closeLinks(links)
			links = nil
		}
	}()
	proxy := func(from, to, target string) (string, error) {
		p, err := faultproxy.New("127.0.0.1:0", target)
		if err != nil {
			return "", err
		}
		links[link{from, to}] = p
		return p.Addr(), nil
	}
	members := map[string]*launcher.Process{}
	for si, sh := range cfg.Shards {
		for _, m := range sh.Members {
			own, err := config.Load(lopts.ConfigPath, nil)
			if err != nil {
				return nil, nil, err
			}
			for mi, peer := range sh.Members {
				if peer.Name == m.Name {
					continue
				}
				if own.Shards[si].Members[mi].Addr, err = proxy(m.Name, peer.Name, peer.Addr); err != nil {
					return nil, nil, err
				}
			}
			for ci, cs := range cfg.ConfigServers {
				if own.ConfigServers[ci].ClientAddr, err = proxy(m.Name, cs.Name, cs.ClientAddr); err != nil {
					return nil, nil, err
				}
			}
			data, err := own.Encode()
			if err != nil {
				return nil, nil, err
			}
			path := filepath.Join(dir, "cluster-"+m.Name+".yaml")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return nil, nil, fmt.Errorf("write %s: %w", path, err)
			}
			if own, err = config.Load(path, nil); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			o := lopts
			o.ConfigPath = path
			l, err := launcher.New(own, o)
			if err != nil {
				return nil, nil, err
			}
			if members[m.Name], err = l.Process(m.Name); err != nil {
				return nil, nil, err
			}
		}
	}
	only := func(role config.Role) (*launcher.Launcher, error) {
		o := lopts
		o.Only = []config.Role{role}
		return launcher.New(cfg, o)
	}
	cfgL, err := only(config.RoleConfigServer)
	if err != nil {
		return nil, nil, err
	}
	if err := cfgL.Up(ctx); err != nil {
		return nil, nil, err
	}
	procs = slices.DeleteFunc(cfgL.Processes(), func(p *launcher.Process) bool { return p.Node().Role != config.RoleConfigServer })
	for _, sh := range cfg.Shards {
		var group []*launcher.Process
		for _, m := range sh.Members {
			p := members[m.Name]
			if err := p.Start(); err != nil {
				return nil, nil, err
			}
			group = append(group, p)
		}
		hctx, cancel := context.WithTimeout(ctx, launcher.DefaultStartTimeout)
		g, gctx := errgroup.WithContext(hctx)
		for _, p := range group {
			g.Go(func() error { return p.WaitHealthy(gctx) })
		}
		err := g.Wait()
		cancel()
		if err != nil {
			return nil, nil, err
		}
		procs = append(procs, group...)
	}
	routerL, err := only(config.RoleRouter)
	if err != nil {
		return nil, nil, err
	}
	if err := routerL.Up(ctx); err != nil {
		return nil, nil, err
	}
	for _, p := range routerL.Processes() {
		if p.Node().Role == config.RoleRouter {
			procs = append(procs, p)
		}
	}
	return procs, links, nil
}

// setLinks sets the mode of every link between a and the nodes of others,
// both directions where a proxy exists, and returns how many it changed.
func (c *Cluster) setLinks(a string, others []string, m faultproxy.Mode) int {
	n := 0
	for l, p := range c.links {
		if (l.from == a && slices.Contains(others, l.to)) || (l.to == a && slices.Contains(others, l.from)) {
			p.SetMode(m)
			n++
		}
	}
	return n
}

// partitionScenario cuts each shard's primary off from its secondaries
// (and, with fromConfig, from the config servers too) by blackholing the
// proxies of those links, keeps the partition for 3 lease TTLs at least,
// then heals it and waits for the cluster to be whole.
//
// Cut from everything, the primary cannot renew its lease: it must stop
// taking writes, the others elect a new primary, and when the partition
// heals the old primary rejoins as a secondary (rolling back what was not
// majority-committed). Cut from its secondaries only, it keeps its lease
// and cannot commit with a majority: w:"majority" writes of its shard
// wait (no failover: the lease holder is alive) until the partition heals.
func partitionScenario(fromConfig bool) func(context.Context, *Env) error {
	return func(ctx context.Context, e *Env) error {
		if !e.C.Partitionable() {
			return fmt.Errorf("the cluster has no fault proxies: the partition scenarios need a cluster booted by psdb chaos run (without --cluster)")
		}
		ttl := e.C.Config().Replication.LeaseTTL
		for _, sh := range e.C.Shards() {
			pctx, cancel := context.WithTimeout(ctx, e.HealTimeout())
			p, err := e.C.Primary(pctx, sh)
			if err != nil {
				cancel()
				return err
			}
			var others []string
			for _, s := range e.C.Secondaries(sh, p.Name()) {
				others = append(others, s.Name())
			}
			what := "its secondaries " + strings.Join(others, ", ")
			if fromConfig {
				for _, cs := range e.C.Config().ConfigServers {
					others = append(others, cs.Name)
				}
				what += " and the config servers"
			}
			t0 := time.Now()
			n := e.C.setLinks(p.Name(), others, faultproxy.Blackhole)
			heal := func() { e.C.setLinks(p.Name(), others, faultproxy.Pass) }
			e.Fault("partition primary %s from %s (%d links blackholed)", p.Name(), what, n)
			if fromConfig {
				np, err := e.C.Primary(pctx, sh, p.Name())
				if err != nil {
					heal()
					cancel()
					return fmt.Errorf("no failover away from the isolated %s: %w", p.Name(), err)
				}
				e.Note("%s: %s primary %v after the partition", sh, np.Name(), time.Since(t0).Round(time.Millisecond))
				if err := waitNotPrimary(pctx, p); err != nil {
					e.Note("%s: %v", sh, err)
				} else {
					e.Note("%s: isolated %s no longer PRIMARY %v after the partition", sh, p.Name(), time.Since(t0).Round(time.Millisecond))
				}
				if _, err := e.Progress(ctx, 20); err != nil {
					heal()
					cancel()
					return err
				}
			}
			_ = wait(ctx, time.Until(t0.Add(3*ttl)))
			heal()
			cancel()
			e.Note("%s: partition of %s healed after %v", sh, p.Name(), time.Since(t0).Round(time.Millisecond))
			if _, err := e.C.WaitHealed(ctx, e.HealTimeout()); err != nil {
				return err
			}
		}
		return nil
	}
}

// waitNotPrimary waits until p no longer says it is PRIMARY.
func waitNotPrimary(ctx context.Context, p *launcher.Process) error {
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := shardclient.ReplicationStatus(sctx, p.Node().Addr)
		cancel()
		if err == nil && st.GetState() != "PRIMARY" {
			return nil
		}
		if werr := wait(ctx, 50*time.Millisecond); werr != nil {
			return fmt.Errorf("isolated %s still PRIMARY: %w", p.Name(), werr)
		}
	}
}
