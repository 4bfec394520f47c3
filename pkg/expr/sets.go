package expr

import (
	"sort"
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// distinct returns vals without duplicates (by value: 1 and 1.0 are one
// element), keeping first occurrences in order.
func distinct(vals []bson.RawValue) []bson.RawValue {
	seen := make(map[string]bool, len(vals))
	out := vals[:0:0]
	for _, v := range vals {
		k := string(keys.Encode(v))
		if !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}

func setOf(vals []bson.RawValue) map[string]bool {
	m := make(map[string]bool, len(vals))
	for _, v := range vals {
		m[string(keys.Encode(v))] = true
	}
	return m
}

// evalSetOp implements $setUnion, $setIntersection, $setDifference,
// $setEquals and $setIsSubset. Arrays are treated as sets: duplicates and
// order are ignored; the order of a result set is unspecified (PSDB keeps
// first occurrences in argument order).
func evalSetOp(name string, vals []bson.RawValue) (bson.RawValue, error) {
	arrays := make([][]bson.RawValue, len(vals))
	for i, v := range vals {
		if IsNullish(v) {
			switch name {
			case "$setUnion", "$setIntersection", "$setDifference":
				return Null(), nil
			}
		}
		if v.Type != bson.TypeArray {
			code := map[string]mongoerr.Code{"$setUnion": 17043, "$setIntersection": 17047, "$setEquals": 17044}[name]
			switch {
			case name == "$setDifference" && i == 0:
				code = 17048
			case name == "$setDifference":
				code = 17049
			case name == "$setIsSubset" && i == 0:
				code = 17046
			case name == "$setIsSubset":
				code = 17042
			}
			return Missing, mongoerr.New(code, "All operands of %s must be arrays. One argument is of type: %s", name, TypeName(v))
		}
		elems, err := arrayValues(v)
		if err != nil {
			return Missing, err
		}
		arrays[i] = elems
	}
	switch name {
	case "$setUnion":
		var all []bson.RawValue
		for _, a := range arrays {
			all = append(all, a...)
		}
		return Array(distinct(all)), nil
	case "$setIntersection":
		if len(arrays) == 0 {
			return Array(nil), nil
		}
		out := distinct(arrays[0])
		for _, a := range arrays[1:] {
			in := setOf(a)
			kept := out[:0:0]
			for _, v := range out {
				if in[string(keys.Encode(v))] {
					kept = append(kept, v)
				}
			}
			out = kept
		}
		return Array(out), nil
	case "$setDifference":
		minus := setOf(arrays[1])
		var out []bson.RawValue
		for _, v := range distinct(arrays[0]) {
			if !minus[string(keys.Encode(v))] {
				out = append(out, v)
			}
		}
		return Array(out), nil
	case "$setIsSubset":
		super := setOf(arrays[1])
		for _, v := range arrays[0] {
			if !super[string(keys.Encode(v))] {
				return Bool(false), nil
			}
		}
		return Bool(true), nil
	}
	// $setEquals
	first := setOf(arrays[0])
	for _, a := range arrays[1:] {
		s := setOf(a)
		if len(s) != len(first) {
			return Bool(false), nil
		}
		for k := range s {
			if !first[k] {
				return Bool(false), nil
			}
		}
	}
	return Bool(true), nil
}

func evalAnyAll(name string, vals []bson.RawValue) (bson.RawValue, error) {
	v := vals[0]
	if v.Type != bson.TypeArray {
		code := mongoerr.Code(17041)
		if name == "$allElementsTrue" {
			code = 17040
		}
		return Missing, mongoerr.New(code, "%s's argument must be an array, but is %s", name, TypeName(v))
	}
	elems, err := arrayValues(v)
	if err != nil {
		return Missing, err
	}
	for _, e := range elems {
		t := Truthy(e)
		if name == "$anyElementTrue" && t {
			return Bool(true), nil
		}
		if name == "$allElementsTrue" && !t {
			return Bool(false), nil
		}
	}
	return Bool(name == "$allElementsTrue"), nil
}

// indexRange reads the optional start and end arguments of $indexOf*.
func indexRange(name string, vals []bson.RawValue, length int64) (int64, int64, error) {
	start, end := int64(0), length
	for i, v := range vals {
		n, ok := toNum(v)
		x, ok2 := n.asInt64()
		if !ok || !ok2 {
			return 0, 0, mongoerr.New(40096, "%s requires an integral starting index, found a value of type: %s, with value: %s", name, TypeName(v), v.String())
		}
		if x < 0 {
			return 0, 0, mongoerr.New(40097, "%s requires a nonnegative start index, found: %d", name, x)
		}
		if i == 0 {
			start = x
		} else if x < end {
			end = x
		}
	}
	return start, end, nil
}

func evalIndexOfArray(name string, vals []bson.RawValue) (bson.RawValue, error) {
	if IsNullish(vals[0]) {
		return Null(), nil
	}
	if vals[0].Type != bson.TypeArray {
		return Missing, mongoerr.New(40090, "$indexOfArray requires an array as a first argument, found: %s", TypeName(vals[0]))
	}
	elems, err := arrayValues(vals[0])
	if err != nil {
		return Missing, err
	}
	start, end, err := indexRange(name, vals[2:], int64(len(elems)))
	if err != nil {
		return Missing, err
	}
	for i := start; i < end && i < int64(len(elems)); i++ {
		if Equal(elems[i], vals[1]) {
			return Int32(int32(i)), nil
		}
	}
	return Int32(-1), nil
}

func evalIndexOfCP(name string, vals []bson.RawValue) (bson.RawValue, error) {
	if IsNullish(vals[0]) {
		return Null(), nil
	}
	s, ok := stringArg(vals[0])
	if !ok {
		return Missing, mongoerr.New(40093, "$indexOfCP requires a string as the first argument, found: %s", TypeName(vals[0]))
	}
	sub, ok := stringArg(vals[1])
	if !ok {
		return Missing, mongoerr.New(40094, "$indexOfCP requires a string as the second argument, found: %s", TypeName(vals[1]))
	}
	runes := []rune(s)
	start, end, err := indexRange(name, vals[2:], int64(len(runes)))
	if err != nil {
		return Missing, err
	}
	if start > int64(len(runes)) || start > end {
		return Int32(-1), nil
	}
	hay := string(runes[start:min(end, int64(len(runes)))])
	idx := strings.Index(hay, sub)
	if idx < 0 {
		return Int32(-1), nil
	}
	return Int32(int32(start + int64(utf8.RuneCountInString(hay[:idx])))), nil
}

// sortArray is {$sortArray: {input, sortBy}}: sortBy 1/-1 sorts whole
// values, a document sorts documents by fields.
type sortArray struct {
	input  Expr
	byDoc  []sortArrayKey
	direct int // 1 or -1 when sorting whole values
}

type sortArrayKey struct {
	path []string
	desc bool
}

func parseSortArray(p *parser, _ string, arg bson.RawValue) (Expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(2942500, "$sortArray requires an object as an argument, found: %s", TypeName(arg))
	}
	elems, err := Elems(arg.Value)
	if err != nil {
		return nil, err
	}
	s := &sortArray{}
	var haveSort bool
	for _, el := range elems {
		switch el.Key {
		case "input":
			if s.input, err = p.parse(el.Value); err != nil {
				return nil, err
			}
		case "sortBy":
			haveSort = true
			if n, ok := toNum(el.Value); ok {
				d, ok := n.asInt64()
				if !ok || (d != 1 && d != -1) {
					return nil, mongoerr.New(2942505, "$sortArray sortBy must be 1, -1 or a sort specification document")
				}
				s.direct = int(d)
				continue
			}
			if el.Value.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(2942505, "$sortArray sortBy must be 1, -1 or a sort specification document")
			}
			keysSpec, err := Elems(el.Value.Value)
			if err != nil {
				return nil, err
			}
			if len(keysSpec) == 0 {
				return nil, mongoerr.New(2942505, "$sortArray sortBy must not be an empty document")
			}
			for _, k := range keysSpec {
				path, err := ParsePath(k.Key)
				if err != nil {
					return nil, err
				}
				n, ok := toNum(k.Value)
				d, ok2 := n.asInt64()
				if !ok || !ok2 || (d != 1 && d != -1) {
					return nil, mongoerr.New(15975, "$sort key ordering must be 1 (for ascending) or -1 (for descending)")
				}
				s.byDoc = append(s.byDoc, sortArrayKey{path: path, desc: d < 0})
			}
		default:
			return nil, mongoerr.New(2942501, "$sortArray found an unknown argument: %s", el.Key)
		}
	}
	if s.input == nil {
		return nil, mongoerr.New(2942502, "$sortArray requires 'input' to be specified")
	}
	if !haveSort {
		return nil, mongoerr.New(2942503, "$sortArray requires 'sortBy' to be specified")
	}
	return s, nil
}

func (s *sortArray) Eval(ctx *Context) (bson.RawValue, error) {
	in, err := s.input.Eval(ctx)
	if err != nil {
		return Missing, err
	}
	if IsNullish(in) {
		return Null(), nil
	}
	if in.Type != bson.TypeArray {
		return Missing, mongoerr.New(2942504, "The input argument to $sortArray must be an array, but was of type: %s", TypeName(in))
	}
	elems, err := arrayValues(in)
	if err != nil {
		return Missing, err
	}
	less := func(a, b bson.RawValue) bool {
		if s.direct != 0 {
			return Compare(a, b)*s.direct < 0
		}
		for _, k := range s.byDoc {
			c := Compare(sortKeyOf(a, k.path), sortKeyOf(b, k.path))
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	}
	sort.SliceStable(elems, func(i, j int) bool { return less(elems[i], elems[j]) })
	return Array(elems), nil
}

// sortKeyOf is the value an element sorts by on a path; elements that are
// not documents, or lack the path, sort as null.
func sortKeyOf(v bson.RawValue, path []string) bson.RawValue {
	if v.Type != bson.TypeEmbeddedDocument {
		return Null()
	}
	out := getPath(v, path)
	if out.Type == 0 {
		return Null()
	}
	return out
}

// replaceExpr is $replaceOne / $replaceAll.
type replaceExpr struct {
	all                      bool
	input, find, replacement Expr
}

func parseReplace(p *parser, name string, arg bson.RawValue) (Expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(51751, "%s requires an object as an argument, found: %s", name, TypeName(arg))
	}
	elems, err := Elems(arg.Value)
	if err != nil {
		return nil, err
	}
	r := &replaceExpr{all: name == "$replaceAll"}
	for _, el := range elems {
		e, err := p.parse(el.Value)
		if err != nil {
			return nil, err
		}
		switch el.Key {
		case "input":
			r.input = e
		case "find":
			r.find = e
		case "replacement":
			r.replacement = e
		default:
			return nil, mongoerr.New(51750, "%s found an unknown argument: %s", name, el.Key)
		}
	}
	switch {
	case r.input == nil:
		return nil, mongoerr.New(51749, "%s requires 'input' to be specified", name)
	case r.find == nil:
		return nil, mongoerr.New(51748, "%s requires 'find' to be specified", name)
	case r.replacement == nil:
		return nil, mongoerr.New(51747, "%s requires 'replacement' to be specified", name)
	}
	return r, nil
}

func (r *replaceExpr) Eval(ctx *Context) (bson.RawValue, error) {
	name := "$replaceOne"
	if r.all {
		name = "$replaceAll"
	}
	var strs [3]string
	anyNull := false
	for i, e := range []Expr{r.input, r.find, r.replacement} {
		v, err := e.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		if IsNullish(v) {
			anyNull = true
			continue
		}
		s, ok := stringArg(v)
		if !ok {
			field := [3]string{"input", "find", "replacement"}[i]
			return Missing, mongoerr.New(51746-mongoerr.Code(i), "%s requires that '%s' be a string, found: %s", name, field, v.String())
		}
		strs[i] = s
	}
	if anyNull {
		return Null(), nil
	}
	if r.all {
		return String(strings.ReplaceAll(strs[0], strs[1], strs[2])), nil
	}
	return String(strings.Replace(strs[0], strs[1], strs[2], 1)), nil
}
