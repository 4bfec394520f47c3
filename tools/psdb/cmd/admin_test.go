package cmd

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

// adminClosedAddr returns a local address nothing listens on.
func adminClosedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestAdminArgs: bad arguments fail before any connection with one line
// naming the problem; an unreachable router fails within the connect
// timeout.
func TestAdminArgs(t *testing.T) {
	unreachable := "mongodb://" + adminClosedAddr(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"admin"}, "psdb admin needs a subcommand: one of balancer, chunks, rs, shards, summary"},
		{[]string{"admin", "shards"}, "psdb admin shards needs a subcommand: one of add, list, move-primary, remove"},
		{[]string{"admin", "balancer", "pause"}, `unknown subcommand "pause" of psdb admin balancer`},
		{[]string{"admin", "shards", "remove"}, "accepts 1 arg(s), received 0"},
		{[]string{"admin", "shards", "list", "extra"}, `unknown command "extra"`},
		{[]string{"admin", "chunks", "move", "--ns", "db.c", "--to", "s1"}, `required flag(s) "find" not set`},
		{[]string{"admin", "chunks", "move", "--ns", "db.c", "--to", "s1", "--find", "{k: "}, "--find: parse \"{k: \""},
		{[]string{"admin", "chunks", "split", "--ns", "db.c"}, "exactly one of --middle and --find"},
		{[]string{"admin", "chunks", "split", "--ns", "db.c", "--middle", "{k: 1}", "--find", "{k: 1}"}, "exactly one of --middle and --find"},
		{[]string{"admin", "chunks", "split", "--ns", "db.c", "--middle", "[1]"}, "--middle: parse \"[1]\""},
		{[]string{"admin", "rs", "stepdown", "s1", "--secs", "-1"}, "--secs must not be negative"},
		{[]string{"admin", "rs", "status", "a", "b"}, "accepts at most 1 arg(s), received 2"},
		{[]string{"admin", "shards", "list", "--uri", "http://x"}, `invalid URI "http://x"`},
		{[]string{"admin", "shards", "list", "--uri", unreachable, "--connect-timeout", "300ms"}, "cannot reach the cluster at " + unreachable + " within 300ms"},
		{[]string{"admin", "summary", "--json", "--uri", unreachable, "--connect-timeout", "300ms"}, "cannot reach the cluster"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		start := time.Now()
		code := Execute(c.args, &out, &errOut)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1 (stderr %q)", c.args, code, errOut.String())
		}
		if !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: stderr %q, want it to hold %q", c.args, errOut.String(), c.want)
		}
		if n := strings.Count(strings.TrimSpace(errOut.String()), "\n"); n > 0 {
			t.Errorf("%v: error on %d lines, want one: %q", c.args, n+1, errOut.String())
		}
		if out.Len() != 0 {
			t.Errorf("%v: stdout %q, want nothing", c.args, out.String())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%v took %s", c.args, d)
		}
	}
}
