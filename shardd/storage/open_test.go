package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestOpenRefuses checks that Open refuses, with a typed error, a directory
// that is not a PSDB store or whose store is damaged, and never "repairs" it
// by starting an empty store over it.
func TestOpenRefuses(t *testing.T) {
	// makeStore creates a store with one collection and an index, closed.
	makeStore := func(t *testing.T) string {
		dir := t.TempDir()
		e, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.CreateIndex(context.Background(), testNS, IndexSpec{Key: []IndexKeyPart{{Field: "a"}}}); err != nil {
			t.Fatal(err)
		}
		insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}})
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// rawSet changes one key of a closed store with Pebble directly.
	rawSet := func(t *testing.T, dir string, key, val []byte) {
		db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{log: zerolog.Nop()}})
		if err != nil {
			t.Fatal(err)
		}
		if val == nil {
			err = db.Delete(key, pebble.Sync)
		} else {
			err = db.Set(key, val, pebble.Sync)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		setup func(t *testing.T) string
		want  error
	}{
		{"foreign files", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, ErrNotStore},
		{"another program's Pebble database", func(t *testing.T) string {
			dir := t.TempDir()
			rawSet(t, dir, []byte("foo"), []byte("bar"))
			return dir
		}, ErrNotStore},
		{"collection record garbage", func(t *testing.T) string {
			dir := makeStore(t)
			rawSet(t, dir, metaCollKey(1), []byte{1, 2, 3})
			return dir
		}, ErrCorrupt},
		{"collection record with a bad namespace", func(t *testing.T) string {
			dir := makeStore(t)
			rawSet(t, dir, metaCollKey(1), marshalRecord(collRecord{ID: 1, NS: "nodot"}))
			return dir
		}, ErrCorrupt},
		{"statistics record missing", func(t *testing.T) string {
			dir := makeStore(t)
			rawSet(t, dir, metaStatsKey(1), nil)
			return dir
		}, ErrCorrupt},
		{"id allocator record missing", func(t *testing.T) string {
			dir := makeStore(t)
			rawSet(t, dir, metaKey(metaIDs), nil)
			return dir
		}, ErrCorrupt},
		{"last optime garbage", func(t *testing.T) string {
			dir := makeStore(t)
			rawSet(t, dir, metaKey(metaLastOp), []byte("xx"))
			return dir
		}, ErrCorrupt},
		{"unknown format version", func(t *testing.T) string {
			dir := makeStore(t)
			rawSet(t, dir, metaKey(metaFormat), marshalRecord(formatRecord{Magic: formatMagic, Version: 99}))
			return dir
		}, ErrCorrupt},
		{"format record of someone else", func(t *testing.T) string {
			dir := makeStore(t)
			rawSet(t, dir, metaKey(metaFormat), []byte("not bson"))
			return dir
		}, ErrNotStore},
		{"manifest overwritten with garbage", func(t *testing.T) string {
			dir := makeStore(t)
			ms, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
			if len(ms) == 0 {
				t.Fatal("no MANIFEST file")
			}
			for _, m := range ms {
				garbage := make([]byte, 4096)
				for i := range garbage {
					garbage[i] = byte(i*7 + 3)
				}
				if err := os.WriteFile(m, garbage, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return dir
		}, ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := c.setup(t)
			e, err := Open(dir, Options{})
			if err == nil {
				_ = e.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Open: %v; want errors.Is %v", err, c.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestOpenAfterDyingFirstStart: a store whose first start died after Pebble
// created its files but before the initial metadata batch is initialized,
// not refused.
func TestOpenAfterDyingFirstStart(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{log: zerolog.Nop()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	e := openDir(t, dir, Options{})
	insertOK(t, e, testNS, bson.D{{Key: "_id", Value: 1}})
}

func TestOpenCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	e := openDir(t, dir, Options{})
	if e.LastOpTime() != (OpTime{Term: 1}) || e.Term() != 1 {
		t.Fatalf("fresh store at %v term %d", e.LastOpTime(), e.Term())
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	// A directory that is a file.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(f, Options{}); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
}
