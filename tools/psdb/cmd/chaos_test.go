package cmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/psdb/psdb/tools/psdb/chaos"
)

func TestChaosList(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Execute([]string{"chaos", "list"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, n := range chaos.Names() {
		if !strings.Contains(out.String(), n) {
			t.Errorf("scenario %s not listed:\n%s", n, out.String())
		}
	}
}

// An unknown scenario is refused before any cluster is booted or opened.
func TestChaosRunUnknownScenario(t *testing.T) {
	var out, errb bytes.Buffer
	code := Execute([]string{"chaos", "run", "--scenario", "primary-kill,nope", "--out", ""}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), `unknown scenario "nope"`) {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if strings.Contains(errb.String(), "booting") {
		t.Fatalf("a cluster was booted for an invalid run: %q", errb.String())
	}
}
