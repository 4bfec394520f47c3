package query

import (
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/expr"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// MaxDepth is the deepest nesting of a filter ($and/$or/$nor entries,
// $elemMatch and $not each add a level) ParseFilter accepts, as in
// MongoDB; deeper filters fail with BadValue "exceeded maximum query tree
// depth of 100".
const MaxDepth = 100

// Filter is a parsed query filter. It is immutable and safe for concurrent
// use.
type Filter struct {
	root andNode
	raw  bson.Raw
}

// ParseFilter parses a MongoDB query filter. An empty or nil filter matches
// every document. Errors carry MongoDB's codes: BadValue for unknown
// operators ("unknown operator: $foo", "unknown top level operator: $foo")
// and malformed arguments, TypeMismatch for a $type argument of the wrong
// type, Location51091 for a regex that does not compile, InvalidBSON for
// bytes that are not a document.
func ParseFilter(filter bson.Raw) (*Filter, error) {
	if len(filter) == 0 {
		return &Filter{}, nil
	}
	if err := filter.Validate(); err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.InvalidBSON, "filter is not a valid BSON document: %v", err)
	}
	root, err := parseDoc(filter, 0, false)
	if err != nil {
		return nil, err
	}
	return &Filter{root: root, raw: filter}, nil
}

// Raw returns the filter document the Filter was parsed from.
func (f *Filter) Raw() bson.Raw { return f.raw }

// Match reports whether doc matches. An evaluation error (only $expr can
// fail at run time, e.g. $divide by zero) counts as no match; use Evaluate
// to see it.
func (f *Filter) Match(doc bson.Raw) bool {
	ok, _, _ := f.Evaluate(doc)
	return ok
}

// MatchDetails reports whether doc matches and, for the positional `$`
// operator of updates and projections, the index of the matching element
// in the first array the query traversed implicitly (the most recent
// matching leaf wins, as in MongoDB); arrayPos is -1 when no array was
// traversed.
func (f *Filter) MatchDetails(doc bson.Raw) (ok bool, arrayPos int) {
	ok, pos, _ := f.Evaluate(doc)
	return ok, pos
}

// Evaluate is MatchDetails with the evaluation error of $expr, which
// MongoDB reports as the failure of the whole operation.
func (f *Filter) Evaluate(doc bson.Raw) (ok bool, arrayPos int, err error) {
	return f.evaluate(doc, &matchState{})
}

// evaluate is Evaluate with a caller-provided state, so that loops over
// many documents allocate it once.
func (f *Filter) evaluate(doc bson.Raw, st *matchState) (ok bool, arrayPos int, err error) {
	*st = matchState{pos: -1}
	ok = f.root.match(doc, st)
	if st.err != nil {
		return false, -1, st.err
	}
	if !ok {
		return false, -1, nil
	}
	return true, st.pos, nil
}

func depthError(doc bson.Raw) error {
	s := "a document of " + strconv.Itoa(len(doc)) + " bytes"
	if len(doc) <= 4096 {
		s = doc.String()
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return mongoerr.New(mongoerr.BadValue, "exceeded maximum query tree depth of %d at %s", MaxDepth, s)
}

// parseDoc parses a filter document (the top level, an $and/$or/$nor entry
// or an object $elemMatch) into a conjunction.
func parseDoc(doc bson.Raw, level int, inElemMatch bool) (andNode, error) {
	if level > MaxDepth {
		return nil, depthError(doc)
	}
	var out andNode
	it := newElemIter(doc)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		key := string(k)
		if strings.HasPrefix(key, "$") {
			n, err := parseTopOperator(key, v, level, inElemMatch)
			if err != nil {
				return nil, err
			}
			if n != nil {
				out = append(out, n)
			}
			continue
		}
		nodes, err := parsePath(key, v, level)
		if err != nil {
			return nil, err
		}
		out = append(out, nodes...)
	}
	return out, nil
}

func parseTopOperator(key string, v bson.RawValue, level int, inElemMatch bool) (node, error) {
	switch key {
	case "$and", "$or", "$nor":
		if v.Type != bson.TypeArray {
			return nil, mongoerr.New(mongoerr.BadValue, "%s must be an array", key)
		}
		var children []node
		it := newElemIter(v.Value)
		for {
			_, e, ok := it.next()
			if !ok {
				break
			}
			if e.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(mongoerr.BadValue, "$or/$and/$nor entries need to be full objects")
			}
			c, err := parseDoc(e.Value, level+1, inElemMatch)
			if err != nil {
				return nil, err
			}
			children = append(children, c)
		}
		if len(children) == 0 {
			return nil, mongoerr.New(mongoerr.BadValue, "$and/$or/$nor must be a nonempty array")
		}
		switch key {
		case "$and":
			return andNode(children), nil
		case "$or":
			return orNode(children), nil
		default:
			return norNode(children), nil
		}
	case "$expr":
		if inElemMatch {
			return nil, mongoerr.New(mongoerr.BadValue, "$expr can only be applied to the top-level document")
		}
		e, err := expr.Parse(v)
		if err != nil {
			return nil, err
		}
		return exprNode{e: e}, nil
	case "$comment":
		return nil, nil
	case "$alwaysTrue":
		return constNode(true), nil
	case "$alwaysFalse":
		return constNode(false), nil
	case "$where", "$text", "$jsonSchema", "$sampleRate", "$search":
		return nil, mongoerr.New(mongoerr.BadValue, "%s is not supported by PSDB", key)
	}
	return nil, mongoerr.New(mongoerr.BadValue, "unknown top level operator: %s", key)
}

// isOperatorDoc reports whether v is an operator document ({$gt: 1}) rather
// than a literal document to compare with; DBRef documents ({$ref, $id})
// are literals.
func isOperatorDoc(v bson.RawValue) bool {
	if v.Type != bson.TypeEmbeddedDocument {
		return false
	}
	it := newElemIter(v.Value)
	k, _, ok := it.next()
	if !ok || len(k) == 0 || k[0] != '$' {
		return false
	}
	switch string(k) {
	case "$ref", "$id", "$db":
		return false
	}
	return true
}

// parsePath parses `path: value`.
func parsePath(path string, v bson.RawValue, level int) ([]node, error) {
	switch {
	case isOperatorDoc(v):
		t, err := parseOps(path, v.Value, level)
		if err != nil {
			return nil, err
		}
		return t.nodes(path), nil
	case v.Type == bson.TypeRegex:
		p, err := regexFromValue(v)
		if err != nil {
			return nil, err
		}
		return []node{newLeaf(path, p)}, nil
	default:
		return []node{newLeaf(path, newCmp(opEQ, v))}, nil
	}
}

func regexFromValue(v bson.RawValue) (valuePred, error) {
	pat, opts, ok := v.RegexOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.BadValue, "malformed regular expression")
	}
	re, err := compileRegex(pat, opts)
	if err != nil {
		return nil, err
	}
	return regexPred{re: re}, nil
}

// opTree is the result of parsing an operator document: a conjunction of
// value predicates and negated conjunctions. It becomes leaf nodes on a
// path (nodes) or, inside a value-form $elemMatch, one value predicate
// (valuePred): a negation applies to the whole path in the first case and
// to one element in the second, as in MongoDB.
type opTree struct {
	preds []valuePred
	nots  []opTree
	// also holds $all's conjunction, kept flat in preds.
}

func (t opTree) nodes(path string) []node {
	var out []node
	for _, p := range t.preds {
		out = append(out, newLeaf(path, p))
	}
	for _, n := range t.nots {
		out = append(out, notNode{child: andNode(n.nodes(path))})
	}
	return out
}

func (t opTree) valuePred() valuePred {
	preds := append([]valuePred(nil), t.preds...)
	for _, n := range t.nots {
		preds = append(preds, notValuePred{preds: []valuePred{n.valuePred()}})
	}
	if len(preds) == 1 {
		return preds[0]
	}
	return andValuePred{preds: preds}
}

// notSupported lists operators MongoDB knows that PSDB does not implement.
var notSupported = map[string]bool{
	"$near": true, "$nearSphere": true, "$geoWithin": true, "$geoIntersects": true, "$within": true,
	"$where": true, "$text": true, "$jsonSchema": true,
}

// parseOps parses an operator document on path.
func parseOps(path string, ops bson.Raw, level int) (opTree, error) {
	var t opTree
	if level > MaxDepth {
		return t, depthError(ops)
	}
	// $regex and $options belong together wherever they appear.
	var regex, options bson.RawValue
	hasRegex, hasOptions := false, false
	it := newElemIter(ops)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		op := string(k)
		switch op {
		case "$eq":
			t.preds = append(t.preds, newCmp(opEQ, v))
		case "$ne":
			if v.Type == bson.TypeRegex {
				return t, mongoerr.New(mongoerr.BadValue, "Can't have regex as arg to $ne.")
			}
			t.nots = append(t.nots, opTree{preds: []valuePred{newCmp(opEQ, v)}})
		case "$lt", "$lte", "$gt", "$gte":
			t.preds = append(t.preds, newCmp(map[string]cmpOp{"$lt": opLT, "$lte": opLTE, "$gt": opGT, "$gte": opGTE}[op], v))
		case "$in", "$nin":
			p, err := parseIn(op, v)
			if err != nil {
				return t, err
			}
			if op == "$in" {
				t.preds = append(t.preds, p)
			} else {
				t.nots = append(t.nots, opTree{preds: []valuePred{p}})
			}
		case "$exists":
			if truthy(v) {
				t.preds = append(t.preds, existsPred{})
			} else {
				t.nots = append(t.nots, opTree{preds: []valuePred{existsPred{}}})
			}
		case "$type":
			p, err := parseType(v)
			if err != nil {
				return t, err
			}
			t.preds = append(t.preds, p)
		case "$size":
			p, err := parseSize(v)
			if err != nil {
				return t, err
			}
			t.preds = append(t.preds, p)
		case "$mod":
			p, err := parseMod(v)
			if err != nil {
				return t, err
			}
			t.preds = append(t.preds, p)
		case "$regex":
			regex, hasRegex = v, true
		case "$options":
			options, hasOptions = v, true
		case "$all":
			preds, err := parseAll(path, v, level)
			if err != nil {
				return t, err
			}
			t.preds = append(t.preds, preds...)
		case "$elemMatch":
			p, err := parseElemMatch(path, v, level)
			if err != nil {
				return t, err
			}
			t.preds = append(t.preds, p)
		case "$not":
			n, err := parseNot(path, v, level)
			if err != nil {
				return t, err
			}
			t.nots = append(t.nots, n)
		case "$bitsAllSet", "$bitsAnySet", "$bitsAllClear", "$bitsAnyClear":
			p, err := parseBits(op, bitsOps[op], v)
			if err != nil {
				return t, err
			}
			t.preds = append(t.preds, p)
		default:
			if notSupported[op] {
				return t, mongoerr.New(mongoerr.BadValue, "%s is not supported by PSDB", op)
			}
			return t, mongoerr.New(mongoerr.BadValue, "unknown operator: %s", op)
		}
	}
	if hasOptions && !hasRegex {
		return t, mongoerr.New(mongoerr.BadValue, "$options needs a $regex")
	}
	if hasRegex {
		p, err := parseRegexOp(regex, options, hasOptions)
		if err != nil {
			return t, err
		}
		t.preds = append(t.preds, p)
	}
	return t, nil
}

func parseRegexOp(regex, options bson.RawValue, hasOptions bool) (valuePred, error) {
	opts := ""
	if hasOptions {
		s, ok := options.StringValueOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.BadValue, "$options has to be a string")
		}
		opts = s
	}
	var pat string
	switch regex.Type {
	case bson.TypeString:
		pat = regex.StringValue()
	case bson.TypeRegex:
		p, o, ok := regex.RegexOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.BadValue, "malformed regular expression")
		}
		if hasOptions && o != "" {
			return nil, mongoerr.New(51075, "options set in both $regex and $options")
		}
		pat = p
		if !hasOptions {
			opts = o
		}
	default:
		return nil, mongoerr.New(mongoerr.BadValue, "$regex has to be a string")
	}
	re, err := compileRegex(pat, opts)
	if err != nil {
		return nil, err
	}
	return regexPred{re: re}, nil
}

func parseIn(op string, v bson.RawValue) (*inPred, error) {
	if v.Type != bson.TypeArray {
		return nil, mongoerr.New(mongoerr.BadValue, "%s needs an array", op)
	}
	var values []bson.RawValue
	var regexes []*compiledRegex
	it := newElemIter(v.Value)
	for {
		_, e, ok := it.next()
		if !ok {
			break
		}
		switch {
		case e.Type == bson.TypeRegex:
			p, err := regexFromValue(e)
			if err != nil {
				return nil, err
			}
			regexes = append(regexes, p.(regexPred).re)
		case isOperatorDoc(e):
			return nil, mongoerr.New(mongoerr.BadValue, "cannot nest $ under %s", op)
		default:
			values = append(values, e)
		}
	}
	return newIn(values, regexes), nil
}

// typeAliases are $type's names (MongoDB's aliases), "number" aside.
var typeAliases = map[string]bson.Type{
	"double": bson.TypeDouble, "string": bson.TypeString, "object": bson.TypeEmbeddedDocument,
	"array": bson.TypeArray, "binData": bson.TypeBinary, "undefined": bson.TypeUndefined,
	"objectId": bson.TypeObjectID, "bool": bson.TypeBoolean, "date": bson.TypeDateTime,
	"null": bson.TypeNull, "regex": bson.TypeRegex, "dbPointer": bson.TypeDBPointer,
	"javascript": bson.TypeJavaScript, "symbol": bson.TypeSymbol,
	"javascriptWithScope": bson.TypeCodeWithScope, "int": bson.TypeInt32,
	"timestamp": bson.TypeTimestamp, "long": bson.TypeInt64, "decimal": bson.TypeDecimal128,
	"minKey": bson.TypeMinKey, "maxKey": bson.TypeMaxKey,
}

// TypeAlias returns the BSON type $type's name stands for ("number" is not
// a single type and returns false).
func TypeAlias(name string) (bson.Type, bool) {
	t, ok := typeAliases[name]
	return t, ok
}

func parseType(v bson.RawValue) (*typePred, error) {
	p := &typePred{}
	add := func(e bson.RawValue) error {
		switch {
		case e.Type == bson.TypeString:
			name := e.StringValue()
			if name == "number" {
				p.number = true
				return nil
			}
			t, ok := typeAliases[name]
			if !ok {
				return mongoerr.New(mongoerr.BadValue, "Unknown type name alias: %s", name)
			}
			p.types = append(p.types, t)
			return nil
		case isNumber(e.Type):
			f, _ := numberAsFloat(e)
			code := int64(f)
			if float64(code) != f || !validTypeCode(code) {
				return mongoerr.New(mongoerr.BadValue, "Invalid numerical type code: %v", formatNumber(f))
			}
			if code == -1 {
				p.types = append(p.types, bson.TypeMinKey)
			} else {
				p.types = append(p.types, bson.Type(code))
			}
			return nil
		}
		return mongoerr.New(mongoerr.TypeMismatch, "type must be represented as a number or a string")
	}
	if v.Type == bson.TypeArray {
		it := newElemIter(v.Value)
		n := 0
		for {
			_, e, ok := it.next()
			if !ok {
				break
			}
			n++
			if err := add(e); err != nil {
				return nil, err
			}
		}
		if n == 0 {
			return nil, mongoerr.New(mongoerr.FailedToParse, "%s must match at least one type", "$type")
		}
		return p, nil
	}
	if err := add(v); err != nil {
		return nil, err
	}
	return p, nil
}

func validTypeCode(c int64) bool {
	return c == -1 || c == 127 || (c >= 1 && c <= 19)
}

func formatNumber(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func parseSize(v bson.RawValue) (sizePred, error) {
	if !isNumber(v.Type) {
		return sizePred{}, mongoerr.New(mongoerr.BadValue, "$size needs a number")
	}
	f, ok := numberAsFloat(v)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return sizePred{}, mongoerr.New(mongoerr.BadValue, "$size must be a whole number")
	}
	if f < 0 {
		return sizePred{}, mongoerr.New(mongoerr.BadValue, "$size may not be negative")
	}
	if f > math.MaxInt32 {
		// No array is that long; the predicate can never match.
		return sizePred{n: -1}, nil
	}
	return sizePred{n: int(f)}, nil
}

func parseMod(v bson.RawValue) (modPred, error) {
	if v.Type != bson.TypeArray {
		return modPred{}, mongoerr.New(mongoerr.BadValue, "malformed mod, needs to be an array")
	}
	elems := arrayElems(v.Value)
	switch {
	case len(elems) < 2:
		return modPred{}, mongoerr.New(mongoerr.BadValue, "malformed mod, not enough elements")
	case len(elems) > 2:
		return modPred{}, mongoerr.New(mongoerr.BadValue, "malformed mod, too many elements")
	case !isNumber(elems[0].Type):
		return modPred{}, mongoerr.New(mongoerr.BadValue, "malformed mod, divisor not a number")
	case !isNumber(elems[1].Type):
		return modPred{}, mongoerr.New(mongoerr.BadValue, "malformed mod, remainder not a number")
	}
	div, ok := numberAsInt64(elems[0])
	if !ok {
		return modPred{}, mongoerr.New(mongoerr.BadValue, "malformed mod, divisor value is invalid")
	}
	rem, ok := numberAsInt64(elems[1])
	if !ok {
		return modPred{}, mongoerr.New(mongoerr.BadValue, "malformed mod, remainder value is invalid")
	}
	if div == 0 {
		return modPred{}, mongoerr.New(mongoerr.BadValue, "divisor cannot be 0")
	}
	return modPred{div: div, rem: rem}, nil
}

func parseAll(path string, v bson.RawValue, level int) ([]valuePred, error) {
	if v.Type != bson.TypeArray {
		return nil, mongoerr.New(mongoerr.BadValue, "$all needs an array")
	}
	elems := arrayElems(v.Value)
	if len(elems) == 0 {
		return []valuePred{falsePred{}}, nil
	}
	isElemMatch := func(e bson.RawValue) bool {
		if e.Type != bson.TypeEmbeddedDocument {
			return false
		}
		it := newElemIter(e.Value)
		k, _, ok := it.next()
		return ok && string(k) == "$elemMatch"
	}
	var out []valuePred
	if isElemMatch(elems[0]) {
		for _, e := range elems {
			if !isElemMatch(e) {
				return nil, mongoerr.New(mongoerr.BadValue, "$all/$elemMatch has to be consistent")
			}
			it := newElemIter(e.Value)
			_, arg, _ := it.next()
			if _, _, more := it.next(); more {
				return nil, mongoerr.New(mongoerr.BadValue, "$all/$elemMatch has to be consistent")
			}
			p, err := parseElemMatch(path, arg, level)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	}
	for _, e := range elems {
		switch {
		case e.Type == bson.TypeRegex:
			p, err := regexFromValue(e)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		case isOperatorDoc(e):
			return nil, mongoerr.New(mongoerr.BadValue, "no $ expressions in $all")
		default:
			out = append(out, newCmp(opEQ, e))
		}
	}
	return out, nil
}

// topLevelOnly are the operators that make an $elemMatch argument a filter
// on element documents rather than operators on element values.
var topLevelOnly = map[string]bool{
	"$and": true, "$or": true, "$nor": true, "$expr": true, "$where": true, "$text": true,
	"$comment": true, "$alwaysTrue": true, "$alwaysFalse": true, "$jsonSchema": true,
}

func parseElemMatch(path string, v bson.RawValue, level int) (arrayPred, error) {
	if v.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(mongoerr.BadValue, "$elemMatch needs an Object")
	}
	if level+1 > MaxDepth {
		return nil, depthError(v.Value)
	}
	it := newElemIter(v.Value)
	k, _, ok := it.next()
	if ok && len(k) > 0 && k[0] == '$' && !topLevelOnly[string(k)] && isOperatorDoc(v) {
		t, err := parseOps(path, v.Value, level+1)
		if err != nil {
			return nil, err
		}
		return elemMatchValuePred{preds: []valuePred{t.valuePred()}}, nil
	}
	sub, err := parseDoc(v.Value, level+1, true)
	if err != nil {
		return nil, err
	}
	return elemMatchObjPred{sub: sub}, nil
}

func parseNot(path string, v bson.RawValue, level int) (opTree, error) {
	switch v.Type {
	case bson.TypeRegex:
		p, err := regexFromValue(v)
		if err != nil {
			return opTree{}, err
		}
		return opTree{preds: []valuePred{p}}, nil
	case bson.TypeEmbeddedDocument:
		it := newElemIter(v.Value)
		if _, _, ok := it.next(); !ok {
			return opTree{}, mongoerr.New(mongoerr.BadValue, "$not cannot be empty")
		}
		return parseOps(path, v.Value, level+1)
	}
	return opTree{}, mongoerr.New(mongoerr.BadValue, "$not needs a regex or a document")
}

// truthy is MongoDB's BSONElement::trueValue, used for $exists.
func truthy(v bson.RawValue) bool {
	switch v.Type {
	case 0, bson.TypeNull, bson.TypeUndefined:
		return false
	case bson.TypeBoolean:
		b, ok := v.BooleanOK()
		return ok && b
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		f, ok := numberAsFloat(v)
		return ok && f != 0
	}
	return true
}
