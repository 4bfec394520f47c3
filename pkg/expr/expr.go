// Package expr owns MongoDB's aggregation expression language: parsing an
// expression (field paths "$a.b", variables "$$ROOT"/"$$CURRENT"/"$$name",
// literals, expression objects, arrays and operators such as $add or $cond)
// into a tree, and evaluating the tree against a document.
//
// It is used by the aggregation stages (pkg/aggregate) and by the $expr
// filter operator (pkg/query). It must never import pkg/query or
// pkg/aggregate, never log and never keep state between calls: parsed
// expressions are immutable and safe for concurrent use; a Context is not.
//
// Values are bson.RawValue. The missing value (a field that does not exist,
// or $$REMOVE) is a RawValue whose Type is 0; see Missing. Errors are
// *mongoerr.Error values carrying MongoDB's codes (168
// InvalidPipelineOperator for an unknown operator, 16020 for a wrong number
// of arguments, 16554 and friends for type errors, ...).
package expr

import (
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// MaxDepth is the deepest nesting of expressions (operators, objects and
// arrays inside each other) Parse accepts; deeper input fails with
// BadValue instead of exhausting the stack.
const MaxDepth = 100

var errMalformed = mongoerr.New(mongoerr.InvalidBSON, "malformed BSON in expression input")

// Expr is a parsed expression. Eval returns Missing (Type 0) when the
// expression refers to a field that does not exist. Implementations are
// immutable and safe for concurrent use.
type Expr interface {
	Eval(ctx *Context) (bson.RawValue, error)
}

// Context is what an expression is evaluated against. It is not safe for
// concurrent use: evaluation binds variables ($map's "this", $let's vars)
// in Vars and restores them afterwards.
type Context struct {
	// Root is the document $$ROOT and, unless Vars rebinds it, $$CURRENT
	// and every field path refer to.
	Root bson.Raw
	// Vars holds user variables ($let, $map, $filter, $reduce, and a
	// pipeline's let); Eval may add entries and removes them afterwards.
	Vars map[string]bson.RawValue
	// Now is the value of $$NOW; the zero time means the wall clock at
	// evaluation.
	Now time.Time

	// steps counts the array elements $range, $map, $filter and $reduce
	// have produced or visited in this Context, so nested loops over huge
	// arrays fail with ExceededMemoryLimit instead of hanging.
	steps int64
}

// MaxSteps bounds the array elements one Context may build or iterate over
// in $range, $map, $filter and $reduce.
const MaxSteps = 1 << 22

func (ctx *Context) charge(n int64) error {
	ctx.steps += n
	if ctx.steps > MaxSteps {
		return mongoerr.New(mongoerr.ExceededMemoryLimit, "expression evaluation exceeded %d array elements", MaxSteps)
	}
	return nil
}

// Parse parses an expression.
func Parse(v bson.RawValue) (Expr, error) {
	p := &parser{}
	return p.parse(v)
}

// Eval evaluates e against doc with a fresh Context.
func Eval(e Expr, doc bson.Raw) (bson.RawValue, error) {
	return e.Eval(&Context{Root: doc})
}

// IsConstant reports whether e is a literal (its value does not depend on
// the document), and returns that value.
func IsConstant(e Expr) (bson.RawValue, bool) {
	if l, ok := e.(literal); ok {
		return l.v, true
	}
	return bson.RawValue{}, false
}

// FieldPath returns the dotted path of a plain field path expression
// ("$a.b" gives "a.b", true) and false for anything else.
func FieldPath(e Expr) (string, bool) {
	if f, ok := e.(*fieldPath); ok && f.variable == "CURRENT" && len(f.path) > 0 {
		return strings.Join(f.path, "."), true
	}
	return "", false
}

type parser struct {
	depth int
}

func (p *parser) parse(v bson.RawValue) (Expr, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > MaxDepth {
		return nil, mongoerr.New(mongoerr.BadValue, "expression exceeds the nesting depth limit of %d", MaxDepth)
	}
	switch v.Type {
	case bson.TypeString:
		s, ok := v.StringValueOK()
		if !ok {
			return nil, errMalformed
		}
		if strings.HasPrefix(s, "$") {
			return parseFieldPath(s)
		}
		return literal{v}, nil
	case bson.TypeEmbeddedDocument:
		return p.parseObject(v.Value)
	case bson.TypeArray:
		elems, err := Elems(v.Value)
		if err != nil {
			return nil, err
		}
		out := make(arrayExpr, 0, len(elems))
		for _, e := range elems {
			x, err := p.parse(e.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case 0:
		return nil, errMalformed
	}
	if err := v.Validate(); err != nil {
		return nil, errMalformed
	}
	return literal{v}, nil
}

func (p *parser) parseObject(doc bson.Raw) (Expr, error) {
	elems, err := Elems(doc)
	if err != nil {
		return nil, err
	}
	if len(elems) > 0 && strings.HasPrefix(elems[0].Key, "$") {
		if len(elems) != 1 {
			return nil, mongoerr.New(15983, "an expression specification must contain exactly one field, the name of the expression. Found %d fields in %s", len(elems), doc.String())
		}
		return p.parseOperator(elems[0].Key, elems[0].Value)
	}
	obj := &objectExpr{}
	seen := make(map[string]bool, len(elems))
	for _, e := range elems {
		if err := ValidateFieldName(e.Key); err != nil {
			return nil, err
		}
		if seen[e.Key] {
			return nil, mongoerr.New(16406, "duplicate field name specified in object literal: %s", doc.String())
		}
		seen[e.Key] = true
		x, err := p.parse(e.Value)
		if err != nil {
			return nil, err
		}
		obj.names = append(obj.names, e.Key)
		obj.exprs = append(obj.exprs, x)
	}
	return obj, nil
}

// ValidateFieldName checks one component of a field path or an output
// field name as MongoDB's FieldPath does.
func ValidateFieldName(name string) error {
	switch {
	case name == "":
		return mongoerr.New(15998, "FieldPath field names may not be empty strings.")
	case name[0] == '$':
		return mongoerr.New(16410, "FieldPath field names may not start with '$'. Consider using $getField or $setField.")
	case strings.Contains(name, "\x00"):
		return mongoerr.New(16411, "FieldPath field names may not contain '\\0'.")
	case strings.Contains(name, "."):
		return mongoerr.New(16412, "FieldPath field names may not contain '.'.")
	}
	return nil
}

// ParsePath splits and validates a dotted path (without the leading '$').
func ParsePath(path string) ([]string, error) {
	if path == "" {
		return nil, mongoerr.New(40352, "FieldPath cannot be constructed with empty string")
	}
	parts := strings.Split(path, ".")
	for _, part := range parts {
		if part == "" {
			return nil, mongoerr.New(15998, "FieldPath field names may not be empty strings.")
		}
		if part[0] == '$' {
			return nil, mongoerr.New(16410, "FieldPath field names may not start with '$'. Consider using $getField or $setField.")
		}
		if strings.Contains(part, "\x00") {
			return nil, mongoerr.New(16411, "FieldPath field names may not contain '\\0'.")
		}
	}
	return parts, nil
}

func parseFieldPath(s string) (Expr, error) {
	if s == "$" {
		return nil, mongoerr.New(16872, "'$' by itself is not a valid FieldPath")
	}
	if strings.HasPrefix(s, "$$") {
		rest := s[2:]
		name, path, _ := strings.Cut(rest, ".")
		if err := validateVarUse(name); err != nil {
			return nil, err
		}
		var parts []string
		if strings.Contains(rest, ".") {
			var err error
			if parts, err = ParsePath(path); err != nil {
				return nil, err
			}
		}
		if name == "ROOT" && len(parts) == 0 {
			return &fieldPath{variable: "ROOT"}, nil
		}
		return &fieldPath{variable: name, path: parts}, nil
	}
	parts, err := ParsePath(s[1:])
	if err != nil {
		return nil, err
	}
	return &fieldPath{variable: "CURRENT", path: parts}, nil
}

func validateVarUse(name string) error {
	if name == "" {
		return mongoerr.New(16869, "empty variable name")
	}
	for _, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r > 127) {
			return mongoerr.New(16871, "'%s' contains an invalid character for a variable name: '%c'", name, r)
		}
	}
	return nil
}

// validateVarName checks a name a user binds ($let, "as").
func validateVarName(name string) error {
	if err := validateVarUse(name); err != nil {
		return err
	}
	r := name[0]
	if !(r >= 'a' && r <= 'z' || r > 127) {
		return mongoerr.New(16870, "'%s' starts with an invalid character for a user variable name", name)
	}
	return nil
}

func (p *parser) parseOperator(name string, arg bson.RawValue) (Expr, error) {
	op, ok := operators[name]
	if !ok {
		return nil, mongoerr.New(mongoerr.InvalidPipelineOperator, "Unrecognized expression '%s'", name)
	}
	return op(p, name, arg)
}

// literal is a constant.
type literal struct{ v bson.RawValue }

func (l literal) Eval(*Context) (bson.RawValue, error) { return l.v, nil }

// fieldPath is "$a.b" (variable CURRENT) or "$$var.a.b".
type fieldPath struct {
	variable string
	path     []string
}

func (f *fieldPath) Eval(ctx *Context) (bson.RawValue, error) {
	base, err := ctx.variable(f.variable)
	if err != nil {
		return Missing, err
	}
	if len(f.path) == 0 {
		return base, nil
	}
	return getPath(base, f.path), nil
}

func (ctx *Context) variable(name string) (bson.RawValue, error) {
	if v, ok := ctx.Vars[name]; ok {
		return v, nil
	}
	switch name {
	case "ROOT", "CURRENT":
		if ctx.Root == nil {
			return Missing, nil
		}
		return Doc(ctx.Root), nil
	case "REMOVE":
		return Missing, nil
	case "NOW":
		now := ctx.Now
		if now.IsZero() {
			now = time.Now()
		}
		return DateTime(now.UnixMilli()), nil
	}
	return Missing, mongoerr.New(17276, "Use of undefined variable: %s", name)
}

// bind sets a variable and returns a function restoring the old binding.
func (ctx *Context) bind(name string, v bson.RawValue) func() {
	if ctx.Vars == nil {
		ctx.Vars = make(map[string]bson.RawValue)
	}
	old, had := ctx.Vars[name]
	ctx.Vars[name] = v
	return func() {
		if had {
			ctx.Vars[name] = old
		} else {
			delete(ctx.Vars, name)
		}
	}
}

// GetPath follows a dotted path (already split) into v as aggregation
// field paths do: through documents, and through arrays element by element,
// collecting the results into an array (elements that are not documents,
// or lack the field, are skipped).
func GetPath(v bson.RawValue, path []string) bson.RawValue { return getPath(v, path) }

func getPath(v bson.RawValue, path []string) bson.RawValue {
	for i, part := range path {
		switch v.Type {
		case bson.TypeEmbeddedDocument:
			v = Lookup(v.Value, part)
		case bson.TypeArray:
			return arrayPath(v, path[i:])
		default:
			return Missing
		}
	}
	return v
}

func arrayPath(arr bson.RawValue, path []string) bson.RawValue {
	var b ArrayBuilder
	_ = Each(arr.Value, func(_ string, e bson.RawValue) bool {
		// Only documents are followed; scalars and nested arrays are skipped,
		// as MongoDB's ExpressionFieldPath does.
		if e.Type == bson.TypeEmbeddedDocument {
			b.Append(getPath(e, path))
		}
		return true
	})
	return b.Value()
}

// objectExpr is {a: <expr>, b: <expr>}: a document whose fields are
// evaluated; fields evaluating to missing are left out.
type objectExpr struct {
	names []string
	exprs []Expr
}

func (o *objectExpr) Eval(ctx *Context) (bson.RawValue, error) {
	var b DocBuilder
	for i, e := range o.exprs {
		v, err := e.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		b.Append(o.names[i], v)
	}
	return Doc(b.Doc()), nil
}

// arrayExpr is [<expr>, ...]; missing elements become null, as MongoDB
// does for array literals.
type arrayExpr []Expr

func (a arrayExpr) Eval(ctx *Context) (bson.RawValue, error) {
	var b ArrayBuilder
	for _, e := range a {
		v, err := e.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		if v.Type == 0 {
			v = Null()
		}
		b.Append(v)
	}
	return b.Value(), nil
}
