package query

import (
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/expr"
	"github.com/psdb/psdb/pkg/keys"
)

// This file holds the parsed form of a filter: a tree of nodes evaluated on
// a whole document, whose leaves apply one value predicate to every value a
// path reaches (see path.go).

// matchState collects what a match produced besides the answer.
type matchState struct {
	// pos is the array position of the most recent leaf that matched
	// through an array (-1 if none); see Filter.MatchDetails.
	pos int
	// err is the first evaluation error ($expr); the document then does
	// not match.
	err error
}

type node interface {
	match(doc bson.Raw, st *matchState) bool
}

type andNode []node

func (n andNode) match(doc bson.Raw, st *matchState) bool {
	for _, c := range n {
		if !c.match(doc, st) {
			return false
		}
	}
	return true
}

type orNode []node

func (n orNode) match(doc bson.Raw, st *matchState) bool {
	saved := st.pos
	for _, c := range n {
		if c.match(doc, st) {
			return true
		}
		st.pos = saved
	}
	return false
}

type norNode []node

func (n norNode) match(doc bson.Raw, st *matchState) bool {
	for _, c := range n {
		sub := matchState{pos: -1}
		m := c.match(doc, &sub)
		if sub.err != nil && st.err == nil {
			st.err = sub.err
		}
		if m {
			return false
		}
	}
	return true
}

// notNode negates its child. The child's array position is not reported:
// a negation matches because nothing matched.
type notNode struct{ child node }

func (n notNode) match(doc bson.Raw, st *matchState) bool {
	sub := matchState{pos: -1}
	m := n.child.match(doc, &sub)
	if sub.err != nil && st.err == nil {
		st.err = sub.err
	}
	return !m
}

type constNode bool

func (n constNode) match(bson.Raw, *matchState) bool { return bool(n) }

// exprNode is $expr: the aggregation expression's value, coerced to bool.
type exprNode struct{ e expr.Expr }

func (n exprNode) match(doc bson.Raw, st *matchState) bool {
	v, err := n.e.Eval(&expr.Context{Root: doc})
	if err != nil {
		if st.err == nil {
			st.err = err
		}
		return false
	}
	return expr.Truthy(v)
}

// leafNode applies pred to the values path reaches.
type leafNode struct {
	path  string
	parts []string
	pred  valuePred
	// whole is set for predicates on the array itself ($size,
	// $elemMatch): a leaf array is then not expanded into its elements.
	whole bool
}

func newLeaf(path string, p valuePred) *leafNode {
	_, whole := p.(arrayPred)
	return &leafNode{path: path, parts: splitPath(path), pred: p, whole: whole}
}

func (n *leafNode) match(doc bson.Raw, st *matchState) bool {
	found := false
	walkDoc(doc, n.parts, !n.whole, -1, func(v bson.RawValue, pos int) bool {
		if ap, ok := n.pred.(arrayPred); ok {
			m, inner := ap.matchArray(v)
			if !m {
				return false
			}
			if pos < 0 {
				pos = inner
			}
		} else if !n.pred.matchValue(v) {
			return false
		}
		found = true
		if pos >= 0 {
			st.pos = pos
		}
		return true
	})
	return found
}

// valuePred tests one value; v.Type == 0 is the missing value.
type valuePred interface {
	matchValue(v bson.RawValue) bool
}

// arrayPred is a predicate on a whole array; matchArray also returns the
// index of the element that made it match (-1 if none).
type arrayPred interface {
	valuePred
	matchArray(v bson.RawValue) (bool, int)
}

type cmpOp int

const (
	opEQ cmpOp = iota
	opLT
	opLTE
	opGT
	opGTE
)

var cmpOpNames = map[cmpOp]string{opEQ: "$eq", opLT: "$lt", opLTE: "$lte", opGT: "$gt", opGTE: "$gte"}

// cmpPred is $eq/$lt/$lte/$gt/$gte. Values of different canonical types
// never compare, except that missing counts as null and MinKey/MaxKey
// bound everything (missing included); NaN equals NaN and is otherwise
// unordered. This is MongoDB's comparison match expression rule for rule.
type cmpPred struct {
	op   cmpOp
	rhs  bson.RawValue
	rank int
	nan  bool
}

func newCmp(op cmpOp, rhs bson.RawValue) *cmpPred {
	return &cmpPred{op: op, rhs: rhs, rank: keys.TypeRank(rhs.Type), nan: isNaN(rhs)}
}

func (p *cmpPred) inclusive() bool { return p.op == opEQ || p.op == opLTE || p.op == opGTE }

func (p *cmpPred) matchValue(v bson.RawValue) bool {
	if v.Type == 0 || keys.TypeRank(v.Type) != p.rank {
		if p.rhs.Type == bson.TypeNull {
			// Missing counts as null (undefined does not).
			return v.Type == 0 && p.inclusive()
		}
		switch p.rhs.Type {
		case bson.TypeMaxKey:
			return p.op == opLT || p.op == opLTE
		case bson.TypeMinKey:
			return p.op == opGT || p.op == opGTE
		}
		return false
	}
	if vn := isNaN(v); vn || p.nan {
		return vn && p.nan && p.inclusive()
	}
	c := keys.Compare(v, p.rhs)
	switch p.op {
	case opEQ:
		return c == 0
	case opLT:
		return c < 0
	case opLTE:
		return c <= 0
	case opGT:
		return c > 0
	default:
		return c >= 0
	}
}

type regexPred struct{ re *compiledRegex }

func (p regexPred) matchValue(v bson.RawValue) bool { return p.re.matches(v) }

// inPred is $in: equality to any listed value (kept sorted for binary
// search) or a match of any listed regex; null in the list matches missing.
type inPred struct {
	values  []bson.RawValue
	regexes []*compiledRegex
	hasNull bool
}

func newIn(values []bson.RawValue, regexes []*compiledRegex) *inPred {
	sort.SliceStable(values, func(i, j int) bool { return keys.Compare(values[i], values[j]) < 0 })
	p := &inPred{values: values, regexes: regexes}
	for _, v := range values {
		if v.Type == bson.TypeNull {
			p.hasNull = true
		}
	}
	return p
}

func (p *inPred) matchValue(v bson.RawValue) bool {
	if v.Type == 0 {
		return p.hasNull
	}
	for _, re := range p.regexes {
		if re.matches(v) {
			return true
		}
	}
	i := sort.Search(len(p.values), func(i int) bool { return keys.Compare(p.values[i], v) >= 0 })
	return i < len(p.values) && keys.Compare(p.values[i], v) == 0
}

type existsPred struct{}

func (existsPred) matchValue(v bson.RawValue) bool { return v.Type != 0 }

// typePred is $type: any of the listed BSON types, or any number.
type typePred struct {
	types  []bson.Type
	number bool
}

func (p *typePred) matchValue(v bson.RawValue) bool {
	if v.Type == 0 {
		return false
	}
	if p.number && isNumber(v.Type) {
		return true
	}
	for _, t := range p.types {
		if v.Type == t {
			return true
		}
	}
	return false
}

// modPred is $mod: numbers truncated toward zero.
type modPred struct{ div, rem int64 }

func (p modPred) matchValue(v bson.RawValue) bool {
	n, ok := numberAsInt64(v)
	if !ok {
		return false
	}
	if p.div == -1 {
		return p.rem == 0
	}
	return n%p.div == p.rem
}

type sizePred struct{ n int }

func (p sizePred) matchValue(v bson.RawValue) bool {
	m, _ := p.matchArray(v)
	return m
}

func (p sizePred) matchArray(v bson.RawValue) (bool, int) {
	return v.Type == bson.TypeArray && arrayLen(v.Value) == p.n, -1
}

// elemMatchObjPred is {$elemMatch: {<filter>}}: some element that is a
// document (or an array, seen as a document keyed "0", "1", ...) matches
// the whole sub-filter.
type elemMatchObjPred struct{ sub node }

func (p elemMatchObjPred) matchValue(v bson.RawValue) bool {
	m, _ := p.matchArray(v)
	return m
}

func (p elemMatchObjPred) matchArray(v bson.RawValue) (bool, int) {
	if v.Type != bson.TypeArray {
		return false, -1
	}
	it := newElemIter(v.Value)
	st := &matchState{}
	for i := 0; ; i++ {
		_, e, ok := it.next()
		if !ok {
			return false, -1
		}
		if e.Type != bson.TypeEmbeddedDocument && e.Type != bson.TypeArray {
			continue
		}
		*st = matchState{pos: -1}
		if p.sub.match(e.Value, st) {
			return true, i
		}
	}
}

// elemMatchValuePred is {$elemMatch: {$op: ...}}: some element satisfies
// every operator, each applied to the element itself.
type elemMatchValuePred struct{ preds []valuePred }

func (p elemMatchValuePred) matchValue(v bson.RawValue) bool {
	m, _ := p.matchArray(v)
	return m
}

func (p elemMatchValuePred) matchArray(v bson.RawValue) (bool, int) {
	if v.Type != bson.TypeArray {
		return false, -1
	}
	it := newElemIter(v.Value)
	for i := 0; ; i++ {
		_, e, ok := it.next()
		if !ok {
			return false, -1
		}
		if allValue(p.preds, e) {
			return true, i
		}
	}
}

func allValue(preds []valuePred, v bson.RawValue) bool {
	for _, p := range preds {
		if !p.matchValue(v) {
			return false
		}
	}
	return true
}

// notValuePred and andValuePred are $not and $all inside a value-form
// $elemMatch, applied to one element.
type notValuePred struct{ preds []valuePred }

func (p notValuePred) matchValue(v bson.RawValue) bool { return !allValue(p.preds, v) }

type andValuePred struct{ preds []valuePred }

func (p andValuePred) matchValue(v bson.RawValue) bool { return allValue(p.preds, v) }

type falsePred struct{}

func (falsePred) matchValue(bson.RawValue) bool { return false }
