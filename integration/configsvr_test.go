package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/launcher"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestConfigServerRestartKeepsData: a one-member config server bootstraps
// the catalog, and after a clean stop or a SIGKILL it restarts with its
// data: keys written before are there, the bootstrap is idempotent.
func TestConfigServerRestartKeepsData(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(p *harness.Process)
	}{
		{"sigterm", (*harness.Process).Stop},
		{"sigkill", (*harness.Process).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := harness.NewCluster(t, harness.WithOnly(config.RoleConfigServer), harness.WithShards(2), harness.WithMembers(3))
			cli := c.EtcdClient(t)
			ctx := ctxT(t, 30*time.Second)
			if _, err := cli.Put(ctx, "/it/before", "v1"); err != nil {
				t.Fatal(err)
			}
			cat := catalog.New(cli)
			shards, _, err := cat.ListShards(ctx)
			if err != nil || len(shards) != 2 || len(shards[0].Members) != 3 {
				t.Fatalf("bootstrap registered %+v (err %v), want 2 shards of 3", shards, err)
			}
			info, err := cat.GetCluster(ctx)
			if err != nil || info.Name != c.Config().Name {
				t.Fatalf("cluster record %+v, %v", info, err)
			}

			p := c.Process("cfg0")
			oldPID := p.PID()
			tc.stop(p)
			if p.Running() {
				t.Fatal("still running after stop")
			}
			p.Start()
			if p.PID() == oldPID {
				t.Fatalf("same pid %d after restart", oldPID)
			}
			harness.Eventually(t, 10*time.Second, func() error {
				r, err := cli.Get(ctx, "/it/before")
				if err != nil {
					return err
				}
				if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v1" {
					return fmt.Errorf("key after restart: %v", r.Kvs)
				}
				return nil
			})
			info2, err := cat.GetCluster(ctx)
			if err != nil || info2.ID != info.ID {
				t.Fatalf("cluster record changed across restart: %+v -> %+v (%v)", info, info2, err)
			}
		})
	}
}

// TestConfigServerThreeMembersLoseOne: with one of three members SIGKILLed
// (the leader or a follower) the catalog still commits; the member then
// restarts, rejoins and catches up with what was written without it.
func TestConfigServerThreeMembersLoseOne(t *testing.T) {
	t.Parallel()
	for _, victim := range []string{"leader", "follower"} {
		t.Run(victim, func(t *testing.T) {
			c := harness.NewCluster(t, harness.WithOnly(config.RoleConfigServer), harness.WithConfigServers(3))
			cli := c.EtcdClient(t)
			ctx := ctxT(t, 60*time.Second)
			if _, err := cli.Put(ctx, "/it/k0", "before"); err != nil {
				t.Fatal(err)
			}
			p := pickMember(t, ctx, cli, c, victim == "leader")
			p.Kill()

			cat := catalog.New(cli)
			harness.Eventually(t, 15*time.Second, func() error {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_, err := cat.AddShard(cctx, "rs9", []catalog.Member{{Name: "rs9a", Addr: "127.0.0.1:1"}}, catalog.ShardActive)
				if errors.Is(err, catalog.ErrExists) {
					return nil // an earlier attempt committed
				}
				return err
			})
			if _, err := cli.Put(ctx, "/it/k1", "without "+p.Name()); err != nil {
				t.Fatal(err)
			}

			p.Start()
			// The restarted member serves what was committed without it.
			one := memberClient(t, p.Addr())
			harness.Eventually(t, 15*time.Second, func() error {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				r, err := one.Get(cctx, "/it/k1", clientv3.WithSerializable())
				if err != nil {
					return err
				}
				if len(r.Kvs) != 1 {
					return fmt.Errorf("%s has not caught up", p.Name())
				}
				return nil
			})
			for _, m := range c.ConfigServers() {
				if !m.Running() {
					t.Errorf("%s not running", m.Name())
				}
			}
		})
	}
}

func memberClient(t *testing.T, addr string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// pickMember returns the current etcd leader, or a follower.
func pickMember(t *testing.T, ctx context.Context, cli *clientv3.Client, c *harness.Cluster, leader bool) *harness.Process {
	t.Helper()
	for _, m := range c.ConfigServers() {
		st, err := cli.Status(ctx, "http://"+m.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if (st.Leader == st.Header.MemberId) == leader {
			return m
		}
	}
	t.Fatalf("no member with leader=%v", leader)
	return nil
}

// TestConfigServerPauseResume: a SIGSTOPped member is reported unhealthy
// and, after SIGCONT, healthy again.
func TestConfigServerPauseResume(t *testing.T) {
	c := harness.NewCluster(t, harness.WithOnly(config.RoleConfigServer))
	p := c.Process("cfg0")
	p.Pause()
	if st := c.Status()[0]; st.State != launcher.StateUnhealthy {
		t.Fatalf("paused node state %s, want unhealthy", st.State)
	}
	p.Resume()
	p.WaitHealthy(10 * time.Second)
	if st := c.Status()[0]; st.State != launcher.StateRunning {
		t.Fatalf("resumed node state %s (%s), want running", st.State, st.Detail)
	}
}

// TestConfigServerBadInput runs the configsvr binary on bad input: each
// case exits non-zero with one clear message, and leaves no process.
func TestConfigServerBadInput(t *testing.T) {
	bin := filepath.Join(os.Getenv(harness.EnvBin), "configsvr")
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string, cfg *config.Cluster) []string // returns extra args
		want  []string
	}{
		{
			name: "unknown node",
			setup: func(t *testing.T, dir string, cfg *config.Cluster) []string {
				return []string{"--name", "nosuch"}
			},
			want: []string{`unknown node "nosuch"`, "cfg0"},
		},
		{
			name: "shard member name",
			setup: func(t *testing.T, dir string, cfg *config.Cluster) []string {
				return []string{"--name", "rs0a"}
			},
			want: []string{"not a config server", "rs0a"},
		},
		{
			name: "broken cluster.yaml",
			setup: func(t *testing.T, dir string, cfg *config.Cluster) []string {
				path := filepath.Join(dir, "cluster.yaml")
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				bad := strings.Replace(string(b), "clientAddr: 127.0.0.1:", "clientAddr: nohost", 1)
				writeFile(t, path, bad)
				return []string{"--name", "cfg0"}
			},
			want: []string{"configServers[0].clientAddr", "not a host:port"},
		},
		{
			name: "cluster.yaml not yaml",
			setup: func(t *testing.T, dir string, cfg *config.Cluster) []string {
				writeFile(t, filepath.Join(dir, "cluster.yaml"), "name: [unclosed\n")
				return []string{"--name", "cfg0"}
			},
			want: []string{"YAML"},
		},
		{
			name: "no cluster.yaml",
			setup: func(t *testing.T, dir string, cfg *config.Cluster) []string {
				return []string{"--config", filepath.Join(dir, "missing.yaml"), "--name", "cfg0"}
			},
			want: []string{"missing.yaml", "no such file"},
		},
		{
			name: "client port in use",
			setup: func(t *testing.T, dir string, cfg *config.Cluster) []string {
				ln, err := net.Listen("tcp", cfg.ConfigServers[0].ClientAddr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				return []string{"--name", "cfg0"}
			},
			want: []string{"already in use", "client address"},
		},
		{
			name: "data dir of another cluster",
			setup: func(t *testing.T, dir string, cfg *config.Cluster) []string {
				n, _ := cfg.Node("cfg0")
				if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(n.DataDir, config.StampFile), "othercluster\n")
				return []string{"--name", "cfg0"}
			},
			want: []string{"belongs to another cluster", "othercluster"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := harness.WriteConfig(t, dir)
			cfg, err := config.Load(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"--config", path}, tc.setup(t, dir, cfg)...)
			cmd := exec.Command(bin, args...)
			cmd.Dir = dir
			ctx := ctxT(t, 30*time.Second)
			done := make(chan struct{})
			var out []byte
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("configsvr did not exit on bad input; output:\n%s", out)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("exit: %v, want a non-zero status; output:\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if lines := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; lines > 3 {
				t.Errorf("%d lines of output, want one clear message:\n%s", lines, out)
			}
		})
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
