package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/config"
)

// psdb runs the psdb binary in dir and returns its combined output and
// exit status.
func psdb(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(os.Getenv(harness.EnvBin), "psdb"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("psdb %v: %v\n%s", args, err, out)
		return "", -1
	}
}

// mustPsdb runs psdb and fails the test unless it exits 0.
func mustPsdb(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, code := psdb(t, dir, args...)
	if code != 0 {
		t.Fatalf("psdb %v: exit %d\n%s", args, code, out)
	}
	return out
}

// rowState returns the STATE and PID columns of node's row in a status
// table.
func rowState(t *testing.T, table, node string) (state string, pid int) {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[0] == node { // INFO, when shown, has spaces
			pid, _ = strconv.Atoi(f[4])
			return f[5], pid
		}
	}
	t.Fatalf("no row for %s in:\n%s", node, table)
	return "", 0
}

// rowInfo returns the INFO column of node's row ("" when absent).
func rowInfo(table, node string) string {
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) >= 7 && f[0] == node {
			return strings.Join(f[6:], " ")
		}
	}
	return ""
}

func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// freshDir writes a generated cluster.yaml into a fresh temporary directory
// and makes sure nothing of it survives the test.
func freshDir(t *testing.T) (string, *config.Cluster) {
	t.Helper()
	dir := t.TempDir()
	path := harness.WriteConfig(t, dir)
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := psdb(t, dir, "cluster", "logs", "--json")
			t.Logf("logs:\n%s", out)
		}
		psdb(t, dir, "cluster", "down", "--stop-timeout", "5s")
	})
	return dir, cfg
}

// TestPsdbClusterCLI drives `psdb cluster up/status/logs/down` from a fresh
// directory, with a node SIGKILLed in between.
func TestPsdbClusterCLI(t *testing.T) {
	t.Parallel()
	dir, cfg := freshDir(t)

	out := mustPsdb(t, dir, "cluster", "up", "--detach")
	for _, want := range []string{"NODE", "ROLE", "SHARD", "ADDRESS", "PID", "STATE", "connection string: " + cfg.ConnectionString()} {
		if !strings.Contains(out, want) {
			t.Errorf("up output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(os.Getenv(harness.EnvBin), "shardd")); err != nil {
		if st, _ := rowState(t, out, "rs0a"); st != "not-built" {
			t.Errorf("rs0a state %s without a shardd binary, want not-built", st)
		}
	}
	state, pid := rowState(t, out, "cfg0")
	if state != "running" || !alive(pid) {
		t.Fatalf("after up: cfg0 %s pid %d\n%s", state, pid, out)
	}

	// A second up adopts the running node instead of starting it twice.
	out = mustPsdb(t, dir, "cluster", "up", "--detach")
	if _, pid2 := rowState(t, out, "cfg0"); pid2 != pid {
		t.Fatalf("second up: cfg0 pid %d, want %d (started twice)", pid2, pid)
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := ctxT(t, 60*time.Second)
	if _, err := cli.Put(ctx, "/it/cli", "kept"); err != nil {
		t.Fatal(err)
	}

	// status from "another terminal" reads the pid files.
	if st, _ := rowState(t, mustPsdb(t, dir, "cluster", "status"), "cfg0"); st != "running" {
		t.Fatalf("status: cfg0 %s", st)
	}
	if _, err := os.Stat(filepath.Join(os.Getenv(harness.EnvBin), "shardd")); err == nil {
		// Every shard shows one primary and secondaries with their lag.
		harness.Eventually(t, 20*time.Second, func() error {
			table := mustPsdb(t, dir, "cluster", "status")
			for _, sh := range cfg.Shards {
				primaries, secondaries := 0, 0
				for _, m := range sh.Members {
					info := rowInfo(table, m.Name)
					switch {
					case strings.HasPrefix(info, "PRIMARY term "):
						primaries++
					case strings.HasPrefix(info, "SECONDARY lag ") && strings.Contains(info, "ms from "):
						secondaries++
					}
				}
				if primaries != 1 || secondaries != len(sh.Members)-1 {
					return fmt.Errorf("shard %s: %d primaries, %d secondaries with lag:\n%s", sh.Name, primaries, secondaries, table)
				}
			}
			return nil
		})
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if st, _ := rowState(t, mustPsdb(t, dir, "cluster", "status"), "cfg0"); st != "down" {
			return fmt.Errorf("cfg0 is %s after SIGKILL", st)
		}
		return nil
	})

	// up again restarts the killed node with its data.
	out = mustPsdb(t, dir, "cluster", "up", "--detach")
	state, pid2 := rowState(t, out, "cfg0")
	if state != "running" || pid2 == pid || !alive(pid2) {
		t.Fatalf("after restart: cfg0 %s pid %d (old %d)\n%s", state, pid2, pid, out)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		r, err := cli.Get(ctx, "/it/cli")
		if err != nil {
			return err
		}
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "kept" {
			return fmt.Errorf("key lost across the restart: %v", r.Kvs)
		}
		return nil
	})

	logs := mustPsdb(t, dir, "cluster", "logs", "cfg0")
	if !strings.Contains(logs, "ready") || !strings.Contains(logs, "INF") {
		t.Errorf("logs of cfg0 lack the readable ready line:\n%s", logs)
	}

	out = mustPsdb(t, dir, "cluster", "down")
	if !strings.Contains(out, "cluster stopped") {
		t.Errorf("down output: %s", out)
	}
	if alive(pid2) {
		t.Fatalf("cfg0 (pid %d) still alive after down", pid2)
	}
	if st, _ := rowState(t, mustPsdb(t, dir, "cluster", "status"), "cfg0"); st != "down" {
		t.Fatalf("status after down: cfg0 %s", st)
	}
}

// TestPsdbClusterUpFails: a config server that cannot start (its port is
// taken) makes `up` fail with the node's own message, and leaves no
// process behind.
func TestPsdbClusterUpFails(t *testing.T) {
	dir, cfg := freshDir(t)
	// Occupy the peer address with a process that is not ours.
	ln, err := listen(cfg.ConfigServers[0].PeerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, code := psdb(t, dir, "cluster", "up", "--detach")
	if code == 0 {
		t.Fatalf("up succeeded with the peer port taken:\n%s", out)
	}
	for _, want := range []string{"cfg0", "peer address", "already in use"} {
		if !strings.Contains(out, want) {
			t.Errorf("up output lacks %q:\n%s", want, out)
		}
	}
	pidFile := filepath.Join(cfg.RunDir, "pids", "cfg0.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); alive(pid) {
			t.Fatalf("cfg0 pid %d left running after a failed up", pid)
		}
	}
}

// stream is a running command whose combined output is read line by line.
type stream struct {
	cmd        *exec.Cmd
	lines      chan string
	exited     chan error
	transcript strings.Builder // written only by the test goroutine
}

// startStream starts cmd in a process group of its own (like a terminal's
// foreground job); the test's end kills whatever is left of the group.
func startStream(t *testing.T, cmd *exec.Cmd) *stream {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &stream{cmd: cmd, lines: make(chan string, 1024), exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait(); pw.Close() }()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return s
}

// waitLine reads lines until match returns true for one, and returns it.
func (s *stream) waitLine(t *testing.T, d time.Duration, what string, match func(string) bool) string {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("output ended before %s:\n%s", what, s.transcript.String())
			}
			s.transcript.WriteString(l + "\n")
			if match(l) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %s after %s:\n%s", what, d, s.transcript.String())
		}
	}
}

// waitExit waits until the command exited and its output is read.
func (s *stream) waitExit(t *testing.T, d time.Duration) error {
	t.Helper()
	timeout := time.After(d)
	var err error
	for exited := false; !exited; {
		select {
		case l, ok := <-s.lines:
			if ok {
				s.transcript.WriteString(l + "\n")
			} else {
				s.lines = nil
			}
		case err = <-s.exited:
			exited = true
		case <-timeout:
			t.Fatalf("did not exit after %s:\n%s", d, s.transcript.String())
		}
	}
	if s.lines != nil {
		for l := range s.lines {
			s.transcript.WriteString(l + "\n")
		}
	}
	return err
}

// waitUp reads the status table up to the connection string and returns
// cfg0's pid.
func (s *stream) waitUp(t *testing.T, cfg *config.Cluster) int {
	t.Helper()
	var pid int
	s.waitLine(t, 60*time.Second, "connection string", func(l string) bool {
		if f := strings.Fields(l); len(f) >= 6 && f[0] == "cfg0" {
			if f[5] != "running" {
				t.Fatalf("cfg0 %s:\n%s", f[5], s.transcript.String())
			}
			pid, _ = strconv.Atoi(f[4])
		}
		return l == "connection string: "+cfg.ConnectionString()
	})
	if !alive(pid) {
		t.Fatalf("cfg0 pid %d not alive:\n%s", pid, s.transcript.String())
	}
	return pid
}

// TestMakeRun runs `make run` as a newcomer would (with a cluster.yaml of
// free ports), waits for the status table and the connection string, then
// presses Ctrl-C (SIGINT to the foreground process group) and checks that
// every process exited.
func TestMakeRun(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is needed for `make run`: %v", err)
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, cfg := freshDir(t)
	args := []string{"--no-print-directory", "-C", root, "run",
		"BIN=" + os.Getenv(harness.EnvBin), "CLUSTER=" + filepath.Join(dir, "cluster.yaml")}
	if os.Getenv(harness.EnvCommands) != "" {
		// Build only the commands this run is restricted to.
		args = append(args, "CMDS="+strings.Join(harness.Commands(), " "))
	}
	s := startStream(t, exec.Command("make", args...))
	pid := s.waitUp(t, cfg)

	// Ctrl-C.
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	s.waitExit(t, 60*time.Second)
	t.Logf("make run transcript:\n%s", s.transcript.String())
	if !strings.Contains(s.transcript.String(), "cluster stopped") {
		t.Errorf("no clean stop reported:\n%s", s.transcript.String())
	}
	harness.Eventually(t, 10*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("cfg0 (pid %d) still running after Ctrl-C", pid)
		}
		return nil
	})
}

// TestPsdbClusterUpForeground: a foreground `psdb cluster up` reports a
// node killed under it and keeps supervising; `up` from another terminal
// restarts the node; `down` from another terminal stops the cluster and
// the foreground `up` then exits cleanly.
func TestPsdbClusterUpForeground(t *testing.T) {
	t.Parallel()
	dir, cfg := freshDir(t)
	cmd := exec.Command(filepath.Join(os.Getenv(harness.EnvBin), "psdb"), "cluster", "up")
	cmd.Dir = dir
	s := startStream(t, cmd)
	pid := s.waitUp(t, cfg)

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitLine(t, 10*time.Second, "report of the killed node", func(l string) bool {
		return strings.HasPrefix(l, "node cfg0 exited")
	})
	out := mustPsdb(t, dir, "cluster", "up", "--detach")
	if st, pid2 := rowState(t, out, "cfg0"); st != "running" || pid2 == pid {
		t.Fatalf("restart from another terminal: cfg0 %s pid %d (old %d)\n%s", st, pid2, pid, out)
	}
	mustPsdb(t, dir, "cluster", "down")
	if err := s.waitExit(t, 30*time.Second); err != nil {
		t.Fatalf("foreground up exited with %v:\n%s", err, s.transcript.String())
	}
	if !strings.Contains(s.transcript.String(), "the cluster was stopped") {
		t.Errorf("foreground up did not report the stop:\n%s", s.transcript.String())
	}
}

func listen(addr string) (io.Closer, error) { return net.Listen("tcp", addr) }
