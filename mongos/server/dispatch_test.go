package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

var errCloseMe = errors.New("close this connection")

// dispatchTestCommands exercise the dispatcher's side of the contract.
func dispatchTestCommands() []Command {
	return []Command{
		{Name: "testPanic", Help: "test", Handler: func(context.Context, *Server, *Request) (bson.Raw, error) {
			var m map[string]int
			m["boom"]++ // nil map write: a real runtime panic
			return okReply()
		}},
		{Name: "testBoth", Help: "test", Handler: func(context.Context, *Server, *Request) (bson.Raw, error) {
			r, _ := okReply()
			return r, errCloseMe
		}},
		{Name: "testNil", Help: "test", Handler: func(context.Context, *Server, *Request) (bson.Raw, error) {
			return nil, nil
		}},
		{Name: "testMalformed", Help: "test", Handler: func(context.Context, *Server, *Request) (bson.Raw, error) {
			return bson.Raw{9, 0, 0, 0, 1}, nil
		}},
		{Name: "testClose", Help: "test", Handler: func(context.Context, *Server, *Request) (bson.Raw, error) {
			return nil, errCloseMe
		}},
		{Name: "testHuge", Help: "test", Handler: func(context.Context, *Server, *Request) (bson.Raw, error) {
			return okReply(bson.E{Key: "big", Value: strings.Repeat("x", maxReplyBytes)})
		}},
		{Name: "testDeadline", Help: "test", Handler: func(ctx context.Context, _ *Server, _ *Request) (bson.Raw, error) {
			dl, ok := ctx.Deadline()
			return okReply(bson.E{Key: "hasDeadline", Value: ok}, bson.E{Key: "remainingMs", Value: time.Until(dl).Milliseconds()})
		}},
		{Name: "testLSID", Help: "test", Handler: func(_ context.Context, _ *Server, req *Request) (bson.Raw, error) {
			req.NS = req.DB + ".coll"
			return okReply(bson.E{Key: "lsid", Value: req.LSID}, bson.E{Key: "db", Value: req.DB})
		}},
		{Name: "testAdmin", Help: "test", AdminOnly: true, Handler: func(context.Context, *Server, *Request) (bson.Raw, error) {
			return okReply()
		}},
		{Name: "testOwnMaxTime", Help: "test", OwnMaxTimeMS: true, Handler: func(ctx context.Context, _ *Server, _ *Request) (bson.Raw, error) {
			_, ok := ctx.Deadline()
			return okReply(bson.E{Key: "hasDeadline", Value: ok})
		}},
	}
}

func TestDispatch(t *testing.T) {
	log, logs := testLogger()
	s := newServer(Options{Logger: log, SlowThreshold: -1}, dispatchTestCommands()...)
	ci := &ConnInfo{ID: 7, Remote: "127.0.0.1:5000", Local: "127.0.0.1:27017"}
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}

	cases := []struct {
		name     string
		cmd      bson.D
		db       string // for OP_QUERY
		opQuery  bool
		closeErr error  // wanted connection-closing error (errors.Is)
		code     int32  // wanted error code; 0 means ok: 1
		msg      string // substring of errmsg
		check    func(t *testing.T, reply bson.Raw)
	}{
		{name: "ping", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}}},
		{name: "ping on any database", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "test"}}},
		{name: "unknown command", cmd: bson.D{{Key: "foo", Value: 1}, {Key: "$db", Value: "admin"}},
			code: 59, msg: "no such cmd: foo"},
		{name: "unknown command without $db", cmd: bson.D{{Key: "foo", Value: 1}}, code: 59},
		{name: "case-sensitive names", cmd: bson.D{{Key: "PING", Value: 1}, {Key: "$db", Value: "admin"}}, code: 59},
		{name: "empty document", cmd: bson.D{}, code: 59, msg: "no such cmd: "},
		{name: "alias ismaster", cmd: bson.D{{Key: "ismaster", Value: 1}, {Key: "$db", Value: "admin"}}},
		{name: "alias buildinfo", cmd: bson.D{{Key: "buildinfo", Value: 1}, {Key: "$db", Value: "admin"}}},
		{name: "missing $db", cmd: bson.D{{Key: "ping", Value: 1}}, code: 40571, msg: "OP_MSG requests require a $db argument"},
		{name: "$db not a string", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: 5}}, code: 14},
		{name: "$db empty", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: ""}}, code: 73},
		{name: "$db with a dot", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "a.b"}}, code: 73, msg: "Invalid database name: 'a.b'"},
		{name: "$db too long", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: strings.Repeat("d", 64)}}, code: 73},
		{name: "$db $external is valid", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "$external"}}},
		{name: "admin-only command elsewhere", cmd: bson.D{{Key: "testAdmin", Value: 1}, {Key: "$db", Value: "test"}},
			code: 13, msg: "testAdmin may only be run against the admin database."},
		{name: "admin-only command on admin", cmd: bson.D{{Key: "testAdmin", Value: 1}, {Key: "$db", Value: "admin"}}},
		{name: "OP_QUERY isMaster", cmd: bson.D{{Key: "isMaster", Value: 1}}, db: "admin", opQuery: true},
		{name: "OP_QUERY hello", cmd: bson.D{{Key: "hello", Value: 1}}, db: "admin", opQuery: true},
		{name: "OP_QUERY buildinfo", cmd: bson.D{{Key: "buildinfo", Value: 1}}, db: "admin", opQuery: true},
		{name: "OP_QUERY other command", cmd: bson.D{{Key: "ping", Value: 1}}, db: "admin", opQuery: true,
			code: 352, msg: "Unsupported OP_QUERY command: ping"},
		{name: "OP_QUERY find", cmd: bson.D{{Key: "find", Value: "c"}}, db: "test", opQuery: true, code: 352},
		{name: "OP_QUERY saslStart passes the OP_QUERY check", cmd: bson.D{{Key: "saslStart", Value: 1}}, db: "admin", opQuery: true, code: 59},
		{name: "panic becomes InternalError", cmd: bson.D{{Key: "testPanic", Value: 1}, {Key: "$db", Value: "admin"}},
			code: 1, msg: "internal error while running testPanic"},
		{name: "reply and error closes", cmd: bson.D{{Key: "testBoth", Value: 1}, {Key: "$db", Value: "admin"}}, closeErr: ErrContract},
		{name: "error closes", cmd: bson.D{{Key: "testClose", Value: 1}, {Key: "$db", Value: "admin"}}, closeErr: errCloseMe},
		{name: "no reply", cmd: bson.D{{Key: "testNil", Value: 1}, {Key: "$db", Value: "admin"}}, code: 1, msg: "no valid reply"},
		{name: "malformed reply", cmd: bson.D{{Key: "testMalformed", Value: 1}, {Key: "$db", Value: "admin"}}, code: 1},
		{name: "oversized reply", cmd: bson.D{{Key: "testHuge", Value: 1}, {Key: "$db", Value: "admin"}}, code: 10334},
		{name: "maxTimeMS sets a deadline", cmd: bson.D{{Key: "testDeadline", Value: 1}, {Key: "maxTimeMS", Value: 60000}, {Key: "$db", Value: "admin"}},
			check: func(t *testing.T, r bson.Raw) {
				if !r.Lookup("hasDeadline").Boolean() || r.Lookup("remainingMs").Int64() > 60000 || r.Lookup("remainingMs").Int64() < 50000 {
					t.Errorf("deadline not applied: %s", r)
				}
			}},
		{name: "maxTimeMS 0 means none", cmd: bson.D{{Key: "testDeadline", Value: 1}, {Key: "maxTimeMS", Value: int64(0)}, {Key: "$db", Value: "admin"}},
			check: func(t *testing.T, r bson.Raw) {
				if r.Lookup("hasDeadline").Boolean() {
					t.Errorf("deadline applied for maxTimeMS 0: %s", r)
				}
			}},
		{name: "maxTimeMS double integral", cmd: bson.D{{Key: "testDeadline", Value: 1}, {Key: "maxTimeMS", Value: 1000.0}, {Key: "$db", Value: "admin"}}},
		{name: "maxTimeMS negative", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "maxTimeMS", Value: -1}, {Key: "$db", Value: "admin"}}, code: 2},
		{name: "maxTimeMS fractional", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "maxTimeMS", Value: 1.5}, {Key: "$db", Value: "admin"}}, code: 2},
		{name: "maxTimeMS string", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "maxTimeMS", Value: "1"}, {Key: "$db", Value: "admin"}}, code: 2},
		{name: "maxTimeMS too large", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "maxTimeMS", Value: int64(1) << 40}, {Key: "$db", Value: "admin"}}, code: 2},
		{name: "own maxTimeMS", cmd: bson.D{{Key: "testOwnMaxTime", Value: 1}, {Key: "maxTimeMS", Value: 10}, {Key: "$db", Value: "admin"}},
			check: func(t *testing.T, r bson.Raw) {
				if r.Lookup("hasDeadline").Boolean() {
					t.Errorf("dispatcher applied maxTimeMS of a command that owns it: %s", r)
				}
			}},
		{name: "lsid and db reach the handler", cmd: bson.D{{Key: "testLSID", Value: 1}, {Key: "lsid", Value: lsid}, {Key: "$db", Value: "test"}},
			check: func(t *testing.T, r bson.Raw) {
				if _, _, ok := r.Lookup("lsid", "id").BinaryOK(); !ok || r.Lookup("db").StringValue() != "test" {
					t.Errorf("handler did not see lsid/db: %s", r)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := s.dispatch(ci, tc.db, doc(t, tc.cmd), tc.opQuery)
			if tc.closeErr != nil {
				if !errors.Is(err, tc.closeErr) || reply != nil {
					t.Fatalf("got reply %v, err %v; want no reply and %v", reply, err, tc.closeErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("dispatch closed the connection: %v", err)
			}
			ok, code, msg := replyCode(t, reply)
			if tc.code == 0 {
				if !ok {
					t.Fatalf("want ok: 1, got %s", reply)
				}
			} else {
				if ok || code != tc.code {
					t.Fatalf("want code %d, got %s", tc.code, reply)
				}
				if _, err := reply.LookupErr("codeName"); err != nil {
					t.Errorf("error reply without codeName: %s", reply)
				}
				if !strings.Contains(msg, tc.msg) {
					t.Errorf("errmsg %q does not contain %q", msg, tc.msg)
				}
			}
			if tc.check != nil {
				tc.check(t, reply)
			}
		})
	}

	if got := s.stats.panics.Load(); got != 1 {
		t.Errorf("panics counted: %d, want 1", got)
	}
	if l := logs.lines(`"message":"command panicked"`, `"stack"`, `"op":"testPanic"`); len(l) != 1 {
		t.Errorf("panic logged %d times with its stack, want once:\n%s", len(l), logs)
	}
	// One line per command, with op, duration and outcome.
	if l := logs.lines(`"message":"command"`); len(l) != len(cases) {
		t.Errorf("%d command lines logged for %d commands", len(l), len(cases))
	}
	if l := logs.lines(`"message":"command"`, `"op":"foo"`, `"ok":false`, `"code":59`, `"dur":`); len(l) != 2 {
		t.Errorf("unknown command not logged with its code:\n%s", logs)
	}
	if l := logs.lines(`"op":"testLSID"`, `"ns":"test.coll"`); len(l) != 1 {
		t.Errorf("namespace set by the handler not logged:\n%s", logs)
	}
	if got := s.stats.unknown.Load(); got < 5 {
		t.Errorf("unknown commands counted: %d", got)
	}
}

func TestSlowCommandLoggedAtInfo(t *testing.T) {
	log, logs := testLogger()
	log = log.Level(1) // info
	slow := Command{Name: "testSlow", Help: "test", Handler: func(context.Context, *Server, *Request) (bson.Raw, error) {
		time.Sleep(20 * time.Millisecond)
		return okReply()
	}}
	s := newServer(Options{Logger: log, SlowThreshold: 10 * time.Millisecond}, slow)
	ci := &ConnInfo{ID: 1}
	for _, name := range []string{"ping", "testSlow"} {
		if _, err := s.dispatch(ci, "", doc(t, bson.D{{Key: name, Value: 1}, {Key: "$db", Value: "admin"}}), false); err != nil {
			t.Fatal(err)
		}
	}
	if l := logs.lines(`"level":"info"`, `"message":"slow operation"`, `"op":"testSlow"`, `"ns":"admin"`); len(l) != 1 {
		t.Errorf("slow command not logged at info:\n%s", logs)
	}
	if l := logs.lines(`"op":"ping"`); len(l) != 0 {
		t.Errorf("fast command logged at info level:\n%s", logs)
	}
}

func TestErrorReply(t *testing.T) {
	cases := []struct {
		err      error
		code     int32
		codeName string
		msg      string
	}{
		{mongoerr.New(mongoerr.BadValue, "bad %s", "x"), 2, "BadValue", "bad x"},
		{mongoerr.New(40571, "m"), 40571, "Location40571", "m"},
		{errors.New("plain"), 1, "InternalError", "plain"},
		{nil, 1, "InternalError", "unknown error"},
	}
	for _, tc := range cases {
		r := ErrorReply(tc.err)
		ok, code, msg := replyCode(t, r)
		name, _ := r.Lookup("codeName").StringValueOK()
		if ok || code != tc.code || name != tc.codeName || msg != tc.msg {
			t.Errorf("ErrorReply(%v) = %s", tc.err, r)
		}
		if f, isF := r.Lookup("ok").DoubleOK(); !isF || f != 0 {
			t.Errorf("ok is not the double 0: %s", r)
		}
	}
}

func TestDuplicateRegistrationPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("registering ping twice did not panic")
		}
	}()
	register(Command{Name: "ping", Help: "again", Handler: handlePing})
}

func TestCommandTableSorted(t *testing.T) {
	s := newServer(Options{})
	for i := 1; i < len(s.table.names); i++ {
		if s.table.names[i-1] >= s.table.names[i] {
			t.Fatalf("names not sorted: %v", s.table.names)
		}
	}
	for _, n := range s.table.names {
		c, _ := s.table.lookup(n)
		if c.Help == "" || c.Handler == nil {
			t.Errorf("command %s has no help or handler", n)
		}
	}
}
