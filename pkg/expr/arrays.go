package expr

import (
	"math"
	"math/big"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func evalSize(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	v := vals[0]
	if v.Type != bson.TypeArray {
		return Missing, mongoerr.New(17124, "The argument to $size must be an array. Type of the argument was: %s", TypeName(v))
	}
	n := 0
	if err := Each(v.Value, func(string, bson.RawValue) bool { n++; return true }); err != nil {
		return Missing, err
	}
	return Int32(int32(n)), nil
}

// elemAt returns arr[idx] (negative idx counts from the end) or Missing.
func elemAt(arr bson.RawValue, idx int64) (bson.RawValue, error) {
	vals, err := arrayValues(arr)
	if err != nil {
		return Missing, err
	}
	if idx < 0 {
		idx += int64(len(vals))
	}
	if idx < 0 || idx >= int64(len(vals)) {
		return Missing, nil
	}
	return vals[idx], nil
}

func evalArrayElemAt(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	arr, idx := vals[0], vals[1]
	if IsNullish(arr) || IsNullish(idx) {
		return Null(), nil
	}
	if arr.Type != bson.TypeArray {
		return Missing, mongoerr.New(28689, "$arrayElemAt's first argument must be an array, but is %s", TypeName(arr))
	}
	n, ok := toNum(idx)
	if !ok {
		return Missing, mongoerr.New(28690, "$arrayElemAt's second argument must be a numeric value, but is %s", TypeName(idx))
	}
	i, ok := n.asInt32()
	if !ok {
		return Missing, mongoerr.New(28691, "$arrayElemAt's second argument must be representable as a 32-bit integer: %s", idx.String())
	}
	return elemAt(arr, int64(i))
}

func evalFirstLast(name string, vals []bson.RawValue) (bson.RawValue, error) {
	arr := vals[0]
	if IsNullish(arr) {
		return Null(), nil
	}
	if arr.Type != bson.TypeArray {
		return Missing, mongoerr.New(28689, "%s's argument must be an array, but is %s", name, TypeName(arr))
	}
	if name == "$first" {
		return elemAt(arr, 0)
	}
	return elemAt(arr, -1)
}

func evalIn(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	x, arr := vals[0], vals[1]
	if arr.Type != bson.TypeArray {
		return Missing, mongoerr.New(40081, "$in requires an array as a second argument, found: %s", TypeName(arr))
	}
	found := false
	err := Each(arr.Value, func(_ string, e bson.RawValue) bool {
		if Equal(x, e) {
			found = true
			return false
		}
		return true
	})
	return Bool(found), err
}

func evalConcatArrays(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	var b ArrayBuilder
	for _, v := range vals {
		if IsNullish(v) {
			return Null(), nil
		}
		if v.Type != bson.TypeArray {
			return Missing, mongoerr.New(28664, "$concatArrays only supports arrays, not %s", TypeName(v))
		}
		if err := Each(v.Value, func(_ string, e bson.RawValue) bool { b.Append(e); return true }); err != nil {
			return Missing, err
		}
	}
	return b.Value(), nil
}

func evalSlice(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	for _, v := range vals {
		if IsNullish(v) {
			return Null(), nil
		}
	}
	arr := vals[0]
	if arr.Type != bson.TypeArray {
		return Missing, mongoerr.New(28724, "First argument to $slice must be an array, but is of type: %s", TypeName(arr))
	}
	n1, ok := toNum(vals[1])
	if !ok {
		return Missing, mongoerr.New(28725, "Second argument to $slice must be a numeric value, but is of type: %s", TypeName(vals[1]))
	}
	a, ok := n1.asInt32()
	if !ok {
		return Missing, mongoerr.New(28726, "Second argument to $slice can't be represented as a 32-bit integer: %s", vals[1].String())
	}
	elems, err := arrayValues(arr)
	if err != nil {
		return Missing, err
	}
	size := int64(len(elems))
	var start, end int64
	if len(vals) == 2 {
		if a >= 0 {
			start, end = 0, min(int64(a), size)
		} else {
			start, end = max(0, size+int64(a)), size
		}
	} else {
		n2, ok := toNum(vals[2])
		if !ok {
			return Missing, mongoerr.New(28727, "Third argument to $slice must be numeric, but is of type: %s", TypeName(vals[2]))
		}
		c, ok := n2.asInt32()
		if !ok {
			return Missing, mongoerr.New(28728, "Third argument to $slice can't be represented as a 32-bit integer: %s", vals[2].String())
		}
		if c <= 0 {
			return Missing, mongoerr.New(28729, "Third argument to $slice must be positive: %s", vals[2].String())
		}
		if a >= 0 {
			start = min(int64(a), size)
		} else {
			start = max(0, size+int64(a))
		}
		end = min(start+int64(c), size)
	}
	return Array(elems[start:end]), nil
}

func evalIsArray(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	return Bool(vals[0].Type == bson.TypeArray), nil
}

func evalReverseArray(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	v := vals[0]
	if IsNullish(v) {
		return Null(), nil
	}
	if v.Type != bson.TypeArray {
		return Missing, mongoerr.New(34435, "The argument to $reverseArray must be an array, but was of type: %s", TypeName(v))
	}
	elems, err := arrayValues(v)
	if err != nil {
		return Missing, err
	}
	for i, j := 0, len(elems)-1; i < j; i, j = i+1, j-1 {
		elems[i], elems[j] = elems[j], elems[i]
	}
	return Array(elems), nil
}

// maxRange bounds the array $range may build, so one expression cannot
// exhaust memory.
const maxRange = 1 << 20

type rangeExpr struct{ call }

func parseRange(p *parser, name string, arg bson.RawValue) (Expr, error) {
	e, err := fixed(2, 3, evalRange)(p, name, arg)
	if err != nil {
		return nil, err
	}
	return &rangeExpr{*e.(*call)}, nil
}

// Eval charges the elements $range will build to the Context's budget
// before building them.
func (r *rangeExpr) Eval(ctx *Context) (bson.RawValue, error) {
	vals := make([]bson.RawValue, 0, len(r.args))
	for _, a := range r.args {
		v, err := a.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		vals = append(vals, v)
	}
	if n := rangeLen(vals); n > 0 {
		if err := ctx.charge(n); err != nil {
			return Missing, err
		}
	}
	return evalRange(r.name, vals)
}

// rangeLen estimates the elements of a $range (0 when the arguments are
// invalid; evalRange reports those).
func rangeLen(vals []bson.RawValue) int64 {
	var ints [3]int64
	ints[2] = 1
	for i, v := range vals {
		n, ok := toNum(v)
		if !ok {
			return 0
		}
		x, ok := n.asInt32()
		if !ok {
			return 0
		}
		ints[i] = int64(x)
	}
	if ints[2] == 0 {
		return 0
	}
	n := (ints[1] - ints[0]) / ints[2]
	if n < 0 {
		return 0
	}
	return n + 1
}

func evalRange(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	var ints [3]int64
	ints[2] = 1
	for i, v := range vals {
		n, ok := toNum(v)
		if !ok {
			return Missing, mongoerr.New(34443+2*mongoerr.Code(i), "$range requires a numeric argument %d, found value of type: %s", i+1, TypeName(v))
		}
		x, ok := n.asInt32()
		if !ok {
			return Missing, mongoerr.New(34444+2*mongoerr.Code(i), "$range requires argument %d to be representable as a 32-bit integer", i+1)
		}
		ints[i] = int64(x)
	}
	if ints[2] == 0 {
		return Missing, mongoerr.New(34449, "$range requires a non-zero step value")
	}
	if span := (ints[1] - ints[0]) / ints[2]; span > maxRange {
		return Missing, mongoerr.New(mongoerr.ExceededMemoryLimit, "$range would produce more than %d elements", maxRange)
	}
	var b ArrayBuilder
	for x := ints[0]; (ints[2] > 0 && x < ints[1]) || (ints[2] < 0 && x > ints[1]); x += ints[2] {
		b.Append(Int32(int32(x)))
	}
	return b.Value(), nil
}

// iterExpr is $filter, $map or $reduce: it binds a variable to each element
// of an input array.
type iterExpr struct {
	kind  string
	input Expr
	as    string
	body  Expr // cond for $filter, in for $map and $reduce
	init  Expr // initialValue for $reduce
	limit Expr // limit for $filter
}

func parseIterArgs(p *parser, name string, arg bson.RawValue, allowed map[string]bool) (map[string]bson.RawValue, error) {
	codes := map[string][2]mongoerr.Code{"$filter": {28646, 28647}, "$map": {16878, 16879}, "$reduce": {40075, 40076}}
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(codes[name][0], "%s only supports an object as its argument", name)
	}
	elems, err := Elems(arg.Value)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bson.RawValue, len(elems))
	for _, el := range elems {
		if !allowed[el.Key] {
			return nil, mongoerr.New(codes[name][1], "Unrecognized parameter to %s: %s", name, el.Key)
		}
		out[el.Key] = el.Value
	}
	return out, nil
}

func parseFilter(p *parser, name string, arg bson.RawValue) (Expr, error) {
	args, err := parseIterArgs(p, name, arg, map[string]bool{"input": true, "as": true, "cond": true, "limit": true})
	if err != nil {
		return nil, err
	}
	if _, ok := args["input"]; !ok {
		return nil, mongoerr.New(28648, "Missing 'input' parameter to $filter")
	}
	if _, ok := args["cond"]; !ok {
		return nil, mongoerr.New(28650, "Missing 'cond' parameter to $filter")
	}
	return p.buildIter("$filter", args, "cond")
}

func parseMap(p *parser, name string, arg bson.RawValue) (Expr, error) {
	args, err := parseIterArgs(p, name, arg, map[string]bool{"input": true, "as": true, "in": true})
	if err != nil {
		return nil, err
	}
	if _, ok := args["input"]; !ok {
		return nil, mongoerr.New(16880, "Missing 'input' parameter to $map")
	}
	if _, ok := args["in"]; !ok {
		return nil, mongoerr.New(16882, "Missing 'in' parameter to $map")
	}
	return p.buildIter("$map", args, "in")
}

func parseReduce(p *parser, name string, arg bson.RawValue) (Expr, error) {
	args, err := parseIterArgs(p, name, arg, map[string]bool{"input": true, "initialValue": true, "in": true})
	if err != nil {
		return nil, err
	}
	for i, k := range []string{"input", "initialValue", "in"} {
		if _, ok := args[k]; !ok {
			return nil, mongoerr.New(40077+mongoerr.Code(i), "$reduce requires '%s' to be specified", k)
		}
	}
	return p.buildIter("$reduce", args, "in")
}

func (p *parser) buildIter(kind string, args map[string]bson.RawValue, bodyKey string) (Expr, error) {
	it := &iterExpr{kind: kind, as: "this"}
	var err error
	if it.input, err = p.parse(args["input"]); err != nil {
		return nil, err
	}
	if as, ok := args["as"]; ok {
		s, ok := stringArg(as)
		if !ok {
			return nil, mongoerr.New(mongoerr.FailedToParse, "%s 'as' must be a string", kind)
		}
		if err := validateVarName(s); err != nil {
			return nil, err
		}
		it.as = s
	}
	if it.body, err = p.parse(args[bodyKey]); err != nil {
		return nil, err
	}
	if v, ok := args["initialValue"]; ok {
		if it.init, err = p.parse(v); err != nil {
			return nil, err
		}
	}
	if v, ok := args["limit"]; ok {
		if it.limit, err = p.parse(v); err != nil {
			return nil, err
		}
	}
	return it, nil
}

func (it *iterExpr) Eval(ctx *Context) (bson.RawValue, error) {
	in, err := it.input.Eval(ctx)
	if err != nil {
		return Missing, err
	}
	if IsNullish(in) {
		return Null(), nil
	}
	if in.Type != bson.TypeArray {
		switch it.kind {
		case "$filter":
			return Missing, mongoerr.New(28651, "input to $filter must be an array not %s", TypeName(in))
		case "$map":
			return Missing, mongoerr.New(16883, "input to $map must be an array not %s", TypeName(in))
		}
		return Missing, mongoerr.New(40080, "$reduce requires that 'input' be an array, found: %s", TypeName(in))
	}
	elems, err := arrayValues(in)
	if err != nil {
		return Missing, err
	}
	if err := ctx.charge(int64(len(elems))); err != nil {
		return Missing, err
	}
	switch it.kind {
	case "$reduce":
		acc, err := it.init.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		for _, e := range elems {
			r1 := ctx.bind("this", e)
			r2 := ctx.bind("value", acc)
			acc, err = it.body.Eval(ctx)
			r2()
			r1()
			if err != nil {
				return Missing, err
			}
		}
		return acc, nil
	case "$map":
		var b ArrayBuilder
		for _, e := range elems {
			restore := ctx.bind(it.as, e)
			v, err := it.body.Eval(ctx)
			restore()
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
	limit := int64(math.MaxInt64)
	if it.limit != nil {
		lv, err := it.limit.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		if !IsNullish(lv) {
			n, ok := toNum(lv)
			l, ok2 := n.asInt32()
			if !ok || !ok2 || l < 1 {
				return Missing, mongoerr.New(327392, "$filter: limit must be a positive 32-bit integer, found: %s", lv.String())
			}
			limit = int64(l)
		}
	}
	var b ArrayBuilder
	for _, e := range elems {
		if int64(b.Len()) >= limit {
			break
		}
		restore := ctx.bind(it.as, e)
		v, err := it.body.Eval(ctx)
		restore()
		if err != nil {
			return Missing, err
		}
		if Truthy(v) {
			b.Append(e)
		}
	}
	return b.Value(), nil
}

// accExpr is $sum, $avg, $min or $max used as an expression: over the
// elements of its one array argument, or over its several arguments.
type accExpr struct {
	name string
	args []Expr
}

func parseAccExpr(p *parser, name string, arg bson.RawValue) (Expr, error) {
	args, err := p.argList(arg)
	if err != nil {
		return nil, err
	}
	return &accExpr{name: name, args: args}, nil
}

func (a *accExpr) Eval(ctx *Context) (bson.RawValue, error) {
	var vals []bson.RawValue
	for _, e := range a.args {
		v, err := e.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		if len(a.args) == 1 && v.Type == bson.TypeArray {
			if vals, err = arrayValues(v); err != nil {
				return Missing, err
			}
			break
		}
		vals = append(vals, v)
	}
	switch a.name {
	case "$sum", "$avg":
		sum := num{kind: kInt32}
		count := 0
		for _, v := range vals {
			if n, ok := toNum(v); ok {
				sum = arith(opAdd, sum, n)
				count++
			}
		}
		if a.name == "$sum" {
			return sum.value(), nil
		}
		return Avg(sum.value(), int64(count)), nil
	}
	out := Missing
	for _, v := range vals {
		if IsNullish(v) {
			continue
		}
		if out.Type == 0 {
			out = v
			continue
		}
		c := Compare(v, out)
		if (a.name == "$min" && c < 0) || (a.name == "$max" && c > 0) {
			out = v
		}
	}
	if out.Type == 0 {
		return Null(), nil
	}
	return out, nil
}

// Add returns a+b for two numbers with MongoDB's type widening; non-numeric
// operands are ignored as $sum ignores them.
func Add(a, b bson.RawValue) bson.RawValue {
	x, okA := toNum(a)
	y, okB := toNum(b)
	switch {
	case okA && okB:
		return arith(opAdd, x, y).value()
	case okA:
		return a
	case okB:
		return b
	}
	return Int32(0)
}

// Avg returns sum/count as $avg reports it: a double, a decimal when sum
// is a decimal, and null when count is 0.
func Avg(sum bson.RawValue, count int64) bson.RawValue {
	if count == 0 {
		return Null()
	}
	n, ok := toNum(sum)
	if !ok {
		return Null()
	}
	if n.kind == kDecimal {
		r, ok := n.rat()
		if !ok {
			return sum
		}
		return decNum(r.Quo(r, new(big.Rat).SetInt64(count))).value()
	}
	return Double(n.float() / float64(count))
}
