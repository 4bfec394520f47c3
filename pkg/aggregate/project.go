package aggregate

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/expr"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// projNode is one level of a $project, $addFields or $unset specification:
// the fields named at this level, in specification order.
type projNode struct {
	fields []*projField
	byName map[string]*projField
}

type projField struct {
	name    string
	include bool      // inclusion leaf ({a: 1})
	exclude bool      // exclusion leaf ({a: 0})
	expr    expr.Expr // computed field
	child   *projNode // sub-specification ({"a.b": ...} or {a: {b: ...}})
}

func newNode() *projNode { return &projNode{byName: map[string]*projField{}} }

// insert adds a leaf at a dotted path, refusing a path that collides with
// one already given.
func (n *projNode) insert(path string, leaf projField) error {
	parts, err := expr.ParsePath(path)
	if err != nil {
		return err
	}
	cur := n
	for i, part := range parts {
		f := cur.byName[part]
		last := i == len(parts)-1
		if last {
			if f != nil {
				return mongoerr.New(31250, "Invalid specification :: caused by :: Path collision at %s", path)
			}
			leaf.name = part
			l := leaf
			cur.byName[part] = &l
			cur.fields = append(cur.fields, &l)
			return nil
		}
		if f == nil {
			f = &projField{name: part, child: newNode()}
			cur.byName[part] = f
			cur.fields = append(cur.fields, f)
		} else if f.child == nil {
			return mongoerr.New(31249, "Invalid specification :: caused by :: Path collision at %s remaining portion %s", path, strings.Join(parts[i+1:], "."))
		}
		cur = f.child
	}
	return nil
}

// projMode is whether a $project includes or excludes fields.
type projMode int

const (
	modeUnknown projMode = iota
	modeInclude
	modeExclude
)

// projectStage is $project and $unset.
type projectStage struct {
	root      *projNode
	mode      projMode
	excludeID bool
	name      string
}

func parseProject(arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(15969, "$project specification must be an object")
	}
	s := &projectStage{root: newNode(), name: "$project"}
	if err := s.parseLevel(arg.Value, "", 0); err != nil {
		return nil, err
	}
	if len(s.root.fields) == 0 && !s.excludeID {
		return nil, mongoerr.New(51272, "Invalid $project :: caused by :: projection specification must have at least one field")
	}
	if s.mode == modeUnknown {
		// Only {_id: 1} is an inclusion; only {_id: 0} an exclusion.
		s.mode = modeExclude
		if f := s.root.byName["_id"]; f != nil && f.include {
			s.mode = modeInclude
		}
	}
	if s.excludeID && s.mode == modeExclude {
		if err := s.root.insert("_id", projField{exclude: true}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *projectStage) setMode(m projMode, path string) error {
	if s.mode == modeUnknown {
		s.mode = m
		return nil
	}
	if s.mode == m {
		return nil
	}
	if m == modeExclude {
		return mongoerr.New(31254, "Invalid $project :: caused by :: Cannot do exclusion on field %s in inclusion projection", path)
	}
	return mongoerr.New(31253, "Invalid $project :: caused by :: Cannot do inclusion on field %s in exclusion projection", path)
}

func (s *projectStage) parseLevel(spec []byte, prefix string, depth int) error {
	if depth > expr.MaxDepth {
		return mongoerr.New(mongoerr.BadValue, "projection exceeds the nesting depth limit of %d", expr.MaxDepth)
	}
	elems, err := expr.Elems(spec)
	if err != nil {
		return mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in $project")
	}
	for _, el := range elems {
		path := prefix + el.Key
		if strings.HasPrefix(el.Key, "$") {
			return mongoerr.New(16410, "Invalid $project :: caused by :: FieldPath field names may not start with '$'. Consider using $getField or $setField.")
		}
		v := el.Value
		switch v.Type {
		case bson.TypeBoolean, bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
			on := expr.Truthy(v)
			if path == "_id" {
				s.excludeID = !on
				if on {
					// An explicit {_id: 1} is an inclusion.
					if err := s.root.insert("_id", projField{include: true}); err != nil {
						return err
					}
				}
				continue
			}
			if on {
				if err := s.setMode(modeInclude, path); err != nil {
					return err
				}
				if err := s.root.insert(path, projField{include: true}); err != nil {
					return err
				}
			} else {
				if err := s.setMode(modeExclude, path); err != nil {
					return err
				}
				if err := s.root.insert(path, projField{exclude: true}); err != nil {
					return err
				}
			}
		case bson.TypeEmbeddedDocument:
			sub, err := expr.Elems(v.Value)
			if err != nil {
				return mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in $project")
			}
			if len(sub) == 0 {
				return mongoerr.New(51270, "Invalid $project :: caused by :: An empty sub-projection is not a valid value. Found empty object at path %s", path)
			}
			if strings.HasPrefix(sub[0].Key, "$") {
				if err := s.addComputed(path, v); err != nil {
					return err
				}
				continue
			}
			if err := s.parseLevel(v.Value, path+".", depth+1); err != nil {
				return err
			}
		default:
			if err := s.addComputed(path, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *projectStage) addComputed(path string, v bson.RawValue) error {
	e, err := expr.Parse(v)
	if err != nil {
		return err
	}
	if s.mode == modeExclude {
		return mongoerr.New(31252, "Invalid $project :: caused by :: Cannot use expression other than $meta in exclusion projection")
	}
	s.mode = modeInclude
	return s.root.insert(path, projField{expr: e})
}

func parseUnset(arg bson.RawValue) (stage, error) {
	var paths []string
	switch arg.Type {
	case bson.TypeString:
		paths = []string{arg.StringValue()}
	case bson.TypeArray:
		elems, err := expr.Elems(arg.Value)
		if err != nil {
			return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in $unset")
		}
		if len(elems) == 0 {
			return nil, mongoerr.New(31119, "$unset specification must be a string or an array with at least one field")
		}
		for _, el := range elems {
			if el.Value.Type != bson.TypeString {
				return nil, mongoerr.New(31120, "$unset specification must be a string or an array containing only string values")
			}
			paths = append(paths, el.Value.StringValue())
		}
	default:
		return nil, mongoerr.New(31002, "$unset specification must be a string or an array")
	}
	s := &projectStage{root: newNode(), mode: modeExclude, name: "$unset"}
	for _, p := range paths {
		if err := s.root.insert(p, projField{exclude: true}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *projectStage) kind() string { return s.name }

func (s *projectStage) open(in Source, rt *runtime) Source {
	return &mapSource{in: in, fn: func(d bson.Raw) (bson.Raw, error) {
		if s.mode == modeExclude {
			return excludeDoc(s.root, d)
		}
		ctx := rt.ctx(d)
		out, err := s.includeDoc(s.root, d, ctx, true)
		if err != nil {
			return nil, err
		}
		return out, nil
	}}
}

// includeDoc applies an inclusion level to a document: included fields in
// the document's order, then computed fields in specification order
// (replacing a field of the same name in place).
func (s *projectStage) includeDoc(n *projNode, d []byte, ctx *expr.Context, top bool) (bson.Raw, error) {
	var out fieldList
	if f := n.byName["_id"]; top && f != nil && f.expr != nil {
		// A computed _id still comes first.
		out.set("_id", expr.Missing)
	}
	err := expr.EachRaw(d, func(k []byte, v bson.RawValue) bool {
		f := n.byName[string(k)]
		switch {
		case top && string(k) == "_id" && !s.excludeID && (f == nil || f.include):
			out.set("_id", v)
		case f == nil || f.expr != nil:
		case f.include:
			out.set(f.name, v)
		case f.child != nil:
			if pv := s.includeValue(f.child, v); pv.Type != 0 {
				out.set(f.name, pv)
			}
		}
		return true
	})
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON document")
	}
	if err := s.applyComputed(n, &out, ctx); err != nil {
		return nil, err
	}
	return out.doc(), nil
}

// includeValue applies a sub-level to a value: documents are projected,
// arrays element by element, other values dropped.
func (s *projectStage) includeValue(n *projNode, v bson.RawValue) bson.RawValue {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		var out fieldList
		_ = expr.Each(v.Value, func(k string, e bson.RawValue) bool {
			f := n.byName[k]
			switch {
			case f == nil || f.expr != nil:
			case f.include:
				out.set(k, e)
			case f.child != nil:
				if pv := s.includeValue(f.child, e); pv.Type != 0 {
					out.set(k, pv)
				}
			}
			return true
		})
		return expr.Doc(out.doc())
	case bson.TypeArray:
		var b expr.ArrayBuilder
		_ = expr.Each(v.Value, func(_ string, e bson.RawValue) bool {
			if e.Type == bson.TypeEmbeddedDocument || e.Type == bson.TypeArray {
				b.Append(s.includeValue(n, e))
			}
			return true
		})
		return b.Value()
	}
	return expr.Missing
}

// applyComputed evaluates the computed fields of level n into out.
func (s *projectStage) applyComputed(n *projNode, out *fieldList, ctx *expr.Context) error {
	for _, f := range n.fields {
		switch {
		case f.expr != nil:
			v, err := f.expr.Eval(ctx)
			if err != nil {
				return err
			}
			out.set(f.name, v)
		case f.child != nil && hasComputed(f.child):
			cur := out.get(f.name)
			nv, err := s.computedValue(f.child, cur, ctx)
			if err != nil {
				return err
			}
			out.set(f.name, nv)
		}
	}
	return nil
}

// computedValue applies the computed fields of a sub-level to the value
// already projected there: into a document, into each document of an
// array, or into a new document replacing anything else.
func (s *projectStage) computedValue(n *projNode, cur bson.RawValue, ctx *expr.Context) (bson.RawValue, error) {
	switch cur.Type {
	case bson.TypeArray:
		var b expr.ArrayBuilder
		var firstErr error
		_ = expr.Each(cur.Value, func(_ string, e bson.RawValue) bool {
			v, err := s.computedValue(n, e, ctx)
			if err != nil {
				firstErr = err
				return false
			}
			b.Append(v)
			return true
		})
		return b.Value(), firstErr
	case bson.TypeEmbeddedDocument:
		var out fieldList
		_ = expr.Each(cur.Value, func(k string, e bson.RawValue) bool { out.set(k, e); return true })
		if err := s.applyComputed(n, &out, ctx); err != nil {
			return expr.Missing, err
		}
		return expr.Doc(out.doc()), nil
	}
	var out fieldList
	if err := s.applyComputed(n, &out, ctx); err != nil {
		return expr.Missing, err
	}
	return expr.Doc(out.doc()), nil
}

func hasComputed(n *projNode) bool {
	for _, f := range n.fields {
		if f.expr != nil || (f.child != nil && hasComputed(f.child)) {
			return true
		}
	}
	return false
}

// excludeDoc removes the excluded fields of level n from a document.
func excludeDoc(n *projNode, d []byte) (bson.Raw, error) {
	var b expr.DocBuilder
	err := expr.Each(d, func(k string, v bson.RawValue) bool {
		f := n.byName[k]
		switch {
		case f == nil:
			b.Append(k, v)
		case f.exclude:
		case f.child != nil:
			b.Append(k, excludeValue(f.child, v))
		}
		return true
	})
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON document")
	}
	return b.Doc(), nil
}

func excludeValue(n *projNode, v bson.RawValue) bson.RawValue {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		d, err := excludeDoc(n, v.Value)
		if err != nil {
			return v
		}
		return expr.Doc(d)
	case bson.TypeArray:
		var b expr.ArrayBuilder
		_ = expr.Each(v.Value, func(_ string, e bson.RawValue) bool {
			b.Append(excludeValue(n, e))
			return true
		})
		return b.Value()
	}
	return v
}

// ---- $addFields / $set ----

type addFieldsStage struct {
	root *projNode
	name string
}

func parseAddFields(name string, arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(40272, "%s specification stage must be an object, got %s", name, expr.TypeName(arg))
	}
	s := &addFieldsStage{root: newNode(), name: name}
	if err := s.parseLevel(arg.Value, "", 0); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *addFieldsStage) parseLevel(spec []byte, prefix string, depth int) error {
	if depth > expr.MaxDepth {
		return mongoerr.New(mongoerr.BadValue, "%s exceeds the nesting depth limit of %d", s.name, expr.MaxDepth)
	}
	elems, err := expr.Elems(spec)
	if err != nil {
		return mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in %s", s.name)
	}
	for _, el := range elems {
		if strings.HasPrefix(el.Key, "$") {
			return mongoerr.New(16410, "Invalid %s :: caused by :: FieldPath field names may not start with '$'. Consider using $getField or $setField.", s.name)
		}
		path := prefix + el.Key
		v := el.Value
		if v.Type == bson.TypeEmbeddedDocument {
			sub, err := expr.Elems(v.Value)
			if err != nil {
				return mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in %s", s.name)
			}
			if len(sub) > 0 && !strings.HasPrefix(sub[0].Key, "$") {
				if err := s.parseLevel(v.Value, path+".", depth+1); err != nil {
					return err
				}
				continue
			}
		}
		e, err := expr.Parse(v)
		if err != nil {
			return err
		}
		if err := s.root.insert(path, projField{expr: e}); err != nil {
			return err
		}
	}
	return nil
}

func (s *addFieldsStage) kind() string { return s.name }

func (s *addFieldsStage) open(in Source, rt *runtime) Source {
	p := &projectStage{}
	return &mapSource{in: in, fn: func(d bson.Raw) (bson.Raw, error) {
		var out fieldList
		if err := expr.Each(d, func(k string, v bson.RawValue) bool { out.set(k, v); return true }); err != nil {
			return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON document")
		}
		if err := p.applyComputed(s.root, &out, rt.ctx(d)); err != nil {
			return nil, err
		}
		return out.doc(), nil
	}}
}

// fieldList is a document under construction whose fields can be replaced
// in place or removed (set to Missing).
type fieldList struct {
	fields []field
	size   int
}

type field struct {
	key string
	val bson.RawValue
}

func (l *fieldList) get(k string) bson.RawValue {
	for i := range l.fields {
		if l.fields[i].key == k {
			return l.fields[i].val
		}
	}
	return expr.Missing
}

func (l *fieldList) set(k string, v bson.RawValue) {
	l.size += len(k) + len(v.Value) + 2
	for i := range l.fields {
		if l.fields[i].key == k {
			l.fields[i].val = v
			return
		}
	}
	if l.fields == nil {
		l.fields = make([]field, 0, 8)
	}
	l.fields = append(l.fields, field{k, v})
}

func (l *fieldList) doc() bson.Raw {
	var b expr.DocBuilder
	b.Grow(l.size + 5)
	for _, f := range l.fields {
		b.Append(f.key, f.val)
	}
	return b.Doc()
}

// setPath returns doc with the value at a dotted path replaced (created if
// absent, removed if v is Missing). Non-document values on the way are
// replaced by documents.
func setPath(doc []byte, path []string, v bson.RawValue) (bson.Raw, error) {
	var out fieldList
	if err := expr.Each(doc, func(k string, e bson.RawValue) bool { out.set(k, e); return true }); err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON document")
	}
	if len(path) == 1 {
		out.set(path[0], v)
		return out.doc(), nil
	}
	cur := out.get(path[0])
	sub := []byte(emptyDoc)
	if cur.Type == bson.TypeEmbeddedDocument {
		sub = cur.Value
	}
	nd, err := setPath(sub, path[1:], v)
	if err != nil {
		return nil, err
	}
	out.set(path[0], expr.Doc(nd))
	return out.doc(), nil
}

var emptyDoc = bson.Raw{5, 0, 0, 0, 0}
