package server

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/opstats"
)

func TestOpType(t *testing.T) {
	for cmd, want := range map[string]string{
		"insert": opstats.OpInsert, "find": opstats.OpQuery, "update": opstats.OpUpdate,
		"delete": opstats.OpDelete, "getMore": opstats.OpGetMore, "aggregate": opstats.OpCommand,
		"findAndModify": opstats.OpCommand, "hello": opstats.OpCommand, "noSuchCommand": opstats.OpCommand,
	} {
		if got := opType(cmd); got != want {
			t.Errorf("opType(%q) = %q, want %q", cmd, got, want)
		}
	}
}

func TestDispatchRecordsOpStats(t *testing.T) {
	rec := opstats.NewRecorder()
	s := newServer(Options{SlowThreshold: -1, OpStats: rec})
	ci := &ConnInfo{ID: 1}
	for _, cmd := range []bson.D{
		{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "noSuchCommand", Value: 1}, {Key: "$db", Value: "admin"}},
		{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{}}}, {Key: "$db", Value: "test"}}, // no backend: an error reply
	} {
		if _, err := s.dispatch(ci, "", doc(t, cmd), false); err != nil {
			t.Fatal(err)
		}
	}
	snap := rec.Snapshot()
	if c, _ := snap.Get(opstats.OpCommand); c.Count != 3 {
		t.Errorf("commands recorded = %d, want 3 (two pings, one unknown)", c.Count)
	}
	if c, _ := snap.Get(opstats.OpInsert); c.Count != 1 {
		t.Errorf("inserts recorded = %d, want 1 (failed ones count too)", c.Count)
	}
}
