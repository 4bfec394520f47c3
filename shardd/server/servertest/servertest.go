// Package servertest starts in-process shardd members for tests: a Server
// over a real Pebble store, served by a real gRPC server on 127.0.0.1, with
// a shardclient connected to it, all stopped by t.Cleanup.
//
// The package does not import shardd/server, so that the tests of
// shardd/server itself can use it: callers pass the constructor
// (typically a closure around server.New) and get the concrete server
// type back.
package servertest

import (
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/shardd/storage"
)

// Server is what Start needs of a shardd server (*server.Server).
type Server interface {
	NewGRPCServer(extra ...grpc.ServerOption) *grpc.Server
	SetServing(serving bool)
	Close() error
}

// Options configure Start. The zero value opens a new store in
// t.TempDir() and listens on 127.0.0.1:0.
type Options struct {
	// Engine, when set, is served instead of a store Start opens; the
	// caller owns it (Start never closes it).
	Engine *storage.Engine
	// Dir is where Start opens the store (default t.TempDir()); an
	// existing store is reopened. Ignored with Engine.
	Dir string
	// Store are the options of the store Start opens (a zero Logger is
	// silent). Ignored with Engine.
	Store storage.Options
	// Addr is the listening address (default "127.0.0.1:0").
	Addr string
}

// Member is one started shardd: its store, server, gRPC address and a
// client of it.
type Member[S Server] struct {
	Engine *storage.Engine
	Server S
	Addr   string
	Client *shardclient.Client

	t        testing.TB
	ownsEng  bool
	g        *grpc.Server
	done     chan struct{}
	stopOnce sync.Once
}

// OpenStore opens a store in dir (t.TempDir() when empty) with o and
// closes it at cleanup.
func OpenStore(t testing.TB, dir string, o storage.Options) *storage.Engine {
	t.Helper()
	e := openStore(t, dir, o)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func openStore(t testing.TB, dir string, o storage.Options) *storage.Engine {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	e, err := storage.Open(dir, o)
	if err != nil {
		t.Fatalf("servertest: open store %s: %v", dir, err)
	}
	return e
}

// Start opens (or takes) a store, builds a server over it with newServer,
// serves it on a fresh listener, reports SERVING on its health service and
// dials it. Cleanup (Stop) closes the client, stops the gRPC server and
// waits for it, closes the server and then the store if Start opened it.
// Cleanups the caller registers after Start run before Stop.
func Start[S Server](t testing.TB, newServer func(*storage.Engine) (S, error), opts Options) *Member[S] {
	t.Helper()
	m := &Member[S]{t: t, Engine: opts.Engine}
	if m.Engine == nil {
		m.Engine, m.ownsEng = openStore(t, opts.Dir, opts.Store), true
	}
	srv, err := newServer(m.Engine)
	if err != nil {
		if m.ownsEng {
			_ = m.Engine.Close()
		}
		t.Fatalf("servertest: new server: %v", err)
	}
	m.Server = srv
	t.Cleanup(m.Stop)
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	m.Serve(addr)
	srv.SetServing(true)
	if m.Client, err = shardclient.Dial(t.Context(), m.Addr); err != nil {
		t.Fatalf("servertest: %v", err)
	}
	return m
}

// Serve starts a gRPC server for m.Server on addr. A member stopped with
// StopServing serves again on its previous address with Serve(m.Addr);
// re-binding a port just released can fail briefly, so Serve retries for
// up to five seconds.
func (m *Member[S]) Serve(addr string) {
	m.t.Helper()
	var ln net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		m.t.Fatalf("servertest: listen on %s: %v", addr, err)
	}
	m.Addr = ln.Addr().String()
	g, done := m.Server.NewGRPCServer(), make(chan struct{})
	go func() { defer close(done); _ = g.Serve(ln) }()
	m.g, m.done = g, done
}

// StopServing stops the gRPC server (cutting every call, streams
// included, and closing the listener) and waits for it; the server and
// its store stay open. It does nothing when the member is not serving.
func (m *Member[S]) StopServing() {
	if m.g != nil {
		m.g.Stop()
		<-m.done
		m.g = nil
	}
}

// Stop closes the client, stops serving, closes the server and the store
// Start opened (a failure to close it fails the test). It runs at cleanup;
// calling it before is allowed and makes the cleanup do nothing.
func (m *Member[S]) Stop() {
	m.stopOnce.Do(func() {
		if m.Client != nil {
			_ = m.Client.Close()
		}
		m.StopServing()
		_ = m.Server.Close()
		if m.ownsEng {
			if err := m.Engine.Close(); err != nil {
				m.t.Errorf("servertest: close store: %v", err)
			}
		}
	})
}
