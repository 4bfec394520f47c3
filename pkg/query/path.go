package query

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Path traversal, MongoDB style. A dotted path "a.b.c" is followed component
// by component:
//
//   - through an embedded document, by field name;
//   - through an array (not at the last component): every element that is a
//     document is followed with the remaining components (elements that are
//     scalars or nested arrays are skipped); in addition, when the next
//     component is a non-negative integer written without leading zeros
//     ("0", "12"), the element at that index is followed with the components
//     after it: it is reached itself (not expanded) when the path ends there,
//     searched when it is a document, traversed when it is an array. So
//     "a.0" on {a: [{x: 1}]} reaches the missing field "0" of {x: 1} and the
//     element {x: 1}, exactly as MongoDB's element iterator does;
//   - a scalar before the last component, or an absent field, reaches the
//     missing value.
//
// At the last component an array value is "expanded": the matcher tests each
// of its elements (one level only: nested arrays are tested as values) and
// then the whole array. $size and $elemMatch test the whole array only.
//
// The array position the matcher reports (MatchDetails) is the index, in the
// first array traversed implicitly (not through a numeric component), of the
// element through which the match was found.

// splitPath splits a dotted path into its components.
func splitPath(path string) []string {
	return strings.Split(path, ".")
}

// arrayIndex parses a numeric path component ("0", "17"; no sign, no
// leading zeros).
func arrayIndex(s string) (int, bool) {
	if s == "" || len(s) > 9 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// visitFunc receives one reached value (Type 0 for missing) and the array
// position through which it was reached (-1 if none); returning true stops
// the walk.
type visitFunc func(v bson.RawValue, pos int) bool

// walkDoc follows parts from doc. expandLeaf selects whether an array at the
// last component is expanded (elements, then the array itself).
func walkDoc(doc []byte, parts []string, expandLeaf bool, pos int, fn visitFunc) bool {
	v, ok := lookupField(doc, parts[0])
	if !ok {
		return fn(missing, pos)
	}
	return walkValue(v, parts[1:], expandLeaf, pos, fn)
}

func walkValue(v bson.RawValue, rest []string, expandLeaf bool, pos int, fn visitFunc) bool {
	if len(rest) == 0 {
		if v.Type == bson.TypeArray && expandLeaf {
			it := newElemIter(v.Value)
			for i := 0; ; i++ {
				_, e, ok := it.next()
				if !ok {
					break
				}
				p := pos
				if p < 0 {
					p = i
				}
				if fn(e, p) {
					return true
				}
			}
		}
		return fn(v, pos)
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		return walkDoc(v.Value, rest, expandLeaf, pos, fn)
	case bson.TypeArray:
		idx, isIdx := arrayIndex(rest[0])
		it := newElemIter(v.Value)
		for i := 0; ; i++ {
			_, e, ok := it.next()
			if !ok {
				return false
			}
			if e.Type == bson.TypeEmbeddedDocument {
				p := pos
				if p < 0 {
					p = i
				}
				if walkDoc(e.Value, rest, expandLeaf, p, fn) {
					return true
				}
			}
			if !isIdx || i != idx {
				continue
			}
			// An explicit index is not an implicit traversal: the
			// position is left to what lies below.
			switch {
			case len(rest) == 1:
				if fn(e, pos) {
					return true
				}
			case e.Type == bson.TypeEmbeddedDocument:
				if walkDoc(e.Value, rest[1:], expandLeaf, pos, fn) {
					return true
				}
			case e.Type == bson.TypeArray:
				if walkValue(e, rest[1:], expandLeaf, pos, fn) {
					return true
				}
			}
		}
	default:
		return fn(missing, pos)
	}
}

// Lookup returns every value path reaches in doc, in document order, the
// way Distinct and sort keys see them:
//
//   - documents are followed by field name, arrays before the last path
//     component are traversed as described at the top of path.go (document
//     elements searched for the rest of the path, numeric components used as
//     indexes);
//   - an array reached by the last component is expanded one level: its
//     elements are returned, not the array itself (an element that is itself
//     an array is returned as an array);
//   - missing fields contribute nothing (so a result of length 0 means the
//     path reaches no value).
//
// The matcher additionally tests the whole array and the missing value;
// Lookup does not return those.
func Lookup(doc bson.Raw, path string) []bson.RawValue {
	var out []bson.RawValue
	walkDoc(doc, splitPath(path), false, -1, func(v bson.RawValue, _ int) bool {
		switch v.Type {
		case 0:
		case bson.TypeArray:
			out = append(out, arrayElems(v.Value)...)
		default:
			out = append(out, v)
		}
		return false
	})
	return out
}

// LookupFirst returns the single value at path, following embedded
// documents by field name and arrays only through numeric components (no
// implicit traversal of arrays); ok is false when the path reaches nothing.
// It suits update operators and shard-key extraction, which address one
// value.
func LookupFirst(doc bson.Raw, path string) (bson.RawValue, bool) {
	cur := bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: doc}
	for _, p := range splitPath(path) {
		switch cur.Type {
		case bson.TypeEmbeddedDocument:
			v, ok := lookupField(cur.Value, p)
			if !ok {
				return bson.RawValue{}, false
			}
			cur = v
		case bson.TypeArray:
			idx, ok := arrayIndex(p)
			if !ok {
				return bson.RawValue{}, false
			}
			it := newElemIter(cur.Value)
			found := false
			for i := 0; ; i++ {
				_, e, ok := it.next()
				if !ok {
					break
				}
				if i == idx {
					cur, found = e, true
					break
				}
			}
			if !found {
				return bson.RawValue{}, false
			}
		default:
			return bson.RawValue{}, false
		}
	}
	return cur, true
}
