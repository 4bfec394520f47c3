package server

import (
	"bufio"
	"errors"
	"net"
	"runtime/debug"
	"sync"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/wire"
)

// ConnInfo describes a client connection to handlers. It is immutable.
type ConnInfo struct {
	// ID is the connection's number, unique in the process, starting at
	// 1 (hello's connectionId).
	ID int64
	// Remote and Local are the peer's and the server's host:port.
	Remote, Local string
}

// conn is one client connection. Its goroutine (serve) is the only reader
// and writer of the socket; other goroutines only close it.
type conn struct {
	s    *Server
	nc   net.Conn
	info ConnInfo
	log  zerolog.Logger
	r    *bufio.Reader
	w    *bufio.Writer

	// mu guards the fields below, shared with Shutdown.
	mu sync.Mutex
	// busy: a request was read and its reply is not written yet.
	busy bool
	// draining: Shutdown ran while busy; close after this reply.
	draining bool
	// closed: the socket was closed by the server (not by the client).
	closed bool
}

func newConn(s *Server, nc net.Conn, id int64) *conn {
	info := ConnInfo{ID: id, Remote: nc.RemoteAddr().String(), Local: nc.LocalAddr().String()}
	return &conn{
		s:    s,
		nc:   nc,
		info: info,
		log:  s.log.With().Int64("conn", id).Str("remote", info.Remote).Logger(),
		r:    bufio.NewReaderSize(nc, 16<<10),
		w:    bufio.NewWriterSize(nc, 16<<10),
	}
}

// close closes the socket; a blocked read or write returns at once.
func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.nc.Close()
	}
}

// closeIfIdle is Shutdown's step: an idle connection is closed now (its
// read unblocks), a busy one after its reply is written.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy {
		c.draining = true
		return
	}
	if !c.closed {
		c.closed = true
		c.nc.Close()
	}
}

// begin marks the connection busy; false means it was closed meanwhile
// and the request must be dropped unanswered.
func (c *conn) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.busy = true
	return true
}

// end marks the connection idle; false means Shutdown asked it to close.
func (c *conn) end() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = false
	return !c.draining && !c.closed
}

func (c *conn) closedByServer() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// serve is the connection's loop: read a message, run it, write the reply.
// It returns when the client leaves, sends something that breaks the
// protocol, or the server shuts down; the socket is closed on return.
func (c *conn) serve() {
	defer c.close()
	defer func() {
		// The dispatcher recovers handler panics; this catches a bug in
		// the loop itself so that one connection never takes the process
		// down.
		if p := recover(); p != nil {
			c.log.Error().Interface("panic", p).Bytes("stack", debug.Stack()).Msg("connection loop panicked; closing the connection")
		}
	}()
	c.log.Debug().Str("local", c.info.Local).Msg("connection accepted")
	for {
		h, body, err := wire.ReadMessage(c.r, c.s.opts.MaxMessageBytes)
		if err != nil {
			c.readFailed(h, err)
			return
		}
		if !c.begin() {
			return
		}
		reply, err := c.handle(h, body)
		if err == nil && reply != nil {
			err = wire.WriteMessage(c.w, &wire.MsgHeader{RequestID: c.s.nextRequestID.Add(1), ResponseTo: h.RequestID}, reply)
			if err != nil {
				if errors.Is(err, wire.ErrInvalidBody) {
					c.log.Error().Err(err).Msg("closing connection: reply cannot be encoded")
				} else {
					c.log.Debug().Err(err).Msg("closing connection: write failed")
				}
			}
		}
		if !c.end() || err != nil {
			return
		}
	}
}

// readFailed logs why reading stopped: quietly when the client left or the
// server closed the socket, with the reason when the client broke the
// protocol.
func (c *conn) readFailed(h *wire.MsgHeader, err error) {
	switch {
	case c.closedByServer():
		c.log.Debug().Msg("connection closed by the server")
	case errors.Is(err, wire.ErrClientGone):
		c.log.Debug().Msg("client disconnected")
	case errors.Is(err, wire.ErrMalformed), errors.Is(err, wire.ErrUnsupported):
		c.log.Warn().Err(err).Stringer("header", h).Int32("code", int32(mongoerr.CodeOf(err))).
			Msg("closing connection: malformed message")
	default:
		c.log.Warn().Err(err).Msg("closing connection: read failed")
	}
}

// handle runs one decoded message and returns the reply to write (nil for
// none), or an error that closes the connection.
func (c *conn) handle(h *wire.MsgHeader, body wire.Body) (wire.Body, error) {
	c.s.stats.requests.Add(1)
	switch m := body.(type) {
	case *wire.OpMsg:
		var reply bson.Raw
		cmd, err := m.Command()
		if err != nil {
			reply = ErrorReply(err)
		} else {
			reply, err = c.s.dispatch(&c.info, "", cmd, false)
			if err != nil {
				c.log.Warn().Err(err).Msg("closing connection at the command's request")
				return nil, err
			}
		}
		if m.MoreToCome() {
			// The client asked for no reply (w:0 writes); never send one.
			return nil, nil
		}
		out := wire.NewOpMsgReply(reply)
		// MongoDB checksums its reply when the request carried one.
		out.Flags = m.Flags & wire.FlagChecksumPresent
		return out, nil
	case *wire.OpQuery:
		db, cmd, err := m.Command()
		var reply bson.Raw
		if err != nil {
			reply = ErrorReply(err)
		} else {
			reply, err = c.s.dispatch(&c.info, db, cmd, true)
			if err != nil {
				c.log.Warn().Err(err).Msg("closing connection at the command's request")
				return nil, err
			}
		}
		return wire.NewOpReply(reply), nil
	default:
		err := mongoerr.Wrap(wire.ErrUnsupported, mongoerr.ProtocolError, "a client may not send %s", h.OpCode)
		c.log.Warn().Err(err).Stringer("header", h).Msg("closing connection: unexpected message")
		return nil, err
	}
}
