package query

import (
	"encoding/binary"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/expr"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// Find projections, with MongoDB's (4.4+) rules:
//
//   - {a: 1, "b.c": 1} includes fields (and _id unless {_id: 0}); included
//     fields keep the document's order; a sub-path through an array applies
//     to each element that is a document (other elements are dropped); a
//     sub-path into a scalar drops the field; {a: {b: 1}} is {"a.b": 1}.
//   - {a: 0} excludes fields and keeps everything else (scalars inside
//     arrays are kept).
//   - Mixing is refused (31253, 31254) except for _id; overlapping paths are
//     refused (31249, 31250); an empty sub-object is 51270.
//   - {a: {$slice: n | [skip, limit]}} trims an array in place; alone (or
//     with {_id: 0}) it is an exclusion projection.
//   - {a: {$elemMatch: {...}}} keeps the first matching element of a
//     top-level array (31275 for nested paths); it makes an inclusion
//     projection and the field comes after the other included fields.
//   - {"a.$": 1} keeps the element of the first array on the path that the
//     query matched (Filter.MatchDetails); 51246 when the query did not
//     match through that array. Only one positional per projection (31276);
//     not with $elemMatch (31255/31256), not with exclusion (31395), only at
//     the end of a path (31394).
//   - Other values ("$x", literals, {$add: ...}) are computed fields,
//     evaluated by pkg/expr against the whole document, appended after the
//     included fields; not allowed in exclusion projections (31252, 31310).

type projKind int

const (
	projTree projKind = iota
	projInclude
	projExclude
	projSlice
	projElemMatch
	projPositional
	projExpr
)

type projNode struct {
	kind projKind
	// tree children, in specification order.
	names    []string
	children map[string]*projNode
	// onPositional marks tree nodes on the path to the positional leaf.
	onPositional bool
	// $slice
	skip     int
	hasSkip  bool
	limit    int
	elemPred arrayPred
	e        expr.Expr
}

func newTree() *projNode { return &projNode{kind: projTree, children: map[string]*projNode{}} }

func (n *projNode) add(name string, c *projNode) {
	n.names = append(n.names, name)
	n.children[name] = c
}

// hasComputed reports whether the subtree computes values (so that it
// produces fields even where the document has none).
func (n *projNode) hasComputed() bool {
	if n.kind == projExpr {
		return true
	}
	for _, c := range n.children {
		if c.hasComputed() {
			return true
		}
	}
	return false
}

// Projection is a parsed find projection. It is immutable and safe for
// concurrent use.
type Projection struct {
	root      *projNode
	inclusion bool
	// positional is set when the projection uses "a.$".
	positional bool
	empty      bool
}

type projParse struct {
	typeSet        bool
	inclusion      bool
	idSpecified    bool
	idIncluded     bool
	idExcluded     bool
	hasPositional  bool
	hasElemMatch   bool
	hasSlice       bool
	hasComputedAny bool
}

func (c *projParse) setType(inclusion bool, field string) error {
	if c.typeSet && c.inclusion != inclusion {
		if inclusion {
			return mongoerr.New(31253, "Cannot do inclusion on field %s in exclusion projection", field)
		}
		return mongoerr.New(31254, "Cannot do exclusion on field %s in inclusion projection", field)
	}
	c.typeSet, c.inclusion = true, inclusion
	return nil
}

// ParseProjection parses a find projection; an empty or nil spec returns
// documents whole. Errors carry MongoDB's codes (see the top of
// projection.go).
func ParseProjection(spec bson.Raw) (*Projection, error) {
	if len(spec) == 0 {
		return &Projection{empty: true}, nil
	}
	if err := spec.Validate(); err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.InvalidBSON, "projection is not a valid BSON document: %v", err)
	}
	ctx := &projParse{}
	root := newTree()
	it := newElemIter(spec)
	n := 0
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		n++
		name := string(k)
		if name == "_id" || strings.HasPrefix(name, "_id.") {
			ctx.idSpecified = true
		}
		if err := parseProjElement(ctx, name, v, root, true, 0); err != nil {
			return nil, err
		}
	}
	if n == 0 {
		return &Projection{empty: true}, nil
	}
	if !ctx.typeSet {
		switch {
		case ctx.hasSlice:
			ctx.inclusion = ctx.idIncluded
		case ctx.hasElemMatch:
			ctx.inclusion = true
		case ctx.idIncluded:
			ctx.inclusion = true
		default:
			ctx.inclusion = false
		}
	}
	if ctx.hasPositional {
		markPositional(root)
	}
	if !ctx.idSpecified && ctx.inclusion {
		root.add("_id", &projNode{kind: projInclude})
	}
	if !ctx.inclusion && ctx.idIncluded {
		// {_id: 1} in an exclusion projection changes nothing.
		delete(root.children, "_id")
	}
	return &Projection{root: root, inclusion: ctx.inclusion, positional: ctx.hasPositional}, nil
}

// validateProjPath checks a projection or sort path the way MongoDB's
// FieldPath does.
func validateProjPath(path string) error {
	if path == "" {
		return mongoerr.New(40352, "FieldPath cannot be constructed with empty string")
	}
	for _, c := range strings.Split(path, ".") {
		if c == "" {
			return mongoerr.New(15998, "FieldPath field names may not be empty strings.")
		}
		if c[0] == '$' {
			return mongoerr.New(16410, "FieldPath field names may not start with '$'. Consider using $getField or $setField.")
		}
	}
	return nil
}

// addAt inserts n at the dotted path under parent.
func addAt(parent *projNode, path string, n *projNode) (*projNode, error) {
	parts := strings.Split(path, ".")
	cur := parent
	for i, p := range parts {
		child := cur.children[p]
		if i == len(parts)-1 {
			if child != nil {
				if child.kind == projTree && n.kind == projTree {
					return child, nil
				}
				return nil, mongoerr.New(31250, "Path collision at %s", path)
			}
			cur.add(p, n)
			return n, nil
		}
		if child == nil {
			child = newTree()
			cur.add(p, child)
		} else if child.kind != projTree {
			return nil, mongoerr.New(31249, "Path collision at %s remaining portion %s", path, strings.Join(parts[i+1:], "."))
		}
		cur = child
	}
	return nil, nil
}

func isInclusionType(t bson.Type) bool {
	switch t {
	case bson.TypeBoolean, bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		return true
	}
	return false
}

func parseProjElement(ctx *projParse, name string, v bson.RawValue, parent *projNode, atRoot bool, depth int) error {
	if depth > MaxDepth {
		return mongoerr.New(mongoerr.BadValue, "projection is nested deeper than %d levels", MaxDepth)
	}
	positional := strings.HasSuffix(name, ".$")
	if strings.Contains(name, ".$.") {
		return mongoerr.New(31394, "As of 4.4, it's illegal to specify positional operator in the middle of a path.Positional projection may only be used at the end, for example: a.b.$. If the query previously used a form like a.b.$.d, remove the parts following the '$' and the results will be equivalent.")
	}
	path := name
	if positional {
		if name == ".$" {
			return mongoerr.New(5392900, "Projection on field %s is invalid", name)
		}
		path = strings.TrimSuffix(name, ".$")
	}
	isTopID := name == "_id" && atRoot
	switch {
	case v.Type == bson.TypeEmbeddedDocument:
		if positional {
			return mongoerr.New(31271, "positional projection cannot be used with an expression or sub object")
		}
		return parseProjSubObject(ctx, path, v.Value, parent, atRoot, depth)
	case isInclusionType(v.Type):
		if err := validateProjPath(path); err != nil {
			return err
		}
		if truthy(v) {
			if positional {
				if ctx.hasPositional {
					return mongoerr.New(31276, "Cannot specify more than one positional projection per query.")
				}
				if ctx.hasElemMatch {
					return mongoerr.New(31256, "Cannot specify positional operator and $elemMatch.")
				}
				if _, err := addAt(parent, path, &projNode{kind: projPositional}); err != nil {
					return err
				}
				ctx.hasPositional = true
			} else {
				if _, err := addAt(parent, path, &projNode{kind: projInclude}); err != nil {
					return err
				}
				if isTopID {
					ctx.idIncluded = true
				}
			}
			if !isTopID {
				return ctx.setType(true, name)
			}
			return nil
		}
		if positional {
			return mongoerr.New(31395, "positional projection cannot be used with exclusion")
		}
		if _, err := addAt(parent, path, &projNode{kind: projExclude}); err != nil {
			return err
		}
		if isTopID {
			ctx.idExcluded = true
			return nil
		}
		return ctx.setType(false, name)
	default:
		if positional {
			return mongoerr.New(31308, "positional projection cannot be used with a literal")
		}
		if err := validateProjPath(path); err != nil {
			return err
		}
		e, err := expr.Parse(v)
		if err != nil {
			return err
		}
		if _, err := addAt(parent, path, &projNode{kind: projExpr, e: e}); err != nil {
			return err
		}
		if ctx.typeSet && !ctx.inclusion {
			return mongoerr.New(31310, "Cannot use an expression %s: %s in an exclusion projection", name, v.String())
		}
		ctx.typeSet, ctx.inclusion = true, true
		return nil
	}
}

// markPositional sets onPositional on every node on the path to the
// positional leaf and reports whether n's subtree holds it.
func markPositional(n *projNode) bool {
	if n.kind == projPositional {
		n.onPositional = true
		return true
	}
	for _, c := range n.children {
		if markPositional(c) {
			n.onPositional = true
			return true
		}
	}
	return false
}

func parseProjSubObject(ctx *projParse, path string, obj bson.Raw, parent *projNode, atRoot bool, depth int) error {
	it := newElemIter(obj)
	k, arg, ok := it.next()
	if !ok {
		return mongoerr.New(51270, "Invalid empty sub-projection: %s", path)
	}
	_, _, more := it.next()
	if err := validateProjPath(path); err != nil {
		return err
	}
	if !more && len(k) > 0 && k[0] == '$' {
		op := string(k)
		switch op {
		case "$slice":
			n, err := parseSlice(arg)
			if err != nil {
				return err
			}
			if _, err := addAt(parent, path, n); err != nil {
				return err
			}
			ctx.hasSlice = true
			return nil
		case "$elemMatch":
			if arg.Type != bson.TypeEmbeddedDocument {
				return mongoerr.New(31274, "elemMatch: Invalid argument, object required, but got %s", arg.Type)
			}
			if ctx.hasPositional {
				return mongoerr.New(31255, "Cannot specify positional operator and $elemMatch.")
			}
			if !atRoot || strings.Contains(path, ".") {
				return mongoerr.New(31275, "Cannot use $elemMatch projection on a nested field.")
			}
			p, err := parseElemMatch(path, arg, 0)
			if err != nil {
				return err
			}
			if _, err := addAt(parent, path, &projNode{kind: projElemMatch, elemPred: p}); err != nil {
				return err
			}
			ctx.hasElemMatch = true
			return nil
		case "$meta":
			return mongoerr.New(mongoerr.BadValue, "$meta projections are not supported by PSDB (no text or search scores)")
		}
		e, err := expr.Parse(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: obj})
		if err != nil {
			if mongoerr.CodeOf(err) == mongoerr.InvalidPipelineOperator {
				return mongoerr.New(31325, "Unknown expression %s", op)
			}
			return err
		}
		if ctx.typeSet && !ctx.inclusion {
			return mongoerr.New(31252, "Cannot use expression other than $meta in exclusion projection")
		}
		ctx.typeSet, ctx.inclusion = true, true
		_, err = addAt(parent, path, &projNode{kind: projExpr, e: e})
		return err
	}
	sub, err := addAt(parent, path, newTree())
	if err != nil {
		return err
	}
	it = newElemIter(obj)
	for {
		k, v, ok := it.next()
		if !ok {
			return nil
		}
		if err := parseProjElement(ctx, string(k), v, sub, false, depth+1); err != nil {
			return err
		}
	}
}

func parseSlice(arg bson.RawValue) (*projNode, error) {
	if isNumber(arg.Type) {
		n, ok := numberAsInt64(arg)
		if !ok {
			f, _ := numberAsFloat(arg)
			n = clampInt(f)
		}
		return &projNode{kind: projSlice, limit: int(clamp32(n))}, nil
	}
	if arg.Type == bson.TypeArray {
		elems := arrayElems(arg.Value)
		if len(elems) != 2 {
			return nil, mongoerr.New(31272, "$slice array argument should be of form [skip, limit]")
		}
		if !isNumber(elems[0].Type) {
			return nil, mongoerr.New(31257, "$slice expects the skip argument to be a number, got %s", elems[0].Type)
		}
		if !isNumber(elems[1].Type) {
			return nil, mongoerr.New(31258, "$slice expects the limit argument to be a number, got %s", elems[1].Type)
		}
		skip, _ := numberAsInt64(elems[0])
		limit, _ := numberAsInt64(elems[1])
		if limit <= 0 {
			return nil, mongoerr.New(31259, "$slice limit must be positive, got %d", limit)
		}
		return &projNode{kind: projSlice, hasSkip: true, skip: int(clamp32(skip)), limit: int(clamp32(limit))}, nil
	}
	return nil, mongoerr.New(31273, "$slice only supports numbers and [skip, limit] arrays")
}

func clampInt(f float64) int64 {
	switch {
	case f > 1<<62:
		return 1 << 62
	case f < -(1 << 62):
		return -(1 << 62)
	case f != f:
		return 0
	}
	return int64(f)
}

func clamp32(n int64) int64 {
	const max = 1<<31 - 1
	switch {
	case n > max:
		return max
	case n < -max:
		return -max
	}
	return n
}

// applyCtx carries what Apply needs below the root.
type applyCtx struct {
	root    bson.Raw
	pos     int
	usedPos bool
}

// Apply returns doc projected. matchPos is the array position from
// Filter.MatchDetails, used by a positional ("a.$") projection.
func (p *Projection) Apply(doc bson.Raw, matchPos int) (bson.Raw, error) {
	if p == nil || p.empty {
		return doc, nil
	}
	ctx := &applyCtx{root: doc, pos: matchPos}
	if p.inclusion {
		return includeDoc(doc, p.root, ctx)
	}
	return excludeDoc(doc, p.root), nil
}

// IsInclusion reports whether the projection names the fields to keep
// (false for exclusion and for the empty projection).
func (p *Projection) IsInclusion() bool { return p != nil && !p.empty && p.inclusion }

// UsesPositional reports whether the projection needs the match position.
func (p *Projection) UsesPositional() bool { return p != nil && p.positional }

func beginDoc(dst []byte) ([]byte, int) {
	return append(dst, 0, 0, 0, 0), len(dst)
}

func endDoc(dst []byte, start int) []byte {
	dst = append(dst, 0)
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

func appendElem(dst []byte, key string, v bson.RawValue) []byte {
	dst = append(dst, byte(v.Type))
	dst = append(dst, key...)
	dst = append(dst, 0)
	return append(dst, v.Value...)
}

func buildArray(vals []bson.RawValue) bson.RawValue {
	b, start := beginDoc(nil)
	for i, v := range vals {
		b = appendElem(b, strconv.Itoa(i), v)
	}
	return bson.RawValue{Type: bson.TypeArray, Value: endDoc(b, start)}
}

func includeDoc(doc []byte, n *projNode, ctx *applyCtx) (bson.Raw, error) {
	out, start := beginDoc(nil)
	seen := make(map[string]bool, len(n.names))
	it := newElemIter(doc)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		c := n.children[string(k)]
		if c == nil || seen[string(k)] {
			continue
		}
		seen[string(k)] = true
		switch c.kind {
		case projInclude:
			out = appendElem(out, string(k), v)
		case projTree:
			r, keep, err := includeValue(v, c, ctx)
			if err != nil {
				return nil, err
			}
			if keep {
				out = appendElem(out, string(k), r)
			}
		case projSlice:
			out = appendElem(out, string(k), sliceValue(v, c))
		case projPositional:
			r, err := positionalValue(v, ctx)
			if err != nil {
				return nil, err
			}
			out = appendElem(out, string(k), r)
		}
	}
	// Computed fields and $elemMatch come after the included fields, in
	// specification order.
	for _, name := range n.names {
		c := n.children[name]
		switch c.kind {
		case projElemMatch:
			v, ok := lookupField(doc, name)
			if !ok || v.Type != bson.TypeArray {
				continue
			}
			m, i := c.elemPred.matchArray(v)
			if !m {
				continue
			}
			elems := arrayElems(v.Value)
			out = appendElem(out, name, buildArray(elems[i:i+1]))
		case projExpr:
			r, err := c.e.Eval(&expr.Context{Root: ctx.root})
			if err != nil {
				return nil, err
			}
			if r.Type != 0 {
				out = appendElem(out, name, r)
			}
		case projTree:
			if !seen[name] && c.hasComputed() {
				sub, err := includeDoc(emptyDoc, c, ctx)
				if err != nil {
					return nil, err
				}
				out = appendElem(out, name, docValue(sub))
			}
		}
	}
	return endDoc(out, start), nil
}

var emptyDoc = bson.Raw{5, 0, 0, 0, 0}

// includeValue applies a sub-projection to a value: documents are
// projected, arrays element by element (dropping scalars), scalars dropped.
func includeValue(v bson.RawValue, n *projNode, ctx *applyCtx) (bson.RawValue, bool, error) {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		d, err := includeDoc(v.Value, n, ctx)
		if err != nil {
			return bson.RawValue{}, false, err
		}
		return docValue(d), true, nil
	case bson.TypeArray:
		elems := arrayElems(v.Value)
		if n.onPositional && !ctx.usedPos {
			e, err := positionalElem(elems, ctx)
			if err != nil {
				return bson.RawValue{}, false, err
			}
			elems = []bson.RawValue{e}
			ctx.usedPos = true
			defer func() { ctx.usedPos = false }()
		}
		var out []bson.RawValue
		for _, e := range elems {
			switch e.Type {
			case bson.TypeEmbeddedDocument, bson.TypeArray:
				r, keep, err := includeValue(e, n, ctx)
				if err != nil {
					return bson.RawValue{}, false, err
				}
				if keep {
					out = append(out, r)
				}
			}
		}
		return buildArray(out), true, nil
	}
	if n.hasComputed() {
		d, err := includeDoc(emptyDoc, n, ctx)
		if err != nil {
			return bson.RawValue{}, false, err
		}
		return docValue(d), true, nil
	}
	return bson.RawValue{}, false, nil
}

// positionalCode is MongoDB's code when the query matched no element of the
// array a positional projection names.
const positionalCode mongoerr.Code = 51246

func positionalElem(elems []bson.RawValue, ctx *applyCtx) (bson.RawValue, error) {
	if ctx.pos < 0 {
		return bson.RawValue{}, mongoerr.New(positionalCode,
			"Executor error during find command :: caused by :: positional operator '.$' couldn't find a matching element in the array")
	}
	if ctx.pos >= len(elems) {
		return bson.RawValue{}, mongoerr.New(51247,
			"Executor error during find command :: caused by :: positional operator '.$' element mismatch")
	}
	return elems[ctx.pos], nil
}

func positionalValue(v bson.RawValue, ctx *applyCtx) (bson.RawValue, error) {
	if v.Type != bson.TypeArray || ctx.usedPos {
		return v, nil
	}
	e, err := positionalElem(arrayElems(v.Value), ctx)
	if err != nil {
		return bson.RawValue{}, err
	}
	return buildArray([]bson.RawValue{e}), nil
}

// sliceValue applies $slice to an array; other values are returned as is.
func sliceValue(v bson.RawValue, n *projNode) bson.RawValue {
	if v.Type != bson.TypeArray {
		return v
	}
	elems := arrayElems(v.Value)
	l := len(elems)
	var from, to int
	if !n.hasSkip {
		if n.limit >= 0 {
			from, to = 0, min(n.limit, l)
		} else {
			from, to = max(l+n.limit, 0), l
		}
	} else {
		if n.skip >= 0 {
			from = min(n.skip, l)
		} else {
			from = max(l+n.skip, 0)
		}
		to = min(from+n.limit, l)
	}
	return buildArray(elems[from:to])
}

func excludeDoc(doc []byte, n *projNode) bson.Raw {
	out, start := beginDoc(nil)
	it := newElemIter(doc)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		c := n.children[string(k)]
		if c == nil {
			out = appendElem(out, string(k), v)
			continue
		}
		switch c.kind {
		case projExclude:
		case projTree:
			out = appendElem(out, string(k), excludeValue(v, c))
		case projSlice:
			out = appendElem(out, string(k), sliceValue(v, c))
		case projElemMatch:
			// {a: 0, b: {$elemMatch: ...}}: b keeps its first matching
			// element, or disappears.
			if v.Type != bson.TypeArray {
				continue
			}
			if m, i := c.elemPred.matchArray(v); m {
				out = appendElem(out, string(k), buildArray(arrayElems(v.Value)[i:i+1]))
			}
		default:
			out = appendElem(out, string(k), v)
		}
	}
	return endDoc(out, start)
}

func excludeValue(v bson.RawValue, n *projNode) bson.RawValue {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		return docValue(excludeDoc(v.Value, n))
	case bson.TypeArray:
		elems := arrayElems(v.Value)
		out := make([]bson.RawValue, len(elems))
		for i, e := range elems {
			out[i] = excludeValue(e, n)
		}
		return buildArray(out)
	}
	return v
}
