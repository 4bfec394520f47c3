package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/pkg/opstats"
	"github.com/psdb/psdb/pkg/wire"
)

// Defaults of Options.
const (
	// DefaultSlowThreshold is the duration past which a command is logged
	// at info level as a slow operation (MongoDB's slowms).
	DefaultSlowThreshold = 100 * time.Millisecond
	// DefaultMaxConnections is MongoDB's default maxIncomingConnections.
	DefaultMaxConnections = 1_000_000
	// DefaultCursorTimeout is reported by getParameter cursorTimeoutMillis
	// when Options.CursorTimeout is zero (MongoDB's 10 minutes).
	DefaultCursorTimeout = 10 * time.Minute
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("mongos server closed")

// Options configure a Server. The zero value of every field except Logger
// has a usable default.
type Options struct {
	// Logger receives the server's lines; it should carry node and role.
	Logger zerolog.Logger
	// MaxMessageBytes bounds an incoming message (header included) and is
	// announced as maxMessageSizeBytes. 0 means wire.MaxMessageSizeBytes
	// (48 MB, MongoDB's value).
	MaxMessageBytes int32
	// SlowThreshold: commands taking longer are logged at info level;
	// 0 means DefaultSlowThreshold, negative never.
	SlowThreshold time.Duration
	// MaxConnections bounds open client connections; a connection beyond
	// it is closed at once. 0 means DefaultMaxConnections.
	MaxConnections int
	// CursorTimeout is the idle timeout of client cursors (reported by
	// getParameter); 0 means DefaultCursorTimeout.
	CursorTimeout time.Duration
	// CmdLine is the process's argv, reported by getCmdLineOpts; Parsed
	// is its "parsed" document (nil: empty).
	CmdLine []string
	Parsed  map[string]any
	// Now returns the current time (localTime); nil means time.Now.
	Now func() time.Time
	// Backend reaches the cluster for the data commands (insert, find,
	// ...); nil: they answer NotYetInitialized. The Server does not close
	// it.
	Backend Backend
	// TestCommands enables the test-only commands (configureFailPoint);
	// off, they answer CommandNotFound.
	TestCommands bool
	// OpStats receives every command's type and duration (package
	// opstats, for the load line); nil records nothing.
	OpStats *opstats.Recorder
	// Name is this router's id (cluster.yaml name): it signs changelog
	// entries.
	Name string
	// Balancer is this router's balancer (nil: none runs here); balancerStart
	// and addShard wake it, balancerStatus reads it.
	Balancer BalancerHandle
}

// Server is the router's wire-protocol server. Create it with New, run it
// with Serve, stop it with Shutdown or Close. A Server is safe for
// concurrent use.
type Server struct {
	opts    Options
	log     zerolog.Logger
	table   *commandTable
	started time.Time
	host    string // hostname, for serverStatus

	// base is the parent context of every command; cancelled when
	// connections are force-closed, so running handlers stop.
	base       context.Context
	cancelBase context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   bool // set by Shutdown/Close: no new connections or requests
	// wg counts connection goroutines. Invariant: wg.Add happens under mu
	// while closing is false, so Shutdown's Wait sees every connection.
	wg sync.WaitGroup

	nextConnID    atomic.Int64
	nextRequestID atomic.Int32
	stats         *stats

	// cursors holds the router-side cursors; its reaper goroutine is
	// started by New and stopped by Shutdown/Close.
	cursors *cursorStore
}

// New returns a Server with the registered command table.
func New(opts Options) *Server {
	return newServer(opts)
}

// newServer is New with extra commands (tests add commands that panic or
// break the handler contract).
func newServer(opts Options, extra ...Command) *Server {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = wire.MaxMessageSizeBytes
	}
	if opts.SlowThreshold == 0 {
		opts.SlowThreshold = DefaultSlowThreshold
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.CursorTimeout <= 0 {
		opts.CursorTimeout = DefaultCursorTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	t := newCommandTable(extra...)
	base, cancel := context.WithCancel(context.Background())
	srv := &Server{
		opts:       opts,
		log:        opts.Logger,
		table:      t,
		started:    opts.Now(),
		host:       host,
		base:       base,
		cancelBase: cancel,
		listeners:  map[net.Listener]struct{}{},
		conns:      map[*conn]struct{}{},
		stats:      newStats(t),
	}
	srv.cursors = newCursorStore(opts.CursorTimeout, opts.Now, opts.Logger)
	return srv
}

// Serve accepts connections on ln and serves each in its own goroutine
// until Shutdown or Close; then it returns ErrServerClosed. Any other
// accept error is returned after closing ln. Serve closes ln when it
// returns. It may be called for several listeners.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors or a transient error: wait and
				// retry rather than spin or stop serving.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-s.base.Done():
					t.Stop()
				}
				continue
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		s.startConn(nc)
	}
}

// startConn registers nc and starts its goroutine, or closes it when the
// server is closing or full.
func (s *Server) startConn(nc net.Conn) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.conns) >= s.opts.MaxConnections {
		n := len(s.conns)
		s.mu.Unlock()
		s.log.Warn().Str("remote", nc.RemoteAddr().String()).Int("open", n).
			Msg("connection refused because too many connections are open")
		nc.Close()
		return
	}
	c := newConn(s, nc, s.nextConnID.Add(1))
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.totalCreated.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.removeConn(c)
		c.serve()
	}()
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// currentConns is the number of open client connections.
func (s *Server) currentConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops the server gracefully: it closes the listeners (Serve
// returns ErrServerClosed), closes idle connections at once, lets every
// request already read finish and send its reply, then closes that
// connection too. When ctx ends first, the remaining connections are
// force-closed, running commands see their context cancelled, and
// Shutdown returns ctx's error after every connection goroutine has
// ended. Shutdown may be called more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancelBase()
		s.cursors.close()
		return nil
	case <-ctx.Done():
		s.forceClose()
		<-done
		s.cursors.close()
		return ctx.Err()
	}
}

// Close stops the server at once: listeners and every connection are
// closed and running commands see their context cancelled. It waits for
// the connection goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.forceClose()
	s.wg.Wait()
	s.cursors.close()
	return nil
}

func (s *Server) forceClose() {
	s.cancelBase()
	s.mu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
}
