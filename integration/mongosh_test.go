package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnvMongosh names the environment variable that points to a mongosh
// binary when none is on PATH.
const EnvMongosh = "PSDB_MONGOSH"

// mongoshPath returns the mongosh binary to use: PSDB_MONGOSH, else
// mongosh on PATH, else "".
func mongoshPath() string {
	if p := os.Getenv(EnvMongosh); p != "" {
		return p
	}
	if p, err := exec.LookPath("mongosh"); err == nil {
		return p
	}
	return ""
}

// mongoshScript writes documents, reads them back with find and
// aggregate, shards a collection and prints sh.status(). Each result is
// printed on its own line behind a marker the test looks for.
const mongoshScript = `
const d = db.getSiblingDB("shtest");
d.people.insertMany([
  {_id: 1, name: "ann", age: 31},
  {_id: 2, name: "bob", age: 25},
  {_id: 3, name: "cy", age: 40},
]);
print("FIND " + JSON.stringify(d.people.find({age: {$gt: 30}}, {name: 1}).sort({_id: 1}).toArray()));
print("AGG " + JSON.stringify(d.people.aggregate([{$group: {_id: null, total: {$sum: "$age"}, n: {$sum: 1}}}]).toArray()));
sh.enableSharding("shtest");
sh.shardCollection("shtest.events", {k: "hashed"});
const docs = [];
for (let i = 0; i < 200; i++) docs.push({k: i, v: i % 10});
d.events.insertMany(docs);
print("COUNT " + d.events.countDocuments({v: 3}));
print("SORTED " + JSON.stringify(d.events.find({}, {_id: 0, k: 1}).sort({k: -1}).limit(3).toArray()));
print("STATUS-BEGIN");
print(sh.status());
print("STATUS-END");
`

// testRouterMongosh runs mongoshScript through mongosh against router A
// and checks its output. Without mongosh on the machine the subtest is
// skipped with a message saying how to get it.
func testRouterMongosh(t *testing.T, rc *routerCluster) {
	bin := mongoshPath()
	if bin == "" {
		t.Skipf("mongosh is not installed: install it with `npm install -g mongosh` (or set %s to a mongosh binary) to run the mongosh script against the router", EnvMongosh)
	}
	home := t.TempDir() // mongosh writes its history and config under HOME
	script := filepath.Join(home, "script.js")
	if err := os.WriteFile(script, []byte(mongoshScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "mongodb://"+rc.routers[0].Addr()+"/test", "--quiet", "--norc", "--file", script)
	cmd.Env = append(os.Environ(), "HOME="+home, "MONGOSH_SKIP_NODE_VERSION_CHECK=1", "DO_NOT_TRACK=1")
	out, err := cmd.CombinedOutput()
	t.Logf("mongosh output:\n%s", out)
	if err != nil {
		t.Fatalf("mongosh %s: %v", bin, err)
	}
	text := string(out)
	for _, want := range []string{
		`FIND [{"_id":1,"name":"ann"},{"_id":3,"name":"cy"}]`,
		`AGG [{"_id":null,"total":96,"n":3}]`,
		`COUNT 20`,
		`SORTED [{"k":199},{"k":198},{"k":197}]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("mongosh output lacks %q", want)
		}
	}
	begin, end := strings.Index(text, "STATUS-BEGIN"), strings.Index(text, "STATUS-END")
	if begin < 0 || end < begin {
		t.Fatalf("sh.status() printed nothing")
	}
	status := text[begin:end]
	// Both routers registered themselves (config.mongos), so sh.status()
	// lists active mongoses.
	// mongosh prints "active mongoses" followed by the versions and counts
	// ([ { '7.0.0': 2 } ]), or "most recently active mongoses" with 'none'.
	if i := strings.Index(status, "active mongoses"); i < 0 || !strings.Contains(strings.SplitN(status[i:], "autosplit", 2)[0], ": 2 }") {
		t.Errorf("sh.status() lists no active mongos while two routers run:\n%s", status)
	}
	wants := []string{"shardingVersion", "shards", "databases", "shtest.events", "chunks", `k: 'hashed'`}
	wants = append(wants, rc.shards...)
	for _, want := range wants {
		if !strings.Contains(status, want) {
			t.Errorf("sh.status() output lacks %q", want)
		}
	}
}
