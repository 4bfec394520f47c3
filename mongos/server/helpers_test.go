package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/wire"
)

// logBuffer collects log lines for assertions; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the logged lines that contain every one of parts.
func (b *logBuffer) lines(parts ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		ok := l != ""
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// testLogger returns a debug-level JSON logger writing into a buffer.
func testLogger() (zerolog.Logger, *logBuffer) {
	b := &logBuffer{}
	return zerolog.New(b).Level(zerolog.DebugLevel).With().Str("node", "mongos-test").Str("role", "mongos").Logger(), b
}

// startServer serves a fresh Server (with extra commands) on a free port of
// 127.0.0.1 and returns it with its address; cleanup closes it and waits
// for Serve to return.
func startServer(t testing.TB, opts Options, extra ...Command) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(opts, extra...)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, ln.Addr().String()
}

// doc marshals a command document.
func doc(t testing.TB, d bson.D) bson.Raw {
	t.Helper()
	raw, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// replyCode returns the reply's ok flag, code and errmsg.
func replyCode(t testing.TB, reply bson.Raw) (bool, int32, string) {
	t.Helper()
	if err := reply.Validate(); err != nil {
		t.Fatalf("invalid reply %x: %v", []byte(reply), err)
	}
	ok, code := wire.ReplyStatus(reply)
	msg, _ := reply.Lookup("errmsg").StringValueOK()
	return ok, int32(code), msg
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blockingCommand returns a command that signals started, then waits for
// release (or its context) before answering {ok: 1, waited: true}.
func blockingCommand(name string, started chan<- struct{}, release <-chan struct{}) Command {
	return Command{
		Name: name,
		Help: "test: block until released",
		Handler: func(ctx context.Context, _ *Server, _ *Request) (bson.Raw, error) {
			started <- struct{}{}
			select {
			case <-release:
				return okReply(bson.E{Key: "waited", Value: true})
			case <-ctx.Done():
				return ErrorReply(ctx.Err()), nil
			}
		},
	}
}
