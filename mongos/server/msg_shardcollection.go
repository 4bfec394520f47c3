package server

import (
	"context"
	"errors"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:      "shardCollection",
		Aliases:   []string{"shardcollection"},
		Help:      "shard a collection by a ranged or hashed key (unique, numInitialChunks); creates the database if needed; idempotent for the same key",
		Handler:   handleShardCollection,
		AdminOnly: true,
	})
}

// shardCollectionArgs is a parsed shardCollection command.
type shardCollectionArgs struct {
	ns               string
	key              catalog.ShardKey
	keyDoc           bson.Raw
	unique           bool
	numInitialChunks int64
}

func parseShardCollection(doc bson.Raw) (shardCollectionArgs, error) {
	var a shardCollectionArgs
	v := doc.Index(0).Value()
	ns, ok := v.StringValueOK()
	if !ok {
		return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'shardCollection.shardCollection' is the wrong type '%s', expected type 'string'", typeName(v.Type))
	}
	db, coll, err := catalog.SplitNS(ns)
	if err != nil {
		return a, mongoerr.New(mongoerr.InvalidNamespace, "Invalid namespace specified '%s'", ns)
	}
	switch {
	case db == "admin" || db == "local" || db == configDBName:
		return a, mongoerr.New(mongoerr.IllegalOperation, "can't shard collections in the %s database", db)
	case strings.HasPrefix(coll, "system."):
		return a, mongoerr.New(mongoerr.IllegalOperation, "can't shard system namespaces: %s", ns)
	}
	a.ns = ns
	kv, err := doc.LookupErr("key")
	if err != nil {
		return a, mongoerr.New(40414, "BSON field 'shardCollection.key' is missing but a required field")
	}
	if a.keyDoc, ok = kv.DocumentOK(); !ok {
		return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'shardCollection.key' is the wrong type '%s', expected type 'object'", typeName(kv.Type))
	}
	if a.key, err = catalog.ParseShardKey(a.keyDoc); err != nil {
		return a, err
	}
	if a.unique, err = boolArg(doc, "unique", false); err != nil {
		return a, err
	}
	if a.numInitialChunks, err = intArg(doc, "numInitialChunks", 0); err != nil {
		return a, err
	}
	if a.numInitialChunks < 0 || a.numInitialChunks > catalog.MaxInitialChunks {
		return a, mongoerr.New(mongoerr.InvalidOptions, "numInitialChunks must be between 0 and %d, got %d", catalog.MaxInitialChunks, a.numInitialChunks)
	}
	collation, err := docArg(doc, "collation")
	if err != nil {
		return a, err
	}
	if collation != nil {
		loc, _ := collation.Lookup("locale").StringValueOK()
		if n, _ := collation.Elements(); loc != "simple" || len(n) != 1 {
			return a, mongoerr.New(mongoerr.BadValue, "The collation for shardCollection must be {locale: 'simple'}, but found: %s", collation)
		}
	}
	return a, nil
}

func handleShardCollection(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	a, err := parseShardCollection(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	req.NS = a.ns
	ab, rt, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	if c, ok := rt.Collection(a.ns); ok && c.Sharded {
		return alreadySharded(c, a)
	}
	db := a.ns[:strings.IndexByte(a.ns, '.')]
	if err := ab.EnsureDatabase(ctx, db); err != nil {
		return ErrorReply(err), nil
	}
	d, ok := rt.Database(db)
	if !ok {
		return errReply(mongoerr.NamespaceNotFound, "database %s not found", db)
	}
	conn, err := ab.Shard(d.PrimaryShard)
	if err != nil {
		return ErrorReply(err), nil
	}
	n := int(a.numInitialChunks)
	if a.key.Hashed() {
		// Data already on the primary stays there: a non-empty collection
		// starts with one chunk on the primary, as in MongoDB; the
		// balancer spreads it later.
		cnt, err := conn.Count(ctx, a.ns, nil, 0, 1)
		if err != nil {
			return ErrorReply(err), nil
		}
		if cnt > 0 {
			if n > 1 {
				return errReply(mongoerr.InvalidOptions, "numInitialChunks is only supported when the collection %s is empty", a.ns)
			}
			n = 1
		}
	} else if !(len(a.key) == 1 && a.key[0].Field == "_id") {
		// A ranged key starts as one chunk on the primary shard: build the
		// shard key index there (unique if asked, which is what enforces
		// uniqueness: each key value lives in one chunk). The _id index
		// already exists. Shards shardd cannot index hashed keys yet.
		spec := bson.D{{Key: "key", Value: a.key.Doc()}, {Key: "name", Value: indexName(a.key)}}
		if a.unique {
			spec = append(spec, bson.E{Key: "unique", Value: true})
		}
		raw, err := bson.Marshal(spec)
		if err != nil {
			return ErrorReply(err), nil
		}
		if _, err := conn.CreateIndexes(ctx, a.ns, raw); err != nil {
			return ErrorReply(err), nil
		}
	}
	c, _, err := cat.ShardCollection(ctx, a.ns, catalog.ShardOptions{Key: a.key, Unique: a.unique, NumInitialChunks: n})
	if errors.Is(err, catalog.ErrExists) {
		if cur, gerr := cat.GetCollection(ctx, a.ns); gerr == nil && cur.Sharded {
			return alreadySharded(cur, a)
		}
	}
	if err != nil {
		return ErrorReply(err), nil
	}
	if err := ab.Refresh(ctx); err != nil {
		return ErrorReply(err), nil
	}
	return okReply(bson.E{Key: "collectionsharded", Value: a.ns}, bson.E{Key: "collectionUUID", Value: uuidValue(c.UUID)})
}

// alreadySharded answers shardCollection of a sharded collection: success
// when the key and unique flag are the ones asked for (MongoDB's
// idempotence), AlreadyInitialized otherwise.
func alreadySharded(c catalog.Collection, a shardCollectionArgs) (bson.Raw, error) {
	if c.Key.Equal(a.key) && c.Unique == a.unique {
		return okReply(bson.E{Key: "collectionsharded", Value: a.ns}, bson.E{Key: "collectionUUID", Value: uuidValue(c.UUID)})
	}
	return errReply(mongoerr.AlreadyInitialized, "sharding already enabled for collection %s with options { key: %s, unique: %t }", a.ns, c.Key, c.Unique)
}

// indexName is MongoDB's default index name for a key pattern: a_1_b_1.
func indexName(k catalog.ShardKey) string {
	parts := make([]string, 0, len(k))
	for _, f := range k {
		if f.Hashed {
			parts = append(parts, f.Field+"_hashed")
		} else {
			parts = append(parts, f.Field+"_1")
		}
	}
	return strings.Join(parts, "_")
}
