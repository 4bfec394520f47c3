package shell

import (
	"errors"
	"slices"
	"strings"

	"github.com/dop251/goja"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// dbObject is the db global and what getSiblingDB returns: its methods,
// and any other property names a collection (db.users), as in mongosh.
type dbObject struct {
	s       *Shell
	name    string
	methods map[string]goja.Value
}

// objectProtoNames are left to Object.prototype, so that db.toString,
// db.hasOwnProperty, ... behave as on any object, and `then` is never a
// collection (nothing mistakes db for a promise).
var objectProtoNames = map[string]bool{
	"constructor": true, "hasOwnProperty": true, "isPrototypeOf": true, "propertyIsEnumerable": true,
	"toLocaleString": true, "valueOf": true, "__proto__": true, "__defineGetter__": true,
	"__defineSetter__": true, "__lookupGetter__": true, "__lookupSetter__": true, "then": true,
	"toJSON": true, "inspect": true,
}

func (d *dbObject) Get(key string) goja.Value {
	if m, ok := d.methods[key]; ok {
		return m
	}
	if objectProtoNames[key] || strings.HasPrefix(key, "__") {
		return nil
	}
	return d.s.collHandle(d.name, key)
}
func (d *dbObject) Set(string, goja.Value) bool { return false }
func (d *dbObject) Has(key string) bool         { return d.methods[key] != nil }
func (d *dbObject) Delete(string) bool          { return false }
func (d *dbObject) Keys() []string              { return nil }

// dbHandle returns the db object of database name.
func (s *Shell) dbHandle(name string) *goja.Object {
	d := &dbObject{s: s, name: name}
	vm := s.vm
	fn := func(f func(goja.FunctionCall) goja.Value) goja.Value { return vm.ToValue(f) }
	d.methods = map[string]goja.Value{
		"getName":  fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(name) }),
		"toString": fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(name) }),
		"getCollection": fn(func(c goja.FunctionCall) goja.Value {
			n := c.Argument(0).String()
			if n == "" || goja.IsUndefined(c.Argument(0)) {
				s.typeError("db.getCollection: a collection name is required")
			}
			return s.collHandle(name, n)
		}),
		"getCollectionNames": fn(func(goja.FunctionCall) goja.Value {
			names := s.collectionNames(name)
			items := make([]any, len(names))
			for i, n := range names {
				items[i] = n
			}
			return vm.NewArray(items...)
		}),
		"getCollectionInfos": fn(func(c goja.FunctionCall) goja.Value {
			filter := s.optDoc(c, 0, "db.getCollectionInfos")
			if filter == nil {
				filter = bson.D{}
			}
			raw := s.runCommand(name, bson.D{{Key: "listCollections", Value: 1}, {Key: "filter", Value: filter}})
			return vm.NewArray(s.drainCommandCursor(name, raw)...)
		}),
		"getSiblingDB": fn(func(c goja.FunctionCall) goja.Value {
			n := c.Argument(0).String()
			if goja.IsUndefined(c.Argument(0)) || n == "" || strings.ContainsAny(n, " ./\\\"$") {
				s.typeError("db.getSiblingDB: invalid database name %q", n)
			}
			return s.dbHandle(n)
		}),
		"getMongo": fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(s.uri) }),
		"runCommand": fn(func(c goja.FunctionCall) goja.Value {
			return s.conv.docToJS(s.runCommand(name, s.commandDoc(c, "db.runCommand")))
		}),
		"adminCommand": fn(func(c goja.FunctionCall) goja.Value {
			return s.conv.docToJS(s.runCommand("admin", s.commandDoc(c, "db.adminCommand")))
		}),
		"stats":        fn(func(goja.FunctionCall) goja.Value { return s.dbStats(name) }),
		"dropDatabase": fn(func(goja.FunctionCall) goja.Value { return s.dropDatabase(name) }),
		"createCollection": fn(func(c goja.FunctionCall) goja.Value {
			cmd := bson.D{{Key: "create", Value: c.Argument(0).String()}}
			cmd = append(cmd, s.optDoc(c, 1, "db.createCollection")...)
			return s.conv.docToJS(s.runCommand(name, cmd))
		}),
		"version": fn(func(goja.FunctionCall) goja.Value {
			raw := s.runCommand("admin", bson.D{{Key: "buildInfo", Value: 1}})
			return vm.ToValue(raw.Lookup("version").StringValue())
		}),
		"serverStatus": fn(func(goja.FunctionCall) goja.Value {
			return s.conv.docToJS(s.runCommand("admin", bson.D{{Key: "serverStatus", Value: 1}}))
		}),
		"hello": fn(func(goja.FunctionCall) goja.Value {
			return s.conv.docToJS(s.runCommand("admin", bson.D{{Key: "hello", Value: 1}}))
		}),
		"help": fn(func(goja.FunctionCall) goja.Value { return vm.ToValue(helpText) }),
	}
	d.methods["aggregate"] = fn(func(c goja.FunctionCall) goja.Value {
		return s.newAggCursor(name, "", s.pipelineArg(c, "db.aggregate"), s.aggOpts(c, "db.aggregate")).obj
	})
	return s.handle("db", d, d.Get)
}

// handle makes the JavaScript object of a db or collection: a proxy of a
// function whose properties come from get, so that calling a name that
// is no method (db.users.bogus()) says so instead of failing obscurely.
func (s *Shell) handle(name string, host any, get func(key string) goja.Value) *goja.Object {
	target := s.vm.ToValue(func(goja.FunctionCall) goja.Value {
		s.typeError("%s is not a function", name)
		return nil
	}).(*goja.Object)
	p := s.vm.NewProxy(target, &goja.ProxyTrapConfig{
		Get: func(t *goja.Object, key string, _ goja.Value) goja.Value {
			if v := get(key); v != nil {
				return v
			}
			return t.Get(key)
		},
		Has: func(t *goja.Object, key string) bool { return get(key) != nil },
	})
	o := s.vm.ToValue(p).(*goja.Object)
	s.conv.reg[o] = host
	return o
}

// collectionNames lists the collections of db, sorted.
func (s *Shell) collectionNames(db string) []string {
	names, err := s.client.Database(db).ListCollectionNames(s.opCtx(), bson.D{})
	if err != nil {
		s.throw(err)
	}
	slices.Sort(names)
	return names
}

// drainCommandCursor returns every document of a command's cursor reply
// (firstBatch and the getMores after it) as JavaScript values.
func (s *Shell) drainCommandCursor(db string, raw bson.Raw) []any {
	var out []any
	c := raw.Lookup("cursor").Document()
	vals, _ := c.Lookup("firstBatch").Array().Values()
	for _, v := range vals {
		out = append(out, s.conv.docToJS(v.Document()))
	}
	id, _ := c.Lookup("id").AsInt64OK()
	ns := c.Lookup("ns").StringValue()
	_, coll, _ := strings.Cut(ns, ".")
	for id != 0 {
		more := s.runCommand(db, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: coll}})
		mc := more.Lookup("cursor").Document()
		vals, _ := mc.Lookup("nextBatch").Array().Values()
		for _, v := range vals {
			out = append(out, s.conv.docToJS(v.Document()))
		}
		id, _ = mc.Lookup("id").AsInt64OK()
	}
	return out
}

// dbStats answers db.stats() with the router's dbStats.
func (s *Shell) dbStats(db string) goja.Value {
	raw, err := s.client.Database(db).RunCommand(s.opCtx(), bson.D{{Key: "dbStats", Value: 1}}).Raw()
	if err != nil {
		s.throw(err)
	}
	return s.conv.docToJS(raw)
}

// asMongoErr maps a driver command error to a *mongoerr.Error so that
// codes are compared in one way.
func asMongoErr(err error) error {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return mongoerr.New(mongoerr.Code(ce.Code), "%s", ce.Message)
	}
	return err
}

// dropDatabase runs the router's dropDatabase.
func (s *Shell) dropDatabase(db string) goja.Value {
	raw, err := s.client.Database(db).RunCommand(s.opCtx(), bson.D{{Key: "dropDatabase", Value: 1}}).Raw()
	if err != nil {
		s.throw(err)
	}
	return s.conv.docToJS(raw)
}

// pipelineArg reads aggregate's stages: an array, or the stages as
// separate arguments.
func (s *Shell) pipelineArg(c goja.FunctionCall, what string) bson.A {
	a := c.Argument(0)
	if o, ok := a.(*goja.Object); ok && o.ClassName() == "Array" {
		x := s.value(a, what)
		return x.(bson.A)
	}
	var p bson.A
	for i := range c.Arguments {
		if o, ok := c.Arguments[i].(*goja.Object); !ok || o.ClassName() == "Array" {
			break
		}
		p = append(p, s.docArg(c, i, what))
	}
	if goja.IsUndefined(a) {
		return bson.A{}
	}
	return p
}

// aggOpts reads aggregate's options: the argument after the pipeline
// array (none when the stages are given as separate arguments).
func (s *Shell) aggOpts(c goja.FunctionCall, what string) bson.D {
	if o, ok := c.Argument(0).(*goja.Object); ok && o.ClassName() == "Array" {
		return s.optDoc(c, 1, what)
	}
	return nil
}
