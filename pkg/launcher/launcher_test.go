package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/pkg/config"
)

// fakeNode is a node binary for launcher tests: a shell script that
// records its start, marks itself ready for the test's health check, and
// waits for a signal. FAKE_IGNORE_TERM makes it ignore SIGTERM; FAKE_FAIL
// names a node that exits with status 3 at once.
const fakeNode = `#!/bin/sh
name=$4
if [ "$name" = "$FAKE_FAIL" ]; then echo "fake $name failing on purpose"; exit 3; fi
if [ -n "$FAKE_IGNORE_TERM" ]; then trap '' TERM; else trap 'kill $child 2>/dev/null; echo "fake $name stopping"; exit 0' TERM; fi
echo "$name" >> "$FAKE_DIR/order"
echo "fake $name started"
sleep 1000 &
child=$!
: > "$FAKE_DIR/ready-$name-$$"
while :; do wait $child; done
`

const testYAML = `name: lt
runDir: %s
configServers:
  - {name: cfg0, clientAddr: 127.0.0.1:1, peerAddr: 127.0.0.1:2}
shards:
  - name: rs0
    members:
      - {name: rs0a, addr: 127.0.0.1:3}
      - {name: rs0b, addr: 127.0.0.1:4}
      - {name: rs0c, addr: 127.0.0.1:5}
routers:
  - {name: mongos0, addr: 127.0.0.1:6}
`

type fixture struct {
	dir, bin, fake string
	cfg            *config.Cluster
	path           string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.bin = filepath.Join(f.dir, "bin")
	f.fake = filepath.Join(f.dir, "fake")
	for _, d := range []string{f.bin, f.fake} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// configsvr and shardd are "built"; mongos is not.
	for _, b := range []string{"configsvr", "shardd"} {
		if err := os.WriteFile(filepath.Join(f.bin, b), []byte(fakeNode), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.path = filepath.Join(f.dir, "cluster.yaml")
	if err := os.WriteFile(f.path, fmt.Appendf(nil, testYAML, filepath.Join(f.dir, "run")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(f.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	return f
}

// launcher returns a launcher whose health check is the fake's ready file
// for the node's current pid.
func (f *fixture) launcher(t *testing.T, env ...string) *Launcher {
	t.Helper()
	ready := func(ctx context.Context, n config.Node) error {
		pid, err := readPidFile(n.PidFile)
		if err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(f.fake, fmt.Sprintf("ready-%s-%d", n.Name, pid))); err != nil {
			return fmt.Errorf("%s not ready", n.Name)
		}
		return nil
	}
	l, err := New(f.cfg, Options{
		ConfigPath:    f.path,
		BinDir:        f.bin,
		Env:           append([]string{"FAKE_DIR=" + f.fake}, env...),
		StartTimeout:  10 * time.Second,
		StopTimeout:   2 * time.Second,
		DieWithParent: true,
		Health:        map[config.Role]HealthCheck{config.RoleConfigServer: ready, config.RoleShard: ready},
		Logger:        zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = l.Down(ctx)
	})
	return l
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func states(st []NodeStatus) map[string]NodeStatus {
	m := map[string]NodeStatus{}
	for _, s := range st {
		m[s.Name] = s
	}
	return m
}

func TestUpStatusKillRestartDown(t *testing.T) {
	f := newFixture(t)
	l := f.launcher(t)
	if err := l.Up(ctx(t)); err != nil {
		t.Fatal(err)
	}
	order, err := os.ReadFile(filepath.Join(f.fake, "order"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(order)); len(got) != 4 || got[0] != "cfg0" {
		t.Fatalf("start order %v: the config server must start first, then the shard's 3 members", got)
	}
	st := states(l.Status(ctx(t)))
	for _, tc := range []struct {
		node  string
		state State
	}{
		{"cfg0", StateRunning}, {"rs0a", StateRunning}, {"rs0b", StateRunning}, {"rs0c", StateRunning},
		{"mongos0", StateNotBuilt},
	} {
		if got := st[tc.node]; got.State != tc.state {
			t.Errorf("%s: %s (%s), want %s", tc.node, got.State, got.Detail, tc.state)
		}
	}

	// SIGKILL one member: it shows as down; Up restarts only it.
	p, _ := l.Process("rs0b")
	oldPID := p.PID()
	if err := p.Kill(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if s := states(l.Status(ctx(t)))["rs0b"]; s.State != StateDown || s.PID != 0 {
		t.Fatalf("killed node: %+v", s)
	}
	before := states(l.Status(ctx(t)))
	if err := l.Up(ctx(t)); err != nil {
		t.Fatal(err)
	}
	after := states(l.Status(ctx(t)))
	if after["rs0b"].State != StateRunning || after["rs0b"].PID == oldPID {
		t.Fatalf("rs0b after Up: %+v (old pid %d)", after["rs0b"], oldPID)
	}
	for _, n := range []string{"cfg0", "rs0a", "rs0c"} {
		if after[n].PID != before[n].PID {
			t.Errorf("%s was started twice: pid %d -> %d", n, before[n].PID, after[n].PID)
		}
	}

	// Another launcher (another terminal) sees the same nodes and stops them.
	l2 := f.launcher(t)
	if s := states(l2.Status(ctx(t))); s["cfg0"].PID != after["cfg0"].PID {
		t.Fatalf("second launcher sees cfg0 %+v", s["cfg0"])
	}
	if err := l2.Down(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// l started these processes, so it learns of their end when its own
	// waiter reaps them, a moment after l2's Down has returned: poll its
	// view until it converges, with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped := true
		for _, s := range l.Status(ctx(t)) {
			stopped = stopped && s.State != StateRunning && s.State != StateUnhealthy
		}
		if stopped || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range l.Status(ctx(t)) {
		if s.State == StateRunning || s.State == StateUnhealthy {
			t.Errorf("%s still %s after Down", s.Name, s.State)
		}
		if _, err := os.Stat(filepath.Join(f.cfg.RunDir, "pids", s.Name+".pid")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pid file of %s left after Down: %v", s.Name, err)
		}
	}
	for _, n := range []string{"cfg0", "rs0a", "rs0b", "rs0c"} {
		if processOf(after[n].PID, n) {
			t.Errorf("%s (pid %d) alive after Down", n, after[n].PID)
		}
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	f := newFixture(t)
	l := f.launcher(t, "FAKE_IGNORE_TERM=1")
	if err := l.Up(ctx(t)); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Process("cfg0")
	start := time.Now()
	if err := p.Stop(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if p.Running() {
		t.Fatal("still running after Stop")
	}
	if d := time.Since(start); d < l.opts.StopTimeout {
		t.Fatalf("stopped after %s although it ignores SIGTERM (stop timeout %s)", d, l.opts.StopTimeout)
	}
}

func TestUpFailureStopsWhatItStarted(t *testing.T) {
	f := newFixture(t)
	l := f.launcher(t, "FAKE_FAIL=rs0b")
	err := l.Up(ctx(t))
	if !errors.Is(err, ErrExited) {
		t.Fatalf("Up: %v, want ErrExited", err)
	}
	for _, want := range []string{"rs0b", "exit status 3", "failing on purpose"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	for _, s := range l.Status(ctx(t)) {
		if s.PID != 0 {
			t.Errorf("%s left running (pid %d) after a failed Up", s.Name, s.PID)
		}
	}
}

func TestConfigServerBinaryRequired(t *testing.T) {
	f := newFixture(t)
	if err := os.Remove(filepath.Join(f.bin, "configsvr")); err != nil {
		t.Fatal(err)
	}
	l := f.launcher(t)
	if err := l.Up(ctx(t)); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Up without configsvr: %v, want ErrNotBuilt", err)
	}
	if _, err := l.Process("nosuch"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Process(nosuch): %v", err)
	}
}

func TestPauseResume(t *testing.T) {
	f := newFixture(t)
	l := f.launcher(t)
	if err := l.Up(ctx(t)); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Process("cfg0")
	procState := func() byte {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID()))
		if err != nil {
			t.Fatal(err)
		}
		i := strings.LastIndexByte(string(b), ')')
		return b[i+2]
	}
	for _, tc := range []struct {
		op   func() error
		want byte
	}{
		{p.Pause, 'T'},
		{p.Resume, 'S'},
	} {
		if err := tc.op(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for procState() != tc.want {
			if time.Now().After(deadline) {
				t.Fatalf("process state %c, want %c", procState(), tc.want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A paused node still stops: Stop sends SIGCONT after SIGTERM.
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx(t)); err != nil || p.Running() {
		t.Fatalf("stop of a paused node: %v running=%v", err, p.Running())
	}
}
