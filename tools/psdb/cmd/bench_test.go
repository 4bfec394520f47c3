package cmd

import (
	"bytes"
	"strings"
	"testing"
)

// TestBenchFlagErrors checks that bad bench flags fail before any
// connection is attempted, with a message naming the problem.
func TestBenchFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "run", "--workload", "z"}, `unknown workload "z"`},
		{[]string{"bench", "run", "--distribution", "normal"}, `unknown distribution "normal"`},
		{[]string{"bench", "run", "--write-concern", "most"}, `--write-concern "most"`},
		{[]string{"bench", "run", "--read-preference", "any"}, `--read-preference "any"`},
		{[]string{"bench", "run", "--duration", "0s"}, "give --duration or --ops"},
		{[]string{"bench", "load", "--records", "0"}, "--records must be at least 1"},
		{[]string{"bench", "peak", "--threads", "0"}, "--threads must be at least 1"},
		{[]string{"bench", "run", "--cluster", "does-not-exist.yaml"}, "--cluster"},
		{[]string{"bench", "floor", "--threads", "0"}, "--threads must be at least 1"},
	} {
		var out, errb bytes.Buffer
		code := Execute(c.args, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("psdb %s: exit %d, stderr %q; want an error containing %q", strings.Join(c.args, " "), code, errb.String(), c.want)
		}
	}
}
