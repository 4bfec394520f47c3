package expr

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// evalMergeObjects merges documents left to right (later fields win, in
// the position of their first appearance); null and missing are skipped.
// One array argument is merged element by element.
func evalMergeObjects(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	if len(vals) == 1 && vals[0].Type == bson.TypeArray {
		elems, err := arrayValues(vals[0])
		if err != nil {
			return Missing, err
		}
		vals = elems
	}
	var m orderedFields
	for i, v := range vals {
		if IsNullish(v) {
			continue
		}
		if v.Type != bson.TypeEmbeddedDocument {
			return Missing, mongoerr.New(40400, "$mergeObjects requires object inputs, but input %d is of type %s", i, TypeName(v))
		}
		if err := Each(v.Value, func(k string, e bson.RawValue) bool { m.set(k, e); return true }); err != nil {
			return Missing, err
		}
	}
	return Doc(m.doc()), nil
}

// MergeObjects merges b's fields into a as $mergeObjects does.
func MergeObjects(a, b bson.RawValue) (bson.RawValue, error) {
	return evalMergeObjects("", []bson.RawValue{a, b})
}

// orderedFields is a document under construction whose fields may be
// replaced in place.
type orderedFields struct {
	keys []string
	vals []bson.RawValue
	idx  map[string]int
}

func (o *orderedFields) set(k string, v bson.RawValue) {
	if o.idx == nil {
		o.idx = make(map[string]int)
	}
	if i, ok := o.idx[k]; ok {
		o.vals[i] = v
		return
	}
	o.idx[k] = len(o.keys)
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

func (o *orderedFields) doc() bson.Raw {
	var b DocBuilder
	for i, k := range o.keys {
		b.Append(k, o.vals[i])
	}
	return b.Doc()
}

func evalObjectToArray(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	v := vals[0]
	if IsNullish(v) {
		return Null(), nil
	}
	if v.Type != bson.TypeEmbeddedDocument {
		return Missing, mongoerr.New(40390, "$objectToArray requires a document input, found: %s", TypeName(v))
	}
	var arr ArrayBuilder
	err := Each(v.Value, func(k string, e bson.RawValue) bool {
		var b DocBuilder
		b.Append("k", String(k))
		b.Append("v", e)
		arr.Append(Doc(b.Doc()))
		return true
	})
	return arr.Value(), err
}

func evalArrayToObject(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	v := vals[0]
	if IsNullish(v) {
		return Null(), nil
	}
	if v.Type != bson.TypeArray {
		return Missing, mongoerr.New(40386, "$arrayToObject requires an array input, found: %s", TypeName(v))
	}
	elems, err := arrayValues(v)
	if err != nil {
		return Missing, err
	}
	var m orderedFields
	for _, e := range elems {
		var k string
		var val bson.RawValue
		switch e.Type {
		case bson.TypeArray:
			pair, err := arrayValues(e)
			if err != nil {
				return Missing, err
			}
			if len(pair) != 2 {
				return Missing, mongoerr.New(40397, "$arrayToObject requires an array of size 2 arrays,found array of size: %d", len(pair))
			}
			s, ok := stringArg(pair[0])
			if !ok {
				return Missing, mongoerr.New(40395, "$arrayToObject requires an array of key-value pairs, where the key must be of type string. Found key type: %s", TypeName(pair[0]))
			}
			k, val = s, pair[1]
		case bson.TypeEmbeddedDocument:
			kv := Lookup(e.Value, "k")
			s, ok := stringArg(kv)
			if !ok {
				return Missing, mongoerr.New(40394, "$arrayToObject requires an object with keys 'k' and 'v', where the value of 'k' must be of type string. Found type: %s", TypeName(kv))
			}
			k, val = s, Lookup(e.Value, "v")
		default:
			return Missing, mongoerr.New(40398, "Unrecognised input type format for $arrayToObject: %s", TypeName(e))
		}
		m.set(k, val)
	}
	return Doc(m.doc()), nil
}
