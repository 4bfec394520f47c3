package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/psdb/psdb/pkg/config"
)

// Errors of the launcher, wrapped with the node they concern.
var (
	// ErrNotBuilt: the node's binary is not in BinDir.
	ErrNotBuilt = errors.New("binary not built")
	// ErrExited: the node's process is not running (it exited or was never
	// started).
	ErrExited = errors.New("is not running")
	// ErrUnhealthy: the node runs but did not pass its health check before
	// the deadline.
	ErrUnhealthy = errors.New("did not become healthy")
	// ErrUnknownNode: no node of that name in cluster.yaml.
	ErrUnknownNode = errors.New("unknown node")
)

// Defaults of Options.
const (
	DefaultStartTimeout = 60 * time.Second
	DefaultStopTimeout  = 10 * time.Second
)

// BinaryName returns the name of the binary that runs nodes of role.
func BinaryName(role config.Role) string {
	switch role {
	case config.RoleConfigServer:
		return "configsvr"
	case config.RoleShard:
		return "shardd"
	case config.RoleRouter:
		return "mongos"
	default:
		return string(role)
	}
}

// Options configure a Launcher. The zero value works: binaries next to the
// running executable, default timeouts and health checks.
type Options struct {
	// ConfigPath is the cluster.yaml every node is started with (--config);
	// made absolute by New. Required.
	ConfigPath string
	// BinDir holds the node binaries; empty means the directory of the
	// running executable (psdb is built next to them).
	BinDir string
	// Dir is the working directory of the nodes; empty means the launcher's.
	Dir string
	// Env is added to the launcher's environment for every node.
	Env []string
	// Args are added to every node's command line after --config and
	// --name: the config flags (--run-dir, --log-level, ...) the launcher
	// itself was given, so nodes see the same description.
	Args []string
	// RoleArgs are added after Args to the command line of every node
	// of a role (tests: the routers' --enable-test-commands).
	RoleArgs map[config.Role][]string
	// StartTimeout bounds the wait for each group of nodes to be healthy.
	StartTimeout time.Duration
	// StopTimeout is the wait between SIGTERM and SIGKILL.
	StopTimeout time.Duration
	// Only, when not empty, restricts Up to nodes of these roles (tests of
	// one role); Down and Status still cover every node.
	Only []config.Role
	// DieWithParent makes every node get SIGKILL when the launcher's
	// process dies (Linux Pdeathsig), for tests: a killed test binary
	// leaves no node behind. Not for `psdb cluster up --detach`.
	DieWithParent bool
	// Health overrides the health check of a role; roles not in the map use
	// DefaultHealthChecks.
	Health map[config.Role]HealthCheck
	// Info overrides the description of healthy nodes of a role in Status
	// (the INFO column of `psdb cluster status`); roles not in the map use
	// DefaultInfo.
	Info map[config.Role]InfoFunc
	// Logger receives one line per node started, healthy or stopped.
	Logger zerolog.Logger
}

// Launcher runs the nodes of one cluster description. Safe for concurrent
// use; Up and Down of one run directory are serialized (also across
// processes, by a lock file in the run directory).
type Launcher struct {
	cluster    *config.Cluster
	opts       Options
	configPath string
	log        zerolog.Logger
	procs      []*Process // start order
	byName     map[string]*Process
	mu         sync.Mutex // serializes Up and Down in this process
}

// New prepares a launcher for cluster, read from opts.ConfigPath. It starts
// nothing.
func New(cluster *config.Cluster, opts Options) (*Launcher, error) {
	if cluster == nil {
		return nil, errors.New("launcher: no cluster")
	}
	if opts.ConfigPath == "" {
		return nil, errors.New("launcher: Options.ConfigPath is required (nodes read it with --config)")
	}
	abs, err := filepath.Abs(opts.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("launcher: config path: %w", err)
	}
	if opts.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("launcher: find binaries: %w", err)
		}
		opts.BinDir = filepath.Dir(exe)
	}
	if opts.BinDir, err = filepath.Abs(opts.BinDir); err != nil {
		return nil, fmt.Errorf("launcher: bin dir: %w", err)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	l := &Launcher{
		cluster:    cluster,
		opts:       opts,
		configPath: abs,
		log:        opts.Logger,
		byName:     map[string]*Process{},
	}
	for _, n := range cluster.Nodes() {
		p := &Process{l: l, node: n, bin: filepath.Join(opts.BinDir, BinaryName(n.Role))}
		l.procs = append(l.procs, p)
		l.byName[n.Name] = p
	}
	return l, nil
}

// Cluster returns the cluster description.
func (l *Launcher) Cluster() *config.Cluster { return l.cluster }

// BinDir returns the directory the node binaries are taken from.
func (l *Launcher) BinDir() string { return l.opts.BinDir }

// Processes returns every node in start order.
func (l *Launcher) Processes() []*Process { return append([]*Process(nil), l.procs...) }

// Process returns the node called name.
func (l *Launcher) Process(name string) (*Process, error) {
	p, ok := l.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a node of cluster %q", ErrUnknownNode, name, l.cluster.Name)
	}
	return p, nil
}

func (l *Launcher) health(role config.Role) HealthCheck {
	if h, ok := l.opts.Health[role]; ok && h != nil {
		return h
	}
	if h, ok := DefaultHealthChecks()[role]; ok {
		return h
	}
	return TCPHealth
}

func (l *Launcher) info(role config.Role) InfoFunc {
	if f, ok := l.opts.Info[role]; ok {
		return f
	}
	return DefaultInfo(l.cluster)[role]
}

// groups splits the nodes into start groups: consecutive nodes of the same
// role and shard.
func (l *Launcher) groups() [][]*Process {
	var out [][]*Process
	for _, p := range l.procs {
		if n := len(out); n > 0 {
			last := out[n-1][0].node
			if last.Role == p.node.Role && last.Shard == p.node.Shard {
				out[n-1] = append(out[n-1], p)
				continue
			}
		}
		out = append(out, []*Process{p})
	}
	return out
}

// Up starts every node that is built and not running, group by group in
// start order, waiting for each group to be healthy before the next starts.
// Nodes already running are adopted (never started twice). Roles whose
// binary is missing are skipped (their status is StateNotBuilt), except the
// config server, without which nothing works.
//
// If a node fails to start or to become healthy, Up stops the nodes it
// started itself and returns the error, which carries the node's log tail.
func (l *Launcher) Up(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	unlock, err := l.lockRunDir()
	if err != nil {
		return err
	}
	defer unlock()

	var started []*Process
	skipped := map[config.Role]bool{}
	fail := func(err error) error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.StopTimeout+5*time.Second)
		defer cancel()
		for i := len(started) - 1; i >= 0; i-- {
			_ = started[i].Stop(sctx)
		}
		return err
	}
	for _, g := range l.groups() {
		var wait []*Process
		for _, p := range g {
			if len(l.opts.Only) > 0 && !slices.Contains(l.opts.Only, p.node.Role) {
				continue
			}
			if !p.Built() {
				if p.node.Role == config.RoleConfigServer {
					return fail(fmt.Errorf("%w: the config server binary %s is missing; run `make build` or pass the directory holding it (--bin-dir)", ErrNotBuilt, p.bin))
				}
				if !skipped[p.node.Role] {
					skipped[p.node.Role] = true
					l.log.Info().Str("role", string(p.node.Role)).Str("binary", p.bin).Msg("not built yet; its nodes are skipped")
				}
				continue
			}
			if p.Running() {
				l.log.Info().Str("node", p.node.Name).Int("pid", p.PID()).Msg("already running")
			} else {
				if err := p.Start(); err != nil {
					return fail(err)
				}
				started = append(started, p)
			}
			wait = append(wait, p)
		}
		if err := l.waitHealthy(ctx, wait); err != nil {
			return fail(err)
		}
	}
	return nil
}

// waitHealthy waits, in parallel and with the start timeout, until every
// process of ps is healthy.
func (l *Launcher) waitHealthy(ctx context.Context, ps []*Process) error {
	ctx, cancel := context.WithTimeout(ctx, l.opts.StartTimeout)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range ps {
		g.Go(func() error {
			start := time.Now()
			if err := p.WaitHealthy(gctx); err != nil {
				return err
			}
			l.log.Info().Str("node", p.node.Name).Str("role", string(p.node.Role)).Dur("dur", time.Since(start)).Msg("healthy")
			return nil
		})
	}
	return g.Wait()
}

// Down stops every running node in reverse start order (routers first),
// including nodes started by another launcher (found by their pid files).
// Data directories and logs stay.
func (l *Launcher) Down(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	unlock, err := l.lockRunDir()
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	gs := l.groups()
	for i := len(gs) - 1; i >= 0; i-- {
		g, _ := errgroup.WithContext(ctx)
		for _, p := range gs[i] {
			g.Go(func() error { return p.Stop(ctx) })
		}
		if err := g.Wait(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lockRunDir takes an exclusive flock on <RunDir>/launcher.lock so that two
// launchers never start or stop the same cluster at the same time.
func (l *Launcher) lockRunDir() (func(), error) {
	dir := l.cluster.RunDir
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	path := filepath.Join(dir, "launcher.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
