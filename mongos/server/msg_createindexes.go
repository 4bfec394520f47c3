package server

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

func init() {
	register(Command{
		Name:    "createIndexes",
		Help:    "build indexes on every shard owning chunks of the collection (its primary shard when unsharded); unique indexes of a sharded collection must start with the shard key",
		Handler: handleCreateIndexes,
	})
}

func handleCreateIndexes(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	iv, err := req.Doc.LookupErr("indexes")
	if err != nil {
		return errReply(40414, "BSON field 'createIndexes.indexes' is missing but a required field")
	}
	if iv.Type != bson.TypeArray {
		return errReply(mongoerr.TypeMismatch, "BSON field 'createIndexes.indexes' is the wrong type '%s', expected type 'array'", typeName(iv.Type))
	}
	specs, err := docsArg(req.Doc, "indexes")
	if err != nil {
		return ErrorReply(err), nil
	}
	if len(specs) == 0 {
		return errReply(mongoerr.BadValue, "Must specify at least one index to create")
	}
	b, rep := s.backend()
	if rep != nil {
		return rep, nil
	}
	// As in MongoDB, createIndexes creates the database (and the
	// collection, on the shards) when needed.
	if err := b.EnsureDatabase(ctx, req.DB); err != nil {
		return ErrorReply(err), nil
	}
	// Each shard gets the version of the targeting that chose it
	// (indexTarget); a StaleConfig refreshes the routing table and builds
	// again on the shards of the new targeting (retryStale's bound;
	// building an index that exists is a no-op).
	var rt Routing
	var shards []string
	var results []*shardclient.CreateIndexesResult
	err = retryStale(ctx, b, func() error {
		var err error
		if rt, err = b.Routing(); err != nil {
			return err
		}
		t, err := indexTarget(rt, ns)
		if err != nil {
			return err
		}
		if coll, ok := rt.Collection(ns); ok && coll.Sharded {
			for _, spec := range specs {
				if err := checkUniqueIndex(coll.Key, spec); err != nil {
					return err
				}
			}
		}
		shards = t.Shards
		results = make([]*shardclient.CreateIndexesResult, len(shards))
		errs := make([]error, len(shards))
		vctx := withTargetVersions(ctx, t.Versions) // shardversions.go
		var wg sync.WaitGroup
		for i, sh := range shards {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := b.Shard(sh)
				if err == nil {
					results[i], err = conn.CreateIndexes(shardCtx(vctx, sh), ns, specs...)
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		return firstStaleOrError(errs)
	})
	if err != nil {
		return ErrorReply(err), nil
	}
	raw := bson.D{}
	for i, sh := range shards {
		r := results[i]
		d := bson.D{
			{Key: "numIndexesBefore", Value: int32(r.NumIndexesBefore)},
			{Key: "numIndexesAfter", Value: int32(r.NumIndexesAfter)},
			{Key: "createdCollectionAutomatically", Value: r.CreatedCollectionAutomatically},
		}
		if r.Note != "" {
			d = append(d, bson.E{Key: "note", Value: r.Note})
		}
		d = append(d, bson.E{Key: "ok", Value: 1.0})
		raw = append(raw, bson.E{Key: shardConnString(rt, sh), Value: d})
	}
	return okReply(bson.E{Key: "raw", Value: raw})
}

// indexTarget is the targeting of an index command: every shard owning
// chunks of a sharded collection, the database's primary shard otherwise,
// each with its version (UNSHARDED for the primary). An unknown database
// is NamespaceNotFound.
func indexTarget(rt Routing, ns string) (targeting.Target, error) {
	return targeting.ForQuery(rt, ns, emptyFilter)
}

// firstStaleOrError returns the first StaleConfig of a broadcast's
// errors (so that the caller refreshes and re-targets, whatever the other
// shards answered), else the first error, else nil.
func firstStaleOrError(errs []error) error {
	var first error
	for _, err := range errs {
		if classify(err) == classStale {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// collectionShards returns the shards a collection's DDL (index commands)
// goes to: every shard owning chunks of a sharded collection, the
// database's primary shard otherwise. An unknown database is
// NamespaceNotFound.
func collectionShards(rt Routing, ns string) ([]string, error) {
	if coll, ok := rt.Collection(ns); ok && coll.Sharded {
		return rt.ShardsFor(ns)
	}
	db, _, err := catalog.SplitNS(ns)
	if err != nil {
		return nil, err
	}
	d, ok := rt.Database(db)
	if !ok {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "ns does not exist: %s", ns)
	}
	return []string{d.PrimaryShard}, nil
}

// checkUniqueIndex refuses a unique index spec whose key does not start
// with the shard key's fields (in order; directions and hashing aside), as
// MongoDB's ShardKeyPattern::isUniqueIndexCompatible: a unique index can
// only be enforced shard by shard when equal keys live on one shard. A
// key starting with _id is allowed (MongoDB treats _id as unique across
// the cluster).
func checkUniqueIndex(key catalog.ShardKey, spec bson.Raw) error {
	uv, err := spec.LookupErr("unique")
	if err != nil {
		return nil
	}
	if unique, ok := truthyValue(uv); !ok || !unique {
		return nil // a bad type is the shard's error to report
	}
	kv, err := spec.LookupErr("key")
	if err != nil || kv.Type != bson.TypeEmbeddedDocument {
		return nil
	}
	elems, err := kv.Document().Elements()
	if err != nil {
		return nil
	}
	if len(elems) > 0 && elems[0].Key() == "_id" {
		return nil
	}
	compatible := len(elems) >= len(key)
	for i := 0; compatible && i < len(key); i++ {
		compatible = elems[i].Key() == key[i].Field
	}
	if compatible {
		return nil
	}
	return mongoerr.New(mongoerr.CannotCreateIndex, "cannot create unique index over %s with shard key pattern %s",
		shellDoc(kv.Document()), shellKey(key))
}

// truthyValue reads a boolean option given as a boolean or a number.
func truthyValue(v bson.RawValue) (bool, bool) {
	switch v.Type {
	case bson.TypeBoolean:
		return v.Boolean(), true
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		f, _ := v.AsFloat64OK()
		return f != 0, true
	}
	return false, false
}

// shellDoc renders a flat document the way MongoDB's messages do:
// { a: 1, b: -1 }.
func shellDoc(d bson.Raw) string {
	elems, err := d.Elements()
	if err != nil || len(elems) == 0 {
		return "{}"
	}
	parts := make([]string, len(elems))
	for i, e := range elems {
		v := e.Value()
		var s string
		switch v.Type {
		case bson.TypeString:
			s = fmt.Sprintf("%q", v.StringValue())
		case bson.TypeInt32:
			s = fmt.Sprint(v.Int32())
		case bson.TypeInt64:
			s = fmt.Sprint(v.Int64())
		case bson.TypeDouble:
			s = fmt.Sprint(v.Double())
		default:
			s = v.String()
		}
		parts[i] = e.Key() + ": " + s
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// shellKey renders a shard key as shellDoc does.
func shellKey(key catalog.ShardKey) string {
	parts := make([]string, len(key))
	for i, f := range key {
		if f.Hashed {
			parts[i] = f.Field + `: "hashed"`
		} else {
			parts[i] = f.Field + ": 1"
		}
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// shardConnString names a shard as MongoDB's raw replies and explain do:
// its connection string "<name>/<host:port>,...", or the bare name when
// the routing metadata does not list its members.
func shardConnString(rt Routing, name string) string {
	for _, sh := range rt.Shards() {
		if sh.Name != name || len(sh.Members) == 0 {
			continue
		}
		addrs := make([]string, len(sh.Members))
		for i, m := range sh.Members {
			addrs[i] = m.Addr
		}
		return name + "/" + strings.Join(addrs, ",")
	}
	return name
}
