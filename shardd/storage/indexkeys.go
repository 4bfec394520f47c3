package storage

import (
	"bytes"
	"slices"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// indexKey is one key a document produces in an index: the encoded tuple
// (keys.EncodeTuple of the values, descending components complemented) and
// the values themselves, kept for E11000 messages.
type indexKey struct {
	tuple []byte
	vals  []bson.RawValue
}

var (
	nullValue      = bson.RawValue{Type: bson.TypeNull}
	undefinedValue = bson.RawValue{Type: bson.TypeUndefined}
)

// pathValues collects what one key field of an index finds in a document.
type pathValues struct {
	vals  []bson.RawValue
	array bool // an array was expanded on the way (multikey)
	found bool // the field exists (sparse indexes skip documents where no field does)
}

// keysFor returns the keys doc produces in ix, sorted by tuple and without
// duplicates. The rules follow MongoDB's key generation:
//   - a missing field indexes as null; a sparse index skips a document in
//     which none of its fields exists;
//   - an array at the end of a path indexes each element (multikey); an
//     empty array indexes as undefined, as MongoDB does;
//   - a path through an array of documents ("a.b" with a: [{b: 1}, {b: 2}])
//     collects the field from every element, null for elements without it;
//     a numeric component ("a.0.b") also selects that array position;
//   - arrays on two fields of one compound index are refused with
//     CannotIndexParallelArrays (171).
func (ix *index) keysFor(doc bson.Raw) ([]indexKey, error) {
	parts := make([]pathValues, len(ix.paths))
	anyFound := false
	firstArray := -1
	for i, path := range ix.paths {
		pv := &parts[i]
		collectPath(bsoncore.Document(doc), path, pv)
		anyFound = anyFound || pv.found
		if pv.array {
			if firstArray >= 0 {
				return nil, mongoerr.New(mongoerr.CannotIndexParallelArrays,
					"cannot index parallel arrays [%s] [%s]", ix.spec.Key[i].Field, ix.spec.Key[firstArray].Field)
			}
			firstArray = i
		}
	}
	if ix.spec.Sparse && !anyFound {
		return nil, nil
	}
	// At most one field is multi-valued (parallel arrays are refused), so
	// the product is as long as that field's value list.
	n := 1
	if firstArray >= 0 {
		n = len(parts[firstArray].vals)
	}
	out := make([]indexKey, 0, n)
	for j := range n {
		vals := make([]bson.RawValue, len(parts))
		for i := range parts {
			if i == firstArray {
				vals[i] = parts[i].vals[j]
			} else {
				vals[i] = parts[i].vals[0]
			}
		}
		out = append(out, indexKey{tuple: keys.EncodeTuple(vals, ix.desc), vals: vals})
	}
	slices.SortFunc(out, func(a, b indexKey) int { return bytes.Compare(a.tuple, b.tuple) })
	return slices.CompactFunc(out, func(a, b indexKey) bool { return bytes.Equal(a.tuple, b.tuple) }), nil
}

func rawOf(v bsoncore.Value) bson.RawValue {
	return bson.RawValue{Type: bson.Type(v.Type), Value: v.Data}
}

func collectPath(doc bsoncore.Document, path []string, pv *pathValues) {
	v, err := doc.LookupErr(path[0])
	if err != nil {
		pv.vals = append(pv.vals, nullValue)
		return
	}
	walkValue(v, path[1:], pv)
}

func walkValue(v bsoncore.Value, rest []string, pv *pathValues) {
	if len(rest) == 0 {
		pv.found = true
		if v.Type != bsoncore.TypeArray {
			pv.vals = append(pv.vals, rawOf(v))
			return
		}
		pv.array = true
		elems, _ := v.Array().Values()
		if len(elems) == 0 {
			pv.vals = append(pv.vals, undefinedValue)
			return
		}
		for _, el := range elems {
			pv.vals = append(pv.vals, rawOf(el))
		}
		return
	}
	switch v.Type {
	case bsoncore.TypeEmbeddedDocument:
		sub, err := v.Document().LookupErr(rest[0])
		if err != nil {
			pv.vals = append(pv.vals, nullValue)
			return
		}
		walkValue(sub, rest[1:], pv)
	case bsoncore.TypeArray:
		pv.array = true
		before := len(pv.vals)
		elems, _ := v.Array().Values()
		if pos, err := strconv.Atoi(rest[0]); err == nil && pos >= 0 && pos < len(elems) {
			walkValue(elems[pos], rest[1:], pv)
		}
		for _, el := range elems {
			if el.Type != bsoncore.TypeEmbeddedDocument {
				continue
			}
			sub, err := el.Document().LookupErr(rest[0])
			if err != nil {
				pv.vals = append(pv.vals, nullValue)
				continue
			}
			walkValue(sub, rest[1:], pv)
		}
		if len(pv.vals) == before {
			pv.vals = append(pv.vals, nullValue)
		}
	default:
		pv.vals = append(pv.vals, nullValue)
	}
}
