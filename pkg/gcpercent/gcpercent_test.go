package gcpercent

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)

	t.Setenv("GOGC", "250")
	Apply()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("Apply changed the target to %d although GOGC was set", got)
	}
}

func TestApplyDefault(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	// t.Setenv records and restores GOGC; the variable is then removed
	// for this test's duration.
	t.Setenv("GOGC", "")
	unsetenv(t, "GOGC")
	Apply()
	if got := debug.SetGCPercent(100); got != Server {
		t.Fatalf("target after Apply: %d, want %d", got, Server)
	}
}

func unsetenv(t *testing.T, k string) {
	t.Helper()
	if err := os.Unsetenv(k); err != nil {
		t.Fatal(err)
	}
}
