package wire

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/psdb/psdb/pkg/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// seenMsg is what the fixture records of each request.
type seenMsg struct {
	op        OpCode
	cmd       string // first key of the command, lower case
	flags     OpMsgFlags
	sequences map[string]int // identifier -> number of documents
	err       error          // a decode error, if any
}

// handshakeServer is a test fixture, not the router: it answers the
// official driver's handshake, ping, insert and endSessions using only
// ReadMessage and WriteMessage, and records every request it sees. It owns
// one accept goroutine and one goroutine per connection; Close stops and
// waits for all of them.
type handshakeServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	seen  []seenMsg
	// notify receives a value after each recorded request.
	notify chan struct{}
}

func startHandshakeServer(t *testing.T) *handshakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &handshakeServer{ln: ln, conns: map[net.Conn]struct{}{}, notify: make(chan struct{}, 1)}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

func (s *handshakeServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *handshakeServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // listener closed
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *handshakeServer) record(m seenMsg) {
	s.mu.Lock()
	s.seen = append(s.seen, m)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *handshakeServer) snapshot() []seenMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenMsg(nil), s.seen...)
}

func helloReply() bson.D {
	return bson.D{
		{Key: "ismaster", Value: true},
		{Key: "helloOk", Value: true},
		{Key: "msg", Value: "isdbgrid"},
		{Key: "maxBsonObjectSize", Value: int32(MaxBSONObjectSize)},
		{Key: "maxMessageSizeBytes", Value: int32(MaxMessageSizeBytes)},
		{Key: "maxWriteBatchSize", Value: int32(100000)},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
		{Key: "connectionId", Value: int32(1)},
		{Key: "minWireVersion", Value: int32(0)},
		{Key: "maxWireVersion", Value: int32(21)},
		{Key: "readOnly", Value: false},
		{Key: "ok", Value: 1.0},
	}
}

func firstKey(d bson.Raw) string {
	e, err := d.IndexErr(0)
	if err != nil {
		return ""
	}
	return strings.ToLower(e.Key())
}

func (s *handshakeServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	var nextID int32
	for {
		h, body, err := ReadMessage(r, 0)
		if err != nil {
			if !errors.Is(err, ErrClientGone) {
				s.record(seenMsg{err: err})
			}
			return
		}
		nextID++
		reply := &MsgHeader{RequestID: nextID, ResponseTo: h.RequestID}
		switch b := body.(type) {
		case *OpQuery:
			_, q, err := b.Command()
			cmd := firstKey(q)
			s.record(seenMsg{op: OpCodeQuery, cmd: cmd, err: err})
			ans := bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "unsupported"}, {Key: "code", Value: int32(mongoerr.CommandNotFound)}}
			if cmd == "ismaster" || cmd == "hello" {
				ans = helloReply()
			}
			raw, _ := bson.Marshal(ans)
			if err := WriteMessage(w, reply, NewOpReply(raw)); err != nil {
				return
			}
		case *OpMsg:
			m := seenMsg{op: OpCodeMsg, cmd: firstKey(b.Body), flags: b.Flags, sequences: map[string]int{}}
			for _, sq := range b.Sequences {
				m.sequences[sq.Identifier] = len(sq.Documents)
			}
			cmdDoc, err := b.Command()
			if err != nil {
				m.err = err
			}
			s.record(m)
			var ans bson.D
			switch m.cmd {
			case "hello", "ismaster":
				ans = helloReply()
			case "ping", "endsessions":
				ans = bson.D{{Key: "ok", Value: 1.0}}
			case "insert":
				docs, _ := cmdDoc.Lookup("documents").Array().Values()
				ans = bson.D{{Key: "n", Value: int32(len(docs))}, {Key: "ok", Value: 1.0}}
			default:
				ans = bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "no such command: " + m.cmd},
					{Key: "code", Value: int32(mongoerr.CommandNotFound)}, {Key: "codeName", Value: "CommandNotFound"}}
			}
			if b.MoreToCome() {
				continue // the client expects no reply
			}
			raw, _ := bson.Marshal(ans)
			if err := WriteMessage(w, reply, NewOpMsgReply(raw)); err != nil {
				return
			}
		default:
			s.record(seenMsg{op: h.OpCode})
			return
		}
	}
}

// TestOfficialDriver proves the codec against the official Go driver: its
// legacy OP_QUERY handshake, OP_MSG ping, an insert whose documents travel
// in a document sequence, and an unacknowledged insert with moreToCome.
func TestOfficialDriver(t *testing.T) {
	s := startHandshakeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	client, err := mongo.Connect(options.Client().
		ApplyURI("mongodb://" + s.ln.Addr().String()).
		SetServerSelectionTimeout(10 * time.Second).
		SetRetryWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()

	if err := client.Ping(ctx, nil); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	coll := client.Database("test").Collection("c")
	res, err := coll.InsertMany(ctx, []any{bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 2}}, bson.D{{Key: "a", Value: 3}}})
	if err != nil {
		t.Fatalf("InsertMany: %v", err)
	}
	if len(res.InsertedIDs) != 3 {
		t.Fatalf("inserted %d", len(res.InsertedIDs))
	}

	// w:0: the driver sets moreToCome and does not wait for a reply.
	unack := client.Database("test").Collection("c", options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
	if _, err := unack.InsertOne(ctx, bson.D{{Key: "w0", Value: true}}); err != nil {
		t.Fatalf("unacknowledged InsertOne: %v", err)
	}
	// The server saw it, flagged moreToCome (wait with a deadline).
	var sawMoreToCome bool
	for !sawMoreToCome {
		for _, m := range s.snapshot() {
			if m.op == OpCodeMsg && m.cmd == "insert" && m.flags&FlagMoreToCome != 0 {
				sawMoreToCome = true
			}
		}
		if sawMoreToCome {
			break
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			t.Fatal("unacknowledged insert never arrived")
		}
	}
	// The connection is still usable after a request with no reply.
	if err := client.Ping(ctx, nil); err != nil {
		t.Fatalf("Ping after w:0 insert: %v", err)
	}

	var sawLegacy, sawPing, sawSequence bool
	for _, m := range s.snapshot() {
		if m.err != nil {
			t.Errorf("server saw a bad request: %v", m.err)
		}
		switch {
		case m.op == OpCodeQuery && m.cmd == "ismaster":
			sawLegacy = true
		case m.op == OpCodeMsg && m.cmd == "ping":
			sawPing = true
		case m.op == OpCodeMsg && m.cmd == "insert" && m.sequences["documents"] == 3:
			sawSequence = true
		}
	}
	if !sawLegacy || !sawPing || !sawSequence {
		t.Fatalf("legacy handshake %v, OP_MSG ping %v, insert document sequence %v; seen %+v", sawLegacy, sawPing, sawSequence, s.snapshot())
	}
}
