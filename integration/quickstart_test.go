package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/psdb/psdb/integration/harness"
)

// quickstartBlocks returns the fenced code blocks of the README that
// follow a `<!-- quickstart:NAME -->` comment, by name.
func quickstartBlocks(readme string) map[string]string {
	re := regexp.MustCompile("(?s)<!-- quickstart:([a-z-]+) -->\\s*```[a-z]*\\n(.*?)```")
	out := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(readme, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// TestQuickStart follows the README's quick start literally: `make run`
// (as `psdb cluster up` of the repository's cluster.yaml, which is what
// make run runs after building, with its ports moved to free ones so the
// test can run next to a real cluster), then the README's shell command
// with the README's lines typed into it, and checks the output lines the
// README shows.
func TestQuickStart(t *testing.T) {
	t.Parallel()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := quickstartBlocks(string(readme))
	for _, name := range []string{"run", "shell-command", "shell", "output"} {
		if strings.TrimSpace(blocks[name]) == "" {
			t.Fatalf("README.md has no quickstart:%s block", name)
		}
	}
	if got := strings.TrimSpace(blocks["run"]); got != "make run" {
		t.Fatalf("the quick start starts the cluster with %q; this test follows `make run`", got)
	}
	if !strings.Contains(readFile(t, filepath.Join(root, "Makefile")), "$(BIN)/psdb cluster up -f $(CLUSTER)") {
		t.Fatal("make run no longer runs `psdb cluster up -f $(CLUSTER)`; update this test")
	}

	// The repository's cluster.yaml with every port moved.
	yaml := readFile(t, filepath.Join(root, "cluster.yaml"))
	portRe := regexp.MustCompile(`127\.0\.0\.1:(\d+)`)
	var ports []string
	seen := map[string]bool{}
	for _, m := range portRe.FindAllStringSubmatch(yaml, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			ports = append(ports, m[1])
		}
	}
	free := harness.FreePorts(t, len(ports))
	moved := map[string]string{}
	for i, p := range ports {
		moved[p] = fmt.Sprint(free[i])
	}
	movePorts := func(s string) string {
		return portRe.ReplaceAllStringFunc(s, func(a string) string { return "127.0.0.1:" + moved[strings.TrimPrefix(a, "127.0.0.1:")] })
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(movePorts(yaml)), 0o644); err != nil {
		t.Fatal(err)
	}
	router := "127.0.0.1:" + moved["27017"]

	// make run: the cluster in the foreground until the connection string.
	up := exec.Command(filepath.Join(harness.BinDir(t), "psdb"), "cluster", "up", "-f", "cluster.yaml")
	up.Dir = dir
	s := startStream(t, up)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := psdb(t, dir, "cluster", "logs", "--json")
			t.Logf("logs:\n%s", out)
		}
		psdb(t, dir, "cluster", "down", "--stop-timeout", "5s")
	})
	s.waitLine(t, 90*time.Second, "connection string", func(l string) bool {
		return l == "connection string: mongodb://"+router+"/"
	})

	// The shell command, with the lines typed into it.
	args := strings.Fields(strings.TrimSpace(blocks["shell-command"]))
	if len(args) < 2 || args[0] != "./bin/psdb" || args[1] != "shell" {
		t.Fatalf("the quick start opens the shell with %q; this test expects ./bin/psdb shell", blocks["shell-command"])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, filepath.Join(harness.BinDir(t), "psdb"), append(args[1:], "mongodb://"+router+"/test")...)
	cmd.Env = append(os.Environ(), "HOME="+home, "PSDB_SHELL_HISTORY="+filepath.Join(home, "history"))
	cmd.Stdin = strings.NewReader(blocks["shell"])
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("psdb shell: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Fatalf("psdb shell reported errors:\n%s\nstdout:\n%s", stderr.String(), stdout.String())
	}
	// Every line of the README's output block, in order, is a line of
	// the output (ports moved as in cluster.yaml).
	lines := strings.Split(stdout.String(), "\n")
	at := 0
	for _, want := range strings.Split(movePorts(blocks["output"]), "\n") {
		want = strings.TrimSpace(want)
		if want == "" {
			continue
		}
		for at < len(lines) && strings.TrimSpace(lines[at]) != want {
			at++
		}
		if at == len(lines) {
			t.Fatalf("the shell's output lacks the README's line %q (in order):\n%s", want, stdout.String())
		}
		at++
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
