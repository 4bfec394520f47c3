package shell

import (
	"sort"
	"strings"

	"github.com/dop251/goja"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// maxChunksListed is how many chunks sh.status() lists per collection
// before it only counts them (mongosh's limit).
const maxChunksListed = 20

// shHelpers builds the sh object: the sharding helpers, each one admin
// command of the router (sh.status reads the config database).
func (s *Shell) shHelpers() *goja.Object {
	vm := s.vm
	sh := vm.NewObject()
	admin := func(cmd bson.D) goja.Value { return s.conv.docToJS(s.runCommand("admin", cmd)) }
	str := func(c goja.FunctionCall, i int, what, arg string) string {
		v, ok := c.Argument(i).Export().(string)
		if !ok || v == "" {
			s.typeError("%s: %s must be a non-empty string", what, arg)
		}
		return v
	}
	set := func(name string, f func(goja.FunctionCall) goja.Value) { _ = sh.Set(name, f) }
	set("status", func(c goja.FunctionCall) goja.Value { return s.shStatus(c.Argument(0).ToBoolean()) })
	set("enableSharding", func(c goja.FunctionCall) goja.Value {
		cmd := bson.D{{Key: "enableSharding", Value: str(c, 0, "sh.enableSharding", "the database name")}}
		if p, ok := c.Argument(1).Export().(string); ok {
			cmd = append(cmd, bson.E{Key: "primaryShard", Value: p})
		}
		return admin(cmd)
	})
	set("shardCollection", func(c goja.FunctionCall) goja.Value {
		ns := str(c, 0, "sh.shardCollection", "the namespace (db.collection)")
		if !strings.Contains(ns, ".") {
			s.typeError("sh.shardCollection: %q is not a namespace: use \"<db>.<collection>\"", ns)
		}
		key := s.docArg(c, 1, "sh.shardCollection")
		if len(key) == 0 {
			s.typeError("sh.shardCollection: the shard key is empty")
		}
		cmd := bson.D{{Key: "shardCollection", Value: ns}, {Key: "key", Value: key}}
		if u := c.Argument(2); !goja.IsUndefined(u) && !goja.IsNull(u) {
			cmd = append(cmd, bson.E{Key: "unique", Value: u.ToBoolean()})
		}
		cmd = append(cmd, s.optDoc(c, 3, "sh.shardCollection")...)
		return admin(cmd)
	})
	set("addShard", func(c goja.FunctionCall) goja.Value {
		cmd := bson.D{{Key: "addShard", Value: str(c, 0, "sh.addShard", "the shard (\"<set>/<host:port>,...\")")}}
		if n, ok := c.Argument(1).Export().(string); ok {
			cmd = append(cmd, bson.E{Key: "name", Value: n})
		}
		return admin(cmd)
	})
	set("removeShard", func(c goja.FunctionCall) goja.Value {
		return admin(bson.D{{Key: "removeShard", Value: str(c, 0, "sh.removeShard", "the shard name")}})
	})
	set("startBalancer", func(goja.FunctionCall) goja.Value { return admin(bson.D{{Key: "balancerStart", Value: 1}}) })
	set("stopBalancer", func(goja.FunctionCall) goja.Value { return admin(bson.D{{Key: "balancerStop", Value: 1}}) })
	set("getBalancerState", func(goja.FunctionCall) goja.Value {
		raw := s.runCommand("admin", bson.D{{Key: "balancerStatus", Value: 1}})
		mode, _ := raw.Lookup("mode").StringValueOK()
		return vm.ToValue(mode != "off")
	})
	set("isBalancerRunning", func(goja.FunctionCall) goja.Value {
		raw := s.runCommand("admin", bson.D{{Key: "balancerStatus", Value: 1}})
		running, _ := raw.Lookup("inBalancerRound").BooleanOK()
		return vm.ToValue(running)
	})
	set("moveChunk", func(c goja.FunctionCall) goja.Value {
		return admin(bson.D{{Key: "moveChunk", Value: str(c, 0, "sh.moveChunk", "the namespace")},
			{Key: "find", Value: s.docArg(c, 1, "sh.moveChunk")},
			{Key: "to", Value: str(c, 2, "sh.moveChunk", "the destination shard")}})
	})
	set("splitAt", func(c goja.FunctionCall) goja.Value {
		return admin(bson.D{{Key: "split", Value: str(c, 0, "sh.splitAt", "the namespace")},
			{Key: "middle", Value: s.docArg(c, 1, "sh.splitAt")}})
	})
	set("splitFind", func(c goja.FunctionCall) goja.Value {
		return admin(bson.D{{Key: "split", Value: str(c, 0, "sh.splitFind", "the namespace")},
			{Key: "find", Value: s.docArg(c, 1, "sh.splitFind")}})
	})
	set("help", func(goja.FunctionCall) goja.Value { return vm.ToValue(helpText) })
	return s.helperObject("sh", sh)
}

// helperObject wraps the object of sh or rs so that an unknown helper
// (sh.bogus()) fails with "TypeError: sh.bogus is not a function".
func (s *Shell) helperObject(name string, methods *goja.Object) *goja.Object {
	return s.vm.NewDynamicObject(&helpers{s: s, name: name, methods: methods})
}

type helpers struct {
	s       *Shell
	name    string
	methods *goja.Object
}

func (h *helpers) Get(key string) goja.Value {
	if v := h.methods.Get(key); v != nil && !goja.IsUndefined(v) {
		return v
	}
	if objectProtoNames[key] || key == "toString" {
		return nil
	}
	full := h.name + "." + key
	return h.s.vm.ToValue(func(goja.FunctionCall) goja.Value {
		h.s.typeError("%s is not a function (%s.help() lists the helpers)", full, h.name)
		return nil
	})
}
func (h *helpers) Set(string, goja.Value) bool { return false }
func (h *helpers) Has(key string) bool {
	v := h.methods.Get(key)
	return v != nil && !goja.IsUndefined(v)
}
func (h *helpers) Delete(string) bool { return false }
func (h *helpers) Keys() []string     { return h.methods.Keys() }

// rsHelpers builds the rs object. PSDB's router answers replSetGetStatus
// for each shard's replica set: rs.status() returns {shards: {...}},
// rs.status("<shard>") that shard's status.
func (s *Shell) rsHelpers() *goja.Object {
	vm := s.vm
	rs := vm.NewObject()
	_ = rs.Set("status", func(c goja.FunctionCall) goja.Value {
		cmd := bson.D{{Key: "replSetGetStatus", Value: 1}}
		shard, named := c.Argument(0).Export().(string)
		if named {
			cmd = append(cmd, bson.E{Key: "shard", Value: shard})
		}
		raw := s.runCommand("admin", cmd)
		if named {
			if v, err := raw.LookupErr("shards", shard); err == nil {
				return s.conv.valueToJS(v)
			}
		}
		return s.conv.docToJS(raw)
	})
	_ = rs.Set("help", func(goja.FunctionCall) goja.Value {
		return vm.ToValue("rs.status([shard]): the replica-set status of every shard, or of one")
	})
	return s.helperObject("rs", rs)
}

// statusReport is what sh.status() returns: named sections, printed as
// mongosh prints them (name, value, ---), readable from scripts as an
// object (sh.status().shards).
type statusReport struct {
	names  []string
	values map[string]goja.Value
}

func (r *statusReport) Get(key string) goja.Value   { return r.values[key] }
func (r *statusReport) Set(string, goja.Value) bool { return false }
func (r *statusReport) Has(key string) bool         { return r.values[key] != nil }
func (r *statusReport) Delete(string) bool          { return false }
func (r *statusReport) Keys() []string              { return r.names }

func (r *statusReport) add(name string, v goja.Value) {
	r.names = append(r.names, name)
	r.values[name] = v
}

func (r *statusReport) format(p *printer) string {
	var b strings.Builder
	for i, n := range r.names {
		if i > 0 {
			b.WriteString("\n---\n")
		}
		sub := &printer{conv: p.conv, vm: p.vm, seen: map[*goja.Object]bool{}}
		v, _ := sub.format(r.values[n], 0, 0)
		b.WriteString(n + "\n" + v)
	}
	return b.String()
}

// configDocs reads config.<coll> with a filter, sorted.
func (s *Shell) configDocs(coll string, filter, sortBy bson.D) []bson.Raw {
	if filter == nil {
		filter = bson.D{}
	}
	o := options.Find()
	if sortBy != nil {
		o.SetSort(sortBy)
	}
	cur, err := s.client.Database("config").Collection(coll).Find(s.opCtx(), filter, o)
	if err != nil {
		s.throw(err)
	}
	var out []bson.Raw
	for cur.Next(s.opCtx()) {
		out = append(out, append(bson.Raw(nil), cur.Current...))
	}
	if err := cur.Err(); err != nil {
		s.throw(err)
	}
	_ = cur.Close(s.opCtx())
	return out
}

// shStatus builds sh.status() from the router's config database:
// config.version, shards, mongos, settings, databases, collections and
// chunks. verbose lists every chunk.
func (s *Shell) shStatus(verbose bool) goja.Value {
	vm := s.vm
	r := &statusReport{values: map[string]goja.Value{}}
	arr := func(docs []bson.Raw) goja.Value {
		items := make([]any, len(docs))
		for i, d := range docs {
			items[i] = s.conv.docToJS(d)
		}
		return vm.NewArray(items...)
	}
	if v := s.configDocs("version", nil, nil); len(v) > 0 {
		r.add("shardingVersion", s.conv.docToJS(v[0]))
	}
	r.add("shards", arr(s.configDocs("shards", nil, bson.D{{Key: "_id", Value: 1}})))

	mongos := s.configDocs("mongos", nil, nil)
	versions := map[string]int{}
	for _, m := range mongos {
		v, _ := m.Lookup("mongoVersion").StringValueOK()
		versions[v]++
	}
	var vlist []any
	for v, n := range versions {
		vlist = append(vlist, s.object(v, n))
	}
	r.add("active mongoses", vm.NewArray(vlist...))

	balRaw := s.runCommand("admin", bson.D{{Key: "balancerStatus", Value: 1}})
	mode, _ := balRaw.Lookup("mode").StringValueOK()
	running, _ := balRaw.Lookup("inBalancerRound").BooleanOK()
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	r.add("balancer", s.object("Currently enabled", yesNo(mode != "off"), "Currently running", yesNo(running)))

	// Chunks per collection, in shard order.
	type collInfo struct {
		doc    bson.Raw
		chunks []bson.Raw
	}
	colls := map[string]*collInfo{}
	var nsList []string
	for _, c := range s.configDocs("collections", nil, bson.D{{Key: "_id", Value: 1}}) {
		ns := c.Lookup("_id").StringValue()
		colls[ns] = &collInfo{doc: c}
		nsList = append(nsList, ns)
	}
	for _, ch := range s.configDocs("chunks", nil, bson.D{{Key: "ns", Value: 1}, {Key: "min", Value: 1}}) {
		ns, _ := ch.Lookup("ns").StringValueOK()
		if ci, ok := colls[ns]; ok {
			ci.chunks = append(ci.chunks, ch)
		}
	}
	var dbs []any
	dbs = append(dbs, s.object("database", s.object("_id", "config", "primary", "config", "partitioned", true),
		"collections", vm.NewObject()))
	for _, d := range s.configDocs("databases", nil, bson.D{{Key: "_id", Value: 1}}) {
		name := d.Lookup("_id").StringValue()
		collsObj := vm.NewObject()
		for _, ns := range nsList {
			if !strings.HasPrefix(ns, name+".") {
				continue
			}
			ci := colls[ns]
			perShard := map[string]int{}
			for _, ch := range ci.chunks {
				perShard[ch.Lookup("shard").StringValue()]++
			}
			shards := make([]string, 0, len(perShard))
			for sh := range perShard {
				shards = append(shards, sh)
			}
			sort.Strings(shards)
			var meta []any
			for _, sh := range shards {
				meta = append(meta, s.object("shard", sh, "nChunks", perShard[sh]))
			}
			var chunks goja.Value
			if len(ci.chunks) <= maxChunksListed || verbose {
				var items []any
				for _, ch := range ci.chunks {
					items = append(items, s.object("min", s.conv.valueToJS(ch.Lookup("min")), "max", s.conv.valueToJS(ch.Lookup("max")),
						"on shard", ch.Lookup("shard").StringValue(), "last modified", s.conv.valueToJS(ch.Lookup("lastmod"))))
				}
				chunks = vm.NewArray(items...)
			} else {
				chunks = vm.ToValue("too many chunks to print, use verbose if you want to force print")
			}
			unique, _ := ci.doc.Lookup("unique").BooleanOK()
			noBalance, _ := ci.doc.Lookup("noBalance").BooleanOK()
			_ = collsObj.Set(ns, s.object("shardKey", s.conv.valueToJS(ci.doc.Lookup("key")), "unique", unique,
				"balancing", !noBalance, "chunkMetadata", vm.NewArray(meta...), "chunks", chunks, "tags", vm.NewArray()))
		}
		dbs = append(dbs, s.object("database", s.conv.docToJS(d), "collections", collsObj))
	}
	r.add("databases", vm.NewArray(dbs...))
	return vm.NewDynamicObject(r)
}
