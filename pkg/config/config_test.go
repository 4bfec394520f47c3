package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/psdb/psdb/pkg/config"
	"github.com/spf13/pflag"
)

// section is one top-level key of a test document and its YAML value
// (flow style); an empty value leaves the key out.
type section struct{ key, val string }

// base is a small valid cluster: two one-member shards.
var base = []section{
	{"name", "t1"},
	{"configServers", "[{name: cfg0, clientAddr: '127.0.0.1:2379', peerAddr: '127.0.0.1:2380'}]"},
	{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001'}]}, {name: rs1, members: [{name: b, addr: '127.0.0.1:1002'}]}]"},
	{"routers", "[{name: r0, addr: '127.0.0.1:27017'}]"},
}

// doc renders base with the sections of over replacing (or, with an empty
// value, removing) those of the same key; new keys are appended.
func doc(over ...section) []byte {
	var b strings.Builder
	used := map[string]bool{}
	for _, s := range base {
		val := s.val
		for _, o := range over {
			if o.key == s.key {
				val, used[o.key] = o.val, true
			}
		}
		if val != "" {
			b.WriteString(s.key + ": " + val + "\n")
		}
	}
	for _, o := range over {
		if !used[o.key] && o.val != "" {
			b.WriteString(o.key + ": " + o.val + "\n")
		}
	}
	return []byte(b.String())
}

func TestParseValid(t *testing.T) {
	c, err := config.Parse(doc())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Name != "t1" || len(c.Shards) != 2 || c.Shards[1].Members[0].Addr != "127.0.0.1:1002" {
		t.Fatalf("unexpected cluster: %+v", c)
	}
	// Everything not in the file is the default.
	def := config.Default()
	if c.Replication != def.Replication || c.Sharding != def.Sharding || c.Router != def.Router || c.Log != def.Log || c.RunDir != def.RunDir {
		t.Fatalf("tunables are not the defaults:\n got %+v %+v %+v\nwant %+v %+v %+v", c.Replication, c.Sharding, c.Router, def.Replication, def.Sharding, def.Router)
	}
}

func TestDefaults(t *testing.T) {
	d := config.Default()
	want := []struct {
		name      string
		got, want any
	}{
		{"runDir", d.RunDir, "run"},
		{"log.level", d.Log.Level, "info"},
		{"log.format", d.Log.Format, "console"},
		{"log.statsInterval", d.Log.StatsInterval, 10 * time.Second},
		{"replication.leaseTTL", d.Replication.LeaseTTL, time.Second},
		{"replication.etcdHeartbeat", d.Replication.EtcdHeartbeat, 100 * time.Millisecond},
		{"replication.etcdElectionTimeout", d.Replication.EtcdElectionTimeout, 500 * time.Millisecond},
		{"replication.defaultWriteConcern", d.Replication.DefaultWriteConcern, "majority"},
		{"replication.oplogRetention", d.Replication.OplogRetention, 24 * time.Hour},
		{"replication.oplogMaxBytes", d.Replication.OplogMaxBytes, config.GiB},
		{"sharding.chunkSize", d.Sharding.ChunkSize, 128 * config.MiB},
		{"sharding.hashedInitialChunksPerShard", d.Sharding.HashedInitialChunksPerShard, 2},
		{"sharding.balancerInterval", d.Sharding.BalancerInterval, 10 * time.Second},
		{"sharding.imbalanceThreshold", d.Sharding.ImbalanceThreshold, 2},
		{"router.cursorTimeout", d.Router.CursorTimeout, 10 * time.Minute},
		{"router.maxMessageBytes", d.Router.MaxMessageBytes, config.Size(48_000_000)},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("default %s = %v, want %v", w.name, w.got, w.want)
		}
	}
	// Default has no nodes, so it is not a valid cluster by itself, and the
	// error says exactly what is missing.
	err := d.Validate()
	for _, f := range []string{"name", "configServers", "shards", "routers"} {
		if !hasField(err, f) {
			t.Errorf("Default().Validate() = %v; want a problem at %s", err, f)
		}
	}
}

func hasField(err error, field string) bool {
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		return false
	}
	for _, f := range ve.Fields() {
		if f == field {
			return true
		}
	}
	return false
}

func TestParseInvalid(t *testing.T) {
	cases := []struct {
		name string
		doc  []byte
		want []string // substrings of the error, each "field: reason"
	}{
		{"unknown top-level key", doc(section{"shrads", "[]"}), []string{`shrads: unknown key (did you mean "shards"?)`}},
		{"unknown key with an empty value", []byte(string(doc()) + "shrads:\n"), []string{`shrads: unknown key (did you mean "shards"?)`}},
		{"unknown key holding a mapping", doc(section{"replication", "{extra: {deep: 1}}"}), []string{`replication.extra: unknown key`}},
		{"key given twice in different case", doc(section{"replication", "{leaseTTL: 2s, leasettl: 3s}"}), []string{`replication.leasettl: duplicate of key "leaseTTL"`}},
		{"key given twice", []byte(string(doc()) + "name: again\n"), []string{`not a valid YAML mapping`}},
		{"unknown nested key", doc(section{"replication", "{leaseTTLL: 2s}"}), []string{`replication.leaseTTLL: unknown key (did you mean "leaseTTL"?)`}},
		{"unknown key in a list item", doc(section{"routers", "[{name: r0, adr: '127.0.0.1:27017'}]"}), []string{"routers[0].adr: unknown key", "routers[0].addr: address is required"}},
		{"unknown key in a member", doc(section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001', datadir2: x}]}]"}), []string{"shards[0].members[0].datadir2: unknown key"}},
		{"shard without members", doc(section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001'}]}, {name: rs1, members: []}]"}), []string{`shards[1].members: shard "rs1" has no members`}},
		{"shard with members key missing", doc(section{"shards", "[{name: rs0}]"}), []string{`shards[0].members: shard "rs0" has no members`}},
		{"shard with an even member count", doc(section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001'}, {name: b, addr: '127.0.0.1:1002'}]}]"}), []string{`shards[0].members: shard "rs0" has 2 members; use an odd number`}},
		{"shard with too many members", doc(section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001'}, {name: b, addr: '127.0.0.1:1002'}, {name: c, addr: '127.0.0.1:1003'}, {name: d, addr: '127.0.0.1:1004'}, {name: e, addr: '127.0.0.1:1005'}, {name: f, addr: '127.0.0.1:1006'}, {name: g, addr: '127.0.0.1:1007'}, {name: h, addr: '127.0.0.1:1008'}, {name: i, addr: '127.0.0.1:1009'}]}]"}), []string{`shards[0].members: shard "rs0" has 9 members`}},
		{"even config servers", doc(section{"configServers", "[{name: c0, clientAddr: '127.0.0.1:2379', peerAddr: '127.0.0.1:2380'}, {name: c1, clientAddr: '127.0.0.1:3379', peerAddr: '127.0.0.1:3380'}]"}), []string{"configServers: has 2 members"}},
		{"no shards", doc(section{"shards", "[]"}), []string{"shards: at least one shard is required"}},
		{"shards key missing", doc(section{"shards", ""}), []string{"shards: at least one shard is required"}},
		{"missing config server", doc(section{"configServers", ""}), []string{"configServers: at least one config server is required"}},
		{"missing router", doc(section{"routers", "[]"}), []string{"routers: at least one router is required"}},
		{"duplicate address across roles", doc(section{"routers", "[{name: r0, addr: '127.0.0.1:1001'}]"}), []string{`routers[0].addr: address "127.0.0.1:1001" is already used by shards[0].members[0].addr`}},
		{"duplicate address, IPv4-mapped form", doc(section{"routers", "[{name: r0, addr: '[::ffff:127.0.0.1]:2380'}]"}), []string{`routers[0].addr: address "[::ffff:127.0.0.1]:2380" is already used by configServers[0].peerAddr`}},
		{"duplicate address, host case", doc(section{"routers", "[{name: r0, addr: 'db.example:1'}, {name: r1, addr: 'DB.example:1'}]"}), []string{`routers[1].addr: address "DB.example:1" is already used by routers[0].addr`}},
		{"client and peer address equal", doc(section{"configServers", "[{name: cfg0, clientAddr: '127.0.0.1:2379', peerAddr: '127.0.0.1:2379'}]"}), []string{"configServers[0].peerAddr: address \"127.0.0.1:2379\" is already used by configServers[0].clientAddr"}},
		{"duplicate node name", doc(section{"routers", "[{name: a, addr: '127.0.0.1:27017'}]"}), []string{`routers[0].name: node name "a" is already used by shards[0].members[0].name`}},
		{"duplicate shard name", doc(section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001'}]}, {name: rs0, members: [{name: b, addr: '127.0.0.1:1002'}]}]"}), []string{`shards[1].name: shard name "rs0" is already used by shards[0].name`}},
		{"duplicate data directory", doc(section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001', dataDir: /d/x}]}, {name: rs1, members: [{name: b, addr: '127.0.0.1:1002', dataDir: /d/./x}]}]"}), []string{`shards[1].members[0].dataDir: data directory "/d/./x" is already used by shards[0].members[0].dataDir`}},
		{"explicit data dir equal to a default", doc(section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001', dataDir: run/data/b}]}, {name: rs1, members: [{name: b, addr: '127.0.0.1:1002'}]}]"}), []string{`shards[1].members[0].dataDir: data directory "run/data/b" is already used by shards[0].members[0].dataDir`}},
		{"bad duration", doc(section{"replication", "{leaseTTL: abc}"}), []string{`replication.leaseTTL: "abc" is not a duration`}},
		{"duration without unit", doc(section{"replication", "{leaseTTL: 5}"}), []string{`replication.leaseTTL: 5 is not a duration`}},
		{"duration as a list", doc(section{"router", "{cursorTimeout: [1s]}"}), []string{`router.cursorTimeout: a list is not a duration`}},
		{"negative duration", doc(section{"replication", "{wTimeout: -1s}"}), []string{`replication.wTimeout: -1s must not be negative`}},
		{"zero duration", doc(section{"sharding", "{balancerInterval: 0s}"}), []string{`sharding.balancerInterval: 0s must be positive`}},
		{"bad size unit", doc(section{"sharding", "{chunkSize: 12XB}"}), []string{`sharding.chunkSize: "12XB" is not a size`}},
		{"negative size", doc(section{"sharding", "{chunkSize: -5}"}), []string{`sharding.chunkSize: -5 is not a size`}},
		{"fractional size", doc(section{"sharding", "{chunkSize: 1.5MiB}"}), []string{`sharding.chunkSize: "1.5MiB" is not a size`}},
		{"size out of range", doc(section{"sharding", "{chunkSize: 10}"}), []string{`sharding.chunkSize: 10 is outside 1KiB..1GiB`}},
		{"size overflow", doc(section{"replication", "{oplogMaxBytes: 99999999999TiB}"}), []string{`replication.oplogMaxBytes: "99999999999TiB" is not a size`}},
		{"unknown key keeps its spelling", doc(section{"routers", "[{name: r0, addr: '127.0.0.1:27017', ListenAddr: x}]"}), []string{"routers[0].ListenAddr: unknown key"}},
		{"float for an integer", doc(section{"sharding", "{hashedInitialChunksPerShard: 2.0}"}), []string{`sharding.hashedInitialChunksPerShard: 2.0 is not an integer`}},
		{"bad integer", doc(section{"sharding", "{hashedInitialChunksPerShard: two}"}), []string{`sharding.hashedInitialChunksPerShard: "two" is not an integer`}},
		{"integer out of range", doc(section{"sharding", "{hashedInitialChunksPerShard: 0, imbalanceThreshold: 0}"}), []string{`sharding.hashedInitialChunksPerShard: 0 is outside 1..1024`, `sharding.imbalanceThreshold: 0 must be at least 1`}},
		{"address without port", doc(section{"routers", "[{name: r0, addr: '127.0.0.1'}]"}), []string{`routers[0].addr: "127.0.0.1" is not a host:port address`}},
		{"port zero", doc(section{"routers", "[{name: r0, addr: '127.0.0.1:0'}]"}), []string{`routers[0].addr: "127.0.0.1:0" has a bad port "0"`}},
		{"port too large", doc(section{"routers", "[{name: r0, addr: '127.0.0.1:70000'}]"}), []string{`routers[0].addr: "127.0.0.1:70000" has a bad port "70000"`}},
		{"port not numeric", doc(section{"routers", "[{name: r0, addr: '127.0.0.1:http'}]"}), []string{`has a bad port "http"`}},
		{"no host", doc(section{"routers", "[{name: r0, addr: ':27017'}]"}), []string{`routers[0].addr: ":27017" has no host`}},
		{"bad host", doc(section{"routers", "[{name: r0, addr: 'bad_host:27017'}]"}), []string{`routers[0].addr: "bad_host:27017" has a bad host "bad_host"`}},
		{"lease shorter than a second", doc(section{"replication", "{leaseTTL: 500ms}"}), []string{`replication.leaseTTL: 500ms is shorter than 1s`}},
		{"lease not whole seconds", doc(section{"replication", "{leaseTTL: 1500ms}"}), []string{`replication.leaseTTL: 1.5s is not a whole number of seconds`}},
		{"lease shorter than 1.5 election timeouts", doc(section{"replication", "{etcdElectionTimeout: 800ms}"}), []string{`replication.leaseTTL: 1s is shorter than 1.5 x replication.etcdElectionTimeout (1.2s)`}},
		{"election timeout under 5 heartbeats", doc(section{"replication", "{etcdHeartbeat: 200ms}"}), []string{`replication.etcdElectionTimeout: 500ms must be at least 5 x replication.etcdHeartbeat (1s)`}},
		{"heartbeat below a millisecond", doc(section{"replication", "{etcdHeartbeat: 1500us}"}), []string{`replication.etcdHeartbeat: 1.5ms is not a whole number of milliseconds`}},
		{"backoff not shorter than lease", doc(section{"replication", "{electionBackoff: 1s}"}), []string{`replication.electionBackoff: 1s must be shorter than replication.leaseTTL`}},
		{"write concern larger than a shard", doc(section{"replication", "{defaultWriteConcern: 3}"}), []string{`replication.defaultWriteConcern: w:3 can never be satisfied by shard "rs0" with 1 member(s)`}},
		{"write concern not a concern", doc(section{"replication", "{defaultWriteConcern: all}"}), []string{`replication.defaultWriteConcern: "all" is not a write concern`}},
		{"oplog too small", doc(section{"replication", "{oplogMaxBytes: 1KB}"}), []string{`replication.oplogMaxBytes: 1KB is less than the minimum of 1MiB`}},
		{"max message too small", doc(section{"router", "{maxMessageBytes: 16MiB}"}), []string{`router.maxMessageBytes: 16MiB is outside`}},
		{"bad log level", doc(section{"log", "{level: verbose}"}), []string{`log.level: "verbose" is not a level`}},
		{"bad log format", doc(section{"log", "{format: xml}"}), []string{`log.format: "xml" is not a format`}},
		{"negative stats interval", doc(section{"log", "{statsInterval: -1s}"}), []string{`log.statsInterval: -1s must not be negative`}},
		{"missing cluster name", doc(section{"name", ""}), []string{`name: cluster name is required`}},
		{"bad cluster name", doc(section{"name", "'a/b'"}), []string{`name: cluster name "a/b" may only hold`}},
		{"bad node name", doc(section{"routers", "[{name: '-r', addr: '127.0.0.1:27017'}]"}), []string{`routers[0].name: node name "-r" may only hold`}},
		{"empty run dir", doc(section{"runDir", "''"}), []string{`runDir: must not be empty`}},
		{"section is a scalar", doc(section{"replication", "5"}), []string{`replication: must be a mapping of keys to values, not 5`}},
		{"list is a scalar", doc(section{"shards", "rs0"}), []string{`shards: must be a list, not "rs0"`}},
		{"list item is a scalar", doc(section{"routers", "[r0]"}), []string{`routers[0]: must be a mapping of keys to values, not "r0"`}},
		{"name is a mapping", doc(section{"name", "{a: 1}"}), []string{`name: must be a string, not a mapping`}},
		{"not YAML", []byte("name: [unclosed\n"), []string{"not a valid YAML mapping"}},
		{"YAML but not a mapping", []byte("- a\n- b\n"), []string{"not a valid YAML mapping"}},
		{"every problem is reported", doc(section{"shrads", "1"}, section{"replication", "{leaseTTL: abc, catchUpTimeout: x}"}, section{"routers", "[]"}), []string{
			"shrads: unknown key", `replication.leaseTTL: "abc" is not a duration`, `replication.catchUpTimeout: "x" is not a duration`, "routers: at least one router is required",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse(tc.doc)
			if err == nil {
				t.Fatalf("Parse succeeded (%+v); want errors %q\ninput:\n%s", c, tc.want, tc.doc)
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			var ve *config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v\ninput:\n%s", w, err, tc.doc)
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	in := doc(
		section{"runDir", "/var/psdb"},
		section{"log", "{level: debug, format: json, dir: /var/log/psdb, statsInterval: 0s}"},
		section{"shards", "[{name: rs0, members: [{name: a, addr: 'h1.example:1001', dataDir: /x/a}, {name: b, addr: '[::1]:1002'}, {name: c, addr: '10.0.0.1:1003'}]}]"},
		section{"routers", "[{name: r0, addr: '127.0.0.1:27017'}, {name: r1, addr: '127.0.0.1:27018'}]"},
		section{"replication", "{leaseTTL: 3s, defaultWriteConcern: 2, oplogRetention: 90m, oplogMaxBytes: 123456789, wTimeout: 5s}"},
		section{"sharding", "{chunkSize: 64KB, imbalanceThreshold: 1, migrationBatchBytes: 1MB}"},
		section{"router", "{cursorTimeout: 1m30s, maxMessageBytes: 32MiB}"},
	)
	c1, err := config.Parse(in)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := c1.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	c2, err := config.Parse(out)
	if err != nil {
		t.Fatalf("Parse(Encode()): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c1, c2) {
		t.Fatalf("round trip changed the cluster:\n%+v\n%+v\n%s", c1, c2, out)
	}
	if c2.Sharding.ChunkSize != 64_000 || c2.Replication.OplogMaxBytes != 123456789 || c2.Replication.DefaultWriteConcern != "2" || c2.Log.StatsInterval != 0 {
		t.Fatalf("values not kept: %+v %+v", c2.Sharding, c2.Replication)
	}
}

func TestKeysCaseInsensitive(t *testing.T) {
	c, err := config.Parse(doc(section{"Replication", "{LEASETTL: 2s}"}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Replication.LeaseTTL != 2*time.Second {
		t.Fatalf("leaseTTL = %v", c.Replication.LeaseTTL)
	}
}

// clearEnv hides any PSDB_* variable of the developer's environment from
// a test that calls Load (viper ignores empty variables).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, f := range config.EnvFields() {
		t.Setenv(config.EnvVar(f), "")
	}
}

// writeFile writes data as cluster.yaml in a fresh directory.
func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckedInClusterYAML(t *testing.T) {
	clearEnv(t)
	c, err := config.Load("../../cluster.yaml", nil)
	if err != nil {
		t.Fatalf("Load(cluster.yaml): %v", err)
	}
	if c.Name != "psdb-dev" || len(c.ConfigServers) != 1 || len(c.Shards) != 2 || len(c.Routers) != 1 {
		t.Fatalf("unexpected topology: %+v", c)
	}
	for _, s := range c.Shards {
		if len(s.Members) != 3 {
			t.Errorf("shard %s has %d members, want 3", s.Name, len(s.Members))
		}
	}
	if got := c.ConnectionString(); got != "mongodb://127.0.0.1:27017/" {
		t.Errorf("ConnectionString = %q", got)
	}
	if got := c.EtcdEndpoints(); !reflect.DeepEqual(got, []string{"http://127.0.0.1:2379"}) {
		t.Errorf("EtcdEndpoints = %q", got)
	}
	for _, n := range c.Nodes() {
		if !strings.HasPrefix(n.Addr, "127.0.0.1:") {
			t.Errorf("node %s listens on %s, want 127.0.0.1", n.Name, n.Addr)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if c.RunDir != filepath.Join(root, "run") {
		t.Errorf("RunDir = %q, want %q (relative to the file)", c.RunDir, filepath.Join(root, "run"))
	}
	if c.Replication.LeaseTTL != time.Second || c.Sharding.ChunkSize != 64*config.MiB {
		t.Errorf("tunables: %+v %+v", c.Replication, c.Sharding)
	}
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, doc(
		section{"runDir", "r"},
		section{"log", "{dir: logs}"},
		section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001', dataDir: da}, {name: b, addr: '127.0.0.1:1002', dataDir: /abs/b}, {name: c, addr: '127.0.0.1:1003'}]}]"},
	))
	dir := filepath.Dir(path)
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct{ name, got, want string }{
		{"runDir", c.RunDir, filepath.Join(dir, "r")},
		{"log.dir", c.Log.Dir, filepath.Join(dir, "logs")},
		{"a.dataDir", c.Shards[0].Members[0].DataDir, filepath.Join(dir, "da")},
		{"b.dataDir", c.Shards[0].Members[1].DataDir, "/abs/b"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
		}
	}
	n, err := c.Node("c")
	if err != nil {
		t.Fatal(err)
	}
	if n.DataDir != filepath.Join(dir, "r", "data", "c") || n.LogFile != filepath.Join(dir, "logs", "c.log") || n.PidFile != filepath.Join(dir, "r", "pids", "c.pid") {
		t.Errorf("node c paths: %+v", n)
	}
}

func TestLoadErrors(t *testing.T) {
	clearEnv(t)
	_, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
	_, err = config.Load(writeFile(t, doc(section{"shrads", "[]"})), nil)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "shrads: unknown key") {
		t.Errorf("bad file: %v", err)
	}
}

func TestEnvOverride(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, doc(section{"replication", "{leaseTTL: 1s}"}, section{"log", "{level: info}"}))
	t.Setenv("PSDB_REPLICATION_LEASETTL", "2s")
	t.Setenv("PSDB_LOG_LEVEL", "debug")
	t.Setenv("PSDB_SHARDING_CHUNKSIZE", "1MiB")
	t.Setenv("PSDB_SHARDING_IMBALANCETHRESHOLD", "5")
	t.Setenv("PSDB_NAME", "fromenv")
	t.Setenv("PSDB_RUNDIR", "envrun")
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Replication.LeaseTTL != 2*time.Second || c.Log.Level != "debug" || c.Sharding.ChunkSize != config.MiB ||
		c.Sharding.ImbalanceThreshold != 5 || c.Name != "fromenv" || c.RunDir != filepath.Join(filepath.Dir(path), "envrun") {
		t.Fatalf("environment not applied: %+v", c)
	}
	// A bad value from the environment is reported under its field.
	t.Setenv("PSDB_REPLICATION_LEASETTL", "soon")
	_, err = config.Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), `replication.leaseTTL: "soon" is not a duration`) {
		t.Fatalf("bad env value: %v", err)
	}
	// An override never hides a malformed section of the file.
	t.Setenv("PSDB_REPLICATION_LEASETTL", "2s")
	bad := writeFile(t, doc(section{"replication", "5"}))
	for range 5 {
		_, err = config.Load(bad, nil)
		if err == nil || !strings.Contains(err.Error(), "replication: must be a mapping") {
			t.Fatalf("malformed section with env override: %v", err)
		}
	}
	// Parse ignores the environment.
	c, err = config.Parse(doc())
	if err != nil || c.Replication.LeaseTTL != time.Second {
		t.Fatalf("Parse read the environment: %v %v", c.Replication.LeaseTTL, err)
	}
}

func TestEnvVarNames(t *testing.T) {
	if got := config.EnvVar("replication.leaseTTL"); got != "PSDB_REPLICATION_LEASETTL" {
		t.Errorf("EnvVar = %q", got)
	}
	fields := config.EnvFields()
	for _, want := range []string{"name", "runDir", "log.level", "replication.leaseTTL", "sharding.chunkSize", "router.maxMessageBytes"} {
		found := false
		for _, f := range fields {
			found = found || f == want
		}
		if !found {
			t.Errorf("EnvFields lacks %s: %v", want, fields)
		}
	}
	for _, f := range fields {
		if strings.HasPrefix(f, "shards") || strings.HasPrefix(f, "routers") || strings.HasPrefix(f, "configServers") {
			t.Errorf("EnvFields lists node list field %s", f)
		}
	}
}

func TestFlagOverride(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, doc(section{"replication", "{leaseTTL: 1s}"}))
	t.Setenv("PSDB_REPLICATION_LEASETTL", "2s")
	t.Setenv("PSDB_LOG_LEVEL", "warn")

	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.BindFlags(fs)
	if err := fs.Parse([]string{"--lease-ttl=3s", "--chunk-size", "256KiB", "--run-dir=flagrun", "--log-format=json"}); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, fs)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if c.Replication.LeaseTTL != 3*time.Second {
		t.Errorf("leaseTTL = %v, want the flag's 3s over env 2s and file 1s", c.Replication.LeaseTTL)
	}
	if c.Log.Level != "warn" {
		t.Errorf("log.level = %q, want env's warn (flag not given)", c.Log.Level)
	}
	if c.Log.Format != "json" || c.Sharding.ChunkSize != 256*config.KiB {
		t.Errorf("flags not applied: %+v %+v", c.Log, c.Sharding)
	}
	if c.RunDir != filepath.Join(cwd, "flagrun") {
		t.Errorf("runDir = %q, want relative to the current directory", c.RunDir)
	}

	bad := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.BindFlags(bad)
	if err := bad.Parse([]string{"--lease-ttl=1500ms", "--log-level=loud"}); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(path, bad)
	for _, w := range []string{"replication.leaseTTL: 1.5s is not a whole number of seconds", `log.level: "loud" is not a level`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("bad flags: %v; want %q", err, w)
		}
	}
}

func TestNodes(t *testing.T) {
	c, err := config.Parse(doc(
		section{"runDir", "/r"},
		section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001', dataDir: /elsewhere}, {name: b, addr: '127.0.0.1:1002'}, {name: c, addr: '127.0.0.1:1003'}]}, {name: rs1, members: [{name: d, addr: '127.0.0.1:1004'}]}]"},
		section{"routers", "[{name: r0, addr: '127.0.0.1:27017'}, {name: r1, addr: '127.0.0.1:27018'}]"},
	))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := []config.Node{
		{Name: "cfg0", Role: config.RoleConfigServer, Addr: "127.0.0.1:2379", PeerAddr: "127.0.0.1:2380", DataDir: "/r/data/cfg0", LogFile: "/r/logs/cfg0.log", PidFile: "/r/pids/cfg0.pid"},
		{Name: "a", Role: config.RoleShard, Shard: "rs0", Addr: "127.0.0.1:1001", DataDir: "/elsewhere", LogFile: "/r/logs/a.log", PidFile: "/r/pids/a.pid"},
		{Name: "b", Role: config.RoleShard, Shard: "rs0", Addr: "127.0.0.1:1002", DataDir: "/r/data/b", LogFile: "/r/logs/b.log", PidFile: "/r/pids/b.pid"},
		{Name: "c", Role: config.RoleShard, Shard: "rs0", Addr: "127.0.0.1:1003", DataDir: "/r/data/c", LogFile: "/r/logs/c.log", PidFile: "/r/pids/c.pid"},
		{Name: "d", Role: config.RoleShard, Shard: "rs1", Addr: "127.0.0.1:1004", DataDir: "/r/data/d", LogFile: "/r/logs/d.log", PidFile: "/r/pids/d.pid"},
		{Name: "r0", Role: config.RoleRouter, Addr: "127.0.0.1:27017", LogFile: "/r/logs/r0.log", PidFile: "/r/pids/r0.pid"},
		{Name: "r1", Role: config.RoleRouter, Addr: "127.0.0.1:27018", LogFile: "/r/logs/r1.log", PidFile: "/r/pids/r1.pid"},
	}
	nodes := c.Nodes()
	if len(nodes) != len(want) {
		t.Fatalf("Nodes() has %d nodes, want %d", len(nodes), len(want))
	}
	for i := range want {
		if nodes[i] != want[i] {
			t.Errorf("Nodes()[%d] = %+v\nwant %+v", i, nodes[i], want[i])
		}
		n, err := c.Node(want[i].Name)
		if err != nil || n != want[i] {
			t.Errorf("Node(%q) = %+v, %v", want[i].Name, n, err)
		}
	}
	if _, err := c.Node("nope"); !errors.Is(err, config.ErrUnknownNode) {
		t.Errorf("Node(nope) error = %v, want ErrUnknownNode", err)
	}
	if got := c.ConnectionString(); got != "mongodb://127.0.0.1:27017,127.0.0.1:27018/" {
		t.Errorf("ConnectionString = %q", got)
	}
	if got := c.EtcdInitialCluster(); got != "cfg0=http://127.0.0.1:2380" {
		t.Errorf("EtcdInitialCluster = %q", got)
	}
	if s, ok := c.Shard("rs1"); !ok || len(s.Members) != 1 {
		t.Errorf("Shard(rs1) = %+v, %v", s, ok)
	}
	opts := c.LogOptions(nodes[1], nil)
	if opts.File != "/r/logs/a.log" || opts.Level != "info" || opts.Format != "console" {
		t.Errorf("LogOptions = %+v", opts)
	}
}

func TestValidateAfterEdit(t *testing.T) {
	c, err := config.Parse(doc())
	if err != nil {
		t.Fatal(err)
	}
	c.Shards[1].Members = nil
	c.Replication.LeaseTTL = 0
	err = c.Validate()
	if !hasField(err, "shards[1].members") || !hasField(err, "replication.leaseTTL") {
		t.Fatalf("Validate = %v", err)
	}
}

func TestClaimDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node", "data")
	a := &config.Cluster{Name: "alpha"}
	if err := a.ClaimDataDir(dir); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := a.ClaimDataDir(dir); err != nil {
		t.Fatalf("second claim by the same cluster: %v", err)
	}
	b := &config.Cluster{Name: "beta"}
	err := b.ClaimDataDir(dir)
	if !errors.Is(err, config.ErrForeignDataDir) || !strings.Contains(err.Error(), `"alpha"`) {
		t.Fatalf("claim by another cluster: %v, want ErrForeignDataDir naming alpha", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != config.StampFile {
		t.Fatalf("data dir holds %v (%v), want only the stamp", entries, err)
	}
}

func TestSize(t *testing.T) {
	cases := []struct {
		in   string
		want config.Size
		str  string
		bad  bool
	}{
		{in: "0", want: 0, str: "0"},
		{in: "1", want: 1, str: "1"},
		{in: "1048576", want: config.MiB, str: "1MiB"},
		{in: "128MiB", want: 128 * config.MiB, str: "128MiB"},
		{in: "128mib", want: 128 * config.MiB, str: "128MiB"},
		{in: "64KB", want: 64_000, str: "64KB"},
		{in: "48 MB", want: 48_000_000, str: "48MB"},
		{in: "1GiB", want: config.GiB, str: "1GiB"},
		{in: "2TB", want: 2 * config.TB, str: "2TB"},
		{in: "1000B", want: 1000, str: "1KB"},
		{in: "1024", want: 1024, str: "1KiB"},
		{in: "1023", want: 1023, str: "1023"},
		{in: "", bad: true},
		{in: "MiB", bad: true},
		{in: "-1", bad: true},
		{in: "1.5GiB", bad: true},
		{in: "12XB", bad: true},
		{in: "9223372036854775807", want: 9223372036854775807, str: "9223372036854775807"},
		{in: "9223372036854775808", bad: true},
		{in: "8388608TiB", bad: true},
	}
	for _, tc := range cases {
		got, err := config.ParseSize(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseSize(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", tc.in, int64(got), err, int64(tc.want))
			continue
		}
		if got.String() != tc.str {
			t.Errorf("Size(%d).String() = %q, want %q", int64(got), got.String(), tc.str)
		}
		back, err := config.ParseSize(got.String())
		if err != nil || back != got {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", got.String(), back, err, got)
		}
	}
}

func TestLocal(t *testing.T) {
	clearEnv(t)
	next := 40000
	port := func() (int, error) { next++; return next, nil }
	c, err := config.Local(config.LocalSpec{Name: "gen", RunDir: t.TempDir(), Shards: 3, MembersPerShard: 5, Routers: 2, Port: port})
	if err != nil {
		t.Fatalf("Local: %v", err)
	}
	if n := len(c.Nodes()); n != 1+15+2 {
		t.Fatalf("%d nodes, want 18", n)
	}
	if n, err := c.Node("rs2e"); err != nil || n.Shard != "rs2" || n.Role != config.RoleShard {
		t.Fatalf("Node(rs2e) = %+v, %v", n, err)
	}
	// What a harness writes, a child process reads back identically.
	out, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := config.Load(writeFile(t, out), nil)
	if err != nil {
		t.Fatalf("Load(Encode(Local)): %v", err)
	}
	if !reflect.DeepEqual(c, back) {
		t.Fatalf("Load(Encode()) differs:\n%+v\n%+v", c, back)
	}
	// Even member counts are refused like in a file.
	if _, err := config.Local(config.LocalSpec{MembersPerShard: 2, Port: port}); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("Local with 2 members: %v", err)
	}
	if _, err := config.Local(config.LocalSpec{Port: func() (int, error) { return 0, errors.New("no ports") }}); err == nil {
		t.Fatal("Local with a failing Port succeeded")
	}
}

func TestWriteLocal(t *testing.T) {
	dir := t.TempDir()
	path, c, err := config.WriteLocal(dir, config.LocalSpec{Name: "wl", Shards: 1, MembersPerShard: 3},
		func(c *config.Cluster) { c.Log.Level = "debug" })
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != dir || c.Log.Level != "debug" || len(c.Shards[0].Members) != 3 {
		t.Fatalf("path %s, cluster %+v", path, c)
	}
	seen := map[string]bool{}
	for _, n := range c.Nodes() {
		if seen[n.Addr] || !filepath.IsAbs(n.LogFile) {
			t.Fatalf("node %+v: duplicate address or relative path", n)
		}
		seen[n.Addr] = true
	}
}
