package repl_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/cmd"
	"github.com/psdb/psdb/shardd/storage"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// sharddBinary builds the shardd binary once per test process.
func sharddBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "repl-shardd")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "shardd")
		buildOut, buildErr = exec.Command("go", "build", "-o", binPath, "github.com/psdb/psdb/shardd").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build shardd: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

type member struct {
	name, addr, dataDir string
	cmd                 *exec.Cmd
	out                 *bytes.Buffer
	done                chan error
}

func (m *member) start(t *testing.T, bin, cfg string) {
	t.Helper()
	c := exec.Command(bin, "--config", cfg, "--name", m.name, "--repl-static")
	m.out = &bytes.Buffer{}
	c.Stdout, c.Stderr = m.out, m.out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	m.cmd, m.done = c, make(chan error, 1)
	go func() { m.done <- c.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		err := shardclient.CheckHealth(cctx, m.addr)
		ccancel()
		if err == nil {
			return
		}
		select {
		case werr := <-m.done:
			t.Fatalf("%s exited (%v) before serving:\n%s", m.name, werr, m.out)
		case <-ctx.Done():
			t.Fatalf("%s not healthy: %v\n%s", m.name, err, m.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (m *member) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit on %v:\n%s", m.name, sig, m.out)
	}
	m.cmd = nil
}

// TestProcessStaticReplicaSet runs three real shardd processes with
// --repl-static: majority writes on the first member, a secondary SIGKILLed
// and restarted catches up, and the three stores end equal.
func TestProcessStaticReplicaSet(t *testing.T) {
	bin := sharddBinary(t)
	dir := t.TempDir()
	cfg, loaded, err := config.WriteLocal(dir, config.LocalSpec{Name: "repl-test", RunDir: filepath.Join(dir, "run"), Shards: 1, MembersPerShard: 3},
		func(c *config.Cluster) { c.Log.Format = "json" })
	if err != nil {
		t.Fatal(err)
	}
	var ms []*member
	for _, m := range loaded.Shards[0].Members {
		n, err := loaded.Node(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, &member{name: n.Name, addr: n.Addr, dataDir: n.DataDir})
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.signal(t, syscall.SIGKILL)
		}
	})
	for _, m := range ms {
		m.start(t, bin, cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	c, err := shardclient.Dial(ctx, ms[0].addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	majority := &shardpb.WriteConcern{WMode: "majority", WtimeoutMs: 20000}
	for i := 0; i < 50; i += 10 {
		if r := insert(t, c, i, 10, majority); r.WriteConcernError != nil {
			t.Fatal(r.WriteConcernError)
		}
	}
	ms[2].signal(t, syscall.SIGKILL)
	for i := 50; i < 100; i += 10 {
		if r := insert(t, c, i, 10, majority); r.WriteConcernError != nil {
			t.Fatal(r.WriteConcernError)
		}
	}
	ms[2].start(t, bin, cfg)
	// w:3 returns once every member holds everything up to this write.
	if r := insert(t, c, 100, 1, &shardpb.WriteConcern{W: 3, WtimeoutMs: 20000}); r.WriteConcernError != nil {
		t.Fatalf("w:3 after the restart: %v\n%s", r.WriteConcernError, ms[2].out)
	}
	for _, m := range ms {
		m.signal(t, syscall.SIGTERM)
	}
	var want string
	for i, m := range ms {
		e, err := storage.Open(cmd.StorePath(m.dataDir), storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got := state(t, e, ns)
		if st, err := e.Stats(ns); err != nil || st.Count != 101 {
			t.Fatalf("%s holds %d documents (%v), want 101", m.name, st.Count, err)
		}
		if res, err := e.Validate(ctx, ns); err != nil || !res.Valid {
			t.Fatalf("%s: Validate %+v %v", m.name, res, err)
		}
		_ = e.Close()
		if i == 0 {
			want = got
		} else if got != want {
			t.Fatalf("%s differs from %s:\n got %s\nwant %s", m.name, ms[0].name, got, want)
		}
	}
}
