package bench

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/creack/pty"
)

func TestProgressLines(t *testing.T) {
	// Not a terminal: one line per call.
	var buf bytes.Buffer
	p := NewProgress(&buf)
	p.line("[ 1.0s] 100 ops/s")
	p.line("[ 2.0s] 90 ops/s")
	p.done()
	if buf.String() != "[ 1.0s] 100 ops/s\n[ 2.0s] 90 ops/s\n" {
		t.Fatalf("plain progress %q", buf.String())
	}

	// A terminal: rewritten in place with \r, padded over a longer line,
	// ended with one newline.
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pty: %v", err)
	}
	defer ptmx.Close()
	p = NewProgress(tty)
	if !p.terminal {
		t.Fatal("a pty is not detected as a terminal")
	}
	p.line("[ 1.0s] 1000 ops/s")
	p.line("[ 2.0s] 9 ops/s")
	p.done()
	tty.Close()
	out, _ := io.ReadAll(ptmx) // ends with EIO once the tty side is closed
	got := strings.ReplaceAll(string(out), "\r\n", "\n")
	want := "\r[ 1.0s] 1000 ops/s\r[ 2.0s] 9 ops/s   \n"
	if got != want {
		t.Fatalf("terminal progress %q, want %q", got, want)
	}

	// Quiet: nothing, and no panic.
	NewProgress(nil).line("x")
	NewProgress(nil).done()
}
