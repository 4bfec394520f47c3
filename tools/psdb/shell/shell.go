// Package shell is psdb's MongoDB shell: a JavaScript runtime (goja) with
// mongosh's globals and helpers (db, sh, rs, ObjectId(), ISODate(), ...)
// over the official Go driver, a printer of results in mongosh's style,
// and a REPL with line editing, multi-line input and persisted history.
//
// A Shell is used by one goroutine at a time (goja runtimes are not safe
// for concurrent use); Interrupt may be called from any goroutine.
package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/dop251/goja"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// DefaultURI is where the shell connects without an argument: the router
// of `make run`.
const DefaultURI = "mongodb://127.0.0.1:27017/test"

// DefaultConnectTimeout bounds server selection, so that an unreachable
// cluster fails with one message instead of hanging.
const DefaultConnectTimeout = 5 * time.Second

// DefaultOpTimeout bounds each operation of psdb shell (--timeout).
const DefaultOpTimeout = 60 * time.Second

// BatchSize is how many documents a cursor result prints before
// `Type "it" for more`, as in mongosh.
const BatchSize = 20

// Options configure a Shell.
type Options struct {
	URI            string        // connection string; DefaultURI if empty
	ConnectTimeout time.Duration // server selection timeout; DefaultConnectTimeout if 0
	// OpTimeout bounds every operation sent to the server (the driver's
	// client-side operation timeout), so a hung router ends a command
	// with an error instead of a hang; 0: no bound.
	OpTimeout time.Duration
	Out       io.Writer // results and print(); required
	Err       io.Writer // error reports; Out if nil
}

// Shell is one connected JavaScript session.
type Shell struct {
	client *mongo.Client
	uri    string
	vm     *goja.Runtime
	conv   converter
	out    io.Writer
	errOut io.Writer

	mu     sync.Mutex         // guards cancel
	cancel context.CancelFunc // of the running evaluation
	ctx    context.Context    // of the running evaluation

	curDB      string
	lastCursor *cursor
	colls      map[string]*goja.Object // collection handles by namespace
}

// ExitError is returned by Eval when the script called quit(n)/exit(n).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("quit(%d)", e.Code) }

// ConnectError is returned by New when the URI is malformed or no server
// answers within the connect timeout.
type ConnectError struct {
	URI string
	Err error
}

func (e *ConnectError) Error() string { return fmt.Sprintf("cannot connect to %s: %v", e.URI, e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// New connects to the URI, checks that a server answers, and prepares the
// JavaScript runtime with the current database from the URI's path
// ("test" if none).
func New(ctx context.Context, o Options) (*Shell, error) {
	uri := o.URI
	if uri == "" {
		uri = DefaultURI
	}
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, &ConnectError{URI: uri, Err: fmt.Errorf("malformed connection string: %w", err)}
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	co := options.Client().ApplyURI(uri).SetAppName("psdb shell")
	if !cs.ServerSelectionTimeoutSet {
		co.SetServerSelectionTimeout(timeout)
	}
	if !cs.ConnectTimeoutSet {
		co.SetConnectTimeout(timeout)
	}
	if o.OpTimeout > 0 {
		co.SetTimeout(o.OpTimeout)
	}
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, &ConnectError{URI: uri, Err: err}
	}
	pctx, cancel := context.WithTimeout(ctx, timeout+time.Second)
	defer cancel()
	if err := client.Database("admin").RunCommand(pctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
		_ = client.Disconnect(context.Background())
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "server selection") {
			err = fmt.Errorf("no server answered within %s (is the cluster running? `make run` starts one)", timeout)
		}
		return nil, &ConnectError{URI: uri, Err: err}
	}
	s := &Shell{client: client, uri: uri, out: o.Out, errOut: o.Err, curDB: cs.Database, ctx: ctx,
		colls: map[string]*goja.Object{}}
	if s.errOut == nil {
		s.errOut = s.out
	}
	if s.curDB == "" {
		s.curDB = "test"
	}
	if err := s.initRuntime(); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	return s, nil
}

// newOffline is a Shell with no server, for what needs none (the
// conversions, the printer, the parser); helpers that reach the server
// fail.
func newOffline(out io.Writer) (*Shell, error) {
	s := &Shell{out: out, errOut: out, curDB: "test", ctx: context.Background(), colls: map[string]*goja.Object{}}
	if err := s.initRuntime(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close disconnects the client.
func (s *Shell) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.client.Disconnect(ctx)
}

// URI returns the connection string in use.
func (s *Shell) URI() string { return s.uri }

// DB returns the current database's name (what `db` names).
func (s *Shell) DB() string {
	if o, ok := s.vm.Get("db").(*goja.Object); ok {
		if d, ok := o.Export().(*dbObject); ok {
			return d.name
		}
	}
	return s.curDB
}

// Interrupt stops the running evaluation (Ctrl-C): the script stops at
// its next step and the operation in flight is cancelled.
func (s *Shell) Interrupt() {
	s.vm.Interrupt(errInterrupted)
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
}

var errInterrupted = errors.New("interrupted")

// opCtx is the context of the operation a helper runs.
func (s *Shell) opCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

// Eval runs src (JavaScript with the shell commands use/show/it/exit) and
// returns its completion value. Errors are *ExitError for quit(), a
// *goja.CompilerSyntaxError, a *goja.Exception or an interruption; use
// ErrorText to report them.
func (s *Shell) Eval(ctx context.Context, src string) (v goja.Value, err error) {
	ectx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.ctx, s.cancel = ectx, cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		// Printing the result (a cursor's batch) reads under ctx.
		s.ctx, s.cancel = ctx, nil
		s.mu.Unlock()
		cancel()
		s.vm.ClearInterrupt()
	}()
	v, err = s.vm.RunString(rewriteCommands(src))
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		if ex, ok := ie.Value().(*ExitError); ok {
			return nil, ex
		}
		return nil, errInterrupted
	}
	return v, err
}

// ErrorText is the one line the shell reports for an evaluation error:
// "SyntaxError: ...", "MongoServerError[CodeName]: ...", "TypeError: ...".
func ErrorText(err error) string {
	var se *goja.CompilerSyntaxError
	var ex *goja.Exception
	switch {
	case errors.As(err, &se):
		return syntaxErrorText(se.Message)
	case errors.As(err, &ex):
		if o, ok := ex.Value().(*goja.Object); ok && o.ClassName() == "Error" {
			return errorText(o)
		}
		if ex.Value() != nil {
			return "Uncaught " + ex.Value().String()
		}
		return ex.Error()
	case errors.Is(err, errInterrupted):
		return "Interrupted"
	}
	var sce *scriptError
	if errors.As(err, &sce) {
		return sce.Error()
	}
	return "Error: " + err.Error()
}

var syntaxRe = regexp.MustCompile(`^(?:SyntaxError: )?(?:[^:]*: )?Line (\d+):(\d+) (.*?)(?: \(and \d+ more errors?\))?$`)

// syntaxErrorText is "SyntaxError: <what> (line:column)" from goja's
// parser message.
func syntaxErrorText(msg string) string {
	if m := syntaxRe.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("SyntaxError: %s (%s:%s)", m[3], m[1], m[2])
	}
	return "SyntaxError: " + strings.TrimPrefix(msg, "SyntaxError: ")
}

// ---- errors thrown into JavaScript ----

// throw raises err in the running script as mongosh's error objects do:
// a server error becomes MongoServerError with code and codeName, a
// client-side error MongoError.
func (s *Shell) throw(err error) {
	panic(s.jsError(err))
}

func (s *Shell) jsError(err error) goja.Value {
	name, msg := "MongoError", err.Error()
	code := int32(0)
	codeName := ""
	var ce mongo.CommandError
	var we mongo.WriteException
	var bwe mongo.BulkWriteException
	var me *mongoerr.Error
	switch {
	case errors.As(err, &ce):
		name, code, msg, codeName = "MongoServerError", ce.Code, ce.Message, ce.Name
	case errors.As(err, &we) && len(we.WriteErrors) > 0:
		name, code, msg = "MongoServerError", int32(we.WriteErrors[0].Code), we.WriteErrors[0].Message
	case errors.As(err, &we) && we.WriteConcernError != nil:
		name, code, msg, codeName = "MongoServerError", int32(we.WriteConcernError.Code), we.WriteConcernError.Message, we.WriteConcernError.Name
	case errors.As(err, &bwe) && len(bwe.WriteErrors) > 0:
		name, code, msg = "MongoBulkWriteError", int32(bwe.WriteErrors[0].Code), bwe.WriteErrors[0].Message
	case errors.As(err, &me):
		name, code, msg = "MongoServerError", int32(me.Code), me.Msg
	case errors.Is(err, context.Canceled):
		msg = "operation interrupted"
	}
	if code != 0 {
		codeName = mongoerr.Code(code).Name()
	}
	o, nerr := s.vm.New(s.vm.Get("Error"), s.vm.ToValue(msg))
	if nerr != nil {
		return s.vm.ToValue(msg)
	}
	_ = o.Set("name", name)
	if code != 0 {
		_ = o.Set("code", code)
		_ = o.Set("codeName", codeName)
	}
	return o
}

// typeError raises a TypeError with a formatted message.
func (s *Shell) typeError(format string, args ...any) {
	panic(s.vm.NewTypeError(fmt.Sprintf(format, args...)))
}

// ---- runtime setup ----

// prelude defines the constructors in JavaScript so that they work both
// called and with new.
const prelude = `
function ObjectId(h) { return __psdb.objectId(h); }
ObjectId.createFromHexString = function (h) { return __psdb.objectId(h); };
ObjectId.isValid = function (h) { return __psdb.isObjectIdHex(h); };
function ISODate(s) { return __psdb.isoDate(s); }
function NumberLong(v) { return __psdb.long(v); }
function Long(v) { return __psdb.long(v); }
Long.fromNumber = function (v) { return __psdb.long(v); };
Long.fromString = function (v) { return __psdb.long(v); };
function NumberInt(v) { return __psdb.int32(v); }
function Int32(v) { return __psdb.int32(v); }
function Double(v) { return Number(v); }
function NumberDecimal(v) { return __psdb.decimal(v); }
function Decimal128(v) { return __psdb.decimal(v); }
Decimal128.fromString = function (v) { return __psdb.decimal(v); };
function Timestamp(t, i) { return __psdb.timestamp(t, i); }
function UUID(s) { return __psdb.uuid(s); }
function BinData(sub, b64) { return __psdb.binData(sub, b64); }
function HexData(sub, hex) { return __psdb.hexData(sub, hex); }
var Binary = { createFromBase64: function (b, s) { return __psdb.binData(s || 0, b); },
               createFromHexString: function (h, s) { return __psdb.hexData(s || 0, h); } };
function MinKey() { return __psdb.minKey(); }
function MaxKey() { return __psdb.maxKey(); }
function BSONRegExp(p, o) { return __psdb.bsonRegExp(p, o); }
function Code(c) { return __psdb.code(String(c)); }
var console = { log: print, info: print, warn: print, error: print };
`

func (s *Shell) initRuntime() error {
	vm := goja.New()
	vm.SetFieldNameMapper(goja.UncapFieldNameMapper())
	s.vm = vm
	s.conv = converter{vm: vm, reg: map[*goja.Object]any{}}
	native := vm.NewObject()
	set := func(o *goja.Object, name string, f func(goja.FunctionCall) goja.Value) { _ = o.Set(name, f) }
	set(native, "objectId", s.newObjectID)
	set(native, "isObjectIdHex", func(c goja.FunctionCall) goja.Value {
		_, err := bson.ObjectIDFromHex(c.Argument(0).String())
		return vm.ToValue(err == nil)
	})
	set(native, "isoDate", s.newISODate)
	set(native, "long", s.newLong)
	set(native, "int32", func(c goja.FunctionCall) goja.Value {
		return vm.ToValue(&Int32{v: int32(c.Argument(0).ToInteger())})
	})
	set(native, "decimal", s.newDecimal)
	set(native, "timestamp", s.newTimestamp)
	set(native, "uuid", s.newUUID)
	set(native, "binData", s.newBinData)
	set(native, "hexData", s.newHexData)
	set(native, "minKey", func(goja.FunctionCall) goja.Value { return vm.ToValue(&MinKey{}) })
	set(native, "maxKey", func(goja.FunctionCall) goja.Value { return vm.ToValue(&MaxKey{}) })
	set(native, "bsonRegExp", func(c goja.FunctionCall) goja.Value {
		opts := ""
		if !goja.IsUndefined(c.Argument(1)) {
			opts = c.Argument(1).String()
		}
		return vm.ToValue(&Regex{Pattern: c.Argument(0).String(), Options: opts})
	})
	set(native, "code", func(c goja.FunctionCall) goja.Value { return vm.ToValue(&Code{Code: c.Argument(0).String()}) })
	set(native, "command", s.shellCommand)
	if err := vm.Set("__psdb", native); err != nil {
		return err
	}
	globals := map[string]func(goja.FunctionCall) goja.Value{
		"print":     s.print,
		"printjson": s.printjson,
		"quit":      s.quit,
		"exit":      s.quit,
		"use":       func(c goja.FunctionCall) goja.Value { return vm.ToValue(s.use(c.Argument(0).String())) },
		"sleep":     s.sleep,
		"tojson":    func(c goja.FunctionCall) goja.Value { return vm.ToValue(s.conv.inspect(c.Argument(0))) },
		"help":      func(goja.FunctionCall) goja.Value { return vm.ToValue(helpText) },
	}
	for name, f := range globals {
		if err := vm.Set(name, f); err != nil {
			return err
		}
	}
	if _, err := vm.RunString(prelude); err != nil {
		return fmt.Errorf("shell prelude: %w", err)
	}
	if err := vm.Set("db", s.dbHandle(s.curDB)); err != nil {
		return err
	}
	if err := vm.Set("sh", s.shHelpers()); err != nil {
		return err
	}
	return vm.Set("rs", s.rsHelpers())
}

const helpText = `Shell help:
  use <db>                      set the current database
  show dbs | show collections   list databases / collections of the current database
  it                            print the next batch of the last cursor
  db.<coll>.find(filter, projection)   and insertOne, insertMany, findOne, updateOne,
      updateMany, replaceOne, deleteOne, deleteMany, countDocuments,
      estimatedDocumentCount, distinct, aggregate, createIndex, getIndexes,
      dropIndex, drop, explain
  db.stats(), db.getCollectionNames(), db.dropDatabase(), db.getSiblingDB(name),
  db.runCommand(cmd), db.adminCommand(cmd)
  sh.status(), sh.enableSharding(db), sh.shardCollection(ns, key), sh.addShard(host),
  sh.removeShard(name), sh.startBalancer(), sh.stopBalancer(), sh.getBalancerState(),
  sh.isBalancerRunning(), sh.moveChunk(ns, query, shard), sh.splitAt(ns, middle),
  sh.splitFind(ns, query)
  rs.status([shard])
  quit(), exit                  leave the shell`

// print writes its arguments separated by spaces, strings as they are.
func (s *Shell) print(c goja.FunctionCall) goja.Value {
	parts := make([]string, len(c.Arguments))
	for i, a := range c.Arguments {
		parts[i] = s.conv.inspectTop(a)
	}
	fmt.Fprintln(s.out, strings.Join(parts, " "))
	return goja.Undefined()
}

func (s *Shell) printjson(c goja.FunctionCall) goja.Value {
	fmt.Fprintln(s.out, s.conv.inspect(c.Argument(0)))
	return goja.Undefined()
}

func (s *Shell) quit(c goja.FunctionCall) goja.Value {
	code := 0
	if a := c.Argument(0); !goja.IsUndefined(a) {
		code = int(a.ToInteger())
	}
	s.vm.Interrupt(&ExitError{Code: code})
	return goja.Undefined()
}

func (s *Shell) sleep(c goja.FunctionCall) goja.Value {
	ms := c.Argument(0).ToInteger()
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.opCtx().Done():
	}
	return goja.Undefined()
}

// use switches the current database.
func (s *Shell) use(name string) string {
	if name == "" || strings.ContainsAny(name, " ./\\\"$") {
		s.typeError("invalid database name %q", name)
	}
	s.curDB = name
	_ = s.vm.Set("db", s.dbHandle(name))
	return "switched to db " + name
}

// shellCommand runs the mongosh commands that are not JavaScript
// (use, show, it, exit), rewritten by rewriteCommands into calls.
func (s *Shell) shellCommand(c goja.FunctionCall) goja.Value {
	cmd, arg := c.Argument(0).String(), ""
	if a := c.Argument(1); !goja.IsUndefined(a) {
		arg = a.String()
	}
	switch cmd {
	case "use":
		return s.vm.ToValue(s.use(arg))
	case "show":
		return s.show(arg)
	case "it":
		if s.lastCursor == nil || s.lastCursor.exhausted() {
			return s.vm.ToValue("no cursor")
		}
		return s.lastCursor.obj
	case "exit", "quit":
		s.vm.Interrupt(&ExitError{})
		return goja.Undefined()
	case "help":
		return s.vm.ToValue(helpText)
	}
	s.typeError("unknown shell command %q", cmd)
	return nil
}

// show answers `show dbs` and `show collections`.
func (s *Shell) show(what string) goja.Value {
	switch what {
	case "dbs", "databases":
		raw := s.runCommand("admin", bson.D{{Key: "listDatabases", Value: 1}})
		dbs, _ := raw.Lookup("databases").Array().Values()
		type row struct {
			name string
			size float64
		}
		var rows []row
		width := 0
		for _, v := range dbs {
			d := v.Document()
			name := d.Lookup("name").StringValue()
			size := 0.0
			if sv, err := d.LookupErr("sizeOnDisk"); err == nil {
				if f, ok := sv.AsFloat64OK(); ok {
					size = f
				}
			}
			rows = append(rows, row{name, size})
			width = max(width, len(name))
		}
		var b strings.Builder
		for i, r := range rows {
			if i > 0 {
				b.WriteByte('\n')
			}
			fmt.Fprintf(&b, "%-*s  %s", width, r.name, humanSize(r.size))
		}
		return s.vm.ToValue(b.String())
	case "collections", "tables":
		return s.vm.ToValue(strings.Join(s.collectionNames(s.DB()), "\n"))
	}
	s.typeError("show %s is not supported: use show dbs or show collections", what)
	return nil
}

// humanSize is mongosh's size column ("40.00 KiB").
func humanSize(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	return fmt.Sprintf("%.2f %s", b, units[i])
}

// ---- constructors ----

func (s *Shell) newObjectID(c goja.FunctionCall) goja.Value {
	a := c.Argument(0)
	if goja.IsUndefined(a) || goja.IsNull(a) {
		return s.vm.ToValue(&ObjectID{id: bson.NewObjectID()})
	}
	if o, ok := a.Export().(*ObjectID); ok {
		return s.vm.ToValue(&ObjectID{id: o.id})
	}
	id, err := bson.ObjectIDFromHex(a.String())
	if err != nil {
		s.typeError("ObjectId(%q): an ObjectId is 24 hex digits", a.String())
	}
	return s.vm.ToValue(&ObjectID{id: id})
}

func (s *Shell) newISODate(c goja.FunctionCall) goja.Value {
	a := c.Argument(0)
	if goja.IsUndefined(a) {
		return s.conv.date(time.Now().UnixMilli())
	}
	t, err := parseISODate(a.String())
	if err != nil {
		s.typeError("ISODate(%q): not an ISO-8601 date", a.String())
	}
	return s.conv.date(t.UnixMilli())
}

func (s *Shell) newLong(c goja.FunctionCall) goja.Value {
	a := c.Argument(0)
	if str, ok := a.Export().(string); ok {
		var v int64
		if _, err := fmt.Sscan(str, &v); err != nil {
			s.typeError("NumberLong(%q): not an integer", str)
		}
		return s.vm.ToValue(&Long{v: v})
	}
	if l, ok := a.Export().(*Long); ok {
		return s.vm.ToValue(&Long{v: l.v})
	}
	return s.vm.ToValue(&Long{v: a.ToInteger()})
}

func (s *Shell) newDecimal(c goja.FunctionCall) goja.Value {
	str := c.Argument(0).String()
	if goja.IsUndefined(c.Argument(0)) {
		str = "0"
	}
	d, err := bson.ParseDecimal128(str)
	if err != nil {
		s.typeError("NumberDecimal(%q): %v", str, err)
	}
	return s.vm.ToValue(&Decimal{v: d})
}

func (s *Shell) newTimestamp(c goja.FunctionCall) goja.Value {
	a := c.Argument(0)
	if o, ok := a.(*goja.Object); ok && o.ClassName() == "Object" {
		return s.vm.ToValue(&Timestamp{T: uint32(o.Get("t").ToInteger()), I: uint32(o.Get("i").ToInteger())})
	}
	var t, i int64
	if !goja.IsUndefined(a) {
		t = a.ToInteger()
	}
	if b := c.Argument(1); !goja.IsUndefined(b) {
		i = b.ToInteger()
	}
	return s.vm.ToValue(&Timestamp{T: uint32(t), I: uint32(i)})
}

func (s *Shell) newUUID(c goja.FunctionCall) goja.Value {
	a := c.Argument(0)
	var data []byte
	if goja.IsUndefined(a) {
		id := bson.NewObjectID() // 12 random-ish bytes, completed below
		data = make([]byte, 16)
		copy(data, id[:])
		now := time.Now().UnixNano()
		for i := 12; i < 16; i++ {
			data[i] = byte(now >> (8 * (i - 12)))
		}
		data[6] = data[6]&0x0f | 0x40
		data[8] = data[8]&0x3f | 0x80
	} else {
		var err error
		data, err = decodeHex(strings.ReplaceAll(a.String(), "-", ""))
		if err != nil || len(data) != 16 {
			s.typeError("UUID(%q): a UUID is 32 hex digits", a.String())
		}
	}
	return s.vm.ToValue(&Binary{sub: 4, data: data})
}

func (s *Shell) newBinData(c goja.FunctionCall) goja.Value {
	data, err := decodeBase64(c.Argument(1).String())
	if err != nil {
		s.typeError("BinData: invalid base64: %v", err)
	}
	return s.vm.ToValue(&Binary{sub: byte(c.Argument(0).ToInteger()), data: data})
}

func (s *Shell) newHexData(c goja.FunctionCall) goja.Value {
	data, err := decodeHex(c.Argument(1).String())
	if err != nil {
		s.typeError("HexData: invalid hex: %v", err)
	}
	return s.vm.ToValue(&Binary{sub: byte(c.Argument(0).ToInteger()), data: data})
}

// ---- helpers shared by db, collection, sh, rs ----

// hostValue returns the Go value behind a host or dynamic object of this
// package without exporting plain objects (which would copy them).
func (c converter) hostValue(o *goja.Object) (any, bool) {
	if h, ok := c.reg[o]; ok {
		return h, true
	}
	t := o.ExportType()
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().PkgPath() != pkgPath {
		return nil, false
	}
	return o.Export(), true
}

var pkgPath = reflect.TypeFor[Shell]().PkgPath()

// arg converts argument i to BSON with a clear error naming the helper.
func (s *Shell) docArg(c goja.FunctionCall, i int, what string) bson.D {
	d, err := s.conv.toDoc(c.Argument(i))
	if err != nil {
		s.typeError("%s: %v", what, err)
	}
	return d
}

// optDoc converts an optional document argument (nil if absent).
func (s *Shell) optDoc(c goja.FunctionCall, i int, what string) bson.D {
	if a := c.Argument(i); goja.IsUndefined(a) || goja.IsNull(a) {
		return nil
	}
	return s.docArg(c, i, what)
}

// value converts any JavaScript value to BSON.
func (s *Shell) value(v goja.Value, what string) any {
	x, err := s.conv.toBSON(v, 0)
	if err != nil {
		s.typeError("%s: %v", what, err)
	}
	return x
}

// runCommand runs cmd on database db, throwing on error.
func (s *Shell) runCommand(db string, cmd any) bson.Raw {
	raw, err := s.client.Database(db).RunCommand(s.opCtx(), cmd).Raw()
	if err != nil {
		s.throw(err)
	}
	return raw
}

// commandDoc turns runCommand's argument into a command document: a
// string names a command run with 1.
func (s *Shell) commandDoc(c goja.FunctionCall, what string) bson.D {
	a := c.Argument(0)
	if str, ok := a.Export().(string); ok {
		return bson.D{{Key: str, Value: 1}}
	}
	d := s.docArg(c, 0, what)
	if len(d) == 0 {
		s.typeError("%s: the command document is empty", what)
	}
	return d
}

// lookupOpt returns the value of key in opts (a converted option
// document), or nil.
func lookupOpt(opts bson.D, key string) any {
	for _, e := range opts {
		if e.Key == key {
			return e.Value
		}
	}
	return nil
}

// toInt64 reads a converted BSON number.
func toInt64(x any) (int64, bool) {
	switch v := x.(type) {
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case float64:
		return int64(v), true
	}
	return 0, false
}

func truthy(x any) bool {
	switch v := x.(type) {
	case bool:
		return v
	case nil:
		return false
	}
	n, ok := toInt64(x)
	return !ok || n != 0
}

// object builds a JavaScript object from key/value pairs in order.
func (s *Shell) object(kv ...any) *goja.Object {
	o := s.vm.NewObject()
	for i := 0; i+1 < len(kv); i += 2 {
		_ = o.Set(kv[i].(string), kv[i+1])
	}
	return o
}
