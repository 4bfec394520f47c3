package server

import (
	"bufio"
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/wire"
)

// BenchmarkDispatchPing measures the dispatcher alone: lookup, $db check,
// handler, reply check, counters, (disabled) log line.
func BenchmarkDispatchPing(b *testing.B) {
	s := newServer(Options{})
	ci := &ConnInfo{ID: 1}
	cmd := doc(b, bson.D{{Key: "ping", Value: 1}, {Key: "lsid", Value: bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}}, {Key: "$db", Value: "admin"}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.dispatch(ci, "", cmd, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDispatchHello is the monitoring command drivers send every few
// seconds on every connection pool.
func BenchmarkDispatchHello(b *testing.B) {
	s := newServer(Options{})
	ci := &ConnInfo{ID: 1}
	cmd := doc(b, bson.D{{Key: "hello", Value: 1}, {Key: "$db", Value: "admin"}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.dispatch(ci, "", cmd, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTripPing is one OP_MSG ping over loopback TCP on one
// connection: the router's per-request overhead as a client sees it.
func BenchmarkRoundTripPing(b *testing.B) {
	_, addr := startServer(b, Options{})
	nc := dialRaw(b, addr)
	w, r := bufio.NewWriter(nc), bufio.NewReader(nc)
	m := wire.NewOpMsgReply(doc(b, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}}))
	b.ReportAllocs()
	id := int32(0)
	for b.Loop() {
		id++
		if err := wire.WriteMessage(w, &wire.MsgHeader{RequestID: id}, m); err != nil {
			b.Fatal(err)
		}
		if _, _, err := wire.ReadMessage(r, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDriverPing is the official driver's RunCommand ping against the
// router: what an application pays end to end.
func BenchmarkDriverPing(b *testing.B) {
	_, addr := startServer(b, Options{})
	c := connectDriver(b, addr)
	ctx := context.Background()
	db := c.Database("admin")
	if err := db.RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := db.RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
			b.Fatal(err)
		}
	}
}
