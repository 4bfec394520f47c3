package expr

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// evalCmp compares two values in MongoDB's order (missing sorts below
// null, so {$eq: ["$missing", null]} is false, as in MongoDB).
func evalCmp(name string, vals []bson.RawValue) (bson.RawValue, error) {
	c := Compare(vals[0], vals[1])
	switch name {
	case "$eq":
		return Bool(c == 0), nil
	case "$ne":
		return Bool(c != 0), nil
	case "$gt":
		return Bool(c > 0), nil
	case "$gte":
		return Bool(c >= 0), nil
	case "$lt":
		return Bool(c < 0), nil
	case "$lte":
		return Bool(c <= 0), nil
	}
	return Int32(int32(c)), nil
}

type andOr struct {
	or   bool
	args []Expr
}

func parseAndOr(p *parser, name string, arg bson.RawValue) (Expr, error) {
	args, err := p.argList(arg)
	if err != nil {
		return nil, err
	}
	return &andOr{or: name == "$or", args: args}, nil
}

func (a *andOr) Eval(ctx *Context) (bson.RawValue, error) {
	for _, e := range a.args {
		v, err := e.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		if Truthy(v) == a.or {
			return Bool(a.or), nil
		}
	}
	return Bool(!a.or), nil
}

func evalNot(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	return Bool(!Truthy(vals[0])), nil
}

type cond struct{ ifE, thenE, elseE Expr }

func parseCond(p *parser, name string, arg bson.RawValue) (Expr, error) {
	if arg.Type == bson.TypeEmbeddedDocument {
		elems, err := Elems(arg.Value)
		if err != nil {
			return nil, err
		}
		c := &cond{}
		for _, el := range elems {
			e, err := p.parse(el.Value)
			if err != nil {
				return nil, err
			}
			switch el.Key {
			case "if":
				c.ifE = e
			case "then":
				c.thenE = e
			case "else":
				c.elseE = e
			default:
				return nil, mongoerr.New(17083, "Unrecognized parameter to $cond: %s", el.Key)
			}
		}
		switch {
		case c.ifE == nil:
			return nil, mongoerr.New(17080, "Missing 'if' parameter to $cond")
		case c.thenE == nil:
			return nil, mongoerr.New(17081, "Missing 'then' parameter to $cond")
		case c.elseE == nil:
			return nil, mongoerr.New(17082, "Missing 'else' parameter to $cond")
		}
		return c, nil
	}
	args, err := p.argList(arg)
	if err != nil {
		return nil, err
	}
	if err := checkArity(name, len(args), 3, 3); err != nil {
		return nil, err
	}
	return &cond{args[0], args[1], args[2]}, nil
}

func (c *cond) Eval(ctx *Context) (bson.RawValue, error) {
	v, err := c.ifE.Eval(ctx)
	if err != nil {
		return Missing, err
	}
	if Truthy(v) {
		return c.thenE.Eval(ctx)
	}
	return c.elseE.Eval(ctx)
}

type ifNull []Expr

func parseIfNull(p *parser, name string, arg bson.RawValue) (Expr, error) {
	args, err := p.argList(arg)
	if err != nil {
		return nil, err
	}
	if len(args) < 2 {
		return nil, mongoerr.New(1257300, "$ifNull needs at least two arguments, had: %d", len(args))
	}
	return ifNull(args), nil
}

// Eval returns the first argument that is not null, undefined or missing;
// the last argument is returned as is.
func (f ifNull) Eval(ctx *Context) (bson.RawValue, error) {
	for i, e := range f {
		v, err := e.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		if !IsNullish(v) || i == len(f)-1 {
			return v, nil
		}
	}
	return Null(), nil
}

type switchExpr struct {
	cases, thens []Expr
	def          Expr
}

func parseSwitch(p *parser, _ string, arg bson.RawValue) (Expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(40060, "$switch requires an object as an argument, found: %s", TypeName(arg))
	}
	elems, err := Elems(arg.Value)
	if err != nil {
		return nil, err
	}
	s := &switchExpr{}
	for _, el := range elems {
		switch el.Key {
		case "branches":
			if el.Value.Type != bson.TypeArray {
				return nil, mongoerr.New(40061, "$switch expected an array for 'branches', found: %s", TypeName(el.Value))
			}
			branches, err := Elems(el.Value.Value)
			if err != nil {
				return nil, err
			}
			for _, b := range branches {
				if b.Value.Type != bson.TypeEmbeddedDocument {
					return nil, mongoerr.New(40062, "$switch expected each branch to be an object, found: %s", TypeName(b.Value))
				}
				fields, err := Elems(b.Value.Value)
				if err != nil {
					return nil, err
				}
				var c, t Expr
				for _, f := range fields {
					e, err := p.parse(f.Value)
					if err != nil {
						return nil, err
					}
					switch f.Key {
					case "case":
						c = e
					case "then":
						t = e
					default:
						return nil, mongoerr.New(40063, "$switch found an unknown argument to a branch: %s", f.Key)
					}
				}
				if c == nil {
					return nil, mongoerr.New(40064, "$switch requires each branch have a 'case' expression")
				}
				if t == nil {
					return nil, mongoerr.New(40065, "$switch requires each branch have a 'then' expression.")
				}
				s.cases = append(s.cases, c)
				s.thens = append(s.thens, t)
			}
		case "default":
			e, err := p.parse(el.Value)
			if err != nil {
				return nil, err
			}
			s.def = e
		default:
			return nil, mongoerr.New(40067, "$switch found an unknown argument: %s", el.Key)
		}
	}
	if len(s.cases) == 0 {
		return nil, mongoerr.New(40068, "$switch requires at least one branch.")
	}
	return s, nil
}

func (s *switchExpr) Eval(ctx *Context) (bson.RawValue, error) {
	for i, c := range s.cases {
		v, err := c.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		if Truthy(v) {
			return s.thens[i].Eval(ctx)
		}
	}
	if s.def == nil {
		return Missing, mongoerr.New(40066, "$switch could not find a matching branch for an input, and no default was specified.")
	}
	return s.def.Eval(ctx)
}

type letExpr struct {
	names []string
	vals  []Expr
	in    Expr
}

func parseLet(p *parser, _ string, arg bson.RawValue) (Expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(16874, "$let only supports an object as its argument")
	}
	elems, err := Elems(arg.Value)
	if err != nil {
		return nil, err
	}
	l := &letExpr{}
	var haveVars bool
	for _, el := range elems {
		switch el.Key {
		case "vars":
			haveVars = true
			if el.Value.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(10065, "invalid parameter: expected an object (vars)")
			}
			vars, err := Elems(el.Value.Value)
			if err != nil {
				return nil, err
			}
			for _, v := range vars {
				if err := validateVarName(v.Key); err != nil {
					return nil, err
				}
				e, err := p.parse(v.Value)
				if err != nil {
					return nil, err
				}
				l.names = append(l.names, v.Key)
				l.vals = append(l.vals, e)
			}
		case "in":
			e, err := p.parse(el.Value)
			if err != nil {
				return nil, err
			}
			l.in = e
		default:
			return nil, mongoerr.New(16875, "Unrecognized parameter to $let: %s", el.Key)
		}
	}
	if !haveVars {
		return nil, mongoerr.New(16876, "Missing 'vars' parameter to $let")
	}
	if l.in == nil {
		return nil, mongoerr.New(16877, "Missing 'in' parameter to $let")
	}
	return l, nil
}

func (l *letExpr) Eval(ctx *Context) (bson.RawValue, error) {
	vals := make([]bson.RawValue, len(l.vals))
	for i, e := range l.vals {
		v, err := e.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		vals[i] = v
	}
	for i, n := range l.names {
		restore := ctx.bind(n, vals[i])
		defer restore()
	}
	return l.in.Eval(ctx)
}
