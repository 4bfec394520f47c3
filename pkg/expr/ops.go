package expr

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// opParser parses the argument of one operator.
type opParser func(p *parser, name string, arg bson.RawValue) (Expr, error)

// operators is the read-only table of expression operators, filled once at
// package initialisation (init avoids an initialisation cycle: parsers
// parse nested expressions through the table).
var operators map[string]opParser

func init() {
	operators = map[string]opParser{
		"$literal": parseLiteral,
		// arithmetic
		"$add":      fixed(0, -1, evalAdd),
		"$subtract": fixed(2, 2, evalSubtract),
		"$multiply": fixed(0, -1, evalMultiply),
		"$divide":   fixed(2, 2, evalDivide),
		"$mod":      fixed(2, 2, evalMod),
		"$abs":      fixed(1, 1, evalUnaryMath),
		"$ceil":     fixed(1, 1, evalUnaryMath),
		"$floor":    fixed(1, 1, evalUnaryMath),
		"$sqrt":     fixed(1, 1, evalUnaryMath),
		"$exp":      fixed(1, 1, evalUnaryMath),
		"$ln":       fixed(1, 1, evalUnaryMath),
		"$log10":    fixed(1, 1, evalUnaryMath),
		"$pow":      fixed(2, 2, evalPow),
		"$round":    fixed(1, 2, evalRound),
		"$trunc":    fixed(1, 2, evalRound),
		// comparison
		"$eq":  fixed(2, 2, evalCmp),
		"$ne":  fixed(2, 2, evalCmp),
		"$gt":  fixed(2, 2, evalCmp),
		"$gte": fixed(2, 2, evalCmp),
		"$lt":  fixed(2, 2, evalCmp),
		"$lte": fixed(2, 2, evalCmp),
		"$cmp": fixed(2, 2, evalCmp),
		// boolean and conditional
		"$and":    parseAndOr,
		"$or":     parseAndOr,
		"$not":    fixed(1, 1, evalNot),
		"$cond":   parseCond,
		"$ifNull": parseIfNull,
		"$switch": parseSwitch,
		"$let":    parseLet,
		// strings
		"$concat":       fixed(0, -1, evalConcat),
		"$substr":       fixed(3, 3, evalSubstrBytes),
		"$substrBytes":  fixed(3, 3, evalSubstrBytes),
		"$substrCP":     fixed(3, 3, evalSubstrCP),
		"$toLower":      fixed(1, 1, evalCase),
		"$toUpper":      fixed(1, 1, evalCase),
		"$strLenBytes":  fixed(1, 1, evalStrLen),
		"$strLenCP":     fixed(1, 1, evalStrLen),
		"$split":        fixed(2, 2, evalSplit),
		"$trim":         parseTrim,
		"$ltrim":        parseTrim,
		"$rtrim":        parseTrim,
		"$indexOfBytes": fixed(2, 4, evalIndexOfBytes),
		"$strcasecmp":   fixed(2, 2, evalStrcasecmp),
		"$indexOfCP":    fixed(2, 4, evalIndexOfCP),
		"$replaceOne":   parseReplace,
		"$replaceAll":   parseReplace,
		// arrays
		"$size":         fixed(1, 1, evalSize),
		"$arrayElemAt":  fixed(2, 2, evalArrayElemAt),
		"$in":           fixed(2, 2, evalIn),
		"$concatArrays": fixed(0, -1, evalConcatArrays),
		"$slice":        fixed(2, 3, evalSlice),
		"$isArray":      fixed(1, 1, evalIsArray),
		"$first":        fixed(1, 1, evalFirstLast),
		"$last":         fixed(1, 1, evalFirstLast),
		"$filter":       parseFilter,
		"$map":          parseMap,
		"$reduce":       parseReduce,
		"$range":        parseRange,
		"$reverseArray": fixed(1, 1, evalReverseArray),
		"$indexOfArray": fixed(2, 4, evalIndexOfArray),
		"$sortArray":    parseSortArray,
		// sets
		"$setUnion":        fixed(0, -1, evalSetOp),
		"$setIntersection": fixed(0, -1, evalSetOp),
		"$setDifference":   fixed(2, 2, evalSetOp),
		"$setEquals":       fixed(2, -1, evalSetOp),
		"$setIsSubset":     fixed(2, 2, evalSetOp),
		"$anyElementTrue":  fixed(1, 1, evalAnyAll),
		"$allElementsTrue": fixed(1, 1, evalAnyAll),
		// group-style accumulators usable as expressions
		"$sum": parseAccExpr,
		"$avg": parseAccExpr,
		"$min": parseAccExpr,
		"$max": parseAccExpr,
		// types
		"$type":       fixed(1, 1, evalType),
		"$convert":    parseConvert,
		"$toString":   fixed(1, 1, evalTo),
		"$toInt":      fixed(1, 1, evalTo),
		"$toLong":     fixed(1, 1, evalTo),
		"$toDouble":   fixed(1, 1, evalTo),
		"$toDecimal":  fixed(1, 1, evalTo),
		"$toBool":     fixed(1, 1, evalTo),
		"$toDate":     fixed(1, 1, evalTo),
		"$toObjectId": fixed(1, 1, evalTo),
		"$isNumber":   fixed(1, 1, evalIsNumber),
		// dates
		"$year":         parseDatePart,
		"$month":        parseDatePart,
		"$dayOfMonth":   parseDatePart,
		"$hour":         parseDatePart,
		"$minute":       parseDatePart,
		"$second":       parseDatePart,
		"$millisecond":  parseDatePart,
		"$dayOfWeek":    parseDatePart,
		"$dayOfYear":    parseDatePart,
		"$week":         parseDatePart,
		"$isoWeek":      parseDatePart,
		"$isoWeekYear":  parseDatePart,
		"$isoDayOfWeek": parseDatePart,
		"$dateToString": parseDateToString,
		// objects
		"$mergeObjects":  fixed(0, -1, evalMergeObjects),
		"$objectToArray": fixed(1, 1, evalObjectToArray),
		"$arrayToObject": fixed(1, 1, evalArrayToObject),
	}
}

// evalFn computes an operator from its evaluated arguments.
type evalFn func(name string, vals []bson.RawValue) (bson.RawValue, error)

// call is an operator whose arguments are all evaluated before it runs.
type call struct {
	name string
	args []Expr
	fn   evalFn
}

func (c *call) Eval(ctx *Context) (bson.RawValue, error) {
	var buf [4]bson.RawValue
	vals := buf[:0]
	for _, a := range c.args {
		v, err := a.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		vals = append(vals, v)
	}
	return c.fn(c.name, vals)
}

// fixed returns a parser for an operator taking between min and max
// arguments (max -1: any number), given as an array or, for one argument,
// as the bare value.
func fixed(minArgs, maxArgs int, fn evalFn) opParser {
	return func(p *parser, name string, arg bson.RawValue) (Expr, error) {
		args, err := p.argList(arg)
		if err != nil {
			return nil, err
		}
		if err := checkArity(name, len(args), minArgs, maxArgs); err != nil {
			return nil, err
		}
		return &call{name: name, args: args, fn: fn}, nil
	}
}

func checkArity(name string, n, minArgs, maxArgs int) error {
	switch {
	case minArgs == maxArgs && n != minArgs:
		return mongoerr.New(16020, "Expression %s takes exactly %d arguments. %d were passed in.", name, minArgs, n)
	case n < minArgs:
		return mongoerr.New(16020, "Expression %s takes at least %d arguments. %d were passed in.", name, minArgs, n)
	case maxArgs >= 0 && n > maxArgs:
		return mongoerr.New(16020, "Expression %s takes at most %d arguments. %d were passed in.", name, maxArgs, n)
	}
	return nil
}

// argList parses an operator's arguments: the elements of an array, or
// the value itself as the only argument.
func (p *parser) argList(arg bson.RawValue) ([]Expr, error) {
	if arg.Type != bson.TypeArray {
		e, err := p.parse(arg)
		if err != nil {
			return nil, err
		}
		return []Expr{e}, nil
	}
	elems, err := Elems(arg.Value)
	if err != nil {
		return nil, err
	}
	out := make([]Expr, 0, len(elems))
	for _, el := range elems {
		e, err := p.parse(el.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// objectArgs returns the named arguments of an operator that takes an
// object ({input: ..., as: ...}).
func objectArgs(name string, arg bson.RawValue, code mongoerr.Code) ([]Elem, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(code, "%s only supports an object as its argument", name)
	}
	return Elems(arg.Value)
}

func parseLiteral(_ *parser, _ string, arg bson.RawValue) (Expr, error) {
	if err := arg.Validate(); err != nil {
		return nil, errMalformed
	}
	return literal{arg}, nil
}
