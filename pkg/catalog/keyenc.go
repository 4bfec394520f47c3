package catalog

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// This file is where shard-key values become chunk bounds and ordered
// bytes; all of it goes through package keys so the order is MongoDB's.

func int64Value(n int64) bson.RawValue {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	return bson.RawValue{Type: bson.TypeInt64, Value: b[:]}
}

// Values extracts the shard-key values of a document in key order, ready
// for Encode: a missing field is null (as in MongoDB), a hashed field is
// replaced by NumberLong(hash). Arrays cannot be shard-key values
// (ShardKeyNotFound is not right for them; MongoDB says BadValue).
func (k ShardKey) Values(doc bson.Raw) ([]bson.RawValue, error) {
	out := make([]bson.RawValue, len(k))
	for i, f := range k {
		v, err := doc.LookupErr(strings.Split(f.Field, ".")...)
		if err != nil {
			v = bson.RawValue{Type: bson.TypeNull}
		}
		if v.Type == bson.TypeArray {
			return nil, invalid("shard key field %q cannot hold an array", f.Field)
		}
		if f.Hashed {
			v = int64Value(keys.Hash(v))
		}
		out[i] = v
	}
	return out, nil
}

// Encode returns the ordered encoding of shard-key values (already hashed
// where the key is hashed, as Values returns them): the byte string chunk
// bounds are compared with.
func (k ShardKey) Encode(vals []bson.RawValue) []byte { return keys.EncodeTuple(vals, nil) }

// EncodeDoc returns the ordered encoding of a document's shard key.
func (k ShardKey) EncodeDoc(doc bson.Raw) ([]byte, error) {
	vals, err := k.Values(doc)
	if err != nil {
		return nil, err
	}
	return k.Encode(vals), nil
}

// bound builds a bound document with the key's field names and vals.
func (k ShardKey) bound(vals []bson.RawValue) bson.Raw {
	d := make(bson.D, len(k))
	for i, f := range k {
		d[i] = bson.E{Key: f.Field, Value: vals[i]}
	}
	b, err := bson.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("catalog: marshal bound: %v", err)) // RawValues of fixed types; cannot fail
	}
	return b
}

func (k ShardKey) fill(v bson.RawValue) []bson.RawValue {
	vals := make([]bson.RawValue, len(k))
	for i := range vals {
		vals[i] = v
	}
	return vals
}

// GlobalMin and GlobalMax are the bounds of the whole key space.
func (k ShardKey) GlobalMin() bson.Raw { return k.bound(k.fill(keys.MinKey())) }
func (k ShardKey) GlobalMax() bson.Raw { return k.bound(k.fill(keys.MaxKey())) }

// checkBound verifies that a bound document has exactly the key's fields in
// key order, with NumberLong (or MinKey/MaxKey) for a hashed field, and
// returns its encoding.
func (k ShardKey) checkBound(b bson.Raw) ([]byte, error) {
	elems, err := b.Elements()
	if err != nil {
		return nil, mongoerr.Wrap(ErrInvalid, mongoerr.InvalidBSON, "split point: %v", err)
	}
	if len(elems) != len(k) {
		return nil, invalid("split point %s does not match shard key %s", b, k)
	}
	vals := make([]bson.RawValue, len(k))
	for i, e := range elems {
		if e.Key() != k[i].Field {
			return nil, invalid("split point %s does not match shard key %s", b, k)
		}
		v := e.Value()
		if v.Type == bson.TypeArray {
			return nil, invalid("split point %s holds an array", b)
		}
		if k[i].Hashed && v.Type != bson.TypeInt64 && v.Type != bson.TypeMinKey && v.Type != bson.TypeMaxKey {
			return nil, invalid("split point %s: hashed field %q needs a NumberLong", b, k[i].Field)
		}
		vals[i] = v
	}
	return keys.EncodeTuple(vals, nil), nil
}

// encodeBoundAnyKey encodes a stored bound (whose fields are in key order)
// without knowing the key.
func encodeBoundAnyKey(b bson.Raw) ([]byte, error) {
	elems, err := b.Elements()
	if err != nil {
		return nil, err
	}
	vals := make([]bson.RawValue, len(elems))
	for i, e := range elems {
		vals[i] = e.Value()
	}
	return keys.EncodeTuple(vals, nil), nil
}

// hashSplitPoints returns n-1 NumberLong split values cutting the int64
// hash space into n equal parts (n >= 1).
func hashSplitPoints(n int) []int64 {
	step := math.MaxUint64/uint64(n) + 1
	if n == 1 {
		return nil
	}
	pts := make([]int64, 0, n-1)
	for i := 1; i < n; i++ {
		pts = append(pts, int64(uint64(1)<<63+uint64(i)*step)) // MinInt64 + i*step, wrapping
	}
	return pts
}

func boundToJSON(b bson.Raw) json.RawMessage {
	j, err := bson.MarshalExtJSON(b, true, false)
	if err != nil {
		panic(fmt.Sprintf("catalog: bound to extended JSON: %v", err)) // bounds are valid BSON we built or checked
	}
	return j
}

func boundFromJSON(j json.RawMessage) (bson.Raw, error) {
	if raw, ok := fastBoundFromJSON(j); ok {
		return raw, nil
	}
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON(j, true, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// fastBoundFromJSON parses the flat canonical Extended JSON that
// boundToJSON writes for the common shard-key values (MinKey, MaxKey,
// NumberLong, NumberInt, plain strings, null) without reflection; it is
// about ten times cheaper than bson.UnmarshalExtJSON and matters when a
// ChunkMap loads 100,000 chunks. Anything else reports ok=false and takes
// the general path, so it never decides what a value means on its own.
func fastBoundFromJSON(j []byte) (bson.Raw, bool) {
	i := 0
	next := func(c byte) bool {
		if i < len(j) && j[i] == c {
			i++
			return true
		}
		return false
	}
	// str reads a JSON string without escapes.
	str := func() (string, bool) {
		if !next('"') {
			return "", false
		}
		start := i
		for i < len(j) && j[i] != '"' {
			if j[i] == '\\' || j[i] < 0x20 {
				return "", false
			}
			i++
		}
		if i >= len(j) {
			return "", false
		}
		s := string(j[start:i])
		i++
		return s, true
	}
	lit := func(s string) bool {
		if len(j)-i >= len(s) && string(j[i:i+len(s)]) == s {
			i += len(s)
			return true
		}
		return false
	}
	idx, doc := bsoncore.AppendDocumentStart(nil)
	if !next('{') {
		return nil, false
	}
	for first := true; ; first = false {
		if next('}') {
			break
		}
		if !first && !next(',') {
			return nil, false
		}
		name, ok := str()
		if !ok || !next(':') {
			return nil, false
		}
		switch {
		case lit(`{"$minKey":1}`):
			doc = bsoncore.AppendMinKeyElement(doc, name)
		case lit(`{"$maxKey":1}`):
			doc = bsoncore.AppendMaxKeyElement(doc, name)
		case lit("null"):
			doc = bsoncore.AppendNullElement(doc, name)
		case lit(`{"$numberLong":`):
			num, ok := str()
			if !ok || !next('}') {
				return nil, false
			}
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				return nil, false
			}
			doc = bsoncore.AppendInt64Element(doc, name, n)
		case lit(`{"$numberInt":`):
			num, ok := str()
			if !ok || !next('}') {
				return nil, false
			}
			n, err := strconv.ParseInt(num, 10, 32)
			if err != nil {
				return nil, false
			}
			doc = bsoncore.AppendInt32Element(doc, name, int32(n))
		case i < len(j) && j[i] == '"':
			v, ok := str()
			if !ok {
				return nil, false
			}
			doc = bsoncore.AppendStringElement(doc, name, v)
		default:
			return nil, false
		}
	}
	if i != len(j) {
		return nil, false
	}
	doc, err := bsoncore.AppendDocumentEnd(doc, idx)
	if err != nil {
		return nil, false
	}
	return bson.Raw(doc), true
}
