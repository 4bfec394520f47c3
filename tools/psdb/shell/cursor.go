package shell

import (
	"fmt"
	"strings"

	"github.com/dop251/goja"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// cursor is a find or aggregate cursor of the shell: modifiers (sort,
// limit, skip, projection, batchSize) apply until the first document is
// read, which runs the command; the REPL prints a cursor result
// BatchSize documents at a time, `it` printing the next ones.
type cursor struct {
	s        *Shell
	obj      *goja.Object
	db, coll string
	agg      bool
	pipeline bson.A
	aggOpts  bson.D

	filter, projection, sort, hint bson.D
	limit, skip                    int64
	batchSize                      int32
	maxTimeMS                      int64

	// explainOf is set on the cursor of db.coll.explain(v).find(): its
	// documents are the explain output (verbosity v) instead.
	explainOf goja.Value

	cur     *mongo.Cursor
	started bool
	done    bool
	peeked  bson.Raw // read by hasNext, not yet returned
}

// cursorHandle is the JavaScript face of a cursor (a dynamic object whose
// properties are its methods).
type cursorHandle struct {
	c       *cursor
	methods map[string]goja.Value
}

// Get returns a method; an unknown name is a function that says so.
func (h *cursorHandle) Get(key string) goja.Value {
	if m, ok := h.methods[key]; ok {
		return m
	}
	if objectProtoNames[key] || strings.HasPrefix(key, "__") {
		return nil
	}
	s := h.c.s
	return s.vm.ToValue(func(goja.FunctionCall) goja.Value {
		s.typeError("cursor.%s is not a function", key)
		return nil
	})
}

func (h *cursorHandle) Set(string, goja.Value) bool { return false }
func (h *cursorHandle) Has(key string) bool         { return h.methods[key] != nil }
func (h *cursorHandle) Delete(string) bool          { return false }
func (h *cursorHandle) Keys() []string              { return nil }

// describe names the cursor's namespace.
func (c *cursor) describe() string { return c.db + "." + c.coll }

// exhausted reports whether every document has been returned.
func (c *cursor) exhausted() bool { return c.started && c.done && c.peeked == nil }

func (s *Shell) newFindCursor(db, coll string) *cursor {
	return s.newCursor(&cursor{s: s, db: db, coll: coll})
}

// checkNotStarted refuses a modifier once documents have been read.
func (c *cursor) checkNotStarted(what string) {
	if c.started {
		c.s.typeError("cursor.%s: the cursor has already returned documents; call it before reading", what)
	}
}

// cursorOf returns the cursor behind a value, if it is one.
func (s *Shell) cursorOf(v goja.Value) (*cursor, bool) {
	o, ok := v.(*goja.Object)
	if !ok {
		return nil, false
	}
	hv, ok := s.conv.hostValue(o)
	if !ok {
		return nil, false
	}
	h, ok := hv.(*cursorHandle)
	if !ok {
		return nil, false
	}
	return h.c, true
}

func (s *Shell) newAggCursor(db, coll string, pipeline bson.A, opts bson.D) *cursor {
	return s.newCursor(&cursor{s: s, db: db, coll: coll, agg: true, pipeline: pipeline, aggOpts: opts})
}

// newCursor builds the JavaScript object of c.
func (s *Shell) newCursor(c *cursor) *cursor {
	vm := s.vm
	h := &cursorHandle{c: c}
	self := func() goja.Value { return c.obj }
	fn := func(f func(goja.FunctionCall) goja.Value) goja.Value { return vm.ToValue(f) }
	docMod := func(name string, dst *bson.D) goja.Value {
		return fn(func(call goja.FunctionCall) goja.Value {
			c.checkNotStarted(name)
			*dst = s.docArg(call, 0, "cursor."+name)
			return self()
		})
	}
	intMod := func(name string, dst *int64) goja.Value {
		return fn(func(call goja.FunctionCall) goja.Value {
			c.checkNotStarted(name)
			*dst = call.Argument(0).ToInteger()
			return self()
		})
	}
	chain := fn(func(goja.FunctionCall) goja.Value { return self() })
	h.methods = map[string]goja.Value{
		"sort":       docMod("sort", &c.sort),
		"projection": docMod("projection", &c.projection),
		"limit":      intMod("limit", &c.limit),
		"skip":       intMod("skip", &c.skip),
		"maxTimeMS":  intMod("maxTimeMS", &c.maxTimeMS),
		"hint": fn(func(call goja.FunctionCall) goja.Value {
			c.checkNotStarted("hint")
			if str, ok := call.Argument(0).Export().(string); ok {
				c.hint = bson.D{{Key: "$hint", Value: str}}
			} else {
				c.hint = s.docArg(call, 0, "cursor.hint")
			}
			return self()
		}),
		"batchSize": fn(func(call goja.FunctionCall) goja.Value {
			c.batchSize = int32(call.Argument(0).ToInteger())
			return self()
		}),
		"pretty":          chain,
		"readPref":        chain,
		"allowDiskUse":    chain,
		"noCursorTimeout": chain,
		"comment":         chain,
		"toArray": fn(func(goja.FunctionCall) goja.Value {
			var items []any
			for {
				d, ok := c.next()
				if !ok {
					break
				}
				items = append(items, s.conv.docToJS(d))
			}
			return vm.NewArray(items...)
		}),
		"hasNext": fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(c.hasNext()) }),
		"next": fn(func(goja.FunctionCall) goja.Value {
			d, ok := c.next()
			if !ok {
				panic(s.jsError(fmt.Errorf("cursor.next(): the cursor is exhausted")))
			}
			return s.conv.docToJS(d)
		}),
		"tryNext": fn(func(goja.FunctionCall) goja.Value {
			d, ok := c.next()
			if !ok {
				return goja.Null()
			}
			return s.conv.docToJS(d)
		}),
		"forEach": fn(func(call goja.FunctionCall) goja.Value {
			f, ok := goja.AssertFunction(call.Argument(0))
			if !ok {
				s.typeError("cursor.forEach: the argument must be a function")
			}
			for {
				d, ok := c.next()
				if !ok {
					return goja.Undefined()
				}
				r, err := f(goja.Undefined(), s.conv.docToJS(d))
				if err != nil {
					panic(err)
				}
				if b, ok := r.Export().(bool); ok && !b {
					return goja.Undefined()
				}
			}
		}),
		"map": fn(func(call goja.FunctionCall) goja.Value {
			f, ok := goja.AssertFunction(call.Argument(0))
			if !ok {
				s.typeError("cursor.map: the argument must be a function")
			}
			var items []any
			for {
				d, ok := c.next()
				if !ok {
					return vm.NewArray(items...)
				}
				r, err := f(goja.Undefined(), s.conv.docToJS(d))
				if err != nil {
					panic(err)
				}
				items = append(items, r)
			}
		}),
		"itcount": fn(func(goja.FunctionCall) goja.Value {
			n := 0
			for {
				if _, ok := c.next(); !ok {
					return vm.ToValue(n)
				}
				n++
			}
		}),
		"count": fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(c.count(false)) }),
		"size":  fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(c.count(true)) }),
		"explain": fn(func(call goja.FunctionCall) goja.Value {
			return s.explain(c.db, c.explainTarget(), call.Argument(0))
		}),
		"isExhausted": fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(c.exhausted()) }),
		"close": fn(func(goja.FunctionCall) goja.Value {
			if c.cur != nil {
				_ = c.cur.Close(s.opCtx())
			}
			c.started, c.done, c.peeked = true, true, nil
			return goja.Undefined()
		}),
		"toString": fn(func(goja.FunctionCall) goja.Value { return vm.ToValue("Cursor(" + c.describe() + ")") }),
	}
	c.obj = vm.NewDynamicObject(h)
	return c
}

// start runs find or aggregate.
func (c *cursor) start() {
	if c.started {
		return
	}
	c.started = true
	s := c.s
	if c.explainOf != nil {
		raw := s.runCommand(c.db, bson.D{{Key: "explain", Value: c.explainTarget()}, {Key: "verbosity", Value: s.verbosity(c.explainOf)}})
		c.peeked, c.done = raw, true
		return
	}
	var err error
	coll := s.client.Database(c.db).Collection(c.coll)
	if c.agg {
		o := options.Aggregate()
		if c.batchSize > 0 {
			o.SetBatchSize(c.batchSize)
		}
		if v := lookupOpt(c.aggOpts, "allowDiskUse"); v != nil {
			o.SetAllowDiskUse(truthy(v))
		}
		if c.coll == "" {
			c.cur, err = s.client.Database(c.db).Aggregate(s.opCtx(), c.pipeline, o)
		} else {
			c.cur, err = coll.Aggregate(s.opCtx(), c.pipeline, o)
		}
	} else {
		o := options.Find()
		if c.sort != nil {
			o.SetSort(c.sort)
		}
		if c.projection != nil {
			o.SetProjection(c.projection)
		}
		if c.limit != 0 {
			o.SetLimit(c.limit)
		}
		if c.skip != 0 {
			o.SetSkip(c.skip)
		}
		if c.batchSize > 0 {
			o.SetBatchSize(c.batchSize)
		}
		if c.hint != nil {
			if len(c.hint) == 1 && c.hint[0].Key == "$hint" {
				o.SetHint(c.hint[0].Value)
			} else {
				o.SetHint(c.hint)
			}
		}
		filter := c.filter
		if filter == nil {
			filter = bson.D{}
		}
		c.cur, err = coll.Find(s.opCtx(), filter, o)
	}
	if err != nil {
		c.done = true
		s.throw(err)
	}
}

// next returns the next document, or false at the end.
func (c *cursor) next() (bson.Raw, bool) {
	if c.peeked != nil {
		d := c.peeked
		c.peeked = nil
		return d, true
	}
	c.start()
	if c.peeked != nil { // the explain output
		d := c.peeked
		c.peeked = nil
		return d, true
	}
	if c.done {
		return nil, false
	}
	if c.cur.Next(c.s.opCtx()) {
		return append(bson.Raw(nil), c.cur.Current...), true
	}
	c.done = true
	err := c.cur.Err()
	_ = c.cur.Close(c.s.opCtx())
	if err != nil {
		c.s.throw(err)
	}
	return nil, false
}

func (c *cursor) hasNext() bool {
	if c.peeked != nil {
		return true
	}
	d, ok := c.next()
	if ok {
		c.peeked = d
	}
	return ok
}

// count is cursor.count() (the filter's count, limit and skip ignored)
// or size() (with them).
func (c *cursor) count(applySkipLimit bool) int64 {
	if c.agg {
		c.s.typeError("count() is not available on an aggregation cursor; use itcount()")
	}
	o := options.Count()
	if applySkipLimit {
		if c.limit > 0 {
			o.SetLimit(c.limit)
		}
		if c.skip > 0 {
			o.SetSkip(c.skip)
		}
	}
	filter := c.filter
	if filter == nil {
		filter = bson.D{}
	}
	n, err := c.s.client.Database(c.db).Collection(c.coll).CountDocuments(c.s.opCtx(), filter, o)
	if err != nil {
		c.s.throw(err)
	}
	return n
}

// explainTarget is the command explain wraps for this cursor.
func (c *cursor) explainTarget() bson.D {
	if c.agg {
		return bson.D{{Key: "aggregate", Value: c.coll}, {Key: "pipeline", Value: c.pipeline}, {Key: "cursor", Value: bson.D{}}}
	}
	cmd := bson.D{{Key: "find", Value: c.coll}}
	if c.filter != nil {
		cmd = append(cmd, bson.E{Key: "filter", Value: c.filter})
	}
	if c.projection != nil {
		cmd = append(cmd, bson.E{Key: "projection", Value: c.projection})
	}
	if c.sort != nil {
		cmd = append(cmd, bson.E{Key: "sort", Value: c.sort})
	}
	if c.limit != 0 {
		cmd = append(cmd, bson.E{Key: "limit", Value: c.limit})
	}
	if c.skip != 0 {
		cmd = append(cmd, bson.E{Key: "skip", Value: c.skip})
	}
	return cmd
}

// batchText reads up to BatchSize documents and formats them as the REPL
// prints a cursor: an array, then `Type "it" for more` when documents
// remain. An empty first batch prints nothing.
func (c *cursor) batchText() string {
	var items []any
	for len(items) < BatchSize {
		d, ok := c.next()
		if !ok {
			break
		}
		items = append(items, c.s.conv.docToJS(d))
	}
	if len(items) == 0 {
		return ""
	}
	text := c.s.conv.inspect(c.s.vm.NewArray(items...))
	if c.hasNext() {
		text += "\nType \"it\" for more"
	}
	return text
}

// ResultText formats an evaluation result as the REPL prints it: a
// cursor's next batch (remembered for `it`), nothing for undefined, else
// the value in mongosh's style.
func (s *Shell) ResultText(v goja.Value) string {
	if v == nil || goja.IsUndefined(v) {
		return ""
	}
	if c, ok := s.cursorOf(v); ok {
		if c.explainOf != nil {
			d, ok := c.next()
			if !ok {
				return ""
			}
			return s.conv.inspect(s.conv.docToJS(d))
		}
		s.lastCursor = c
		return c.batchText()
	}
	return strings.TrimRight(s.conv.inspectTop(v), "\n")
}
