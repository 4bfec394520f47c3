package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/faultproxy"
	"github.com/psdb/psdb/pkg/launcher"
	"github.com/psdb/psdb/pkg/shardclient"
)

// Cluster is the cluster a chaos run injects faults into: the launcher's
// handles of its processes (to kill, pause and restart them), an etcd
// client of its config servers (to find primaries and chunks) and driver
// clients of its routers. Boot starts a throw-away cluster; Attach takes
// one that is already running (psdb cluster up, or the integration
// harness). Close releases the clients and, for a booted cluster, stops
// every node.
type Cluster struct {
	cfg *config.Cluster
	l   *launcher.Launcher // every node; Close stops the cluster with it
	// procs are the handles faults go through, in start order: those of
	// l, or, in a partitionable cluster, each shard member's own
	// launcher's (it runs with its own cluster.yaml).
	procs  []*launcher.Process
	byName map[string]*launcher.Process
	// links are the fault proxies of a partitionable cluster, by
	// dialling node and target node.
	links map[link]*faultproxy.Proxy
	etcd  *clientv3.Client
	cat   *catalog.Catalog
	owned bool   // Boot started it: Close stops it
	dir   string // Boot's directory, removed by Close unless Keep
	keep  bool
	// load is a client of every router (the driver spreads operations
	// over them and retries on another one); direct[i] talks to router i.
	load   *mongo.Client
	direct []*mongo.Client
}

// BootSpec describes the cluster Boot starts.
type BootSpec struct {
	// Dir holds cluster.yaml and the run directory; empty: a new
	// temporary directory, removed by Close unless Keep.
	Dir  string
	Keep bool
	// BinDir holds configsvr, shardd and mongos; empty: the directory of
	// the running executable.
	BinDir string
	// Node counts; defaults 3 config servers, 2 shards x 3 members, 2 routers.
	ConfigServers, Shards, Members, Routers int
	// Partitionable puts a faultproxy between every pair of members of a
	// shard and between every member and every config server, each member
	// running with a cluster.yaml of its own that names the proxies (see
	// docs/design/chaos.md); the partition scenario needs it.
	Partitionable bool
	// Logger receives the launcher's progress lines.
	Logger zerolog.Logger
}

// Boot writes a cluster.yaml with free ports on 127.0.0.1, starts every
// node with pkg/launcher, waits until all are healthy and every router
// serves, and returns the attached Cluster. Nodes die with the calling
// process (Pdeathsig), so an interrupted run leaves nothing behind.
func Boot(ctx context.Context, spec BootSpec) (*Cluster, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&spec.ConfigServers, 3)
	def(&spec.Shards, 2)
	def(&spec.Members, 3)
	def(&spec.Routers, 2)
	dir, owned := spec.Dir, false
	if dir == "" {
		d, err := os.MkdirTemp("", "psdb-chaos-")
		if err != nil {
			return nil, fmt.Errorf("chaos: cluster directory: %w", err)
		}
		dir, owned = d, true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: cluster directory: %w", err)
	}
	cleanup := func() {
		if owned && !spec.Keep {
			_ = os.RemoveAll(dir)
		}
	}
	path, cfg, err := config.WriteLocal(dir, config.LocalSpec{
		Name: "psdb-chaos", ConfigServers: spec.ConfigServers, Shards: spec.Shards,
		MembersPerShard: spec.Members, Routers: spec.Routers,
	}, func(c *config.Cluster) { c.Log.Level, c.Log.Format = "info", "json" })
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("chaos: write cluster.yaml: %w", err)
	}
	lopts := launcher.Options{
		ConfigPath: path, BinDir: spec.BinDir, Dir: dir, DieWithParent: true,
		StopTimeout: 5 * time.Second, Logger: spec.Logger,
	}
	l, err := launcher.New(cfg, lopts)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("chaos: %w", err)
	}
	for _, role := range []config.Role{config.RoleConfigServer, config.RoleShard, config.RoleRouter} {
		if p := l.Processes(); !slices.ContainsFunc(p, func(p *launcher.Process) bool { return p.Node().Role == role && p.Built() }) {
			cleanup()
			return nil, fmt.Errorf("chaos: %w: %s is missing from %s (make build, or --bin-dir)", launcher.ErrNotBuilt, launcher.BinaryName(role), l.BinDir())
		}
	}
	var (
		procs []*launcher.Process
		links map[link]*faultproxy.Proxy
	)
	if spec.Partitionable {
		procs, links, err = upPartitionable(ctx, cfg, dir, lopts)
	} else {
		procs, err = l.Processes(), l.Up(ctx)
	}
	fail := func(err error) (*Cluster, error) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		_ = l.Down(sctx)
		cancel()
		closeLinks(links)
		cleanup()
		return nil, err
	}
	if err != nil {
		return fail(fmt.Errorf("chaos: start the cluster: %w", err))
	}
	c, err := attach(ctx, cfg, l, procs)
	if err != nil {
		return fail(err)
	}
	c.links = links
	c.owned, c.dir, c.keep = true, dir, spec.Keep || !owned
	return c, nil
}

// Open attaches to the running cluster described by the cluster.yaml at
// path (nodes found by their pid files, as `psdb cluster status` does).
func Open(ctx context.Context, path, binDir string, logger zerolog.Logger) (*Cluster, error) {
	cfg, err := config.Load(path, nil)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	l, err := launcher.New(cfg, launcher.Options{ConfigPath: path, BinDir: binDir,
		Dir: filepath.Dir(path), Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	for _, p := range l.Processes() {
		if !p.Running() {
			return nil, fmt.Errorf("chaos: node %s of %s is not running (start the cluster with psdb cluster up, or let psdb chaos boot its own)", p.Name(), path)
		}
	}
	return Attach(ctx, cfg, l)
}

// Attach wraps a running cluster: it connects to the config servers and
// the routers. The caller keeps ownership of the processes.
func Attach(ctx context.Context, cfg *config.Cluster, l *launcher.Launcher) (*Cluster, error) {
	return attach(ctx, cfg, l, l.Processes())
}

func attach(ctx context.Context, cfg *config.Cluster, l *launcher.Launcher, procs []*launcher.Process) (*Cluster, error) {
	if len(cfg.Routers) == 0 || len(cfg.Shards) == 0 {
		return nil, errors.New("chaos: the cluster needs at least one router and one shard")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("chaos: etcd client: %w", err)
	}
	c := &Cluster{cfg: cfg, l: l, etcd: cli, cat: catalog.New(cli), procs: procs, byName: map[string]*launcher.Process{}}
	for _, p := range procs {
		c.byName[p.Name()] = p
	}
	var addrs []string
	for _, r := range cfg.Routers {
		addrs = append(addrs, r.Addr)
	}
	if c.load, err = mongo.Connect(options.Client().SetHosts(addrs).
		SetServerSelectionTimeout(15 * time.Second).SetRetryWrites(true).SetRetryReads(true)); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("chaos: connect to the routers %v: %w", addrs, err)
	}
	for _, a := range addrs {
		d, err := mongo.Connect(options.Client().SetHosts([]string{a}).SetDirect(true).SetServerSelectionTimeout(15 * time.Second))
		if err != nil {
			c.Close(ctx)
			return nil, fmt.Errorf("chaos: connect to router %s: %w", a, err)
		}
		c.direct = append(c.direct, d)
	}
	return c, nil
}

// Close disconnects the clients and, when Boot started the cluster, stops
// every node and removes its temporary directory.
func (c *Cluster) Close(ctx context.Context) error {
	var errs []error
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if c.load != nil {
		_ = c.load.Disconnect(dctx)
	}
	for _, d := range c.direct {
		_ = d.Disconnect(dctx)
	}
	if c.etcd != nil {
		_ = c.etcd.Close()
	}
	if c.owned {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := c.l.Down(sctx); err != nil {
			errs = append(errs, fmt.Errorf("chaos: stop the cluster: %w", err))
		}
		closeLinks(c.links)
		if !c.keep {
			_ = os.RemoveAll(c.dir)
		}
	}
	return errors.Join(errs...)
}

// Config is the cluster description.
func (c *Cluster) Config() *config.Cluster { return c.cfg }

// Dir is the directory of a booted cluster ("" when attached).
func (c *Cluster) Dir() string { return c.dir }

// Process returns the node called name.
func (c *Cluster) Process(name string) (*launcher.Process, error) {
	p, ok := c.byName[name]
	if !ok {
		return nil, fmt.Errorf("chaos: %w: %q", launcher.ErrUnknownNode, name)
	}
	return p, nil
}

// Partitionable reports whether the cluster was booted with fault proxies.
func (c *Cluster) Partitionable() bool { return len(c.links) > 0 }

// ByRole returns the nodes of role (of shard when not empty), in start order.
func (c *Cluster) ByRole(role config.Role, shard string) []*launcher.Process {
	var out []*launcher.Process
	for _, p := range c.procs {
		if n := p.Node(); n.Role == role && (shard == "" || n.Shard == shard) {
			out = append(out, p)
		}
	}
	return out
}

// Shards returns the shard names.
func (c *Cluster) Shards() []string {
	var out []string
	for _, s := range c.cfg.Shards {
		out = append(out, s.Name)
	}
	return out
}

// Primary returns the member of shard holding the primary lease that also
// says it is PRIMARY, polling until ctx ends. With not set, a member in
// it is never returned (waiting for a failover away from it).
func (c *Cluster) Primary(ctx context.Context, shard string, not ...string) (*launcher.Process, error) {
	var last error
	for {
		p, err := c.primaryOnce(ctx, shard)
		if err == nil && slices.Contains(not, p.Name()) {
			err = fmt.Errorf("%s is still the primary of %s", p.Name(), shard)
		}
		if err == nil {
			return p, nil
		}
		last = err
		if werr := wait(ctx, 50*time.Millisecond); werr != nil {
			return nil, fmt.Errorf("primary of %s: %w (last: %v)", shard, werr, last)
		}
	}
}

func (c *Cluster) primaryOnce(ctx context.Context, shard string) (*launcher.Process, error) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := c.cat.GetPrimary(qctx, shard)
	if err != nil {
		return nil, err
	}
	p, err := c.Process(info.Member)
	if err != nil {
		return nil, err
	}
	if !p.Running() {
		return nil, fmt.Errorf("lease of %s names %s, which is not running", shard, p.Name())
	}
	st, err := shardclient.ReplicationStatus(qctx, p.Node().Addr)
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", p.Name(), err)
	}
	if st.GetState() != "PRIMARY" {
		return nil, fmt.Errorf("lease of %s names %s, which is %s", shard, p.Name(), st.GetState())
	}
	return p, nil
}

// Secondaries returns the members of shard other than primary.
func (c *Cluster) Secondaries(shard, primary string) []*launcher.Process {
	var out []*launcher.Process
	for _, p := range c.ByRole(config.RoleShard, shard) {
		if p.Name() != primary {
			out = append(out, p)
		}
	}
	return out
}

// Healed returns nil when the cluster is whole again: every node runs and
// passes its health check, every shard has exactly one PRIMARY (the
// lease holder) and its other members are SECONDARY with a sync source,
// and every router answers replSetGetStatus with every member healthy.
func (c *Cluster) Healed(ctx context.Context) error {
	for _, p := range c.procs {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.Healthy(hctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name(), err)
		}
	}
	for _, sh := range c.Shards() {
		prim, err := c.primaryOnce(ctx, sh)
		if err != nil {
			return err
		}
		for _, p := range c.Secondaries(sh, prim.Name()) {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := shardclient.ReplicationStatus(sctx, p.Node().Addr)
			cancel()
			if err != nil {
				return fmt.Errorf("status of %s: %w", p.Name(), err)
			}
			if st.GetState() != "SECONDARY" || st.GetSyncSource() == "" {
				return fmt.Errorf("%s is %s (sync source %q)", p.Name(), st.GetState(), st.GetSyncSource())
			}
		}
	}
	for i, d := range c.direct {
		if err := routerSeesAllHealthy(ctx, d); err != nil {
			return fmt.Errorf("router %s: %w", c.cfg.Routers[i].Name, err)
		}
	}
	return nil
}

// routerSeesAllHealthy runs replSetGetStatus through one router and
// checks that every member of every shard has health 1.
func routerSeesAllHealthy(ctx context.Context, cli *mongo.Client) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var reply struct {
		Shards map[string]struct {
			Members []struct {
				Member   string  `bson:"member"`
				Health   float64 `bson:"health"`
				StateStr string  `bson:"stateStr"`
			} `bson:"members"`
		} `bson:"shards"`
	}
	if err := cli.Database("admin").RunCommand(rctx, bson.D{{Key: "replSetGetStatus", Value: 1}}).Decode(&reply); err != nil {
		return fmt.Errorf("replSetGetStatus: %w", err)
	}
	if len(reply.Shards) == 0 {
		return errors.New("replSetGetStatus lists no shard")
	}
	for sh, st := range reply.Shards {
		for _, m := range st.Members {
			if m.Health != 1 {
				return fmt.Errorf("replSetGetStatus: %s member %s is %s", sh, m.Member, m.StateStr)
			}
		}
	}
	return nil
}

// WaitHealed polls Healed until it passes or d elapses, and returns how
// long it took.
func (c *Cluster) WaitHealed(ctx context.Context, d time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		if last = c.Healed(ctx); last == nil {
			return time.Since(start), nil
		}
		if err := wait(ctx, 100*time.Millisecond); err != nil {
			return time.Since(start), fmt.Errorf("not healed after %v: %w", d, last)
		}
	}
}

// repair undoes what an interrupted fault script may have left behind: it
// heals every proxy link, continues every node (SIGCONT is harmless to a
// running one) and starts every node that is not running. It returns the
// names of the nodes it started.
func (c *Cluster) repair() ([]string, error) {
	for _, p := range c.links {
		p.SetMode(faultproxy.Pass)
	}
	var started []string
	var errs []error
	for _, p := range c.procs {
		if p.Running() {
			_ = p.Signal(syscall.SIGCONT)
			continue
		}
		if err := p.Start(); err != nil {
			errs = append(errs, err)
			continue
		}
		started = append(started, p.Name())
	}
	return started, errors.Join(errs...)
}

// restart starts a stopped or killed node and waits until it is healthy.
func restart(ctx context.Context, p *launcher.Process, d time.Duration) error {
	if err := p.Start(); err != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return p.WaitHealthy(hctx)
}

// kill sends SIGKILL to a node and waits until it is gone.
func kill(ctx context.Context, p *launcher.Process) error {
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return p.Kill(kctx)
}

// wait waits d or until ctx ends (then it returns ctx's error).
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
