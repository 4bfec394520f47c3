package launcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/logging"
)

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Process is one node of the cluster: its binary, pid file and log file, and
// the child process when this launcher started it. Safe for concurrent use.
type Process struct {
	l    *Launcher
	node config.Node
	bin  string

	mu sync.Mutex
	// cmd and done describe the child this Process started; done is closed
	// by the wait goroutine (its owner is the child: it ends when the child
	// exits) after exitErr is set.
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	// pid of the running node: our child or a process adopted from the pid
	// file; 0 when not known to run.
	pid int
	// logStart is the size of the log file when Start last started the
	// node: error messages show only that run's lines.
	logStart int64
}

// Node returns the node's description from cluster.yaml.
func (p *Process) Node() config.Node { return p.node }

// Name is the node's name.
func (p *Process) Name() string { return p.node.Name }

// Binary returns the path of the node's binary.
func (p *Process) Binary() string { return p.bin }

// Built reports whether the node's binary exists.
func (p *Process) Built() bool {
	st, err := os.Stat(p.bin)
	return err == nil && st.Mode().IsRegular()
}

// PID returns the pid of the running node, or 0 when it is not running.
func (p *Process) PID() int {
	if p.Running() {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.pid
	}
	return 0
}

// Running reports whether the node's process is alive: our child that has
// not exited, or the process named by the pid file if it is a live process
// of this node (not a zombie, not a reused pid).
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *Process) runningLocked() bool {
	if p.cmd != nil {
		select {
		case <-p.done:
			// Our child exited; fall through to the pid file in case the
			// node was started again by someone else.
		default:
			// Not reaped yet, but it may already be a zombie (killed by
			// another launcher). Its command line is not checked: right
			// after exec it can still be empty.
			if exited(p.cmd.Process.Pid) {
				return false
			}
			p.pid = p.cmd.Process.Pid
			return true
		}
	}
	pid, err := readPidFile(p.node.PidFile)
	if err != nil || pid <= 0 {
		p.pid = 0
		return false
	}
	if p.cmd != nil && p.cmd.Process != nil && pid == p.cmd.Process.Pid {
		p.pid = 0
		return false
	}
	if !processOf(pid, p.node.Name) {
		p.pid = 0
		return false
	}
	p.pid = pid
	return true
}

// Done returns a channel closed when the child started by this Process
// exits, or nil when this launcher did not start the running process.
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	return p.done
}

// ExitErr returns how the child started by this Process ended (nil for a
// zero exit status, or while it runs).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// Start starts the node unless it already runs (then it is adopted and
// Start returns nil). It does not wait for health: see WaitHealthy.
// It returns ErrNotBuilt when the binary is missing.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return nil
	}
	if st, err := os.Stat(p.bin); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s needs %s; run `make build` or point --bin-dir at the directory holding it", ErrNotBuilt, p.node.Name, p.bin)
	}
	for _, f := range []string{p.node.LogFile, p.node.PidFile} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return fmt.Errorf("start %s: %w", p.node.Name, err)
		}
	}
	logf, err := os.OpenFile(p.node.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: open log file: %w", p.node.Name, err)
	}
	defer logf.Close() // the child holds its own descriptor
	if st, err := logf.Stat(); err == nil {
		p.logStart = st.Size()
	}
	args := append([]string{"--config", p.l.configPath, "--name", p.node.Name}, p.l.opts.Args...)
	args = append(args, p.l.opts.RoleArgs[p.node.Role]...)
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.l.opts.Dir
	cmd.Env = append(os.Environ(), p.l.opts.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// A session of its own: terminal signals reach only the launcher, the
	// node survives a detached launcher, and the node's process group can
	// be signalled as a whole.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if p.l.opts.DieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s (%s): %w", p.node.Name, p.bin, err)
	}
	pid := cmd.Process.Pid
	if err := writePidFile(p.node.PidFile, pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("start %s: %w", p.node.Name, err)
	}
	p.cmd, p.pid = cmd, pid
	done := make(chan struct{})
	p.done = done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	p.l.log.Info().Str("node", p.node.Name).Str("role", string(p.node.Role)).Int("pid", pid).Msg("started")
	return nil
}

// WaitHealthy polls the node's health check until it passes, the node
// exits (the error then carries the exit status and the tail of its log) or
// ctx ends.
func (p *Process) WaitHealthy(ctx context.Context) error {
	check := p.l.health(p.node.Role)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if !p.Running() {
			return p.exitError()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(pctx, p.node)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s (%s) %w (%v): %v; last lines of %s:\n%s", p.node.Name, p.node.Addr, ErrUnhealthy, ctx.Err(), last, p.node.LogFile, p.runLog(15))
		case <-tick.C:
		}
	}
}

// exitError describes why the node is not running.
func (p *Process) exitError() error {
	if done := p.Done(); done != nil {
		// A zombie is about to be reaped by the wait goroutine, which
		// records the exit status.
		t := time.NewTimer(time.Second)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	p.mu.Lock()
	err := p.exitErr
	p.mu.Unlock()
	how := "not started"
	if err != nil {
		how = "exited: " + err.Error()
	} else if p.Done() != nil {
		how = "exited with status 0"
	}
	return fmt.Errorf("node %s %w (%s); last lines of %s:\n%s", p.node.Name, ErrExited, how, p.node.LogFile, p.runLog(15))
}

// Healthy runs the node's health check once.
func (p *Process) Healthy(ctx context.Context) error {
	if !p.Running() {
		return fmt.Errorf("node %s %w", p.node.Name, ErrExited)
	}
	return p.l.health(p.node.Role)(ctx, p.node)
}

// Signal sends sig to the node's process group.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return fmt.Errorf("signal %s: node %s %w", sig, p.node.Name, ErrExited)
	}
	return signalGroup(p.pid, sig)
}

// Pause stops the node with SIGSTOP (it keeps its sockets but answers
// nothing) and returns once the process is stopped (signal delivery is
// asynchronous); Resume continues it with SIGCONT.
func (p *Process) Pause() error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return p.waitState(true)
}

// Resume continues a paused node and returns once it runs again.
func (p *Process) Resume() error {
	if err := p.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	return p.waitState(false)
}

// waitState polls /proc until the node's process is stopped (or no longer
// stopped), for up to 5 seconds. Without /proc it returns at once.
func (p *Process) waitState(stopped bool) error {
	pid := p.PID()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil // gone, or no /proc
		}
		i := bytes.LastIndexByte(st, ')')
		if i < 0 || i+2 >= len(st) {
			return nil
		}
		if (st[i+2] == 'T') == stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: process state %c after 5s (stopped=%v wanted)", p.node.Name, st[i+2], stopped)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits until the process is gone. The pid file is
// left in place, as a crash would leave it.
func (p *Process) Kill(ctx context.Context) error {
	if !p.Running() {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil && p.Running() {
		return err
	}
	return p.waitGone(ctx)
}

// Stop sends SIGTERM (continuing a paused node), waits up to the stop
// timeout for the node to exit, then sends SIGKILL. It removes the pid file.
func (p *Process) Stop(ctx context.Context) error {
	if p.Running() {
		_ = p.Signal(syscall.SIGTERM)
		_ = p.Signal(syscall.SIGCONT)
		tctx, cancel := context.WithTimeout(ctx, p.l.opts.StopTimeout)
		err := p.waitGone(tctx)
		cancel()
		if err != nil {
			p.l.log.Warn().Str("node", p.node.Name).Dur("dur", p.l.opts.StopTimeout).Msg("did not stop after SIGTERM; sending SIGKILL")
			if err := p.Kill(ctx); err != nil {
				return fmt.Errorf("stop %s: %w", p.node.Name, err)
			}
		}
		p.l.log.Info().Str("node", p.node.Name).Str("role", string(p.node.Role)).Msg("stopped")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.Remove(p.node.PidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stop %s: %w", p.node.Name, err)
	}
	p.pid = 0
	return nil
}

// Wait blocks until the node's process has exited or ctx ends.
func (p *Process) Wait(ctx context.Context) error { return p.waitGone(ctx) }

func (p *Process) waitGone(ctx context.Context) error {
	if done := p.Done(); done != nil {
		select {
		case <-done:
			if !p.Running() {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to exit: %w", p.node.Name, ctx.Err())
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for p.Running() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to exit: %w", p.node.Name, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// LogTail returns the last n lines of the node's log file, JSON lines in
// the readable console form, indented.
func (p *Process) LogTail(n int) string {
	b, err := readTail(p.node.LogFile, 0, 256<<10)
	if err != nil {
		return fmt.Sprintf("  (no log: %v)", err)
	}
	return lastLines(b, n)
}

// runLog returns the last n lines the node logged since Start last started
// it, JSON lines in the readable console form, indented.
func (p *Process) runLog(n int) string {
	p.mu.Lock()
	from := p.logStart
	p.mu.Unlock()
	b, err := readTail(p.node.LogFile, from, 64<<10)
	if err != nil {
		return fmt.Sprintf("  (no log: %v)", err)
	}
	return lastLines(b, n)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "{") {
			var buf bytes.Buffer
			if _, err := logging.ConsoleWriter(&buf).Write([]byte(l)); err == nil {
				lines[i] = strings.TrimRight(buf.String(), "\n")
			}
		}
	}
	return "  " + strings.Join(lines, "\n  ")
}

// readTail reads at most max bytes from the end of path, not before from,
// starting at a line boundary.
func readTail(path string, from, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max64(st.Size()-max, 0)
	if st.Size() < from {
		from = 0 // truncated since
	}
	trim := off > from
	off = max64(off, from)
	b := make([]byte, st.Size()-off)
	n, err := f.ReadAt(b, off)
	if err != nil && n == 0 && len(b) > 0 {
		return nil, err
	}
	b = b[:n]
	if trim {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b, nil
}

// signalGroup signals the process group led by pid (every node is a
// session leader, see Start), falling back to the process alone.
func signalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err == nil {
		return nil
	}
	return syscall.Kill(pid, sig)
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", path, err)
	}
	return pid, nil
}

func writePidFile(path string, pid int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// exited reports whether pid is gone or a zombie (per /proc; without /proc,
// per kill(pid, 0)).
func exited(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		_, serr := os.Stat("/proc/self/stat")
		return serr == nil // /proc works, so the process is gone
	}
	// The state follows the command name in parentheses, which may itself
	// contain ") ".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		if s := stat[i+2]; s == 'Z' || s == 'X' {
			return true
		}
	}
	return false
}

// processOf reports whether pid is a live (not zombie) process started for
// node: its command line holds "--name <node>". Without /proc (not Linux)
// it trusts kill(pid, 0).
func processOf(pid int, node string) bool {
	if exited(pid) {
		return false
	}
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		return true // no /proc: trust kill(pid, 0)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--name" && args[i+1] == node {
			return true
		}
	}
	return false
}
