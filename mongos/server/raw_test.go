package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/wire"
)

func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// sendMsg writes an OP_MSG with the given flags and body.
func sendMsg(t testing.TB, nc net.Conn, id int32, flags wire.OpMsgFlags, body bson.D) {
	t.Helper()
	m := wire.NewOpMsgReply(doc(t, body))
	m.Flags = flags
	if err := wire.WriteMessage(bufio.NewWriter(nc), &wire.MsgHeader{RequestID: id}, m); err != nil {
		t.Fatal(err)
	}
}

// readReply reads one message with a deadline.
func readReply(t testing.TB, nc net.Conn) (*wire.MsgHeader, wire.Body) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, b, err := wire.ReadMessage(bufio.NewReader(nc), 0)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return h, b
}

// header returns a 16-byte message header.
func header(length, id, responseTo, opCode int32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], uint32(length))
	binary.LittleEndian.PutUint32(b[4:], uint32(id))
	binary.LittleEndian.PutUint32(b[8:], uint32(responseTo))
	binary.LittleEndian.PutUint32(b[12:], uint32(opCode))
	return b
}

// message frames body bytes with a header of the right length.
func message(opCode int32, body []byte) []byte {
	return append(header(int32(16+len(body)), 1, 0, opCode), body...)
}

func TestMalformedInputClosesOnlyThatConnection(t *testing.T) {
	log, logs := testLogger()
	_, addr := startServer(t, Options{Logger: log})
	ping := doc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	opMsg := func(flags uint32, sections ...[]byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, flags)
		for _, s := range sections {
			b = append(b, s...)
		}
		return message(2013, b)
	}
	kind0 := append([]byte{0}, ping...)

	cases := []struct {
		name  string
		bytes []byte
	}{
		{"garbage header", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"huge length", header(48_000_001, 1, 0, 2013)},
		{"max int length", header(1<<31-1, 1, 0, 2013)},
		{"negative length", header(-5, 1, 0, 2013)},
		{"length below header", header(3, 1, 0, 2013)},
		{"unknown required flag", opMsg(1<<5, kind0)},
		{"unknown section kind", opMsg(0, append([]byte{9}, ping...))},
		{"two body sections", opMsg(0, kind0, kind0)},
		{"no body section", opMsg(0)},
		{"truncated document", opMsg(0, kind0[:len(kind0)-3])},
		{"bad checksum", opMsg(1, kind0, []byte{1, 2, 3, 4})},
		{"compressed", message(2012, append(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 2013), 100), 1, 0, 0))},
		{"legacy insert", message(2002, append(binary.LittleEndian.AppendUint32(nil, 0), []byte("test.c\x00\x05\x00\x00\x00\x00")...))},
		{"unknown opcode", message(9999, []byte{0, 0, 0, 0})},
		{"reply from a client", message(1, make([]byte, 20))},
	}
	// A well-behaved client, connected before and used after every case.
	good := dialRaw(t, addr)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := dialRaw(t, addr)
			if _, err := bad.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			bad.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := io.ReadFull(bad, make([]byte, 16))
			if err == nil {
				t.Fatalf("server answered %d bytes instead of closing", n)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("connection left open (read timed out)")
			}
			id := int32(100 + i)
			sendMsg(t, good, id, 0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
			h, b := readReply(t, good)
			if h.ResponseTo != id {
				t.Fatalf("reply to %d, want %d", h.ResponseTo, id)
			}
			if ok, _, _ := replyCode(t, b.(*wire.OpMsg).Body); !ok {
				t.Fatalf("ping failed: %s", b)
			}
		})
	}
	if l := logs.lines(`"level":"warn"`, `closing connection`); len(l) < len(cases) {
		t.Errorf("%d closing lines for %d cases:\n%s", len(l), len(cases), logs)
	}
	if l := logs.lines(`"level":"warn"`, `closing connection: malformed message`, `"code":17`, `"header":`); len(l) == 0 {
		t.Errorf("no reason logged for a bad length:\n%s", logs)
	}
}

// A body field repeated as a document sequence breaks the protocol
// (MongoDB's 40433): the wire package refuses it while decoding, so the
// connection closes like for any malformed message.
func TestDuplicateSequenceFieldClosesConnection(t *testing.T) {
	_, addr := startServer(t, Options{})
	nc := dialRaw(t, addr)
	m := &wire.OpMsg{
		Body:      doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{}}, {Key: "$db", Value: "test"}}),
		Sequences: []wire.DocumentSequence{{Identifier: "documents", Documents: []bson.Raw{doc(t, bson.D{{Key: "a", Value: 1}})}}},
	}
	if err := wire.WriteMessage(bufio.NewWriter(nc), &wire.MsgHeader{RequestID: 5}, m); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection not closed: %v", err)
	}
}

func TestChecksumMirrored(t *testing.T) {
	_, addr := startServer(t, Options{})
	nc := dialRaw(t, addr)
	for _, flags := range []wire.OpMsgFlags{0, wire.FlagChecksumPresent} {
		sendMsg(t, nc, 1, flags, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
		_, b := readReply(t, nc) // ReadMessage verifies the checksum
		m := b.(*wire.OpMsg)
		if m.Flags&wire.FlagChecksumPresent != flags {
			t.Errorf("request flags %s, reply flags %s", flags, m.Flags)
		}
	}
}

func TestMoreToComeGetsNoReply(t *testing.T) {
	_, addr := startServer(t, Options{})
	nc := dialRaw(t, addr)
	sendMsg(t, nc, 1, wire.FlagMoreToCome, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	sendMsg(t, nc, 2, wire.FlagMoreToCome, bson.D{{Key: "nosuchcommand", Value: 1}, {Key: "$db", Value: "admin"}})
	sendMsg(t, nc, 3, 0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	h, _ := readReply(t, nc)
	if h.ResponseTo != 3 {
		t.Fatalf("first reply answers %d, want 3 (no replies to moreToCome)", h.ResponseTo)
	}
}

func TestLegacyOpQuery(t *testing.T) {
	_, addr := startServer(t, Options{})
	nc := dialRaw(t, addr)
	query := func(id int32, ns string, q bson.D) bson.Raw {
		t.Helper()
		m := &wire.OpQuery{FullCollectionName: ns, NumberToReturn: -1, Query: doc(t, q)}
		if err := wire.WriteMessage(bufio.NewWriter(nc), &wire.MsgHeader{RequestID: id}, m); err != nil {
			t.Fatal(err)
		}
		h, b := readReply(t, nc)
		r, ok := b.(*wire.OpReply)
		if !ok || h.ResponseTo != id || len(r.Documents) != 1 {
			t.Fatalf("reply %s to OP_QUERY %d", b, id)
		}
		return r.Documents[0]
	}
	r := query(1, "admin.$cmd", bson.D{{Key: "isMaster", Value: 1}, {Key: "helloOk", Value: true}})
	if !r.Lookup("ismaster").Boolean() || !r.Lookup("helloOk").Boolean() || r.Lookup("msg").StringValue() != "isdbgrid" {
		t.Errorf("isMaster: %s", r)
	}
	r = query(2, "admin.$cmd", bson.D{{Key: "$query", Value: bson.D{{Key: "ismaster", Value: 1}}}, {Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "primaryPreferred"}}}})
	if !r.Lookup("ismaster").Boolean() {
		t.Errorf("wrapped ismaster: %s", r)
	}
	if _, code, _ := replyCode(t, query(3, "admin.$cmd", bson.D{{Key: "ping", Value: 1}})); code != 352 {
		t.Errorf("OP_QUERY ping: code %d", code)
	}
	if _, code, _ := replyCode(t, query(4, "test.coll", bson.D{{Key: "a", Value: 1}})); code != 73 {
		t.Errorf("OP_QUERY on a collection: code %d", code)
	}
	// The connection then speaks OP_MSG.
	sendMsg(t, nc, 5, 0, bson.D{{Key: "hello", Value: 1}, {Key: "$db", Value: "admin"}})
	if h, b := readReply(t, nc); h.ResponseTo != 5 || b.OpCode() != wire.OpCodeMsg {
		t.Errorf("hello after OP_QUERY: %s %s", h, b)
	}
}

func TestMaxConnections(t *testing.T) {
	s, addr := startServer(t, Options{MaxConnections: 2})
	a, b := dialRaw(t, addr), dialRaw(t, addr)
	for i, nc := range []net.Conn{a, b} {
		sendMsg(t, nc, int32(i), 0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
		readReply(t, nc)
	}
	c := dialRaw(t, addr)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection not refused")
	}
	a.Close()
	waitFor(t, "closed connection forgotten", 10*time.Second, func() bool { return s.currentConns() == 1 })
	d := dialRaw(t, addr)
	sendMsg(t, d, 9, 0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	readReply(t, d)
}

func TestPing(t *testing.T) {
	_, addr := startServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wire.Ping(ctx, addr); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	if err := wire.Ping(ctx, closedAddr); err == nil {
		t.Error("Ping of a closed port succeeded")
	}

	// A listener that accepts but never answers: Ping returns by the deadline.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := silent.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	if err := wire.Ping(short, silent.Addr().String()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping of a silent server = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Ping took %s", d)
	}
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
	}
}

// A message close to the 48 MB limit (three 15 MB documents in a
// sequence, the shape of a large insert batch) is read and answered.
func TestLargeMessage(t *testing.T) {
	_, addr := startServer(t, Options{})
	nc := dialRaw(t, addr)
	big := doc(t, bson.D{{Key: "pad", Value: string(make([]byte, 15_000_000))}})
	m := &wire.OpMsg{
		Body:      doc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}}),
		Sequences: []wire.DocumentSequence{{Identifier: "documents", Documents: []bson.Raw{big, big, big}}},
	}
	if err := wire.WriteMessage(bufio.NewWriter(nc), &wire.MsgHeader{RequestID: 3}, m); err != nil {
		t.Fatal(err)
	}
	h, b := readReply(t, nc)
	if ok, _, _ := replyCode(t, b.(*wire.OpMsg).Body); !ok || h.ResponseTo != 3 {
		t.Fatalf("reply %s", b)
	}
}
