package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/failpoint"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestConfigureFailPointDisabled(t *testing.T) {
	s := newServer(Options{})
	r := run(t, s, "admin", bson.D{{Key: "configureFailPoint", Value: FailPointMoveChunkHangAfterPhase}, {Key: "mode", Value: "alwaysOn"}})
	ok, code, msg := replyCode(t, r)
	if ok || code != int32(mongoerr.CommandNotFound) || !strings.Contains(msg, "test commands are disabled") {
		t.Fatalf("without test commands: ok=%v code=%d %q", ok, code, msg)
	}
	if st, _ := failpoint.Default.State(FailPointMoveChunkHangAfterPhase); st.Mode != failpoint.Off {
		t.Fatalf("a refused command changed the point: %+v", st)
	}
}

func TestConfigureFailPointHangAfterPhase(t *testing.T) {
	s := newServer(Options{TestCommands: true})
	fp := FailPointMoveChunkHangAfterPhase
	t.Cleanup(func() { _, _ = failpoint.Default.Configure(fp, failpoint.Setting{}) })
	count := func() int64 {
		t.Helper()
		r := run(t, s, "admin", bson.D{{Key: "configureFailPoint", Value: fp}})
		if ok, code, msg := replyCode(t, r); !ok {
			t.Fatalf("read %s: %d %s", fp, code, msg)
		}
		return r.Lookup("count").AsInt64()
	}
	start := count()
	r := run(t, s, "admin", bson.D{{Key: "configureFailPoint", Value: fp}, {Key: "mode", Value: "alwaysOn"},
		{Key: "data", Value: bson.D{{Key: "phase", Value: "clone"}}}})
	wantFields(t, r, bson.D{{Key: "ok", Value: 1.0}, {Key: "count", Value: start}})
	r = run(t, s, "admin", bson.D{{Key: "configureFailPoint", Value: fp}})
	wantFields(t, r, bson.D{{Key: "mode", Value: "alwaysOn"}, {Key: "data", Value: bson.D{{Key: "phase", Value: "clone"}}}})

	// A migration's afterPhase hook: another phase passes, "clone" hangs
	// until the point is turned off.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var seen []string
	hook := hangAfterPhase(ctx, func(p string) { seen = append(seen, p) })
	hook("start")
	done := make(chan struct{})
	go func() { defer close(done); hook("clone") }()
	waitFor(t, "the fail point entered", 5*time.Second, func() bool { return count() == start+1 })
	select {
	case <-done:
		t.Fatal("the hook returned while the point is on")
	default:
	}
	r = run(t, s, "admin", bson.D{{Key: "configureFailPoint", Value: fp}, {Key: "mode", Value: "off"}})
	wantFields(t, r, bson.D{{Key: "count", Value: start + 1}})
	<-done
	if strings.Join(seen, ",") != "start,clone" {
		t.Fatalf("the wrapped hook saw %v", seen)
	}

	// {times: 1}: one entry; the context bounds the hang.
	run(t, s, "admin", bson.D{{Key: "configureFailPoint", Value: fp}, {Key: "mode", Value: bson.D{{Key: "times", Value: 1}}},
		{Key: "data", Value: bson.D{{Key: "phase", Value: "commit"}}}})
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	hangAfterPhase(short, nil)("commit")
	hangAfterPhase(ctx, nil)("commit") // exhausted: returns at once
	r = run(t, s, "admin", bson.D{{Key: "configureFailPoint", Value: fp}})
	wantFields(t, r, bson.D{{Key: "count", Value: start + 2}, {Key: "mode", Value: bson.D{{Key: "times", Value: int64(0)}}}})

	for _, tc := range []struct {
		cmd  bson.D
		code mongoerr.Code
	}{
		{bson.D{{Key: "configureFailPoint", Value: "noSuchPoint"}, {Key: "mode", Value: "off"}}, mongoerr.BadValue},
		{bson.D{{Key: "configureFailPoint", Value: fp}, {Key: "mode", Value: "sometimes"}}, mongoerr.BadValue},
		{bson.D{{Key: "configureFailPoint", Value: fp}, {Key: "mode", Value: bson.D{{Key: "times", Value: -1}}}}, mongoerr.BadValue},
		{bson.D{{Key: "configureFailPoint", Value: fp}, {Key: "mode", Value: 3}}, mongoerr.TypeMismatch},
		{bson.D{{Key: "configureFailPoint", Value: fp}, {Key: "mode", Value: "alwaysOn"}, {Key: "data", Value: 1}}, mongoerr.TypeMismatch},
		{bson.D{{Key: "configureFailPoint", Value: 1}, {Key: "mode", Value: "off"}}, mongoerr.TypeMismatch},
	} {
		r := run(t, s, "admin", tc.cmd)
		if ok, code, msg := replyCode(t, r); ok || code != int32(tc.code) {
			t.Errorf("%v: ok=%v code=%d %q, want code %d", tc.cmd, ok, code, msg, tc.code)
		}
	}
	if st, _ := failpoint.Default.State(fp); st.Mode != failpoint.Times {
		t.Fatalf("a refused configuration changed the point: %+v", st)
	}
}
