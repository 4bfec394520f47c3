package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/launcher"
)

// Scenario is one kind of fault, injected by Inject while the checker's
// load runs. Prepare (optional) runs before the load starts; Requires
// (optional) refuses a cluster the scenario cannot run on.
type Scenario struct {
	Name     string
	Summary  string
	Requires func(*config.Cluster) error
	// NeedsProxies: the scenario cuts links with fault proxies, which only
	// a cluster booted by Boot with Partitionable has; on another cluster
	// it is skipped.
	NeedsProxies bool
	Prepare      func(ctx context.Context, e *Env) error
	Inject       func(ctx context.Context, e *Env) error
}

// Scenarios returns every scenario, in the order `all` runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "primary-kill", Summary: "SIGKILL the primary of every shard in turn, wait for the failover, restart it",
			Requires: needMembers(3), Inject: primaryKill},
		{Name: "primary-pause", Summary: "SIGSTOP the primary of every shard in turn for 3 lease TTLs (a new primary is elected), then SIGCONT",
			Requires: needMembers(3), Inject: primaryPause},
		{Name: "secondary-restart", Summary: "SIGKILL a secondary of every shard in turn and restart it",
			Requires: needMembers(3), Inject: secondaryRestart},
		{Name: "router-kill", Summary: "SIGKILL each router in turn (the load's client knows every router), restart it",
			Requires: needRouters(2), Inject: routerKill},
		{Name: "configsvr-kill", Summary: "SIGKILL the etcd leader among the config servers, restart it",
			Requires: needConfigServers(3), Inject: configsvrKill},
		{Name: "migration-kill", Summary: "SIGKILL the donor primary while a moveChunk runs, restart it, move the chunk again",
			Requires: needMigration, Prepare: migrationPrepare, Inject: migrationKill},
		{Name: "partition", Summary: "cut each shard's primary off from its secondaries and the config servers (fault proxies), heal after 3 lease TTLs",
			Requires: needMembers(3), NeedsProxies: true, Inject: partitionScenario(true)},
		{Name: "partition-replication", Summary: "cut each shard's primary off from its secondaries only (it keeps its lease), heal after 3 lease TTLs",
			Requires: needMembers(3), NeedsProxies: true, Inject: partitionScenario(false)},
		{Name: "rolling-restart", Summary: "restart every node (SIGTERM, start, wait for health), one at a time",
			Requires: needMembers(3), Inject: rollingRestart},
	}
}

// Names returns the scenario names.
func Names() []string {
	var out []string
	for _, s := range Scenarios() {
		out = append(out, s.Name)
	}
	return out
}

// ErrUnknownScenario is returned by Select for a name that is no scenario.
var ErrUnknownScenario = errors.New("unknown scenario")

// Select returns the scenarios named (in the order given; "all" is every
// scenario), without repeats.
func Select(names []string) ([]Scenario, error) {
	all := Scenarios()
	var out []Scenario
	seen := map[string]bool{}
	add := func(s Scenario) {
		if !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s)
		}
	}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if n == "all" {
			for _, s := range all {
				add(s)
			}
			continue
		}
		i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("%w %q (known: %s, all)", ErrUnknownScenario, n, strings.Join(Names(), ", "))
		}
		add(all[i])
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: none given (known: %s, all)", ErrUnknownScenario, strings.Join(Names(), ", "))
	}
	return out, nil
}

func needMembers(n int) func(*config.Cluster) error {
	return func(c *config.Cluster) error {
		for _, s := range c.Shards {
			if len(s.Members) < n {
				return fmt.Errorf("shard %s has %d members, the scenario needs %d", s.Name, len(s.Members), n)
			}
		}
		return nil
	}
}

func needRouters(n int) func(*config.Cluster) error {
	return func(c *config.Cluster) error {
		if len(c.Routers) < n {
			return fmt.Errorf("%d routers, the scenario needs %d", len(c.Routers), n)
		}
		return nil
	}
}

func needConfigServers(n int) func(*config.Cluster) error {
	return func(c *config.Cluster) error {
		if len(c.ConfigServers) < n {
			return fmt.Errorf("%d config servers, the scenario needs %d", len(c.ConfigServers), n)
		}
		return nil
	}
}

func needMigration(c *config.Cluster) error {
	if len(c.Shards) < 2 {
		return fmt.Errorf("%d shards, a migration needs 2", len(c.Shards))
	}
	return needMembers(3)(c)
}

// primaryKill: SIGKILL each shard's primary, wait for a new one and for
// writes to go on, restart the old one, wait until the cluster is whole.
func primaryKill(ctx context.Context, e *Env) error {
	for _, sh := range e.C.Shards() {
		if err := killPrimary(ctx, e, sh); err != nil {
			return err
		}
		if _, err := e.C.WaitHealed(ctx, e.HealTimeout()); err != nil {
			return err
		}
	}
	return nil
}

// killPrimary kills the primary of sh and restarts it once another member
// took over and writes go on.
func killPrimary(ctx context.Context, e *Env, sh string) error {
	pctx, cancel := context.WithTimeout(ctx, e.HealTimeout())
	defer cancel()
	p, err := e.C.Primary(pctx, sh)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := kill(ctx, p); err != nil {
		return err
	}
	e.Fault("SIGKILL primary %s", p.Name())
	np, err := e.C.Primary(pctx, sh, p.Name())
	if err != nil {
		return fmt.Errorf("no failover after killing %s: %w", p.Name(), err)
	}
	e.Note("%s: %s primary %v after the kill", sh, np.Name(), time.Since(t0).Round(time.Millisecond))
	if _, err := e.Progress(ctx, 20); err != nil {
		return err
	}
	if err := restart(ctx, p, e.HealTimeout()); err != nil {
		return fmt.Errorf("restart %s: %w", p.Name(), err)
	}
	return nil
}

// primaryPause: SIGSTOP each shard's primary; the lease expires, another
// member takes over; after 3 TTLs the old primary continues (SIGCONT) and
// must step down and rejoin as a secondary.
func primaryPause(ctx context.Context, e *Env) error {
	ttl := e.C.Config().Replication.LeaseTTL
	for _, sh := range e.C.Shards() {
		pctx, cancel := context.WithTimeout(ctx, e.HealTimeout())
		p, err := e.C.Primary(pctx, sh)
		if err != nil {
			cancel()
			return err
		}
		t0 := time.Now()
		if err := p.Pause(); err != nil {
			cancel()
			return err
		}
		np, err := e.C.Primary(pctx, sh, p.Name())
		if err != nil {
			_ = p.Resume()
			cancel()
			return fmt.Errorf("no failover while %s is stopped: %w", p.Name(), err)
		}
		e.Note("%s: %s primary %v after the SIGSTOP", sh, np.Name(), time.Since(t0).Round(time.Millisecond))
		// Stay stopped for 3 lease TTLs in all: the old primary wakes up
		// long after its lease is gone.
		_ = wait(ctx, time.Until(t0.Add(3*ttl)))
		err = p.Resume()
		cancel()
		if err != nil {
			return err
		}
		e.Fault("SIGSTOP primary %s for %v (lease TTL %v)", p.Name(), time.Since(t0).Round(100*time.Millisecond), ttl)
		if _, err := e.C.WaitHealed(ctx, e.HealTimeout()); err != nil {
			return err
		}
	}
	return nil
}

// secondaryRestart: SIGKILL one secondary of each shard; majority writes
// go on with the other two; restart it and wait until it caught up.
func secondaryRestart(ctx context.Context, e *Env) error {
	for _, sh := range e.C.Shards() {
		pctx, cancel := context.WithTimeout(ctx, e.HealTimeout())
		p, err := e.C.Primary(pctx, sh)
		cancel()
		if err != nil {
			return err
		}
		s := e.C.Secondaries(sh, p.Name())[0]
		if err := kill(ctx, s); err != nil {
			return err
		}
		e.Fault("SIGKILL secondary %s", s.Name())
		if _, err := e.Progress(ctx, 20); err != nil {
			return err
		}
		if err := restart(ctx, s, e.HealTimeout()); err != nil {
			return fmt.Errorf("restart %s: %w", s.Name(), err)
		}
		if _, err := e.C.WaitHealed(ctx, e.HealTimeout()); err != nil {
			return err
		}
	}
	return nil
}

// routerKill: SIGKILL each router in turn; the load's client fails over
// to the other routers; restart it.
func routerKill(ctx context.Context, e *Env) error {
	for _, r := range e.C.ByRole(config.RoleRouter, "") {
		if err := kill(ctx, r); err != nil {
			return err
		}
		e.Fault("SIGKILL router %s", r.Name())
		took, err := e.Progress(ctx, 20)
		if err != nil {
			return err
		}
		e.Note("writes went on %v after killing %s", took.Round(time.Millisecond), r.Name())
		if err := restart(ctx, r, e.HealTimeout()); err != nil {
			return fmt.Errorf("restart %s: %w", r.Name(), err)
		}
		if _, err := e.C.WaitHealed(ctx, e.HealTimeout()); err != nil {
			return err
		}
	}
	return nil
}

// configsvrKill: SIGKILL the config server member leading etcd; the other
// two keep a quorum (leases renew, routers read the catalog); restart it.
func configsvrKill(ctx context.Context, e *Env) error {
	leader, err := etcdLeader(ctx, e.C)
	if err != nil {
		return err
	}
	if err := kill(ctx, leader); err != nil {
		return err
	}
	e.Fault("SIGKILL config server %s (etcd leader)", leader.Name())
	took, err := e.Progress(ctx, 20)
	if err != nil {
		return err
	}
	e.Note("writes went on %v after killing %s", took.Round(time.Millisecond), leader.Name())
	if err := restart(ctx, leader, e.HealTimeout()); err != nil {
		return fmt.Errorf("restart %s: %w", leader.Name(), err)
	}
	_, err = e.C.WaitHealed(ctx, e.HealTimeout())
	return err
}

// etcdLeader returns the config server member that leads etcd.
func etcdLeader(ctx context.Context, c *Cluster) (*launcher.Process, error) {
	var last error
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		for _, p := range c.ByRole(config.RoleConfigServer, "") {
			ep := "http://" + p.Node().Addr
			sctx, scancel := context.WithTimeout(dctx, 2*time.Second)
			st, err := c.etcd.Status(sctx, ep)
			scancel()
			if err != nil {
				last = err
				continue
			}
			if st.Leader != 0 && st.Leader == st.Header.GetMemberId() {
				return p, nil
			}
		}
		if err := wait(dctx, 100*time.Millisecond); err != nil {
			return nil, fmt.Errorf("find the etcd leader: %w (last: %v)", err, last)
		}
	}
}

// migrationBulk is the number of 1 KB documents migration-kill loads
// first, so a chunk's clone takes long enough to be interrupted.
const migrationBulk = 4000

func migrationPrepare(ctx context.Context, e *Env) error {
	return loadBulk(ctx, e, migrationBulk)
}

// migrationKill: moveChunk through a router the chunk holding the first
// bulk document; as soon as the donor primary logs that the migration
// session started, SIGKILL it. Afterwards the old primary restarts, and
// the same chunk moves again (the cluster can still migrate).
func migrationKill(ctx context.Context, e *Env) error {
	admin := e.C.direct[0].Database("admin")
	restore := balancerOff(ctx, e)
	defer restore()

	key := bson.D{{Key: "_id", Value: bulkPrefix + "000000"}}
	ch, err := chunkOf(ctx, e.C, e.NS, key)
	if err != nil {
		return err
	}
	donor, to := ch.Shard, otherShard(e.C, ch.Shard)
	pctx, cancel := context.WithTimeout(ctx, e.HealTimeout())
	defer cancel()
	p, err := e.C.Primary(pctx, donor)
	if err != nil {
		return err
	}
	logFrom := fileSize(p.Node().LogFile)
	type moveResult struct {
		err  error
		took time.Duration
	}
	moved := make(chan moveResult, 1)
	mctx, mcancel := context.WithTimeout(ctx, 2*e.HealTimeout())
	defer mcancel()
	go func() {
		t := time.Now()
		err := admin.RunCommand(mctx, bson.D{{Key: "moveChunk", Value: e.NS},
			{Key: "bounds", Value: bson.A{ch.Min, ch.Max}}, {Key: "to", Value: to}}).Err()
		moved <- moveResult{err, time.Since(t)}
	}()
	// Kill the donor primary as soon as its migration session starts.
	var early *moveResult
	for !logHas(p.Node().LogFile, logFrom, "migration session started") {
		select {
		case r := <-moved:
			early = &r
		case <-pctx.Done():
			return fmt.Errorf("%s never logged the migration session start: %w", p.Name(), pctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if early != nil {
			break
		}
	}
	t0 := time.Now()
	if err := kill(ctx, p); err != nil {
		return err
	}
	var res moveResult
	if early != nil {
		res = *early
	} else {
		res = <-moved
	}
	phase := "during the migration (moveChunk failed)"
	switch {
	case early != nil:
		// moveChunk returned before the donor logged a session: the kill
		// did not interrupt a migration.
		phase = "after moveChunk returned without a donor session (" + errString(res.err) + ")"
	case res.err == nil:
		phase = "right after the migration committed"
	}
	e.Fault("SIGKILL donor primary %s %s", p.Name(), phase)
	e.Note("moveChunk %s -> %s: %v after %v", donor, to, errString(res.err), res.took.Round(time.Millisecond))
	np, err := e.C.Primary(pctx, donor, p.Name())
	if err != nil {
		return fmt.Errorf("no failover after killing %s: %w", p.Name(), err)
	}
	e.Note("%s: %s primary %v after the kill", donor, np.Name(), time.Since(t0).Round(time.Millisecond))
	if _, err := e.Progress(ctx, 20); err != nil {
		return err
	}
	if err := restart(ctx, p, e.HealTimeout()); err != nil {
		return fmt.Errorf("restart %s: %w", p.Name(), err)
	}
	if _, err := e.C.WaitHealed(ctx, e.HealTimeout()); err != nil {
		return err
	}
	// The chunk moves again (to wherever it is not now): migrations work
	// after the crash.
	var last error
	for {
		ch, err := chunkOf(ctx, e.C, e.NS, key)
		if err == nil {
			t := time.Now()
			err = admin.RunCommand(pctx, bson.D{{Key: "moveChunk", Value: e.NS},
				{Key: "bounds", Value: bson.A{ch.Min, ch.Max}}, {Key: "to", Value: otherShard(e.C, ch.Shard)}}).Err()
			if err == nil {
				e.Note("moveChunk after the restart: %s -> %s in %v", ch.Shard, otherShard(e.C, ch.Shard), time.Since(t).Round(time.Millisecond))
				return nil
			}
		}
		last = err
		if werr := wait(pctx, 500*time.Millisecond); werr != nil {
			return fmt.Errorf("moveChunk after the restart: %w", last)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// balancerOff stops the balancer (so it does not race the scenario's own
// moveChunk) and returns the function that restores its previous mode.
func balancerOff(ctx context.Context, e *Env) func() {
	admin := e.C.direct[0].Database("admin")
	var st struct {
		Mode string `bson:"mode"`
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "balancerStatus", Value: 1}}).Decode(&st); err != nil || st.Mode == "off" {
		return func() {}
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "balancerStop", Value: 1}}).Err(); err != nil {
		e.Logf("balancerStop: %v", err)
		return func() {}
	}
	return func() {
		if err := admin.RunCommand(context.WithoutCancel(ctx), bson.D{{Key: "balancerStart", Value: 1}}).Err(); err != nil {
			e.Logf("balancerStart: %v", err)
		}
	}
}

// chunkOf returns the chunk of ns holding the shard-key point, from the
// catalog.
func chunkOf(ctx context.Context, c *Cluster, ns string, point bson.D) (catalog.Chunk, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	coll, err := c.cat.GetCollection(qctx, ns)
	if err != nil {
		return catalog.Chunk{}, fmt.Errorf("collection %s: %w", ns, err)
	}
	raw, err := bson.Marshal(point)
	if err != nil {
		return catalog.Chunk{}, err
	}
	enc, err := coll.Key.EncodeDoc(raw)
	if err != nil {
		return catalog.Chunk{}, fmt.Errorf("encode %v: %w", point, err)
	}
	chunks, _, err := c.cat.ListChunks(qctx, coll.UUID)
	if err != nil {
		return catalog.Chunk{}, fmt.Errorf("chunks of %s: %w", ns, err)
	}
	for _, ch := range chunks {
		if bytes.Compare(ch.MinKey, enc) <= 0 && bytes.Compare(enc, ch.MaxKey) < 0 {
			return ch, nil
		}
	}
	return catalog.Chunk{}, fmt.Errorf("no chunk of %s holds %v", ns, point)
}

// otherShard returns the next shard after sh.
func otherShard(c *Cluster, sh string) string {
	names := c.Shards()
	i := slices.Index(names, sh)
	return names[(i+1)%len(names)]
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logHas reports whether the log file holds s after offset from.
func logHas(path string, from int64, s string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return false
	}
	data, err := io.ReadAll(f)
	return err == nil && bytes.Contains(data, []byte(s))
}

// rollingRestart restarts every node in start order (config servers,
// then each shard's secondaries and then its primary, then the routers),
// gracefully, waiting after each until the whole cluster is healthy.
func rollingRestart(ctx context.Context, e *Env) error {
	var order []*launcher.Process
	order = append(order, e.C.ByRole(config.RoleConfigServer, "")...)
	for _, sh := range e.C.Shards() {
		pctx, cancel := context.WithTimeout(ctx, e.HealTimeout())
		p, err := e.C.Primary(pctx, sh)
		cancel()
		if err != nil {
			return err
		}
		order = append(order, e.C.Secondaries(sh, p.Name())...)
		order = append(order, p)
	}
	order = append(order, e.C.ByRole(config.RoleRouter, "")...)
	for _, p := range order {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := p.Stop(sctx)
		cancel()
		if err != nil {
			return err
		}
		e.Fault("restart %s", p.Name())
		if err := restart(ctx, p, e.HealTimeout()); err != nil {
			return fmt.Errorf("restart %s: %w", p.Name(), err)
		}
		if _, err := e.C.WaitHealed(ctx, e.HealTimeout()); err != nil {
			return err
		}
	}
	return nil
}
