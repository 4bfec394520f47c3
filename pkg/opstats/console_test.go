package opstats

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/pkg/logging"
)

// TestLoadLineReadable checks the form `psdb cluster logs` prints a load
// line in (logging.ConsoleWriter over the JSON line).
func TestLoadLineReadable(t *testing.T) {
	var js bytes.Buffer
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := newRecorder(clk.now, OpQuery)
	for range 30 {
		r.Record(OpInsert, 1500*time.Microsecond)
	}
	clk.advance(10 * time.Second)
	NewReporter(ReporterOptions{Logger: zerolog.New(&js), Recorder: r, Gauges: func(context.Context) map[string]any {
		return map[string]any{"state": "SECONDARY", "lagMs": 12}
	}}).Report(context.Background())
	var out bytes.Buffer
	if _, err := logging.ConsoleWriter(&out).Write(js.Bytes()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"INF load ", `ops={"insert":3,"query":0}`, `p50ms={"insert":1.5`, `p99ms={"insert":1.5`, "state=SECONDARY", "lagMs=12", "interval=10"} {
		if !strings.Contains(got, want) {
			t.Errorf("readable line %q lacks %q", got, want)
		}
	}
}
