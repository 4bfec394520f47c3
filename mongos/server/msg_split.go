package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name: "split",
		Help: "split a chunk: {split: ns, middle: <key>} at that key; {split: ns, find: <query>} or " +
			"{split: ns, bounds: [min, max]} the chunk containing the document or with those bounds, at its median",
		Handler:   handleSplit,
		AdminOnly: true,
	})
}

// splitArgs is a parsed split command; exactly one of find, bounds and
// middle is set.
type splitArgs struct {
	ns                   string
	find, middle         bson.Raw
	boundsMin, boundsMax bson.Raw
}

func parseSplit(doc bson.Raw) (splitArgs, error) {
	var a splitArgs
	v := doc.Index(0).Value()
	ns, ok := v.StringValueOK()
	if !ok {
		return a, mongoerr.New(mongoerr.BadValue, "collection name has invalid type %s", typeName(v.Type))
	}
	if _, _, err := catalog.SplitNS(ns); err != nil {
		return a, mongoerr.New(mongoerr.InvalidNamespace, "Invalid namespace specified '%s'", ns)
	}
	a.ns = ns
	var err error
	if a.find, err = docArg(doc, "find"); err != nil {
		return a, err
	}
	if a.middle, err = docArg(doc, "middle"); err != nil {
		return a, err
	}
	if bv, err := doc.LookupErr("bounds"); err == nil && bv.Type != bson.TypeNull {
		arr, ok := bv.ArrayOK()
		if !ok {
			return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'split.bounds' is the wrong type '%s', expected type 'array'", typeName(bv.Type))
		}
		vals, err := arr.Values()
		if err != nil {
			return a, mongoerr.New(mongoerr.InvalidBSON, "split.bounds: %v", err)
		}
		if len(vals) > 0 {
			if len(vals) < 2 {
				return a, mongoerr.New(mongoerr.BadValue, "upper bound not specified")
			}
			if len(vals) > 2 {
				return a, mongoerr.New(mongoerr.BadValue, "bounds must hold exactly two shard keys, got %d", len(vals))
			}
			var ok0, ok1 bool
			a.boundsMin, ok0 = vals[0].DocumentOK()
			a.boundsMax, ok1 = vals[1].DocumentOK()
			if !ok0 || !ok1 {
				return a, mongoerr.New(mongoerr.TypeMismatch, "split.bounds must hold two documents")
			}
		}
	}
	find, middle, bounds := len(a.find) > 5, len(a.middle) > 5, a.boundsMin != nil
	switch {
	case find && bounds:
		return a, mongoerr.New(mongoerr.BadValue, "cannot specify bounds and find at the same time")
	case !find && !bounds && !middle:
		return a, mongoerr.New(mongoerr.BadValue, "need to specify find/bounds or middle")
	case find && middle:
		return a, mongoerr.New(mongoerr.BadValue, "cannot specify find and middle together")
	case bounds && middle:
		return a, mongoerr.New(mongoerr.BadValue, "cannot specify bounds and middle together")
	}
	if !find {
		a.find = nil
	}
	if !middle {
		a.middle = nil
	}
	return a, nil
}

// handleSplit is MongoDB's split command. It refreshes the routing
// metadata first, finds the chunk, picks the split point (middle itself,
// or the owning shard's median via SplitVector with force), commits it
// with catalog.SplitChunk (minor version bump, no data moves) and waits
// until this router's metadata shows the new chunks.
func handleSplit(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	a, err := parseSplit(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	req.NS = a.ns
	ab, rt, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	if err := ab.Refresh(ctx); err != nil {
		return ErrorReply(err), nil
	}
	coll, ok := rt.Collection(a.ns)
	if !ok || !coll.Sharded {
		return errReply(mongoerr.NamespaceNotSharded, "Collection %s is not sharded.", a.ns)
	}
	var (
		chunk catalog.Chunk
		point bson.Raw
	)
	switch {
	case a.middle != nil:
		vals, err := shardKeyOf(coll.Key, a.middle)
		if err != nil {
			return errReply(mongoerr.BadValue, "new split key %s is not valid for shard key pattern %s: %s", a.middle, coll.Key, splitErrMsg(err))
		}
		if chunk, err = rt.ChunkFor(a.ns, vals); err != nil {
			return ErrorReply(err), nil
		}
		enc := coll.Key.Encode(vals)
		if bytes.Equal(enc, chunk.MinKey) || bytes.Equal(enc, chunk.MaxKey) {
			return errReply(mongoerr.CannotSplit, "new split key %s is a boundary key of existing chunk [%s,%s)", a.middle, chunk.Min, chunk.Max)
		}
		if point, err = boundOf(coll.Key, vals); err != nil {
			return ErrorReply(err), nil
		}
	default:
		var err error
		if chunk, err = chunkByFindOrBounds(rt, a.ns, coll.Key, a.find, a.boundsMin, a.boundsMax); err != nil {
			return ErrorReply(err), nil
		}
	}
	if point == nil {
		res, err := splitVectorOn(ctx, ab, a.ns, coll.Key, chunk, 0, true)
		if err != nil {
			return ErrorReply(err), nil
		}
		if len(res.SplitKeys) == 0 {
			return errReply(mongoerr.CannotSplit, "Unable to find median in chunk %s because chunk is indivisible.", chunk)
		}
		point = res.SplitKeys[0]
	}
	if _, err := commitSplit(ctx, ab, cat, a.ns, chunk, point); err != nil {
		return ErrorReply(err), nil
	}
	s.opts.Logger.Info().Str("ns", a.ns).Str("chunk", chunk.String()).Str("splitPoint", point.String()).Msg("split chunk")
	return okReply()
}

// shardKeyOf reads a shard-key document (a split point or bound): exactly
// the key's fields, in any order, no arrays and no operators; a hashed
// field holds the hash (NumberLong) or MinKey/MaxKey. The values come back
// in key order, ready for ChunkFor.
func shardKeyOf(key catalog.ShardKey, d bson.Raw) ([]bson.RawValue, error) {
	elems, err := d.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "%v", err)
	}
	if len(elems) != len(key) {
		return nil, mongoerr.New(mongoerr.BadValue, "it has %d fields, the key %d", len(elems), len(key))
	}
	vals := make([]bson.RawValue, len(key))
	for i, f := range key {
		v, err := d.LookupErr(f.Field)
		if err != nil {
			return nil, mongoerr.New(mongoerr.BadValue, "field %q is missing", f.Field)
		}
		switch {
		case v.Type == bson.TypeArray:
			return nil, mongoerr.New(mongoerr.BadValue, "field %q holds an array", f.Field)
		case isOperatorDoc(v):
			return nil, mongoerr.New(mongoerr.BadValue, "field %q holds an operator", f.Field)
		case f.Hashed && v.Type != bson.TypeMinKey && v.Type != bson.TypeMaxKey:
			n, ok := v.AsInt64OK()
			if !ok {
				return nil, mongoerr.New(mongoerr.BadValue, "hashed field %q needs a NumberLong hash value", f.Field)
			}
			v = hashedValue(n)
		}
		vals[i] = v
	}
	return vals, nil
}

// shardKeyFromQuery extracts the shard key from a query with an equality
// on every key field ({a: 5} or {a: {$eq: 5}}, dotted or nested), hashing
// hashed fields, as MongoDB's extractShardKeyFromBasicQuery.
func shardKeyFromQuery(key catalog.ShardKey, q bson.Raw) ([]bson.RawValue, error) {
	vals := make([]bson.RawValue, len(key))
	for i, f := range key {
		v, err := q.LookupErr(f.Field)
		if err != nil {
			v, err = q.LookupErr(strings.Split(f.Field, ".")...)
		}
		if err == nil && isOperatorDoc(v) {
			eq, eerr := v.Document().LookupErr("$eq")
			if n, _ := v.Document().Elements(); eerr != nil || len(n) != 1 {
				err = eerr
				if err == nil {
					err = mongoerr.New(mongoerr.BadValue, "not an equality")
				}
			}
			v = eq
		}
		if err != nil || v.Type == bson.TypeArray || isOperatorDoc(v) {
			return nil, mongoerr.New(mongoerr.ShardKeyNotFound, "no shard key found in chunk query %s", q)
		}
		if f.Hashed {
			v = hashedValue(keys.Hash(v))
		}
		vals[i] = v
	}
	return vals, nil
}

// isOperatorDoc reports whether v is a document whose first field starts
// with $ ({$gt: 1}).
func isOperatorDoc(v bson.RawValue) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	e, err := d.IndexErr(0)
	return err == nil && strings.HasPrefix(e.Key(), "$")
}

func hashedValue(n int64) bson.RawValue {
	return bson.RawValue{Type: bson.TypeInt64, Value: binary.LittleEndian.AppendUint64(nil, uint64(n))}
}

// splitErrMsg is an error's message without its code.
func splitErrMsg(err error) string {
	if e, ok := mongoerr.As(err); ok {
		return e.Msg
	}
	return err.Error()
}

// boundOf builds a bound document of the key's fields, in key order.
func boundOf(key catalog.ShardKey, vals []bson.RawValue) (bson.Raw, error) {
	d := make(bson.D, len(key))
	for i, f := range key {
		d[i] = bson.E{Key: f.Field, Value: vals[i]}
	}
	b, err := bson.Marshal(d)
	if err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.InternalError, "encode split point: %v", err)
	}
	return b, nil
}

// chunkByFindOrBounds is the chunk a split or moveChunk names: the one
// holding the document find describes (an equality on the full shard
// key), or, without find, the one whose bounds are exactly [min, max).
func chunkByFindOrBounds(rt Routing, ns string, key catalog.ShardKey, find, min, max bson.Raw) (catalog.Chunk, error) {
	if find != nil {
		vals, err := shardKeyFromQuery(key, find)
		if err != nil {
			return catalog.Chunk{}, err
		}
		return rt.ChunkFor(ns, vals)
	}
	lo, err := shardKeyOf(key, min)
	var hi []bson.RawValue
	if err == nil {
		hi, err = shardKeyOf(key, max)
	}
	if err != nil {
		return catalog.Chunk{}, mongoerr.New(mongoerr.BadValue, "shard key bounds [%s,%s) are not valid for shard key pattern %s: %s", min, max, key, splitErrMsg(err))
	}
	chunk, err := rt.ChunkFor(ns, lo)
	if err != nil {
		return catalog.Chunk{}, err
	}
	if !bytes.Equal(chunk.MinKey, key.Encode(lo)) || !bytes.Equal(chunk.MaxKey, key.Encode(hi)) {
		return catalog.Chunk{}, mongoerr.New(mongoerr.BadValue, "no chunk found with the shard key bounds [%s, %s)", min, max)
	}
	return chunk, nil
}
