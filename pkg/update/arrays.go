package update

import (
	"math"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
)

// Parsing of the array operators ($push, $addToSet, $pull) and of
// arrayFilters, and the array transformations they apply.

// parseArrayFilters parses each filter and indexes it by its identifier.
func (u *Update) parseArrayFilters(fs []bson.Raw) error {
	if len(fs) == 0 {
		return nil
	}
	u.filters = make(map[string]*query.Filter, len(fs))
	for _, f := range fs {
		if err := validDoc(f); err != nil {
			return mongoerr.Wrap(err, mongoerr.FailedToParse, "arrayFilters element is not a valid BSON document: %v", err)
		}
		id, code, msg := arrayFilterID(f)
		if code != 0 {
			return mongoerr.New(code, "%s", msg)
		}
		if u.filters[id] != nil {
			return mongoerr.New(mongoerr.FailedToParse, "Found multiple array filters with the same top-level field name %s", id)
		}
		m, err := query.ParseFilter(f)
		if err != nil {
			return err
		}
		u.filters[id] = m
	}
	return nil
}

// arrayFilterID returns the one top-level identifier an array filter uses,
// or the code and message of MongoDB's error when it has none, several, or
// an invalid one.
func arrayFilterID(f bson.Raw) (string, mongoerr.Code, string) {
	ids := map[string]bool{}
	var order []string
	var collect func(d bson.Raw, depth int)
	collect = func(d bson.Raw, depth int) {
		if depth > maxPathDepth {
			return
		}
		elems, err := d.Elements()
		if err != nil {
			return
		}
		for _, e := range elems {
			k := e.Key()
			if strings.HasPrefix(k, "$") {
				// $and/$or/$nor carry sub-filters; other top-level operators
				// ($expr, $comment) name no field.
				if v := e.Value(); v.Type == bson.TypeArray {
					for _, sub := range rawElems(v) {
						if sub.Type == bson.TypeEmbeddedDocument {
							collect(sub.Value, depth+1)
						}
					}
				}
				continue
			}
			id := k
			if i := strings.IndexByte(k, '.'); i >= 0 {
				id = k[:i]
			}
			if !ids[id] {
				ids[id] = true
				order = append(order, id)
			}
		}
	}
	collect(f, 0)
	switch {
	case len(order) == 0:
		return "", mongoerr.FailedToParse, "Cannot use an expression without a top-level field name in arrayFilters"
	case len(order) > 1:
		return "", mongoerr.FailedToParse, "Error parsing array filter :: caused by :: Expected a single top-level field name, found '" +
			order[0] + "' and '" + order[1] + "'"
	}
	id := order[0]
	if !validIdentifier(id) {
		return "", mongoerr.BadValue, "Error parsing array filter :: caused by :: The top-level field name must be an alphanumeric string beginning with a lowercase letter, found '" + id + "'"
	}
	return id, 0, ""
}

func validIdentifier(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// matchArrayFilter reports whether element e satisfies the filter of
// identifier id: the filter is matched against {id: e}.
func (u *Update) matchArrayFilter(id string, e bson.RawValue) bool {
	f := u.filters[id]
	if f == nil {
		return false
	}
	return f.Match(wrapValue(id, e))
}

// wrapValue builds the document {name: v}.
func wrapValue(name string, v bson.RawValue) bson.Raw {
	idx, dst := bsoncore.ReserveLength(nil)
	dst = bsoncore.AppendHeader(dst, bsoncore.Type(v.Type), name)
	dst = append(dst, v.Value...)
	dst = append(dst, 0)
	return bsoncore.UpdateLength(dst, idx, int32(len(dst)))
}

// integral reads an integer argument ($slice, $position).
func integral(v bson.RawValue) (int64, bool) {
	switch v.Type {
	case bson.TypeInt32:
		return int64(v.Int32()), true
	case bson.TypeInt64:
		return max(min(v.Int64(), math.MaxInt32), math.MinInt32), true
	case bson.TypeDouble:
		f := v.Double()
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, false
		}
		if f > math.MaxInt32 {
			return math.MaxInt32, true
		}
		if f < math.MinInt32 {
			return math.MinInt32, true
		}
		return int64(f), true
	case bson.TypeDecimal128:
		return integral(doubleVal(asFloatAny(v)))
	}
	return 0, false
}

func (o *op) parsePush() error {
	if o.arg.Type != bson.TypeEmbeddedDocument {
		o.each = []bson.RawValue{o.arg}
		return nil
	}
	doc := bson.Raw(o.arg.Value)
	if _, err := doc.LookupErr("$each"); err != nil {
		// A document without $each is a value to push.
		o.each = []bson.RawValue{o.arg}
		return nil
	}
	elems, _ := doc.Elements()
	seen := make(map[string]bool, len(elems))
	for _, e := range elems {
		v := e.Value()
		if seen[e.Key()] {
			return mongoerr.New(mongoerr.BadValue, "Only one %s is supported.", e.Key())
		}
		seen[e.Key()] = true
		switch e.Key() {
		case "$each":
			if v.Type != bson.TypeArray {
				return mongoerr.New(mongoerr.BadValue,
					"The argument to $each in $push must be an array but it was of type: %s", typeName(v.Type))
			}
			o.each = rawElems(v)
		case "$slice":
			n, ok := integral(v)
			if !ok {
				return mongoerr.New(mongoerr.BadValue,
					"The value for $slice must be an integer value but was given type: %s", typeName(v.Type))
			}
			o.hasSlice, o.slice = true, n
		case "$position":
			n, ok := integral(v)
			if !ok {
				return mongoerr.New(mongoerr.BadValue,
					"The value for $position must be an integer value, not of type: %s", typeName(v.Type))
			}
			o.hasPosition, o.position = true, n
		case "$sort":
			s, err := parsePushSort(v)
			if err != nil {
				return err
			}
			o.sort = s
		default:
			return mongoerr.New(mongoerr.BadValue, "Unrecognized clause in $push: %s", e.Key())
		}
	}
	return nil
}

func (o *op) parseAddToSet() error {
	if o.arg.Type == bson.TypeEmbeddedDocument {
		elems, _ := bson.Raw(o.arg.Value).Elements()
		if len(elems) > 0 && elems[0].Key() == "$each" {
			v := elems[0].Value()
			if v.Type != bson.TypeArray {
				return mongoerr.New(mongoerr.TypeMismatch,
					"The argument to $each in $addToSet must be an array but it was of type %s", typeName(v.Type))
			}
			if len(elems) > 1 {
				return mongoerr.New(mongoerr.BadValue,
					"Found unexpected fields after $each in $addToSet: %s", formatValue(o.arg))
			}
			o.each = rawElems(v)
			return nil
		}
	}
	o.each = []bson.RawValue{o.arg}
	return nil
}

// pushSort is a $push $sort: the whole element (dir only) or a pattern of
// fields.
type pushSort struct {
	dir    int // whole-element direction when fields is empty
	fields []sortField
}

type sortField struct {
	path []string
	dir  int
}

const badSort = "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort embedded fields"

func sortDir(v bson.RawValue) (int, bool) {
	if !isNumber(v.Type) {
		return 0, false
	}
	switch asFloatAny(v) {
	case 1:
		return 1, true
	case -1:
		return -1, true
	}
	return 0, false
}

func parsePushSort(v bson.RawValue) (*pushSort, error) {
	switch {
	case isNumber(v.Type):
		d, ok := sortDir(v)
		if !ok {
			return nil, mongoerr.New(mongoerr.BadValue, "The $sort element value must be either 1 or -1")
		}
		return &pushSort{dir: d}, nil
	case v.Type != bson.TypeEmbeddedDocument:
		return nil, mongoerr.New(mongoerr.BadValue, "%s", badSort)
	}
	elems, _ := bson.Raw(v.Value).Elements()
	if len(elems) == 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "The $sort pattern is empty when it should be a set of fields.")
	}
	s := &pushSort{}
	for _, e := range elems {
		d, ok := sortDir(e.Value())
		if !ok {
			return nil, mongoerr.New(mongoerr.BadValue, "The $sort element value must be either 1 or -1")
		}
		k := e.Key()
		if k == "" {
			return nil, mongoerr.New(mongoerr.BadValue, "The $sort field cannot be empty")
		}
		comps := strings.Split(k, ".")
		for _, c := range comps {
			if c == "" {
				return nil, mongoerr.New(mongoerr.BadValue,
					"The $sort field is a dotted field but has an empty part: %s", k)
			}
		}
		if len(comps) > maxPathDepth {
			return nil, mongoerr.New(mongoerr.BadValue, "The $sort field is too deep: %s", cut(k))
		}
		s.fields = append(s.fields, sortField{path: comps, dir: d})
	}
	return s, nil
}

// sortKey returns the value an element sorts by for one pattern field: the
// value at the dotted path (array elements reachable by index only, an
// array value compared whole), null when missing, as MongoDB's $push $sort
// extracts it.
func sortKey(e bson.RawValue, path []string) bson.RawValue {
	for _, c := range path {
		e = lookupRaw(e, c)
		if e.Type == 0 {
			return bson.RawValue{Type: bson.TypeNull}
		}
	}
	return e
}

func (s *pushSort) sortValues(vals []value) {
	raws := make([]bson.RawValue, len(vals))
	for i := range vals {
		raws[i] = vals[i].rawValue()
	}
	idx := make([]int, len(vals))
	for i := range idx {
		idx[i] = i
	}
	// keyed[i*nf+k] is element i's value for pattern field k.
	nf := len(s.fields)
	var keyed []bson.RawValue
	if nf > 0 {
		keyed = make([]bson.RawValue, len(vals)*nf)
		for i, r := range raws {
			ks := keyed[i*nf : (i+1)*nf]
			for j, f := range s.fields {
				if r.Type != bson.TypeEmbeddedDocument {
					// Non-documents have none of the pattern's fields.
					ks[j] = bson.RawValue{Type: bson.TypeNull}
					continue
				}
				ks[j] = sortKey(r, f.path)
			}
		}
	}
	// Sorting indexes with the original position as the last key keeps
	// equal elements in order (a stable sort) with pdqsort's speed.
	slices.SortFunc(idx, func(i, j int) int {
		if len(s.fields) == 0 {
			if c := keys.Compare(raws[i], raws[j]) * s.dir; c != 0 {
				return c
			}
			return i - j
		}
		for k, f := range s.fields {
			if c := keys.Compare(keyed[i*nf+k], keyed[j*nf+k]) * f.dir; c != 0 {
				return c
			}
		}
		return i - j
	})
	out := make([]value, len(vals))
	for k, i := range idx {
		out[k] = rawVal(raws[i])
	}
	copy(vals, out)
}

// pullMatcher decides which elements $pull removes.
type pullMatcher struct {
	kind   int // pullEqual, pullObject, pullWrapped
	equal  bson.RawValue
	filter *query.Filter
}

const (
	pullEqual = iota
	pullObject
	pullWrapped
)

// pullWrapName is the field a scalar element is wrapped in so that an
// operator condition ({$gte: 6}) can be matched against it.
const pullWrapName = "v"

// pathAcceptingOps are the query operators that apply to a value; a $pull
// condition starting with one of them is matched against each element
// itself, any other document is matched against elements as a query.
var pathAcceptingOps = map[string]bool{
	"$eq": true, "$ne": true, "$gt": true, "$gte": true, "$lt": true, "$lte": true,
	"$in": true, "$nin": true, "$exists": true, "$type": true, "$regex": true,
	"$options": true, "$elemMatch": true, "$size": true, "$all": true, "$mod": true,
	"$not": true, "$bitsAllSet": true, "$bitsAnySet": true, "$bitsAllClear": true,
	"$bitsAnyClear": true,
}

func newPullMatcher(arg bson.RawValue) (*pullMatcher, error) {
	switch arg.Type {
	case bson.TypeEmbeddedDocument:
		elems, _ := bson.Raw(arg.Value).Elements()
		if len(elems) > 0 && pathAcceptingOps[elems[0].Key()] {
			f, err := query.ParseFilter(wrapValue(pullWrapName, arg))
			if err != nil {
				return nil, err
			}
			return &pullMatcher{kind: pullWrapped, filter: f}, nil
		}
		f, err := query.ParseFilter(bson.Raw(arg.Value))
		if err != nil {
			return nil, err
		}
		return &pullMatcher{kind: pullObject, filter: f}, nil
	case bson.TypeRegex:
		f, err := query.ParseFilter(wrapValue(pullWrapName, arg))
		if err != nil {
			return nil, err
		}
		return &pullMatcher{kind: pullWrapped, filter: f}, nil
	}
	return &pullMatcher{kind: pullEqual, equal: arg}, nil
}

func (m *pullMatcher) match(e bson.RawValue) bool {
	switch m.kind {
	case pullObject:
		return e.Type == bson.TypeEmbeddedDocument && m.filter.Match(e.Value)
	case pullWrapped:
		return m.filter.Match(wrapValue(pullWrapName, e))
	}
	return keys.Compare(e, m.equal) == 0
}
