package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/wire"
)

// buildMongos builds this binary into a temporary directory.
func buildMongos(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mongos")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// writeCluster writes a generated single-machine cluster.yaml under dir.
func writeCluster(t *testing.T, dir string) (*config.Cluster, string) {
	t.Helper()
	path, cl, err := config.WriteLocal(dir, config.LocalSpec{Name: "mongos-test", RunDir: filepath.Join(dir, "run")},
		func(c *config.Cluster) { c.Log.Level = "debug" })
	if err != nil {
		t.Fatal(err)
	}
	return cl, path
}

func TestBinary(t *testing.T) {
	bin := buildMongos(t)
	dir := t.TempDir()
	cl, cfgPath := writeCluster(t, dir)
	node, err := cl.Node("mongos0")
	if err != nil {
		t.Fatal(err)
	}

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--config", cfgPath, "--name", "mongos0")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	// Ready when a wire-protocol ping answers.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := wire.Ping(ctx, node.Addr)
		cancel()
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("mongos exited before serving: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mongos not serving after 30s: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(cl.ConnectionString()).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("driver ping: %v", err)
	}
	opts, err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "getCmdLineOpts", Value: 1}}).Raw()
	if err != nil || !strings.Contains(opts.Lookup("argv").String(), "mongos0") {
		t.Errorf("getCmdLineOpts: %s, %v", opts, err)
	}
	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("mongos exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("mongos still running 20s after SIGTERM\n%s", stderr.String())
	}

	// The router writes its log and nothing else.
	logData, err := os.ReadFile(node.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"serving the MongoDB wire protocol", `"op":"ping"`, "shutting down", `"message":"stopped"`} {
		if !bytes.Contains(logData, []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, logData)
		}
	}
	err = filepath.WalkDir(filepath.Join(dir, "run"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && p != node.LogFile {
			t.Errorf("mongos wrote %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBinaryStartupErrors(t *testing.T) {
	bin := buildMongos(t)
	dir := t.TempDir()
	cl, cfgPath := writeCluster(t, dir)
	node, _ := cl.Node("mongos0")

	// Occupy the router's port.
	ln, err := net.Listen("tcp", node.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"port in use", []string{"--config", cfgPath, "--name", "mongos0"}, "address already in use"},
		{"not a router", []string{"--config", cfgPath, "--name", "rs0a"}, "node is not a router"},
		{"unknown node", []string{"--config", cfgPath, "--name", "nope"}, `unknown node "nope"`},
		{"no name", []string{"--config", cfgPath}, "--name is required"},
		{"missing file", []string{"--config", filepath.Join(dir, "absent.yaml"), "--name", "mongos0"}, "absent.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, tc.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}
