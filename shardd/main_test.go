package main

import (
	"bytes"
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

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/shardd/cmd"
)

// shardBin is the shardd binary built once by TestMain for every test.
var shardBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "shardd-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shardBin = filepath.Join(dir, "shardd")
	if out, err := exec.Command("go", "build", "-o", shardBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// buildShardd returns the binary TestMain built.
func buildShardd(t *testing.T) string {
	t.Helper()
	return shardBin
}

// writeCluster writes a one-shard, one-member cluster.yaml with free ports.
func writeCluster(t *testing.T, dir string) (string, *config.Cluster) {
	t.Helper()
	path, cl, err := config.WriteLocal(dir, config.LocalSpec{Name: "shardd-test", RunDir: filepath.Join(dir, "run"), Shards: 1, MembersPerShard: 1},
		func(c *config.Cluster) { c.Log.Format = "json" })
	if err != nil {
		t.Fatal(err)
	}
	return path, cl
}

type proc struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
}

func startShardd(t *testing.T, bin, cfg, name string) *proc {
	t.Helper()
	c := exec.Command(bin, "--config", cfg, "--name", name)
	out := &bytes.Buffer{}
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: c, out: out, done: make(chan error, 1)}
	go func() { p.done <- c.Wait() }()
	t.Cleanup(func() {
		_ = c.Process.Kill()
		<-p.done
	})
	return p
}

func waitHealthy(t *testing.T, p *proc, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		err := shardclient.CheckHealth(cctx, addr)
		ccancel()
		if err == nil {
			return
		}
		select {
		case werr := <-p.done:
			p.done <- werr
			t.Fatalf("shardd exited (%v) before serving:\n%s", werr, p.out)
		case <-ctx.Done():
			t.Fatalf("shardd not healthy after 30s: %v\n%s", err, p.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitExit waits for the process to exit and returns its error.
func waitExit(t *testing.T, p *proc) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("shardd did not exit:\n%s", p.out)
		return nil
	}
}

// TestRefusesBadStart checks the start-up refusals: each exits non-zero
// with one clear message and without serving.
func TestRefusesBadStart(t *testing.T) {
	bin := buildShardd(t)
	dir := t.TempDir()
	cfg, cl := writeCluster(t, dir)
	node, _ := cl.Node("rs0a")

	// First start creates the store; stop it cleanly.
	p := startShardd(t, bin, cfg, "rs0a")
	waitHealthy(t, p, node.Addr)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(t, p); err != nil {
		t.Fatalf("SIGTERM exit: %v\n%s", err, p.out)
	}

	tests := []struct {
		name    string
		prepare func(t *testing.T)
		args    []string
		want    string
	}{
		{"unknown name", nil, []string{"--config", cfg, "--name", "nope"}, `unknown node "nope"`},
		{"not a shard member", nil, []string{"--config", cfg, "--name", "cfg0"}, "node is not a shard member"},
		{"no name", nil, []string{"--config", cfg}, "--name is required"},
		{"missing config", nil, []string{"--config", filepath.Join(dir, "none.yaml"), "--name", "rs0a"}, "none.yaml"},
		{"store removed", func(t *testing.T) {
			store := cmd.StorePath(node.DataDir)
			if err := os.Rename(store, store+".moved"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Rename(store+".moved", store) })
		}, []string{"--config", cfg, "--name", "rs0a"}, "store missing"},
		{"store damaged", func(t *testing.T) {
			store := cmd.StorePath(node.DataDir)
			ents, err := os.ReadDir(store)
			if err != nil {
				t.Fatal(err)
			}
			backup := store + ".bak"
			if err := os.CopyFS(backup, os.DirFS(store)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.RemoveAll(store); _ = os.Rename(backup, store) })
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "MANIFEST") {
					if err := os.WriteFile(filepath.Join(store, e.Name()), []byte("garbage garbage garbage"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		}, []string{"--config", cfg, "--name", "rs0a"}, "refusing to serve"},
		{"foreign data dir", func(t *testing.T) {
			stamp := filepath.Join(node.DataDir, config.StampFile)
			old, err := os.ReadFile(stamp)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(stamp, []byte("other-cluster\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.WriteFile(stamp, old, 0o644) })
		}, []string{"--config", cfg, "--name", "rs0a"}, "belongs to another cluster"},
		{"address in use", func(t *testing.T) {
			// Another process on the member's port: refused before the
			// store is touched.
			ln, err := net.Listen("tcp", node.Addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}, []string{"--config", cfg, "--name", "rs0a"}, "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.prepare != nil {
				tt.prepare(t)
			}
			c := exec.Command(bin, tt.args...)
			out, err := c.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("exit %v, want non-zero; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output does not say %q:\n%s", tt.want, out)
			}
			if lines := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; lines > 3 {
				t.Errorf("message has %d lines:\n%s", lines, out)
			}
		})
	}

	// After the refusals the member still starts with its data.
	p = startShardd(t, bin, cfg, "rs0a")
	waitHealthy(t, p, node.Addr)
}
