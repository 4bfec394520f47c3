package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// echoServer answers every line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(c, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a line and returns the answer, or the error (within d).
func roundTrip(c net.Conn, line string, d time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

func mustEcho(t *testing.T, c net.Conn, line string) {
	t.Helper()
	got, err := roundTrip(c, line, 5*time.Second)
	if err != nil || got != line {
		t.Fatalf("round trip %q: got %q, %v", line, got, err)
	}
}

func TestPassForwards(t *testing.T) {
	p := newProxy(t, echoServer(t))
	if p.Mode() != Pass {
		t.Fatalf("initial mode %v", p.Mode())
	}
	c := dial(t, p.Addr())
	for _, s := range []string{"a", "hello", "third line"} {
		mustEcho(t, c, s)
	}
	if p.Accepted() != 1 {
		t.Fatalf("accepted %d, want 1", p.Accepted())
	}
}

func TestDropClosesAndRefuses(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	mustEcho(t, c, "before")
	p.SetMode(Drop)
	// The open connection is closed: the next round trip fails at once.
	if _, err := roundTrip(c, "during", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("round trip on a dropped connection: %v, want a closed connection", err)
	}
	// A new connection is accepted and closed.
	c2 := dial(t, p.Addr())
	if _, err := roundTrip(c2, "new", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("round trip on a new connection during Drop: %v, want a closed connection", err)
	}
	p.SetMode(Pass)
	mustEcho(t, dial(t, p.Addr()), "after")
	if p.Dropped() < 2 {
		t.Fatalf("dropped %d, want >= 2", p.Dropped())
	}
}

func TestBlackholeDiscardsThenHeals(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	mustEcho(t, c, "before")
	p.SetMode(Blackhole)
	// Nothing comes back on the open connection, nor on a new one: the
	// clients only see their own timeouts.
	if _, err := roundTrip(c, "lost", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("round trip during a blackhole: %v, want a timeout", err)
	}
	c2 := dial(t, p.Addr())
	if _, err := roundTrip(c2, "lost too", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection during a blackhole: %v, want a timeout", err)
	}
	// Leaving the blackhole closes both (their bytes were lost) ...
	p.SetMode(Pass)
	for _, cc := range []net.Conn{c, c2} {
		_ = cc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(cc); isTimeout(err) {
			t.Fatalf("connection open during the blackhole not closed after it: %v", err)
		}
	}
	// ... and new connections are forwarded again.
	mustEcho(t, dial(t, p.Addr()), "after")
}

func TestCloseEndsEverything(t *testing.T) {
	p, err := New("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	mustEcho(t, c, "x")
	p.SetMode(Blackhole)
	c2 := dial(t, p.Addr())
	_ = c2
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}
}

func TestUnreachableTarget(t *testing.T) {
	// A target nobody listens on: the client's connection is closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newProxy(t, dead)
	if _, err := roundTrip(dial(t, p.Addr()), "x", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("round trip to a dead target: %v, want a closed connection", err)
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Pass: "pass", Drop: "drop", Blackhole: "blackhole", Mode(9): "mode(9)"} {
		if m.String() != want {
			t.Errorf("%d: %q, want %q", m, m.String(), want)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
