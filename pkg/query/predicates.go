package query

import (
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Predicate is one index-usable condition of a filter's top-level
// conjunction: Path Op Values. Op is "$eq" (Values has one value), "$lt",
// "$lte", "$gt", "$gte" (one value) or "$in" (Values sorted in
// keys.Compare order, duplicates possible).
//
// Array semantics are the matcher's: {a: 5} matches a document whose a is
// [1, 5], so an index on a multikey path must hold one entry per element,
// as MongoDB's multikey indexes do. Equality to null also matches missing
// fields. A planner that uses a Predicate to choose index bounds must still
// run the full Filter on every fetched document (the Predicates are
// necessary conditions, not the whole filter). A Predicate is a plain value;
// its Values alias the filter's bytes and must not be modified.
type Predicate struct {
	Path   string
	Op     string
	Values []bson.RawValue
}

// Predicates returns the conditions of the filter's top-level conjunction
// (including nested $and) that an index can serve: comparisons and $in
// whose values are not arrays (array equality also matches elements equal
// to the whole array, which needs extra bounds) and not regexes. Negations,
// $or, $elemMatch, $exists, $type, $regex and $expr are left out.
func (f *Filter) Predicates() []Predicate {
	var out []Predicate
	eachTopLeaf(f.root, func(l *leafNode) {
		switch p := l.pred.(type) {
		case *cmpPred:
			if p.rhs.Type == bson.TypeArray {
				return
			}
			out = append(out, Predicate{Path: l.path, Op: cmpOpNames[p.op], Values: []bson.RawValue{p.rhs}})
		case *inPred:
			if len(p.regexes) > 0 {
				return
			}
			for _, v := range p.values {
				if v.Type == bson.TypeArray {
					return
				}
			}
			out = append(out, Predicate{Path: l.path, Op: "$in", Values: append([]bson.RawValue(nil), p.values...)})
		}
	})
	return out
}

// EqualityFields returns the filter's top-level equality conditions
// ({a: 1}, {"b.c": {$eq: 2}}, also inside a top-level $and), by path. An
// update with upsert seeds the inserted document from them, and a router
// targets a shard from the shard key's. Regex equality ({a: /x/}) is not an
// equality. When a path has two equality conditions the first one is
// returned (MongoDB refuses such an upsert; callers that care can compare
// with Predicates).
func (f *Filter) EqualityFields() map[string]bson.RawValue {
	out := make(map[string]bson.RawValue)
	eachTopLeaf(f.root, func(l *leafNode) {
		p, ok := l.pred.(*cmpPred)
		if !ok || p.op != opEQ {
			return
		}
		if _, dup := out[l.path]; !dup {
			out[l.path] = p.rhs
		}
	})
	return out
}

func eachTopLeaf(n andNode, fn func(*leafNode)) {
	for _, c := range n {
		switch c := c.(type) {
		case *leafNode:
			fn(c)
		case andNode:
			eachTopLeaf(c, fn)
		}
	}
}
