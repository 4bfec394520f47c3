package shell

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func offline(t *testing.T) (*Shell, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	s, err := newOffline(&out)
	if err != nil {
		t.Fatal(err)
	}
	return s, &out
}

// eval runs src and returns what the REPL would print for its value.
func eval(t *testing.T, s *Shell, src string) string {
	t.Helper()
	v, err := s.Eval(context.Background(), src)
	if err != nil {
		t.Fatalf("eval %q: %s", src, ErrorText(err))
	}
	return s.ResultText(v)
}

// TestToBSON: JavaScript values become the BSON types mongosh sends.
func TestToBSON(t *testing.T) {
	s, _ := offline(t)
	v, err := s.Eval(context.Background(), `({
		i: 1, f: 1.5, big: 3000000000, whole: 2.0, s: "x", b: true, n: null,
		arr: [1, "a", {z: 1}], nested: {a: {b: 1}},
		oid: ObjectId("65a1b2c3d4e5f60718293a4b"), d: ISODate("2024-01-02T03:04:05Z"),
		nd: new Date(0), l: NumberLong("9007199254740993"), ni: NumberInt(7),
		dec: NumberDecimal("1.25"), ts: Timestamp(5, 6), ts2: Timestamp({t: 7, i: 8}),
		re: /ab+c/i, mn: MinKey(), mx: MaxKey(), u: UUID("0123456789abcdef0123456789abcdef"),
		bin: BinData(0, "AQI="), "quoted key": 1
	})`)
	if err != nil {
		t.Fatal(ErrorText(err))
	}
	d, err := s.conv.toDoc(v)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := bson.ParseDecimal128("1.25")
	oid, _ := bson.ObjectIDFromHex("65a1b2c3d4e5f60718293a4b")
	want := bson.D{
		{Key: "i", Value: int32(1)}, {Key: "f", Value: 1.5}, {Key: "big", Value: float64(3000000000)},
		{Key: "whole", Value: int32(2)}, {Key: "s", Value: "x"}, {Key: "b", Value: true}, {Key: "n", Value: nil},
		{Key: "arr", Value: bson.A{int32(1), "a", bson.D{{Key: "z", Value: int32(1)}}}},
		{Key: "nested", Value: bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: int32(1)}}}}},
		{Key: "oid", Value: oid},
		{Key: "d", Value: bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))},
		{Key: "nd", Value: bson.DateTime(0)},
		{Key: "l", Value: int64(9007199254740993)}, {Key: "ni", Value: int32(7)},
		{Key: "dec", Value: dec}, {Key: "ts", Value: bson.Timestamp{T: 5, I: 6}}, {Key: "ts2", Value: bson.Timestamp{T: 7, I: 8}},
		{Key: "re", Value: bson.Regex{Pattern: "ab+c", Options: "i"}},
		{Key: "mn", Value: bson.MinKey{}}, {Key: "mx", Value: bson.MaxKey{}},
		{Key: "u", Value: bson.Binary{Subtype: 4, Data: []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}}},
		{Key: "bin", Value: bson.Binary{Subtype: 0, Data: []byte{1, 2}}},
		{Key: "quoted key", Value: int32(1)},
	}
	got, _ := bson.Marshal(d)
	exp, _ := bson.Marshal(want)
	if !bytes.Equal(got, exp) {
		t.Fatalf("toDoc:\n got %v\nwant %v", bson.Raw(got), bson.Raw(exp))
	}
}

// TestRoundTripAndPrint: BSON read from a server prints as mongosh
// prints it, and converts back to the same BSON.
func TestRoundTripAndPrint(t *testing.T) {
	s, _ := offline(t)
	oid, _ := bson.ObjectIDFromHex("65a1b2c3d4e5f60718293a4b")
	dec, _ := bson.ParseDecimal128("1.5")
	doc := bson.D{
		{Key: "_id", Value: oid}, {Key: "name", Value: "ann"}, {Key: "age", Value: int32(31)},
		{Key: "score", Value: 2.5}, {Key: "n", Value: int64(5)}, {Key: "d", Value: dec},
		{Key: "when", Value: bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))},
		{Key: "ts", Value: bson.Timestamp{T: 1, I: 2}}, {Key: "re", Value: bson.Regex{Pattern: "^a", Options: "i"}},
		{Key: "tags", Value: bson.A{"a", "b"}}, {Key: "$weird", Value: "it's"}, {Key: "nil", Value: nil},
	}
	raw, _ := bson.Marshal(doc)
	v := s.conv.docToJS(raw)
	want := `{
  _id: ObjectId('65a1b2c3d4e5f60718293a4b'),
  name: 'ann',
  age: 31,
  score: 2.5,
  n: Long('5'),
  d: Decimal128('1.5'),
  when: ISODate('2024-01-02T03:04:05.000Z'),
  ts: Timestamp({ t: 1, i: 2 }),
  re: /^a/i,
  tags: [ 'a', 'b' ],
  '$weird': "it's",
  nil: null
}`
	if got := s.ResultText(v); got != want {
		t.Fatalf("printed:\n%s\nwant:\n%s", got, want)
	}
	back, err := s.conv.toDoc(v)
	if err != nil {
		t.Fatal(err)
	}
	// Doubles with integral values come back as int32 (as in mongosh);
	// everything else is unchanged.
	raw2, _ := bson.Marshal(back)
	if !bytes.Equal(raw, raw2) {
		t.Fatalf("round trip:\n got %v\nwant %v", bson.Raw(raw2), bson.Raw(raw))
	}
}

// TestPrinter: Node's util.inspect layout (one line when it fits,
// grouping of long arrays, nesting depth).
func TestPrinter(t *testing.T) {
	s, _ := offline(t)
	for _, c := range []struct{ src, want string }{
		{`({a: 1, b: "x"})`, `{ a: 1, b: 'x' }`},
		{`"top-level string"`, `top-level string`},
		{`[]`, `[]`},
		{`({})`, `{}`},
		{`[1, 2, 3]`, `[ 1, 2, 3 ]`},
		{`({a: {b: {c: {d: 1}}}})`, "{\n  a: { b: { c: { d: 1 } } }\n}"},
		{`[1,2,3,4,5,6,7,8,9,10]`, "[\n  1, 2, 3, 4,  5,\n  6, 7, 8, 9, 10\n]"},
		{`({s: "a'b", t: "a\nb"})`, `{ s: "a'b", t: 'a\nb' }`},
		{`({"a-b": 1, _ok: 2, $x: 3})`, `{ 'a-b': 1, _ok: 2, '$x': 3 }`},
		{`NumberLong(42)`, `Long('42')`},
		{`NumberInt(4)`, `Int32(4)`},
		{`1.5e-7`, `1.5e-7`},
		{`-0`, `-0`},
		{`undefined`, ``},
		{`null`, `null`},
		{`(function foo() {})`, `[Function: foo]`},
		{`MinKey()`, `MinKey()`},
		{`UUID("0123456789abcdef0123456789abcdef")`, `UUID('01234567-89ab-cdef-0123-456789abcdef')`},
		{`ISODate("2020-05-06")`, `ISODate('2020-05-06T00:00:00.000Z')`},
		{`new ObjectId("65a1b2c3d4e5f60718293a4b").toHexString()`, `65a1b2c3d4e5f60718293a4b`},
		{`JSON.stringify({id: ObjectId("65a1b2c3d4e5f60718293a4b"), n: NumberLong(3)})`, `{"id":"65a1b2c3d4e5f60718293a4b","n":3}`},
		{`db`, `test`},
		{`db.users`, `test.users`},
		{`db.getSiblingDB("other").things`, `other.things`},
		{`({long: "` + strings.Repeat("x", 70) + `", b: 1})`, "{\n  long: '" + strings.Repeat("x", 70) + "',\n  b: 1\n}"},
		{`var t = 0; for (let i = 0; i < 4; i++) { t += i }; t`, `6`},
		{`function sq(x) { return x * x }; sq(7)`, `49`},
	} {
		if got := eval(t, s, c.src); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.src, got, c.want)
		}
	}
}

// TestErrors: syntax errors, unknown helpers and thrown errors give one
// clear line.
func TestErrors(t *testing.T) {
	s, _ := offline(t)
	for _, c := range []struct{ src, want string }{
		{`db.users.find({`, `SyntaxError: Unexpected end of input (1:16)`},
		{`x y`, `SyntaxError: Unexpected identifier (1:3)`},
		{`db.users.bogus()`, `TypeError: db.users.bogus is not a function`},
		{`db.bogus()`, `TypeError: db.bogus is not a function`},
		{`sh.bogus()`, `TypeError: sh.bogus is not a function (sh.help() lists the helpers)`},
		{`rs.stepDownNow()`, `TypeError: rs.stepDownNow is not a function (rs.help() lists the helpers)`},
		{`ObjectId("xyz")`, `TypeError: ObjectId("xyz"): an ObjectId is 24 hex digits`},
		{`throw new Error("boom")`, `Error: boom`},
		{`db.users.find().bogus()`, `TypeError: cursor.bogus is not a function`},
		{`nope.x`, `ReferenceError: nope is not defined`},
		{`db.users.insertOne(5)`, `TypeError: db.users.insertOne: expected a document (an object), got int64 5`},
		{`db.users.updateOne({}, {a: 1})`, `TypeError: db.users.updateOne: the update must use operators ($set, $inc, ...) or be a pipeline; use replaceOne to replace a document`},
	} {
		_, err := s.Eval(context.Background(), c.src)
		if err == nil {
			t.Errorf("%s: no error", c.src)
			continue
		}
		if got := ErrorText(err); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.src, got, c.want)
		}
	}
	_, err := s.Eval(context.Background(), "quit(3)")
	if ee, ok := err.(*ExitError); !ok || ee.Code != 3 {
		t.Errorf("quit(3): %v", err)
	}
	// The runtime is usable after quit's interruption.
	if got := eval(t, s, "1+1"); got != "2" {
		t.Errorf("after quit: %q", got)
	}
}

// TestServerErrorText: a server error carries mongosh's name and the
// code name from pkg/mongoerr.
func TestServerErrorText(t *testing.T) {
	s, _ := offline(t)
	v := s.jsError(mongoErrDup())
	o := v.ToObject(s.vm)
	if got := errorText(o); got != "MongoServerError[DuplicateKey]: E11000 duplicate key" {
		t.Fatalf("got %q", got)
	}
	if o.Get("code").ToInteger() != 11000 {
		t.Fatalf("code %v", o.Get("code"))
	}
}

// TestIncomplete: the REPL continues on unfinished brackets, templates,
// comments and backslash-continued strings, and not otherwise.
func TestIncomplete(t *testing.T) {
	for src, want := range map[string]bool{
		`db.c.find({`:                   true,
		`db.c.find({a: 1})`:             false,
		`for (let i = 0; i < 3; i++) {`: true,
		"`abc":                          true,
		"`a${b}c`":                      false,
		`/* comment`:                    true,
		`"a\`:                           true,
		`"a(b"`:                         false,
		`x = /[(]/`:                     false,
		`a / (b`:                        true,
		`// just a comment (`:           false,
		`[1, [2, 3]`:                    true,
	} {
		if got := Incomplete(src); got != want {
			t.Errorf("Incomplete(%q) = %v, want %v", src, got, want)
		}
	}
}

// TestRewriteCommands: shell commands become calls only at the top
// level and with the right arguments.
func TestRewriteCommands(t *testing.T) {
	for src, want := range map[string]string{
		"use foo":                 `__psdb.command("use", "foo");`,
		"show dbs;":               `__psdb.command("show", "dbs");`,
		"it":                      `__psdb.command("it", "");`,
		"  exit  ":                `__psdb.command("exit", "");`,
		"var it = 1":              "var it = 1",
		"use":                     "use",
		"f({\nuse foo\n})":        "f({\nuse foo\n})",
		"x = `\nshow dbs\n`":      "x = `\nshow dbs\n`",
		"a()\nuse b\nshow tables": "a()\n__psdb.command(\"use\", \"b\");\n__psdb.command(\"show\", \"tables\");",
	} {
		if got := rewriteCommands(src); got != want {
			t.Errorf("rewriteCommands(%q) =\n%q, want\n%q", src, got, want)
		}
	}
}

// TestREPLPlain drives the REPL over a non-terminal reader: multi-line
// input, use, print, errors and the exit status.
func TestREPLPlain(t *testing.T) {
	s, out := offline(t)
	in := strings.NewReader("use other\nvar o = {\n  a: 1,\n  b: [1, 2]\n}\no\nprint('x', 1)\nfoo bar\nnope(\n)\n1+\n2\nquit(5)\nprint('never')\n")
	code := s.RunREPL(context.Background(), REPLOptions{In: in})
	if code != 5 {
		t.Fatalf("exit %d, want 5; output:\n%s", code, out)
	}
	want := "switched to db other\n{ a: 1, b: [ 1, 2 ] }\nx 1\nSyntaxError: Unexpected identifier (1:5)\nReferenceError: nope is not defined\n3\n"
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out, want)
	}
	if s.DB() != "other" {
		t.Fatalf("db %q", s.DB())
	}
}

// TestHumanSize is show dbs' size column.
func TestHumanSize(t *testing.T) {
	for b, want := range map[float64]string{0: "0.00 B", 40960: "40.00 KiB", 3 << 20: "3.00 MiB"} {
		if got := humanSize(b); got != want {
			t.Errorf("humanSize(%v) = %q, want %q", b, got, want)
		}
	}
}

func mongoErrDup() error {
	return mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 11000, Message: "E11000 duplicate key"}}}
}

// TestComplete is Tab completion of globals, db methods, collection
// methods and sh helpers.
func TestComplete(t *testing.T) {
	s, _ := offline(t)
	for _, c := range []struct {
		line string
		head string
		want []string
	}{
		{"x = db.users.ins", "x = ", []string{"db.users.insertMany", "db.users.insertOne"}},
		{"db.getSib", "", []string{"db.getSiblingDB"}},
		{"sh.enable", "", []string{"sh.enableSharding"}},
		{"rs.st", "", []string{"rs.status"}},
		{"Object", "", []string{"ObjectId"}},
	} {
		head, got, tail := s.complete(c.line, len(c.line))
		if head != c.head || tail != "" || !slices.Equal(got, c.want) {
			t.Errorf("complete(%q) = %q %q %q, want %q %q", c.line, head, got, tail, c.head, c.want)
		}
	}
}
