// Package faultproxy is a TCP proxy that can cut the link it stands for:
// chaos tests put one between every pair of nodes that must be
// partitionable (the dialling node is configured with the proxy's address
// instead of the target's) and flip its Mode to simulate a network
// partition without root privileges or network namespaces.
//
// Modes:
//
//   - Pass forwards bytes both ways.
//   - Drop resets the link: every open connection is closed at once and new
//     connections are accepted and closed immediately (like a refused or
//     reset connection: the client notices at once).
//   - Blackhole silently discards: open connections stay open but every
//     byte either way is thrown away, and new connections are accepted but
//     never forwarded (like a cable pulled: the client only notices by its
//     own timeouts).
//
// Leaving Blackhole closes every connection that lived through it (bytes
// were lost, so their streams are corrupt) and forwards new ones again.
//
// A Proxy owns its goroutines: Close stops accepting, closes every
// connection and returns once every goroutine has ended.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does with the traffic.
type Mode int32

const (
	// Pass forwards traffic.
	Pass Mode = iota
	// Drop closes connections at once.
	Drop
	// Blackhole keeps connections open and discards their bytes.
	Blackhole
)

// String implements fmt.Stringer.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Drop:
		return "drop"
	case Blackhole:
		return "blackhole"
	}
	return fmt.Sprintf("mode(%d)", int32(m))
}

// DialTimeout bounds the dial of the target for one connection.
const DialTimeout = 2 * time.Second

// Proxy forwards connections accepted on its address to one target.
type Proxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[*link]struct{}
	// Stats.
	accepted, dropped atomic.Int64
}

// link is one proxied connection: the client's side and, when forwarded,
// the target's.
type link struct {
	mu     sync.Mutex
	client net.Conn
	target net.Conn // nil until dialled
	closed bool
}

func (l *link) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	c, t := l.client, l.target
	l.mu.Unlock()
	_ = c.Close()
	if t != nil {
		_ = t.Close()
	}
}

// setTarget records the dialled target; it closes t and returns false
// when the link was closed meanwhile.
func (l *link) setTarget(t net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = t.Close()
		return false
	}
	l.target = t
	return true
}

// New listens on addr ("127.0.0.1:0" for a free port) and forwards every
// connection to target.
func New(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{ln: ln, target: target, ctx: ctx, cancel: cancel, conns: map[*link]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode { return Mode(p.mode.Load()) }

// Accepted returns the number of connections accepted so far.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Dropped returns the number of connections closed by Drop, refused by
// it, or closed when leaving Blackhole.
func (p *Proxy) Dropped() int64 { return p.dropped.Load() }

// SetMode switches the proxy to m: entering Drop closes every open
// connection; leaving Blackhole closes every connection that was open
// during it.
func (p *Proxy) SetMode(m Mode) {
	old := Mode(p.mode.Swap(int32(m)))
	if m == Drop || (old == Blackhole && m != Blackhole) {
		p.closeAll()
	}
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
		p.dropped.Add(1)
	}
}

// Close stops the proxy: no new connection, every open one closed. It
// returns once every goroutine of the proxy has ended.
func (p *Proxy) Close() error {
	p.cancel()
	err := p.ln.Close()
	p.closeAll()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient accept error
		}
		p.accepted.Add(1)
		if p.Mode() == Drop {
			p.dropped.Add(1)
			_ = c.Close()
			continue
		}
		l := &link{client: c}
		if !p.track(l) {
			_ = c.Close()
			return
		}
		p.wg.Go(func() { p.serve(l) })
	}
}

// track adds l to the open links unless the proxy is closing.
func (p *Proxy) track(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return false
	}
	p.conns[l] = struct{}{}
	return true
}

func (p *Proxy) untrack(l *link) {
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
	l.close()
}

// serve forwards one connection: it dials the target once the mode
// allows it, then pumps bytes both ways until either side closes.
func (p *Proxy) serve(l *link) {
	defer p.untrack(l)
	// A connection accepted during a blackhole waits, unforwarded, until
	// the mode changes (leaving Blackhole closes it) or the proxy closes.
	if p.Mode() == Blackhole {
		_, _ = io.Copy(io.Discard, l.client)
		return
	}
	d := net.Dialer{Timeout: DialTimeout}
	t, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return
	}
	if !l.setTarget(t) {
		return
	}
	done := make(chan struct{}, 2)
	pump := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && p.Mode() == Pass {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pump(t, l.client)
	go pump(l.client, t)
	<-done
	l.close() // unblocks the other pump
	<-done
}
