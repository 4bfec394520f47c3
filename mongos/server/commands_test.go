package server

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// run dispatches cmd (with $db) on s and fails on a closed connection.
func run(t *testing.T, s *Server, db string, cmd bson.D) bson.Raw {
	t.Helper()
	cmd = append(cmd, bson.E{Key: "$db", Value: db})
	reply, err := s.dispatch(&ConnInfo{ID: 42, Remote: "127.0.0.1:5555", Local: "127.0.0.1:27017"}, "", doc(t, cmd), false)
	if err != nil {
		t.Fatalf("%v closed the connection: %v", cmd, err)
	}
	return reply
}

func wantFields(t *testing.T, r bson.Raw, want bson.D) {
	t.Helper()
	for _, e := range want {
		v, err := r.LookupErr(e.Key)
		if err != nil {
			t.Errorf("reply has no %s: %s", e.Key, r)
			continue
		}
		if e.Value == nil {
			continue // presence only
		}
		wt, wraw, err := bson.MarshalValue(e.Value)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Equal(bson.RawValue{Type: wt, Value: wraw}) {
			t.Errorf("%s = %s, want %v", e.Key, v, e.Value)
		}
	}
}

func TestHandshakeCommands(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := newServer(Options{Now: func() time.Time { return now }})
	common := bson.D{
		{Key: "msg", Value: "isdbgrid"},
		{Key: "maxBsonObjectSize", Value: int32(16777216)},
		{Key: "maxMessageSizeBytes", Value: int32(48000000)},
		{Key: "maxWriteBatchSize", Value: int32(100000)},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(now)},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
		{Key: "connectionId", Value: int32(42)},
		{Key: "minWireVersion", Value: int32(0)},
		{Key: "maxWireVersion", Value: int32(17)},
		{Key: "readOnly", Value: false},
		{Key: "ok", Value: 1.0},
	}
	r := run(t, s, "admin", bson.D{{Key: "hello", Value: 1}})
	wantFields(t, r, append(bson.D{{Key: "isWritablePrimary", Value: true}}, common...))
	for _, absent := range []string{"ismaster", "helloOk", "topologyVersion", "compression", "setName"} {
		if _, err := r.LookupErr(absent); err == nil {
			t.Errorf("hello reply has %s: %s", absent, r)
		}
	}
	for _, name := range []string{"isMaster", "ismaster"} {
		r = run(t, s, "admin", bson.D{{Key: name, Value: 1}, {Key: "helloOk", Value: true}})
		wantFields(t, r, append(bson.D{{Key: "ismaster", Value: true}, {Key: "helloOk", Value: true}}, common...))
		if _, err := r.LookupErr("isWritablePrimary"); err == nil {
			t.Errorf("%s reply has isWritablePrimary", name)
		}
	}
	r = run(t, s, "admin", bson.D{{Key: "isMaster", Value: 1}})
	if _, err := r.LookupErr("helloOk"); err == nil {
		t.Errorf("helloOk sent without being asked: %s", r)
	}
	r = run(t, s, "admin", bson.D{{Key: "hello", Value: 1}, {Key: "helloOk", Value: "yes"}})
	if ok, code, _ := replyCode(t, r); ok || code != 14 {
		t.Errorf("helloOk string: %s", r)
	}

	r = run(t, s, "admin", bson.D{{Key: "buildInfo", Value: 1}})
	wantFields(t, r, bson.D{
		{Key: "version", Value: ServerVersion},
		{Key: "gitVersion", Value: nil},
		{Key: "versionArray", Value: bson.A{int32(7), int32(0), int32(0), int32(0)}},
		{Key: "bits", Value: int32(64)},
		{Key: "maxBsonObjectSize", Value: int32(16777216)},
		{Key: "modules", Value: bson.A{}},
		{Key: "ok", Value: 1.0},
	})

	r = run(t, s, "test", bson.D{{Key: "whatsmyuri", Value: 1}})
	wantFields(t, r, bson.D{{Key: "you", Value: "127.0.0.1:5555"}, {Key: "ok", Value: 1.0}})

	r = run(t, s, "admin", bson.D{{Key: "connectionStatus", Value: 1}})
	wantFields(t, r, bson.D{{Key: "authInfo", Value: bson.D{
		{Key: "authenticatedUsers", Value: bson.A{}},
		{Key: "authenticatedUserRoles", Value: bson.A{}},
	}}, {Key: "ok", Value: 1.0}})
	r = run(t, s, "admin", bson.D{{Key: "connectionStatus", Value: 1}, {Key: "showPrivileges", Value: true}})
	wantFields(t, r, bson.D{{Key: "authInfo", Value: bson.D{
		{Key: "authenticatedUsers", Value: bson.A{}},
		{Key: "authenticatedUserRoles", Value: bson.A{}},
		{Key: "authenticatedUserPrivileges", Value: bson.A{}},
	}}})
}

func TestGetParameter(t *testing.T) {
	s := newServer(Options{CursorTimeout: 90 * time.Second})
	cases := []struct {
		name string
		cmd  bson.D
		db   string
		code int32
		want bson.D
		not  []string
	}{
		{name: "fcv", cmd: bson.D{{Key: "getParameter", Value: 1}, {Key: "featureCompatibilityVersion", Value: 1}},
			want: bson.D{{Key: "featureCompatibilityVersion", Value: bson.D{{Key: "version", Value: "7.0"}}}, {Key: "ok", Value: 1.0}},
			not:  []string{"logLevel"}},
		{name: "two", cmd: bson.D{{Key: "getParameter", Value: 1}, {Key: "logLevel", Value: 1}, {Key: "cursorTimeoutMillis", Value: 1}},
			want: bson.D{{Key: "logLevel", Value: int32(0)}, {Key: "cursorTimeoutMillis", Value: int64(90000)}},
			not:  []string{"featureCompatibilityVersion"}},
		{name: "star", cmd: bson.D{{Key: "getParameter", Value: "*"}},
			want: bson.D{{Key: "logLevel", Value: nil}, {Key: "quiet", Value: false}, {Key: "featureCompatibilityVersion", Value: nil}, {Key: "cursorTimeoutMillis", Value: nil}}},
		{name: "details", cmd: bson.D{{Key: "getParameter", Value: bson.D{{Key: "showDetails", Value: true}}}, {Key: "quiet", Value: 1}},
			want: bson.D{{Key: "quiet", Value: bson.D{{Key: "value", Value: false}, {Key: "settableAtRuntime", Value: false}, {Key: "settableAtStartup", Value: true}}}}},
		{name: "all parameters", cmd: bson.D{{Key: "getParameter", Value: bson.D{{Key: "allParameters", Value: true}}}},
			want: bson.D{{Key: "logLevel", Value: int32(0)}, {Key: "quiet", Value: false}}},
		{name: "unknown", cmd: bson.D{{Key: "getParameter", Value: 1}, {Key: "nope", Value: 1}}, code: 72},
		{name: "none", cmd: bson.D{{Key: "getParameter", Value: 1}}, code: 72},
		{name: "bad option", cmd: bson.D{{Key: "getParameter", Value: bson.D{{Key: "bogus", Value: true}}}}, code: 40415},
		{name: "bad option type", cmd: bson.D{{Key: "getParameter", Value: bson.D{{Key: "showDetails", Value: 1}}}}, code: 14},
		{name: "not admin", cmd: bson.D{{Key: "getParameter", Value: "*"}}, db: "test", code: 13},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.db
			if db == "" {
				db = "admin"
			}
			r := run(t, s, db, tc.cmd)
			ok, code, _ := replyCode(t, r)
			if tc.code != 0 {
				if ok || code != tc.code {
					t.Fatalf("want code %d: %s", tc.code, r)
				}
				return
			}
			if !ok {
				t.Fatalf("failed: %s", r)
			}
			wantFields(t, r, tc.want)
			for _, n := range tc.not {
				if _, err := r.LookupErr(n); err == nil {
					t.Errorf("%s not asked for but present: %s", n, r)
				}
			}
		})
	}
}

func TestAdministrativeCommands(t *testing.T) {
	s := newServer(Options{CmdLine: []string{"mongos", "--name", "mongos0"}, Parsed: map[string]any{"name": "mongos0"}})
	type c = struct {
		name string
		db   string
		cmd  bson.D
		code int32
		want bson.D
	}
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}
	cases := []c{
		{name: "getLog startupWarnings", cmd: bson.D{{Key: "getLog", Value: "startupWarnings"}},
			want: bson.D{{Key: "totalLinesWritten", Value: int32(0)}, {Key: "log", Value: bson.A{}}, {Key: "ok", Value: 1.0}}},
		{name: "getLog star", cmd: bson.D{{Key: "getLog", Value: "*"}},
			want: bson.D{{Key: "names", Value: bson.A{"global", "startupWarnings"}}}},
		{name: "getLog unknown", cmd: bson.D{{Key: "getLog", Value: "nope"}}, code: 96},
		{name: "getLog not a string", cmd: bson.D{{Key: "getLog", Value: 1}}, code: 14},
		{name: "getLog not admin", db: "test", cmd: bson.D{{Key: "getLog", Value: "global"}}, code: 13},
		{name: "hostInfo", cmd: bson.D{{Key: "hostInfo", Value: 1}},
			want: bson.D{{Key: "system", Value: nil}, {Key: "os", Value: nil}, {Key: "extra", Value: nil}}},
		{name: "endSessions", cmd: bson.D{{Key: "endSessions", Value: bson.A{lsid, lsid}}}, want: bson.D{{Key: "ok", Value: 1.0}}},
		{name: "endSessions empty", cmd: bson.D{{Key: "endSessions", Value: bson.A{}}}, want: bson.D{{Key: "ok", Value: 1.0}}},
		{name: "endSessions not an array", cmd: bson.D{{Key: "endSessions", Value: 1}}, code: 14},
		{name: "endSessions of numbers", cmd: bson.D{{Key: "endSessions", Value: bson.A{1}}}, code: 14},
		{name: "killSessions", db: "test", cmd: bson.D{{Key: "killSessions", Value: bson.A{}}}, want: bson.D{{Key: "ok", Value: 1.0}}},
		{name: "refreshSessions", cmd: bson.D{{Key: "refreshSessions", Value: bson.A{lsid}}}, want: bson.D{{Key: "ok", Value: 1.0}}},
		{name: "getCmdLineOpts", cmd: bson.D{{Key: "getCmdLineOpts", Value: 1}},
			want: bson.D{{Key: "argv", Value: bson.A{"mongos", "--name", "mongos0"}}, {Key: "parsed", Value: bson.D{{Key: "name", Value: "mongos0"}}}}},
		{name: "getCmdLineOpts not admin", db: "test", cmd: bson.D{{Key: "getCmdLineOpts", Value: 1}}, code: 13},
		{name: "serverStatus", cmd: bson.D{{Key: "serverStatus", Value: 1}},
			want: bson.D{{Key: "host", Value: nil}, {Key: "version", Value: ServerVersion}, {Key: "process", Value: "mongos"},
				{Key: "uptime", Value: nil}, {Key: "localTime", Value: nil}, {Key: "connections", Value: bson.D{
					{Key: "current", Value: int32(0)}, {Key: "available", Value: int32(DefaultMaxConnections)}, {Key: "totalCreated", Value: int64(0)},
				}}}},
		{name: "atlasVersion is not a command", cmd: bson.D{{Key: "atlasVersion", Value: 1}}, code: 59},
		{name: "listDatabases without a backend", cmd: bson.D{{Key: "listDatabases", Value: 1}}, code: 94},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.db
			if db == "" {
				db = "admin"
			}
			r := run(t, s, db, tc.cmd)
			ok, code, _ := replyCode(t, r)
			if tc.code != 0 {
				if ok || code != tc.code {
					t.Fatalf("want code %d: %s", tc.code, r)
				}
				return
			}
			if !ok {
				t.Fatalf("failed: %s", r)
			}
			wantFields(t, r, tc.want)
		})
	}
}

func TestListCommands(t *testing.T) {
	s := newServer(Options{})
	run(t, s, "admin", bson.D{{Key: "ping", Value: 1}})
	r := run(t, s, "admin", bson.D{{Key: "listCommands", Value: 1}})
	cmds, err := r.LookupErr("commands")
	if err != nil {
		t.Fatalf("no commands: %s", r)
	}
	elems, _ := cmds.Document().Elements()
	var names []string
	for _, e := range elems {
		names = append(names, e.Key())
		if h, _ := e.Value().Document().Lookup("help").StringValueOK(); h == "" {
			t.Errorf("%s has no help", e.Key())
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("not sorted: %q before %q", names[i-1], names[i])
		}
	}
	want := []string{"aggregate", "buildInfo", "buildinfo", "connectionStatus", "count", "create", "dbStats", "delete", "drop", "dropDatabase", "endSessions", "find",
		"getCmdLineOpts", "getLog", "getMore", "getParameter", "hello", "hostInfo", "insert", "isMaster", "ismaster", "killCursors",
		"killSessions", "listCollections", "listCommands", "listDatabases", "ping", "refreshSessions", "serverStatus", "update", "whatsmyuri"}
	want = withAdminCommands(append(want, dataCommandNames...))
	if len(names) != len(want) {
		t.Fatalf("commands %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("commands %v, want %v", names, want)
		}
	}
	if a := cmds.Document().Lookup("getParameter", "adminOnly"); !a.Boolean() {
		t.Errorf("getParameter not adminOnly: %s", a)
	}
	// serverStatus counts commands.
	r = run(t, s, "admin", bson.D{{Key: "serverStatus", Value: 1}})
	if n := r.Lookup("metrics", "commands", "ping", "total").Int64(); n != 1 {
		t.Errorf("ping counted %d times: %s", n, r.Lookup("metrics"))
	}
}
