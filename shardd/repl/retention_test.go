package repl_test

import (
	"context"
	"testing"
	"time"

	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/shardd/repl"
	"github.com/psdb/psdb/shardd/storage"
)

func TestRetentionPolicyOf(t *testing.T) {
	got := repl.RetentionPolicyOf(config.OplogRetention{MaxBytes: 64 * config.MiB, MaxEntries: 5000, MinRetention: time.Hour})
	if want := (storage.RetentionPolicy{MaxBytes: 64 << 20, MaxEntries: 5000, MinRetention: time.Hour}); got != want {
		t.Fatalf("%+v, want %+v", got, want)
	}
	if err := repl.RunOplogRetention(context.Background(), repl.RetentionOptions{}); err == nil {
		t.Fatal("RunOplogRetention without an engine")
	}
	// A closed engine ends the loop.
	e, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := repl.RunOplogRetention(waitCtx(t, 10*time.Second), repl.RetentionOptions{Engine: e, Interval: time.Millisecond}); err != storage.ErrClosed {
		t.Fatalf("on a closed engine: %v", err)
	}
}
