package shell

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dop251/goja"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// collObject is db.<coll>: its methods; another property name is a
// sub-collection (db.system.profile is "system.profile"), as in mongosh.
type collObject struct {
	s        *Shell
	db, coll string
	methods  map[string]goja.Value
}

func (c *collObject) Get(key string) goja.Value {
	if m, ok := c.methods[key]; ok {
		return m
	}
	if objectProtoNames[key] || strings.HasPrefix(key, "__") {
		return nil
	}
	return c.s.collHandle(c.db, c.coll+"."+key)
}
func (c *collObject) Set(string, goja.Value) bool { return false }
func (c *collObject) Has(key string) bool         { return c.methods[key] != nil }
func (c *collObject) Delete(string) bool          { return false }
func (c *collObject) Keys() []string              { return nil }

// collHandle returns (and caches) the object of collection db.coll.
func (s *Shell) collHandle(db, coll string) *goja.Object {
	ns := db + "." + coll
	if o, ok := s.colls[ns]; ok {
		return o
	}
	c := &collObject{s: s, db: db, coll: coll}
	c.methods = s.collMethods(c)
	o := s.handle("db."+coll, c, c.Get)
	s.colls[ns] = o
	return o
}

// collMethods builds the methods of one collection handle.
func (s *Shell) collMethods(co *collObject) map[string]goja.Value {
	vm := s.vm
	db, name := co.db, co.coll
	ns := db + "." + name
	coll := func() *mongo.Collection { return s.client.Database(db).Collection(name) }
	fn := func(f func(goja.FunctionCall) goja.Value) goja.Value { return vm.ToValue(f) }
	what := func(m string) string { return "db." + name + "." + m }
	m := map[string]goja.Value{
		"getName":     fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(name) }),
		"getFullName": fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(ns) }),
		"toString":    fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(ns) }),
		"getDB":       fn(func(goja.FunctionCall) goja.Value { return s.dbHandle(db) }),

		"insertOne": fn(func(c goja.FunctionCall) goja.Value {
			doc := withID(s.docArg(c, 0, what("insertOne")))
			res, err := coll().InsertOne(s.opCtx(), doc)
			if err != nil {
				s.throw(err)
			}
			return s.object("acknowledged", true, "insertedId", s.conv.anyToJS(res.InsertedID))
		}),
		"insertMany": fn(func(c goja.FunctionCall) goja.Value {
			arr, ok := s.value(c.Argument(0), what("insertMany")).(bson.A)
			if !ok {
				s.typeError("%s: the documents must be an array", what("insertMany"))
			}
			docs := make([]any, len(arr))
			for i, x := range arr {
				d, ok := x.(bson.D)
				if !ok {
					s.typeError("%s: document %d is not an object", what("insertMany"), i)
				}
				docs[i] = withID(d)
			}
			o := options.InsertMany()
			if v := lookupOpt(s.optDoc(c, 1, what("insertMany")), "ordered"); v != nil {
				o.SetOrdered(truthy(v))
			}
			res, err := coll().InsertMany(s.opCtx(), docs, o)
			if err != nil {
				s.throw(err)
			}
			ids := vm.NewObject()
			for i, id := range res.InsertedIDs {
				_ = ids.Set(fmt.Sprint(i), s.conv.anyToJS(id))
			}
			return s.object("acknowledged", true, "insertedIds", ids)
		}),
		"find": fn(func(c goja.FunctionCall) goja.Value {
			cur := s.newFindCursor(db, name)
			cur.filter = s.optDoc(c, 0, what("find"))
			cur.projection = s.optDoc(c, 1, what("find"))
			s.applyFindOptions(cur, s.optDoc(c, 2, what("find")))
			return cur.obj
		}),
		"findOne": fn(func(c goja.FunctionCall) goja.Value {
			cur := s.newFindCursor(db, name)
			cur.filter = s.optDoc(c, 0, what("findOne"))
			cur.projection = s.optDoc(c, 1, what("findOne"))
			s.applyFindOptions(cur, s.optDoc(c, 2, what("findOne")))
			cur.limit = -1
			d, ok := cur.next()
			if !ok {
				return goja.Null()
			}
			return s.conv.docToJS(d)
		}),
		"updateOne":  fn(func(c goja.FunctionCall) goja.Value { return s.update(c, coll, what("updateOne"), false, false) }),
		"updateMany": fn(func(c goja.FunctionCall) goja.Value { return s.update(c, coll, what("updateMany"), true, false) }),
		"replaceOne": fn(func(c goja.FunctionCall) goja.Value { return s.update(c, coll, what("replaceOne"), false, true) }),
		"deleteOne": fn(func(c goja.FunctionCall) goja.Value {
			res, err := coll().DeleteOne(s.opCtx(), s.docArg(c, 0, what("deleteOne")))
			if err != nil {
				s.throw(err)
			}
			return s.object("acknowledged", true, "deletedCount", res.DeletedCount)
		}),
		"deleteMany": fn(func(c goja.FunctionCall) goja.Value {
			res, err := coll().DeleteMany(s.opCtx(), s.docArg(c, 0, what("deleteMany")))
			if err != nil {
				s.throw(err)
			}
			return s.object("acknowledged", true, "deletedCount", res.DeletedCount)
		}),
		"countDocuments": fn(func(c goja.FunctionCall) goja.Value {
			filter := s.optDoc(c, 0, what("countDocuments"))
			if filter == nil {
				filter = bson.D{}
			}
			o := options.Count()
			opts := s.optDoc(c, 1, what("countDocuments"))
			if n, ok := toInt64(lookupOpt(opts, "limit")); ok && n > 0 {
				o.SetLimit(n)
			}
			if n, ok := toInt64(lookupOpt(opts, "skip")); ok && n > 0 {
				o.SetSkip(n)
			}
			n, err := coll().CountDocuments(s.opCtx(), filter, o)
			if err != nil {
				s.throw(err)
			}
			return vm.ToValue(n)
		}),
		"estimatedDocumentCount": fn(func(goja.FunctionCall) goja.Value {
			n, err := coll().EstimatedDocumentCount(s.opCtx())
			if err != nil {
				s.throw(err)
			}
			return vm.ToValue(n)
		}),
		"distinct": fn(func(c goja.FunctionCall) goja.Value {
			if _, ok := c.Argument(0).Export().(string); !ok {
				s.typeError("%s: the field name must be a string", what("distinct"))
			}
			cmd := bson.D{{Key: "distinct", Value: name}, {Key: "key", Value: c.Argument(0).String()}}
			if q := s.optDoc(c, 1, what("distinct")); q != nil {
				cmd = append(cmd, bson.E{Key: "query", Value: q})
			}
			raw := s.runCommand(db, cmd)
			return s.conv.valueToJS(raw.Lookup("values"))
		}),
		"aggregate": fn(func(c goja.FunctionCall) goja.Value {
			return s.newAggCursor(db, name, s.pipelineArg(c, what("aggregate")), s.aggOpts(c, what("aggregate"))).obj
		}),
		"createIndex": fn(func(c goja.FunctionCall) goja.Value {
			keys := s.docArg(c, 0, what("createIndex"))
			names := s.createIndexes(db, name, []bson.D{keys}, s.optDoc(c, 1, what("createIndex")))
			return vm.ToValue(names[0])
		}),
		"createIndexes": fn(func(c goja.FunctionCall) goja.Value {
			arr, ok := s.value(c.Argument(0), what("createIndexes")).(bson.A)
			if !ok {
				s.typeError("%s: the key patterns must be an array", what("createIndexes"))
			}
			var specs []bson.D
			for _, x := range arr {
				d, ok := x.(bson.D)
				if !ok {
					s.typeError("%s: a key pattern is not an object", what("createIndexes"))
				}
				specs = append(specs, d)
			}
			names := s.createIndexes(db, name, specs, s.optDoc(c, 1, what("createIndexes")))
			items := make([]any, len(names))
			for i, n := range names {
				items[i] = n
			}
			return vm.NewArray(items...)
		}),
		"getIndexes": fn(func(goja.FunctionCall) goja.Value {
			raw := s.runCommand(db, bson.D{{Key: "listIndexes", Value: name}})
			return vm.NewArray(s.drainCommandCursor(db, raw)...)
		}),
		"dropIndex": fn(func(c goja.FunctionCall) goja.Value {
			idx := s.value(c.Argument(0), what("dropIndex"))
			if idx == nil {
				s.typeError("%s: give the index name or its key pattern", what("dropIndex"))
			}
			return s.conv.docToJS(s.runCommand(db, bson.D{{Key: "dropIndexes", Value: name}, {Key: "index", Value: idx}}))
		}),
		"dropIndexes": fn(func(c goja.FunctionCall) goja.Value {
			idx := any("*")
			if a := c.Argument(0); !goja.IsUndefined(a) {
				idx = s.value(a, what("dropIndexes"))
			}
			return s.conv.docToJS(s.runCommand(db, bson.D{{Key: "dropIndexes", Value: name}, {Key: "index", Value: idx}}))
		}),
		"drop": fn(func(goja.FunctionCall) goja.Value {
			_, err := s.client.Database(db).RunCommand(s.opCtx(), bson.D{{Key: "drop", Value: name}}).Raw()
			if err != nil {
				if mongoerr.HasCode(asMongoErr(err), mongoerr.NamespaceNotFound) {
					return vm.ToValue(false)
				}
				s.throw(err)
			}
			return vm.ToValue(true)
		}),
		"explain": fn(func(c goja.FunctionCall) goja.Value { return s.explainable(db, name, c.Argument(0)) }),
		"findOneAndUpdate": fn(func(c goja.FunctionCall) goja.Value {
			return s.findAndModify(db, name, c, "findOneAndUpdate")
		}),
		"findOneAndReplace": fn(func(c goja.FunctionCall) goja.Value {
			return s.findAndModify(db, name, c, "findOneAndReplace")
		}),
		"findOneAndDelete": fn(func(c goja.FunctionCall) goja.Value {
			return s.findAndModify(db, name, c, "findOneAndDelete")
		}),
		"count": fn(func(c goja.FunctionCall) goja.Value {
			cur := s.newFindCursor(db, name)
			cur.filter = s.optDoc(c, 0, what("count"))
			return vm.ToValue(cur.count(false))
		}),
		"stats": fn(func(goja.FunctionCall) goja.Value {
			n, err := coll().EstimatedDocumentCount(s.opCtx())
			if err != nil {
				s.throw(err)
			}
			specs, err := coll().Indexes().ListSpecifications(s.opCtx())
			if err != nil {
				s.throw(err)
			}
			return s.object("ns", ns, "count", n, "nindexes", len(specs), "ok", 1)
		}),
	}
	return m
}

// withID puts a new ObjectId first in a document without _id, as mongosh
// does, so that the shell can report it.
func withID(d bson.D) bson.D {
	for _, e := range d {
		if e.Key == "_id" {
			return d
		}
	}
	return append(bson.D{{Key: "_id", Value: bson.NewObjectID()}}, d...)
}

// applyFindOptions reads find's third argument (sort, limit, skip,
// projection, batchSize).
func (s *Shell) applyFindOptions(c *cursor, opts bson.D) {
	for _, e := range opts {
		switch e.Key {
		case "sort":
			if d, ok := e.Value.(bson.D); ok {
				c.sort = d
			}
		case "projection":
			if d, ok := e.Value.(bson.D); ok {
				c.projection = d
			}
		case "limit":
			c.limit, _ = toInt64(e.Value)
		case "skip":
			c.skip, _ = toInt64(e.Value)
		case "batchSize":
			n, _ := toInt64(e.Value)
			c.batchSize = int32(n)
		}
	}
}

// update runs updateOne, updateMany or replaceOne.
func (s *Shell) update(c goja.FunctionCall, collOf func() *mongo.Collection, what string, many, replace bool) goja.Value {
	filter := s.docArg(c, 0, what)
	upd := s.value(c.Argument(1), what)
	switch u := upd.(type) {
	case bson.D:
		isOp := len(u) > 0 && strings.HasPrefix(u[0].Key, "$")
		if replace && isOp {
			s.typeError("%s: the replacement must not contain update operators ($...)", what)
		}
		if !replace && !isOp {
			s.typeError("%s: the update must use operators ($set, $inc, ...) or be a pipeline; use replaceOne to replace a document", what)
		}
	case bson.A:
		if replace {
			s.typeError("%s: the replacement must be a document", what)
		}
	default:
		s.typeError("%s: the update must be a document or a pipeline", what)
	}
	opts := s.optDoc(c, 2, what)
	upsert := truthy(lookupOpt(opts, "upsert"))
	var res *mongo.UpdateResult
	var err error
	coll := collOf()
	switch {
	case replace:
		res, err = coll.ReplaceOne(s.opCtx(), filter, upd, options.Replace().SetUpsert(upsert))
	case many:
		o := options.UpdateMany().SetUpsert(upsert)
		if af, ok := lookupOpt(opts, "arrayFilters").(bson.A); ok {
			o.SetArrayFilters([]any(af))
		}
		res, err = coll.UpdateMany(s.opCtx(), filter, upd, o)
	default:
		o := options.UpdateOne().SetUpsert(upsert)
		if af, ok := lookupOpt(opts, "arrayFilters").(bson.A); ok {
			o.SetArrayFilters([]any(af))
		}
		res, err = coll.UpdateOne(s.opCtx(), filter, upd, o)
	}
	if err != nil {
		s.throw(err)
	}
	var upserted goja.Value = goja.Null()
	if res.UpsertedID != nil {
		upserted = s.conv.anyToJS(res.UpsertedID)
	}
	return s.object("acknowledged", true, "insertedId", upserted, "matchedCount", res.MatchedCount,
		"modifiedCount", res.ModifiedCount, "upsertedCount", res.UpsertedCount)
}

// createIndexes runs createIndexes for key patterns with common options,
// naming each index as MongoDB does (field_1_other_-1) unless named.
func (s *Shell) createIndexes(db, coll string, keys []bson.D, opts bson.D) []string {
	var specs bson.A
	var names []string
	for _, k := range keys {
		if len(k) == 0 {
			s.typeError("createIndex: the key pattern is empty")
		}
		name, _ := lookupOpt(opts, "name").(string)
		if name == "" || len(keys) > 1 {
			parts := make([]string, 0, 2*len(k))
			for _, e := range k {
				parts = append(parts, e.Key, fmt.Sprint(e.Value))
			}
			name = strings.Join(parts, "_")
		}
		spec := bson.D{{Key: "key", Value: k}, {Key: "name", Value: name}}
		for _, e := range opts {
			if e.Key != "name" {
				spec = append(spec, e)
			}
		}
		specs = append(specs, spec)
		names = append(names, name)
	}
	s.runCommand(db, bson.D{{Key: "createIndexes", Value: coll}, {Key: "indexes", Value: specs}})
	return names
}

// findAndModify runs findOneAndUpdate/Replace/Delete and returns the
// document (before the change unless returnDocument: "after").
func (s *Shell) findAndModify(db, coll string, c goja.FunctionCall, op string) goja.Value {
	what := "db." + coll + "." + op
	cmd := bson.D{{Key: "findAndModify", Value: coll}, {Key: "query", Value: s.docArg(c, 0, what)}}
	optIdx := 2
	if op == "findOneAndDelete" {
		cmd = append(cmd, bson.E{Key: "remove", Value: true})
		optIdx = 1
	} else {
		cmd = append(cmd, bson.E{Key: "update", Value: s.value(c.Argument(1), what)})
	}
	for _, e := range s.optDoc(c, optIdx, what) {
		switch e.Key {
		case "returnDocument":
			cmd = append(cmd, bson.E{Key: "new", Value: e.Value == "after"})
		case "returnNewDocument":
			cmd = append(cmd, bson.E{Key: "new", Value: truthy(e.Value)})
		case "projection":
			cmd = append(cmd, bson.E{Key: "fields", Value: e.Value})
		default:
			cmd = append(cmd, e)
		}
	}
	raw := s.runCommand(db, cmd)
	v, err := raw.LookupErr("value")
	if err != nil || v.Type == bson.TypeNull {
		return goja.Null()
	}
	return s.conv.valueToJS(v)
}

// explainable is db.coll.explain(verbosity): an object whose find,
// aggregate, count, distinct, ... run explain with that verbosity.
func (s *Shell) explainable(db, coll string, verbosity goja.Value) goja.Value {
	vm := s.vm
	fn := func(f func(goja.FunctionCall) goja.Value) goja.Value { return vm.ToValue(f) }
	o := vm.NewObject()
	_ = o.Set("find", fn(func(c goja.FunctionCall) goja.Value {
		cur := s.newFindCursor(db, coll)
		cur.filter = s.optDoc(c, 0, "explain().find")
		cur.projection = s.optDoc(c, 1, "explain().find")
		// The cursor's modifiers (sort, limit, ...) chain as usual; the
		// explain runs when it is printed or read.
		cur.explainOf = verbosity
		if cur.explainOf == nil {
			cur.explainOf = goja.Undefined()
		}
		return cur.obj
	}))
	_ = o.Set("aggregate", fn(func(c goja.FunctionCall) goja.Value {
		cmd := bson.D{{Key: "aggregate", Value: coll}, {Key: "pipeline", Value: s.pipelineArg(c, "explain().aggregate")}, {Key: "cursor", Value: bson.D{}}}
		return s.explain(db, cmd, verbosity)
	}))
	_ = o.Set("count", fn(func(c goja.FunctionCall) goja.Value {
		cmd := bson.D{{Key: "count", Value: coll}}
		if q := s.optDoc(c, 0, "explain().count"); q != nil {
			cmd = append(cmd, bson.E{Key: "query", Value: q})
		}
		return s.explain(db, cmd, verbosity)
	}))
	_ = o.Set("distinct", fn(func(c goja.FunctionCall) goja.Value {
		cmd := bson.D{{Key: "distinct", Value: coll}, {Key: "key", Value: c.Argument(0).String()}}
		if q := s.optDoc(c, 1, "explain().distinct"); q != nil {
			cmd = append(cmd, bson.E{Key: "query", Value: q})
		}
		return s.explain(db, cmd, verbosity)
	}))
	for _, op := range []string{"updateOne", "updateMany", "deleteOne", "deleteMany"} {
		_ = o.Set(op, fn(func(c goja.FunctionCall) goja.Value {
			q := s.docArg(c, 0, "explain()."+op)
			var cmd bson.D
			if strings.HasPrefix(op, "update") {
				cmd = bson.D{{Key: "update", Value: coll}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: q},
					{Key: "u", Value: s.value(c.Argument(1), "explain()."+op)}, {Key: "multi", Value: op == "updateMany"}}}}}
			} else {
				limit := int32(1)
				if op == "deleteMany" {
					limit = 0
				}
				cmd = bson.D{{Key: "delete", Value: coll}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: q}, {Key: "limit", Value: limit}}}}}
			}
			return s.explain(db, cmd, verbosity)
		}))
	}
	return o
}

// explain runs {explain: cmd, verbosity}.
func (s *Shell) explain(db string, cmd bson.D, verbosity goja.Value) goja.Value {
	return s.conv.docToJS(s.runCommand(db, bson.D{{Key: "explain", Value: cmd}, {Key: "verbosity", Value: s.verbosity(verbosity)}}))
}

// verbosity reads explain's verbosity argument (a mode name, or true for
// allPlansExecution); queryPlanner by default.
func (s *Shell) verbosity(verbosity goja.Value) string {
	v := "queryPlanner"
	if verbosity != nil && !goja.IsUndefined(verbosity) {
		switch x := verbosity.Export().(type) {
		case bool:
			if x {
				v = "allPlansExecution"
			}
		case string:
			v = x
		}
	}
	switch v {
	case "queryPlanner", "executionStats", "allPlansExecution":
	default:
		panic(s.jsError(errors.New("explain verbosity must be one of queryPlanner, executionStats, allPlansExecution")))
	}
	return v
}
