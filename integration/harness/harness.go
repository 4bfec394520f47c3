// Package harness boots real PSDB clusters of real processes for
// integration tests, in the style of etcd's e2e framework and Vitess's
// endtoend clusters: a cluster.yaml with free ports and temporary
// directories, started with pkg/launcher, one handle per process
// (Start/Stop/Kill/Pause/Resume/Restart/Wait), readiness polling with
// deadlines, the processes' logs printed when a test fails, and cleanup
// that always stops every process, even when the test fails or panics.
//
// Binaries: set PSDB_BIN to a directory holding configsvr, shardd, mongos
// and psdb (e.g. bin after `make build`; a relative path is taken from the
// module root), or call Main from TestMain,
// which builds them once per test binary into a temporary directory and
// sets PSDB_BIN for the tests. Roles whose binary is not built are listed
// in the cluster but not started (launcher.StateNotBuilt).
//
// The harness never reuses ports or directories between clusters and never
// leaves a process behind: Cleanup stops each node with SIGTERM, kills what
// remains, and fails the test if a process survives.
package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/launcher"
	"github.com/psdb/psdb/pkg/logging"
)

// EnvBin names the environment variable holding the binaries' directory.
const EnvBin = "PSDB_BIN"

// Main builds the binaries once into a temporary directory (unless PSDB_BIN
// is set), exports PSDB_BIN, runs the tests and removes the directory. Use
// it as: func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
func Main(m *testing.M) int {
	if d := os.Getenv(EnvBin); d != "" {
		abs, err := absBinDir(d)
		if err != nil {
			fmt.Fprintf(os.Stderr, "harness: %v\n", err)
			return 2
		}
		os.Setenv(EnvBin, abs)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "psdb-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		return 2
	}
	defer os.RemoveAll(dir)
	if err := Build(dir); err != nil {
		fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		return 2
	}
	os.Setenv(EnvBin, dir)
	return m.Run()
}

// EnvCommands names the environment variable that restricts which commands
// Main and BinDir build: a comma-separated list such as
// "configsvr,tools/psdb" (for tests of one role while another binary is
// being written). Empty means Commands.
const EnvCommands = "PSDB_COMMANDS"

// Commands returns the directories of the binaries a cluster may run,
// relative to the module root: PSDB_COMMANDS, or all of them.
func Commands() []string {
	if v := strings.TrimSpace(os.Getenv(EnvCommands)); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"configsvr", "shardd", "mongos", "tools/psdb"}
}

// Build compiles every command of Commands that holds a main package into
// dir (go build -o dir/ ...), from the module root.
func Build(dir string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	args := []string{"list", "-e", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`}
	for _, c := range Commands() {
		args = append(args, "./"+c)
	}
	list := exec.Command("go", args...)
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		return fmt.Errorf("go list commands: %w", err)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) == 0 {
		return fmt.Errorf("no main packages among %v", Commands())
	}
	// One go build per command, so a failure names the command (go build
	// runs them in parallel internally anyway).
	var errs []error
	for _, pkg := range pkgs {
		build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), pkg)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("go build %s: %w (set %s to build fewer commands)\n%s", pkg, err, EnvCommands, out))
		}
	}
	return errors.Join(errs...)
}

// absBinDir resolves a relative PSDB_BIN (PSDB_BIN=bin after `make build`)
// against the module root, since tests run in their package's directory.
func absBinDir(d string) (string, error) {
	if filepath.IsAbs(d) {
		return d, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, d), nil
}

// ModuleRoot returns the directory of the module's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the psdb module")
	}
	return filepath.Dir(gomod), nil
}

// BinDir returns the binaries' directory for t: PSDB_BIN, or binaries built
// into a temporary directory of t when PSDB_BIN is unset (slow: use Main).
func BinDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(EnvBin); d != "" {
		abs, err := absBinDir(d)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	t.Logf("harness: %s not set and harness.Main not used: building the binaries for this test", EnvBin)
	dir := t.TempDir()
	if err := Build(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// spec is what the options describe.
type spec struct {
	name          string
	configServers int
	shards        int
	members       int
	routers       int
	edits         []func(*config.Cluster)
	start         bool
	startTimeout  time.Duration
	stopTimeout   time.Duration
	health        map[config.Role]launcher.HealthCheck
	only          []config.Role
	balancer      bool
	roleArgs      map[config.Role][]string
}

// Option changes the cluster NewCluster builds.
type Option func(*spec)

// WithName sets the cluster name (default "it-<random>").
func WithName(name string) Option { return func(s *spec) { s.name = name } }

// WithConfigServers sets the number of config server members (1 or 3).
func WithConfigServers(n int) Option { return func(s *spec) { s.configServers = n } }

// WithShards sets the number of shards (default 1).
func WithShards(n int) Option { return func(s *spec) { s.shards = n } }

// WithMembers sets the number of members of every shard (default 1).
func WithMembers(n int) Option { return func(s *spec) { s.members = n } }

// WithRouters sets the number of routers (default 1).
func WithRouters(n int) Option { return func(s *spec) { s.routers = n } }

// WithEdit changes the generated cluster description before it is written
// (e.g. a tunable: func(c *config.Cluster) { c.Replication.LeaseTTL = 2 * time.Second }).
func WithEdit(edit func(*config.Cluster)) Option {
	return func(s *spec) { s.edits = append(s.edits, edit) }
}

// WithBalancer starts the cluster with its balancer enabled. Without it
// the generated cluster.yaml sets sharding.balancerEnabled: false, so
// chunks stay where a test puts them (a test may still run
// balancerStart).
func WithBalancer() Option { return func(s *spec) { s.balancer = true } }

// WithRouterArgs adds command-line flags to every router (e.g.
// "--enable-test-commands" for configureFailPoint).
func WithRouterArgs(args ...string) Option {
	return func(s *spec) {
		if s.roleArgs == nil {
			s.roleArgs = map[config.Role][]string{}
		}
		s.roleArgs[config.RoleRouter] = append(s.roleArgs[config.RoleRouter], args...)
	}
}

// WithoutStart writes the cluster.yaml and prepares the handles but starts
// nothing; call Cluster.Start or a Process's Start.
func WithoutStart() Option { return func(s *spec) { s.start = false } }

// WithStartTimeout bounds the wait for each group of nodes to be healthy
// (default 60s).
func WithStartTimeout(d time.Duration) Option { return func(s *spec) { s.startTimeout = d } }

// WithStopTimeout sets the SIGTERM-to-SIGKILL wait (default 5s).
func WithStopTimeout(d time.Duration) Option { return func(s *spec) { s.stopTimeout = d } }

// WithOnly makes Start start only the nodes of these roles (a test of the
// config server alone); the other nodes stay in cluster.yaml, not started.
func WithOnly(roles ...config.Role) Option { return func(s *spec) { s.only = roles } }

// WithHealthCheck replaces the health check of a role.
func WithHealthCheck(role config.Role, h launcher.HealthCheck) Option {
	return func(s *spec) {
		if s.health == nil {
			s.health = map[config.Role]launcher.HealthCheck{}
		}
		s.health[role] = h
	}
}

func newSpec(opts []Option) *spec {
	s := &spec{configServers: 1, shards: 1, members: 1, routers: 1, start: true,
		startTimeout: 60 * time.Second, stopTimeout: 5 * time.Second}
	for _, o := range opts {
		o(s)
	}
	if s.name == "" {
		s.name = fmt.Sprintf("it-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	}
	return s
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1 (listen on :0,
// all listeners open at once, then closed).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	lns := make([]net.Listener, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		lns[i] = ln
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// WriteConfig writes a cluster.yaml for the options into dir, with free
// ports and runDir "run" (relative to dir), and returns its path.
func WriteConfig(t testing.TB, dir string, opts ...Option) string {
	t.Helper()
	return writeConfig(t, dir, newSpec(opts))
}

func writeConfig(t testing.TB, dir string, s *spec) string {
	t.Helper()
	// All ports are taken from listeners open at the same time, so one
	// cluster never gets the same port twice.
	ports := FreePorts(t, 2*s.configServers+s.shards*s.members+s.routers)
	port := func() (int, error) {
		p := ports[0]
		ports = ports[1:]
		return p, nil
	}
	spec := config.LocalSpec{
		Name: s.name, ConfigServers: s.configServers, Shards: s.shards,
		MembersPerShard: s.members, Routers: s.routers, Port: port,
	}
	path, _, err := config.WriteLocal(dir, spec, func(c *config.Cluster) {
		c.Log.Level, c.Log.Format = "info", "json"
		c.Sharding.BalancerEnabled = s.balancer
		for _, edit := range s.edits {
			edit(c)
		}
	})
	if err != nil {
		t.Fatalf("write cluster.yaml: %v", err)
	}
	return path
}

// Cluster is a running (or prepared) cluster of real processes. Its methods
// fail the test on error. Safe for use by one test goroutine and its
// helpers; Process handles may be used from several goroutines.
type Cluster struct {
	t      testing.TB
	dir    string
	path   string
	cfg    *config.Cluster
	l      *launcher.Launcher
	procs  []*Process
	byName map[string]*Process
}

// NewCluster writes a cluster.yaml with free ports under a temporary
// directory, prepares a launcher and, unless WithoutStart, starts every
// built node and waits until each is healthy. t.Cleanup stops everything
// and, when the test failed, prints every node's log.
func NewCluster(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	s := newSpec(opts)
	dir := t.TempDir()
	path := writeConfig(t, dir, s)
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("generated cluster.yaml: %v", err)
	}
	l, err := launcher.New(cfg, launcher.Options{
		ConfigPath:    path,
		BinDir:        BinDir(t),
		Dir:           dir,
		StartTimeout:  s.startTimeout,
		StopTimeout:   s.stopTimeout,
		Health:        s.health,
		Only:          s.only,
		RoleArgs:      s.roleArgs,
		DieWithParent: true,
		Logger:        testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, dir: dir, path: path, cfg: cfg, l: l, byName: map[string]*Process{}}
	for _, p := range l.Processes() {
		h := &Process{t: t, p: p}
		c.procs = append(c.procs, h)
		c.byName[p.Name()] = h
	}
	t.Cleanup(c.cleanup)
	if s.start {
		c.Start()
	}
	return c
}

// testLogger writes the launcher's lines to the test log, readable.
func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(logging.ConsoleWriter(testLog{t})).Level(zerolog.InfoLevel).Hook(zerolog.HookFunc(
		func(e *zerolog.Event, _ zerolog.Level, _ string) {
			e.Str(logging.FieldTime, time.Now().UTC().Format(time.RFC3339Nano))
		}))
}

type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log("launcher: " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// cleanup prints the logs of a failed test, stops every node, and fails
// the test if a process survives.
func (c *Cluster) cleanup() {
	if c.t.Failed() {
		c.DumpLogs()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.l.Down(ctx); err != nil {
		c.t.Logf("harness: stopping the cluster: %v", err)
	}
	for _, p := range c.procs {
		if p.p.Running() {
			_ = p.p.Kill(ctx)
		}
		if p.p.Running() {
			c.t.Errorf("harness: %s (pid %d) survived the cleanup", p.Name(), p.p.PID())
		}
	}
	// No port left behind: every address the cluster used can be bound
	// again (a listener of a dead process may take a moment to go away).
	for _, p := range c.procs {
		for _, addr := range []string{p.Node().Addr, p.Node().PeerAddr} {
			if addr == "" {
				continue
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				ln, err := net.Listen("tcp", addr)
				if err == nil {
					ln.Close()
					break
				}
				if time.Now().After(deadline) {
					c.t.Errorf("harness: %s's address %s is still in use after the cleanup: %v", p.Name(), addr, err)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// DumpLogs writes the last lines of every node's log to the test log.
func (c *Cluster) DumpLogs() {
	for _, p := range c.procs {
		if _, err := os.Stat(p.Node().LogFile); err != nil {
			continue
		}
		c.t.Logf("==== log of %s (%s) ====\n%s", p.Name(), p.Node().LogFile, p.p.LogTail(200))
	}
}

// Start starts every built node that is not running, in order, and waits
// until all are healthy.
func (c *Cluster) Start() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.l.Up(ctx); err != nil {
		c.t.Fatalf("start cluster: %v", err)
	}
}

// Stop stops every node (SIGTERM, then SIGKILL).
func (c *Cluster) Stop() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.l.Down(ctx); err != nil {
		c.t.Fatalf("stop cluster: %v", err)
	}
}

// Dir is the cluster's temporary directory (cluster.yaml, run/).
func (c *Cluster) Dir() string { return c.dir }

// ConfigPath is the generated cluster.yaml.
func (c *Cluster) ConfigPath() string { return c.path }

// Config is the loaded cluster description.
func (c *Cluster) Config() *config.Cluster { return c.cfg }

// Launcher is the launcher running the cluster.
func (c *Cluster) Launcher() *launcher.Launcher { return c.l }

// Processes returns every node in start order.
func (c *Cluster) Processes() []*Process { return append([]*Process(nil), c.procs...) }

// Process returns the node called name; it fails the test if there is none.
func (c *Cluster) Process(name string) *Process {
	c.t.Helper()
	p, ok := c.byName[name]
	if !ok {
		c.t.Fatalf("no node %q in the cluster", name)
	}
	return p
}

// ByRole returns the nodes of role (of shard, for shard members, when shard
// is not empty) in start order.
func (c *Cluster) ByRole(role config.Role, shard string) []*Process {
	var out []*Process
	for _, p := range c.procs {
		n := p.Node()
		if n.Role == role && (shard == "" || n.Shard == shard) {
			out = append(out, p)
		}
	}
	return out
}

// ConfigServers returns the config server members.
func (c *Cluster) ConfigServers() []*Process { return c.ByRole(config.RoleConfigServer, "") }

// Status returns every node's status.
func (c *Cluster) Status() []launcher.NodeStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.l.Status(ctx)
}

// EtcdClient returns a client of the config servers' etcd (all members as
// endpoints), closed when the test ends.
func (c *Cluster) EtcdClient(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.cfg.EtcdEndpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Process is the handle of one node. Its methods fail the test on error.
type Process struct {
	t testing.TB
	p *launcher.Process
}

// Name is the node's name.
func (p *Process) Name() string { return p.p.Name() }

// Node is the node's description.
func (p *Process) Node() config.Node { return p.p.Node() }

// Addr is the node's serving address.
func (p *Process) Addr() string { return p.p.Node().Addr }

// PID is the node's pid, 0 when it does not run.
func (p *Process) PID() int { return p.p.PID() }

// Running reports whether the node's process is alive.
func (p *Process) Running() bool { return p.p.Running() }

// Launched returns the launcher's handle.
func (p *Process) Launched() *launcher.Process { return p.p }

// LogTail returns the last n lines of the node's log.
func (p *Process) LogTail(n int) string { return p.p.LogTail(n) }

// Start starts the node and waits until it is healthy (60 s deadline).
func (p *Process) Start() {
	p.t.Helper()
	if err := p.p.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.Name(), err)
	}
	p.WaitHealthy(60 * time.Second)
}

// StartNoWait starts the node without waiting for its health (e.g. one
// member of three, which cannot be healthy alone).
func (p *Process) StartNoWait() {
	p.t.Helper()
	if err := p.p.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.Name(), err)
	}
}

// WaitHealthy waits up to d for the node's health check to pass.
func (p *Process) WaitHealthy(d time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := p.p.WaitHealthy(ctx); err != nil {
		p.t.Fatalf("%s not healthy: %v", p.Name(), err)
	}
}

// Stop stops the node: SIGTERM, SIGKILL after the stop timeout.
func (p *Process) Stop() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.p.Stop(ctx); err != nil {
		p.t.Fatalf("stop %s: %v", p.Name(), err)
	}
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Process) Kill() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.p.Kill(ctx); err != nil {
		p.t.Fatalf("kill %s: %v", p.Name(), err)
	}
}

// Pause freezes the node with SIGSTOP.
func (p *Process) Pause() {
	p.t.Helper()
	if err := p.p.Pause(); err != nil {
		p.t.Fatalf("pause %s: %v", p.Name(), err)
	}
}

// Resume continues a paused node with SIGCONT.
func (p *Process) Resume() {
	p.t.Helper()
	if err := p.p.Resume(); err != nil {
		p.t.Fatalf("resume %s: %v", p.Name(), err)
	}
}

// Signal sends sig to the node.
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.p.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.Name(), err)
	}
}

// Restart stops the node (SIGTERM) and starts it again, waiting for health.
func (p *Process) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// Wait waits up to d for the node's process to exit and returns how it
// exited (nil for status 0, or when it was not started by this harness).
func (p *Process) Wait(d time.Duration) error {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := p.p.Wait(ctx); err != nil {
		p.t.Fatalf("%s did not exit: %v", p.Name(), err)
	}
	return p.p.ExitErr()
}

// Eventually polls cond every 50 ms until it returns nil or d passes, then
// fails the test with cond's last error.
func Eventually(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
