package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/wire"
)

// FuzzDispatch feeds arbitrary bytes as a command document to the
// dispatcher, the way the connection loop does: the bytes are framed as
// an OP_MSG body (or an OP_QUERY on admin.$cmd), decoded and validated by
// package wire, and whatever it accepts is dispatched. No input may make a
// handler panic (the dispatcher would recover, but a recovered panic is
// still a bug), close the connection, or produce a malformed reply.
func FuzzDispatch(f *testing.F) {
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}
	seeds := []bson.D{
		{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "hello", Value: 1}, {Key: "helloOk", Value: true}, {Key: "$db", Value: "admin"}},
		{{Key: "isMaster", Value: 1}, {Key: "client", Value: bson.D{{Key: "driver", Value: bson.D{{Key: "name", Value: "x"}}}}}},
		{{Key: "ismaster", Value: 1}, {Key: "helloOk", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "buildInfo", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "buildinfo", Value: 1}, {Key: "$db", Value: "test"}},
		{{Key: "whatsmyuri", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "connectionStatus", Value: 1}, {Key: "showPrivileges", Value: true}, {Key: "$db", Value: "admin"}},
		{{Key: "getParameter", Value: 1}, {Key: "featureCompatibilityVersion", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "getParameter", Value: "*"}, {Key: "$db", Value: "admin"}},
		{{Key: "getParameter", Value: bson.D{{Key: "showDetails", Value: true}, {Key: "allParameters", Value: 1}}}, {Key: "$db", Value: "admin"}},
		{{Key: "getLog", Value: "startupWarnings"}, {Key: "$db", Value: "admin"}},
		{{Key: "getLog", Value: bson.A{1}}, {Key: "$db", Value: "admin"}},
		{{Key: "hostInfo", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "endSessions", Value: bson.A{lsid}}, {Key: "$db", Value: "admin"}},
		{{Key: "killSessions", Value: bson.A{1, "x"}}, {Key: "$db", Value: "admin"}},
		{{Key: "refreshSessions", Value: "x"}, {Key: "$db", Value: "admin"}},
		{{Key: "getCmdLineOpts", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "serverStatus", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "listCommands", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "atlasVersion", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "ping", Value: 1}, {Key: "maxTimeMS", Value: bson.NewDecimal128(1, 2)}, {Key: "$db", Value: "admin"}},
		{{Key: "ping", Value: 1}, {Key: "lsid", Value: lsid}, {Key: "$db", Value: 1}},
		{{Key: "ping", Value: 1}},
		{},
	}
	for i, d := range seeds {
		raw, err := bson.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(raw), i%3 == 2)
	}
	f.Add([]byte{5, 0, 0, 0, 0}, false)
	f.Add([]byte("not bson"), true)

	s := newServer(Options{})
	ci := &ConnInfo{ID: 1, Remote: "127.0.0.1:1", Local: "127.0.0.1:2"}
	f.Fuzz(func(t *testing.T, data []byte, opQuery bool) {
		db, cmd, ok := decodeAsCommand(data, opQuery)
		if !ok {
			return // the wire package refused the bytes: the connection would close
		}
		before := s.stats.panics.Load()
		reply, err := s.dispatch(ci, db, cmd, opQuery)
		if err != nil {
			t.Fatalf("dispatch closed the connection: %v", err)
		}
		if s.stats.panics.Load() != before {
			t.Fatalf("a handler panicked on %s", cmd)
		}
		if !wellFormed(reply) || reply.Validate() != nil {
			t.Fatalf("malformed reply %x", []byte(reply))
		}
		if _, err := reply.LookupErr("ok"); err != nil {
			t.Fatalf("reply without ok: %s", reply)
		}
	})
}

// decodeAsCommand frames data as the body of an OP_MSG (or the query of an
// OP_QUERY on admin.$cmd) and decodes it with package wire, as the
// connection loop would.
func decodeAsCommand(data []byte, opQuery bool) (db string, cmd bson.Raw, ok bool) {
	var body []byte
	op := int32(wire.OpCodeMsg)
	if opQuery {
		op = int32(wire.OpCodeQuery)
		body = binary.LittleEndian.AppendUint32(body, 0)
		body = append(body, "admin.$cmd\x00"...)
		body = binary.LittleEndian.AppendUint32(body, 0)
		body = binary.LittleEndian.AppendUint32(body, ^uint32(0))
		body = append(body, data...)
	} else {
		body = binary.LittleEndian.AppendUint32(body, 0)
		body = append(body, 0)
		body = append(body, data...)
	}
	msg := binary.LittleEndian.AppendUint32(nil, uint32(16+len(body)))
	msg = binary.LittleEndian.AppendUint32(msg, 1)
	msg = binary.LittleEndian.AppendUint32(msg, 0)
	msg = binary.LittleEndian.AppendUint32(msg, uint32(op))
	msg = append(msg, body...)
	_, b, err := wire.ReadMessage(bufio.NewReader(bytes.NewReader(msg)), 0)
	if err != nil {
		return "", nil, false
	}
	switch m := b.(type) {
	case *wire.OpMsg:
		c, err := m.Command()
		return "", c, err == nil
	case *wire.OpQuery:
		d, c, err := m.Command()
		return d, c, err == nil
	}
	return "", nil, false
}
