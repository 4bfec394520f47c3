package logging_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psdb/psdb/pkg/logging"
)

// readLines decodes every JSON line of path.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestJSONFileFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "rs0a.log")
	var console bytes.Buffer
	l, closer, err := logging.New(logging.Options{Level: "info", Format: "console", File: path, Console: &console}, "rs0a", "shardd")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l = logging.WithShard(l, "rs0")
	before := time.Now().UTC().Add(-time.Second)
	l.Info().Str(logging.FieldNS, "db.c").Str(logging.FieldOp, "insert").Dur(logging.FieldDur, 1500*time.Microsecond).Msg("slow operation")
	l.Error().Err(errors.New("disk full")).Msg("write failed")
	if err := closer.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := closer.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines in the file, want 2", len(lines))
	}
	want := map[string]any{"node": "rs0a", "role": "shardd", "shard": "rs0", "ns": "db.c", "op": "insert", "dur": 1.5, "level": "info", "message": "slow operation"}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("field %s = %v (%T), want %v", k, lines[0][k], lines[0][k], v)
		}
	}
	if lines[1][logging.FieldErr] != "disk full" {
		t.Errorf("error line lacks the error: %v", lines[1])
	}
	ts, ok := lines[0]["time"].(string)
	if !ok {
		t.Fatalf("no time field: %v", lines[0])
	}
	tm, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || tm.Before(before) || !strings.HasSuffix(ts, "Z") {
		t.Errorf("time %q: parsed %v, %v", ts, tm, err)
	}

	// The console copy is the readable form, not JSON.
	out := console.String()
	if !strings.Contains(out, "INF slow operation") || !strings.Contains(out, "node=rs0a") || !strings.Contains(out, "shard=rs0") || strings.Contains(out, "{") {
		t.Errorf("console output:\n%s", out)
	}
}

func TestErrFieldName(t *testing.T) {
	// Err(err) writes under FieldErr: the documented name must be what
	// zerolog actually writes, without touching its globals.
	var buf bytes.Buffer
	l, _, err := logging.New(logging.Options{Format: "json", Console: &buf}, "n", "r")
	if err != nil {
		t.Fatal(err)
	}
	l.Warn().Err(errors.New("boom")).Msg("x")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m[logging.FieldErr] != "boom" {
		t.Errorf("%s field: %v", logging.FieldErr, m)
	}
}

func TestLevelFiltering(t *testing.T) {
	cases := []struct {
		level string
		want  []string
	}{
		{"debug", []string{"debug", "info", "warn", "error"}},
		{"", []string{"info", "warn", "error"}},
		{"info", []string{"info", "warn", "error"}},
		{"warn", []string{"warn", "error"}},
		{"error", []string{"error"}},
	}
	for _, tc := range cases {
		t.Run("level="+tc.level, func(t *testing.T) {
			var buf bytes.Buffer
			l, closer, err := logging.New(logging.Options{Level: tc.level, Format: "json", Console: &buf}, "cfg0", "configsvr")
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			l.Debug().Msg("d")
			l.Info().Msg("i")
			l.Warn().Msg("w")
			l.Error().Msg("e")
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if line == "" {
					continue
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("bad JSON %q: %v", line, err)
				}
				got = append(got, m["level"].(string))
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("levels written %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	cases := []logging.Options{
		{Level: "verbose"},
		{Format: "xml", Console: &bytes.Buffer{}},
	}
	for _, o := range cases {
		if _, _, err := logging.New(o, "n", "r"); !errors.Is(err, logging.ErrBadOptions) {
			t.Errorf("New(%+v) error = %v, want ErrBadOptions", o, err)
		}
	}
	// A file that cannot be created is an error, not a panic.
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := logging.New(logging.Options{File: filepath.Join(blocker, "x.log")}, "n", "r"); err == nil {
		t.Error("New with a file under a regular file succeeded")
	}
}

func TestNopAndNoOutputs(t *testing.T) {
	l := logging.Nop()
	l.Error().Msg("nothing")
	l2, closer, err := logging.New(logging.Options{}, "n", "r")
	if err != nil {
		t.Fatal(err)
	}
	l2.Error().Msg("nothing either")
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentLinesStayWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.log")
	var console bytes.Buffer
	l, closer, err := logging.New(logging.Options{File: path, Format: "json", Console: &console}, "n", "mongos")
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				l.Info().Int("g", g).Int("i", i).Str("pad", strings.Repeat("x", 100)).Msg("line")
			}
		}()
	}
	wg.Wait()
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, path)); n != goroutines*each {
		t.Fatalf("%d lines in the file, want %d", n, goroutines*each)
	}
	if n := strings.Count(console.String(), "\n"); n != goroutines*each {
		t.Fatalf("%d console lines, want %d", n, goroutines*each)
	}
}

func TestAppendsToExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.log")
	for i := range 2 {
		l, closer, err := logging.New(logging.Options{File: path}, "n", "shardd")
		if err != nil {
			t.Fatal(err)
		}
		l.Info().Int("run", i).Msg("started")
		closer.Close()
	}
	if n := len(readLines(t, path)); n != 2 {
		t.Fatalf("%d lines after two runs, want 2", n)
	}
}
