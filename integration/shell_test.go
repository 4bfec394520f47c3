package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/config"
)

// shellRunner runs `psdb shell` against one router, with the history
// file in a temporary directory.
type shellRunner struct {
	t       *testing.T
	uri     string
	home    string
	history string
}

func newShellRunner(t *testing.T, uri string) *shellRunner {
	home := t.TempDir()
	return &shellRunner{t: t, uri: uri, home: home, history: filepath.Join(home, "history")}
}

func (r *shellRunner) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(harness.BinDir(r.t), "psdb"), append([]string{"shell"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+r.home, "PSDB_SHELL_HISTORY="+r.history, "TERM=xterm")
	return cmd
}

// run runs psdb shell with args and returns stdout, stderr and the exit
// status.
func (r *shellRunner) run(args ...string) (string, string, int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := r.cmd(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	r.t.Fatalf("psdb shell %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
	return "", "", -1
}

// eval runs --eval js against the router and fails unless it exits 0
// and prints every want.
func (r *shellRunner) eval(js string, want ...string) string {
	r.t.Helper()
	out, errOut, code := r.run(r.uri, "--quiet", "--eval", js)
	if code != 0 {
		r.t.Fatalf("--eval %s: exit %d\nstdout:\n%s\nstderr:\n%s", js, code, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			r.t.Fatalf("--eval %s: output lacks %q:\n%s", js, w, out)
		}
	}
	return out
}

// TestShell drives `psdb shell` against a real cluster (two shards of one
// member, one router): --eval, script files, bad input and an
// interactive session through a pseudo-terminal, covering every helper.
func TestShell(t *testing.T) {
	t.Parallel()
	c := harness.NewCluster(t, harness.WithShards(2), harness.WithMembers(1), harness.WithRouters(1))
	router := c.ByRole(config.RoleRouter, "")[0]
	r := newShellRunner(t, "mongodb://"+router.Addr()+"/test")
	// Both shards writable through the router.
	for _, s := range []string{"rs0", "rs1"} {
		harness.Eventually(t, 60*time.Second, func() error {
			out, errOut, code := r.run(r.uri, "--eval", fmt.Sprintf(
				`sh.enableSharding("ready_%s", "%s"); db.getSiblingDB("ready_%[1]s").p.updateOne({_id: 1}, {$inc: {n: 1}}, {upsert: true}).matchedCount + 1`, s, s))
			if code != 0 {
				return fmt.Errorf("shard %s not ready: %s%s", s, out, errOut)
			}
			return nil
		})
	}
	t.Run("CRUD", func(t *testing.T) { testShellCRUD(t, r) })
	t.Run("Indexes", func(t *testing.T) { testShellIndexes(t, r) })
	t.Run("Databases", func(t *testing.T) { testShellDatabases(t, r) })
	t.Run("Sharding", func(t *testing.T) { testShellSharding(t, r) })
	t.Run("Script", func(t *testing.T) { testShellScript(t, r) })
	t.Run("BadInput", func(t *testing.T) { testShellBadInput(t, r) })
	t.Run("Interactive", func(t *testing.T) { testShellInteractive(t, r) })
}

func testShellCRUD(t *testing.T, sr *shellRunner) {
	r := *sr
	r.t = t
	r.uri = strings.TrimSuffix(sr.uri, "/test") + "/crud"
	r.eval(`db.people.insertOne({_id: 1, name: "ann", age: 31, tags: ["a", "b"]})`,
		`{ acknowledged: true, insertedId: 1 }`)
	r.eval(`db.people.insertMany([{_id: 2, name: "bob", age: 25}, {_id: 3, name: "cy", age: 40}])`,
		`{ acknowledged: true, insertedIds: { '0': 2, '1': 3 } }`)
	r.eval(`db.people.insertOne({name: "dee", age: 22, when: ISODate("2024-01-02T03:04:05Z"), n: NumberLong(5), d: NumberDecimal("1.5"), i: NumberInt(7), ts: Timestamp(1, 2), re: /ab+c/i})`,
		`insertedId: ObjectId('`)
	r.eval(`db.people.find({age: {$gt: 30}}, {name: 1}).sort({_id: 1})`,
		"[ { _id: 1, name: 'ann' }, { _id: 3, name: 'cy' } ]")
	r.eval(`db.people.findOne({name: "dee"}, {_id: 0})`,
		"when: ISODate('2024-01-02T03:04:05.000Z')", "n: Long('5')", "d: Decimal128('1.5')", "i: 7,",
		"ts: Timestamp({ t: 1, i: 2 })", "re: /ab+c/i")
	r.eval(`db.people.find().sort({age: -1}).skip(1).limit(2).toArray().map(d => d.name).join(",")`, "ann,bob")
	r.eval(`db.people.find({name: /^A/i}).toArray().length`, "1")
	r.eval(`const id = ObjectId(); db.dates.insertOne({_id: id, at: new Date(0)}); const d = db.dates.findOne({_id: id}); [d._id.toHexString() === id.toHexString(), d.at.getTime()]`,
		"[ true, 0 ]")
	r.eval(`db.dates.drop()`, "true")
	r.eval(`db.people.find({age: {$lt: 30}}).count()`, "2")
	r.eval(`db.people.find({_id: 1}).pretty()`, "name: 'ann'")
	r.eval(`db.people.updateOne({_id: 2}, {$set: {age: 26}})`,
		"{\n  acknowledged: true,\n  insertedId: null,\n  matchedCount: 1,\n  modifiedCount: 1,\n  upsertedCount: 0\n}")
	r.eval(`db.people.updateMany({age: {$gte: 26}}, {$inc: {age: 1}})`, "matchedCount: 3", "modifiedCount: 3")
	r.eval(`db.people.updateOne({_id: 9}, {$set: {name: "zed"}}, {upsert: true})`, "insertedId: 9", "upsertedCount: 1")
	r.eval(`db.people.replaceOne({_id: 9}, {name: "zed2"})`, "matchedCount: 1", "modifiedCount: 1")
	r.eval(`db.people.findOne({_id: 9})`, "{ _id: 9, name: 'zed2' }")
	r.eval(`db.people.countDocuments({age: {$gt: 26}})`, "3")
	r.eval(`db.people.estimatedDocumentCount()`, "5")
	r.eval(`db.people.distinct("name", {age: {$gt: 30}})`, "[ 'ann', 'cy' ]")
	r.eval(`db.people.aggregate([{$match: {age: {$gt: 0}}}, {$group: {_id: null, total: {$sum: "$age"}, n: {$sum: 1}}}])`,
		"[ { _id: null, total: 122, n: 4 } ]")
	r.eval(`db.people.deleteOne({_id: 9})`, "{ acknowledged: true, deletedCount: 1 }")
	r.eval(`db.people.deleteMany({age: {$lt: 30}})`, "{ acknowledged: true, deletedCount: 2 }")
	r.eval(`db.people.countDocuments()`, "2")
	// 25 documents: the first batch of 20, then `it` in the REPL.
	r.eval(`db.many.insertMany(Array.from({length: 25}, (_, i) => ({_id: i})))`, "acknowledged: true")
	out := r.eval(`db.many.find().sort({_id: 1})`, "{ _id: 19 }", `Type "it" for more`)
	if strings.Contains(out, "{ _id: 20 }") {
		t.Fatalf("first batch has more than 20 documents:\n%s", out)
	}
	r.eval(`db.people.explain().find({name: "ann"})`, "queryPlanner", "winningPlan")
	r.eval(`db.people.explain("executionStats").find({age: {$gt: 1}}).sort({age: -1}).limit(2)`, "queryPlanner", "stage: 'LIMIT'")
	r.eval(`db.people.find({name: "ann"}).explain("executionStats")`, "queryPlanner")
	r.eval(`db.people.drop()`, "true")
	r.eval(`db.getCollectionNames()`, "[ 'many' ]")
}

func testShellIndexes(t *testing.T, sr *shellRunner) {
	r := *sr
	r.t = t
	r.uri = strings.TrimSuffix(sr.uri, "/test") + "/idx"
	r.eval(`db.things.insertOne({a: 1, b: 2})`, "acknowledged: true")
	r.eval(`db.things.createIndex({a: 1, b: -1})`, "a_1_b_-1")
	r.eval(`db.things.createIndex({b: 1}, {name: "by_b", unique: true})`, "by_b")
	r.eval(`db.things.getIndexes().map(i => i.name).join(",")`, "_id_,a_1_b_-1,by_b")
	r.eval(`db.things.dropIndex("a_1_b_-1")`, "ok: 1")
	r.eval(`db.things.dropIndex({b: 1})`, "ok: 1")
	r.eval(`db.things.getIndexes().length`, "1")
}

func testShellDatabases(t *testing.T, sr *shellRunner) {
	r := *sr
	r.t = t
	r.eval(`db.getSiblingDB("dbs1").c1.insertOne({x: 1}); db.getSiblingDB("dbs1").c2.insertOne({x: 2})`, "acknowledged: true")
	r.eval("show dbs", "dbs1 ", "crud ", "config ")
	r.eval("use dbs1\nshow collections", "c1\nc2")
	r.eval("use dbs1\ndb.getName()", "dbs1")
	r.eval(`db.getSiblingDB("dbs1").stats()`, "db: 'dbs1'", "collections: 2", "objects: 2")
	r.eval(`db.getSiblingDB("dbs1").getCollectionNames()`, "[ 'c1', 'c2' ]")
	r.eval(`db.runCommand({ping: 1})`, "{ ok: 1 }")
	r.eval(`db.runCommand("ping")`, "{ ok: 1 }")
	r.eval(`db.adminCommand({listShards: 1}).shards.map(s => s._id).join(",")`, "rs0,rs1")
	r.eval(`db.getSiblingDB("dbs1").dropDatabase()`, "dropped: 'dbs1'", "ok: 1")
	r.eval(`db.getSiblingDB("dbs1").getCollectionNames().length`, "0")
	r.eval(`db.adminCommand({listDatabases: 1}).databases.map(d => d.name).includes("dbs1")`, "false")
	// Variables, loops and functions.
	r.eval(`function sq(x) { return x * x }; let t = 0; for (let i = 1; i <= 3; i++) { t += sq(i) }; t`, "14")
}

func testShellSharding(t *testing.T, sr *shellRunner) {
	r := *sr
	r.t = t
	r.eval(`sh.stopBalancer(); sh.getBalancerState()`, "false")
	r.eval(`sh.isBalancerRunning()`, "false")
	r.eval(`sh.enableSharding("shq")`, "ok: 1")
	r.eval(`sh.shardCollection("shq.ev", {k: "hashed"})`, "collectionsharded: 'shq.ev'")
	r.eval(`db.getSiblingDB("shq").ev.insertMany(Array.from({length: 100}, (_, i) => ({k: i})))`, "acknowledged: true")
	r.eval(`db.getSiblingDB("shq").ev.countDocuments()`, "100")
	r.eval(`sh.status()`, "shards\n", "{ _id: 'rs0', host: 'rs0/", "'shq.ev': {", "shardKey: { k: 'hashed' }",
		"chunkMetadata: [ { shard: 'rs0', nChunks: 2 }, { shard: 'rs1', nChunks: 2 } ]", "balancer\n", "'Currently enabled': 'no'")
	// A ranged collection: split at a key, split at the median of the
	// chunk holding a document, move a chunk.
	r.eval(`sh.shardCollection("shq.r", {x: 1}); db.getSiblingDB("shq").r.insertMany(Array.from({length: 100}, (_, i) => ({x: i})))`, "acknowledged: true")
	r.eval(`sh.splitAt("shq.r", {x: 50})`, "ok: 1")
	r.eval(`sh.splitFind("shq.r", {x: 10})`, "ok: 1")
	r.eval(`db.getSiblingDB("config").chunks.countDocuments({ns: "shq.r"})`, "3")
	out := r.eval(`db.getSiblingDB("config").chunks.findOne({ns: "shq.r", "min.x": 50}).shard`)
	from := strings.TrimSpace(out)
	to := map[string]string{"rs0": "rs1", "rs1": "rs0"}[from]
	if to == "" {
		t.Fatalf("chunk [50, max) on %q", from)
	}
	r.eval(fmt.Sprintf(`sh.moveChunk("shq.r", {x: 75}, %q)`, to), "ok: 1")
	r.eval(`db.getSiblingDB("config").chunks.findOne({ns: "shq.r", "min.x": 50}).shard`, to)
	r.eval(`db.getSiblingDB("shq").r.countDocuments()`, "100")
	// A shard added and removed (it owns nothing, so removal completes).
	port := harness.FreePorts(t, 1)[0]
	r.eval(fmt.Sprintf(`sh.addShard("rsextra/127.0.0.1:%d")`, port), "shardAdded: 'rsextra'")
	r.eval(`db.adminCommand({listShards: 1}).shards.length`, "3")
	r.eval(`sh.removeShard("rsextra")`, "state: 'completed'")
	r.eval(`db.adminCommand({listShards: 1}).shards.length`, "2")
	r.eval(`sh.startBalancer(); sh.getBalancerState()`, "true")
	// rs.status: every shard, or one.
	r.eval(`rs.status()`, "shards: {", "rs0: {", "rs1: {", "stateStr: 'PRIMARY'")
	out = r.eval(`rs.status("rs1")`, "set: 'rs1'", "stateStr: 'PRIMARY'")
	if strings.Contains(out, "set: 'rs0'") {
		t.Fatalf("rs.status(\"rs1\") shows rs0:\n%s", out)
	}
}

func testShellScript(t *testing.T, sr *shellRunner) {
	r := *sr
	r.t = t
	dir := t.TempDir()
	script := filepath.Join(dir, "script.js")
	src := `use scripted
db.items.insertMany([{_id: 1, v: "a"}, {_id: 2, v: "b"}]);
const docs = db.items.find().sort({_id: -1}).toArray();
print("ITEMS", docs.map(d => d.v).join(""));
printjson(db.items.findOne({_id: 1}));
db.items.countDocuments();
try {
  db.items.insertOne({_id: 1});
} catch (e) {
  print("CAUGHT", e.codeName, e.code);
}
`
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{r.uri, script}, {r.uri, "--file", script}} {
		out, errOut, code := r.run(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		want := "ITEMS ba\n{ _id: 1, v: 'a' }\nCAUGHT DuplicateKey 11000\n"
		if out != want {
			t.Fatalf("%v: output\n%q\nwant\n%q", args, out, want)
		}
		r.eval(`db.getSiblingDB("scripted").items.deleteMany({})`, "deletedCount: 2")
	}
	// An uncaught error ends the script with status 1 and one line on
	// stderr; quit(n) gives n.
	bad := filepath.Join(dir, "bad.js")
	if err := os.WriteFile(bad, []byte("print('before')\ndb.getSiblingDB('scripted').items.insertMany([{_id: 5}, {_id: 5}])\nprint('after')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := r.run(r.uri, bad)
	if code != 1 || out != "before\n" || !strings.Contains(errOut, "MongoBulkWriteError[DuplicateKey]") && !strings.Contains(errOut, "MongoServerError[DuplicateKey]") {
		t.Fatalf("uncaught error: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 {
		t.Fatalf("stderr has %d lines: %q", n+1, errOut)
	}
	if out, errOut, code := r.run(r.uri, "--eval", "quit(7)"); code != 7 || out != "" || errOut != "" {
		t.Fatalf("quit(7): exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, _, code := r.run(r.uri, "--eval", "quit()"); code != 0 {
		t.Fatalf("quit(): exit %d", code)
	}
}

func testShellBadInput(t *testing.T, sr *shellRunner) {
	r := *sr
	r.t = t
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{r.uri, "--eval", "db.x.find({"}, "SyntaxError: Unexpected end of input"},
		{[]string{r.uri, "--eval", "db.x.bogus()"}, "TypeError: db.x.bogus is not a function"},
		{[]string{r.uri, "--eval", "sh.bogus()"}, "TypeError: sh.bogus is not a function"},
		{[]string{r.uri, "--eval", `db.adminCommand({removeShard: "nope"})`}, "MongoServerError[ShardNotFound]"},
		{[]string{r.uri, "--eval", `db.runCommand({noSuchCommand: 1})`}, "MongoServerError[CommandNotFound]"},
		{[]string{"mongodb://127.0.0.1:1/test", "--connect-timeout", "1s", "--eval", "1"}, "cannot connect to mongodb://127.0.0.1:1/test: no server answered within 1s"},
		{[]string{"mongodb://a:b:c/", "--eval", "1"}, "malformed connection string"},
	} {
		start := time.Now()
		out, errOut, code := r.run(c.args...)
		if code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q (want %q), stdout %q", c.args, code, errOut, c.want, out)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 {
			t.Errorf("%v: %d lines on stderr: %q", c.args, n+1, errOut)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("%v took %s", c.args, d)
		}
	}
}

// ptySession is psdb shell on a pseudo-terminal: what the test types and
// what the shell printed, read by a goroutine that ends with the process.
type ptySession struct {
	t    *testing.T
	pty  *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	buf  bytes.Buffer // everything read, guarded by mu
	mark int          // where the next expect starts
	done chan struct{}
}

func startPTY(t *testing.T, cmd *exec.Cmd) *ptySession {
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 200})
	if err != nil {
		t.Fatal(err)
	}
	s := &ptySession{t: t, pty: f, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			s.mu.Lock()
			s.buf.Write(b[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
		<-s.done
	})
	return s
}

func (s *ptySession) send(text string) {
	s.t.Helper()
	if _, err := io.WriteString(s.pty, text); err != nil {
		s.t.Fatalf("type %q: %v", text, err)
	}
}

var ansiRe = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// expect waits until the output after the last match contains want
// (terminal escapes and carriage returns removed), and moves past it.
func (s *ptySession) expect(want string) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.mu.Lock()
		raw := s.buf.String()
		s.mu.Unlock()
		text := strings.ReplaceAll(ansiRe.ReplaceAllString(raw, ""), "\r", "")
		if i := strings.Index(text[min(s.mark, len(text)):], want); i >= 0 {
			s.mark += i + len(want)
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %q in the shell's output after 20s; output since the last match:\n%s\nwhole output:\n%s", want, text[min(s.mark, len(text)):], text)
		}
		select {
		case <-s.done:
			s.mu.Lock()
			raw = s.buf.String()
			s.mu.Unlock()
			text = strings.ReplaceAll(ansiRe.ReplaceAllString(raw, ""), "\r", "")
			if i := strings.Index(text[min(s.mark, len(text)):], want); i >= 0 {
				s.mark += i + len(want)
				return
			}
			s.t.Fatalf("shell ended without printing %q:\n%s", want, text[min(s.mark, len(text)):])
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *ptySession) wait() error {
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.t.Fatal("the shell did not exit")
	}
	return s.cmd.Wait()
}

func testShellInteractive(t *testing.T, sr *shellRunner) {
	r := *sr
	r.t = t
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := startPTY(t, r.cmd(ctx, r.uri))
	s.expect("psdb shell connected to " + r.uri)
	s.expect("test> ")
	s.send("use inter\r")
	s.expect("switched to db inter")
	s.expect("inter> ")
	// Multi-line input: an unfinished bracket continues on "... ".
	s.send("db.n.insertMany(\r")
	s.expect("... ")
	s.send("  Array.from({length: 23}, (_, i) => ({_id: i}))\r")
	s.expect("... ")
	s.send(")\r")
	s.expect("acknowledged: true")
	s.send("db.n.find().sort({_id: 1})\r")
	s.expect("{ _id: 19 }")
	s.expect(`Type "it" for more`)
	s.send("it\r")
	s.expect("{ _id: 20 }")
	s.expect("{ _id: 22 }")
	s.send("it\r")
	s.expect("no cursor")
	s.send("show collections\r")
	s.expect("\nn\n")
	// Tab completes a collection method.
	s.send("db.n.countDoc\t")
	s.expect("db.n.countDocuments")
	s.send("({_id: {$lt: 5}})\r")
	s.expect("\n5\n")
	s.send("x y\r")
	s.expect("SyntaxError: Unexpected identifier")
	s.send("db.n.countDocuments({_id: {$gte: 10}})\r")
	s.expect("13")
	// History: the up arrow brings back the last entry.
	s.send("\x1b[A\r")
	s.expect("13")
	// Ctrl-C interrupts a running evaluation and the session goes on.
	s.send("while (true) {}\r")
	s.expect("while (true) {}")
	s.send("\x03")
	s.expect("Interrupted")
	s.expect("inter> ")
	s.send("exit\r")
	if err := s.wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	hist, err := os.ReadFile(r.history)
	if err != nil {
		t.Fatalf("history file: %v", err)
	}
	for _, want := range []string{"use inter", "db.n.insertMany( Array.from({length: 23}, (_, i) => ({_id: i})) )", "db.n.countDocuments({_id: {$gte: 10}})"} {
		if !strings.Contains(string(hist), want+"\n") {
			t.Fatalf("history lacks %q:\n%s", want, hist)
		}
	}
	// A new session reads the history back; quit(2) sets the status.
	s = startPTY(t, r.cmd(ctx, r.uri, "--quiet"))
	s.expect("test> ")
	s.send("\x1b[A\x1b[A\x1b[A\r") // three entries back (exit, the loop): the countDocuments above
	s.expect("test> db.n.countDocuments({_id: {$gte: 10}})")
	s.expect("0") // in test, not inter
	s.send("quit(2)\r")
	err = s.wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("quit(2): %v", err)
	}
}
