package expr

import (
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// coerceToString converts a value to a string as $toLower, $toUpper and
// $substrBytes do: null and missing give "", numbers, dates and
// timestamps their text form; other types fail with 16007.
func coerceToString(v bson.RawValue) (string, error) {
	switch v.Type {
	case 0, bson.TypeNull, bson.TypeUndefined:
		return "", nil
	case bson.TypeString, bson.TypeSymbol:
		s, _ := v.StringValueOK()
		if v.Type == bson.TypeSymbol {
			s, _ = v.SymbolOK()
		}
		return s, nil
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		return numString(v), nil
	case bson.TypeDateTime:
		ms, _ := v.DateTimeOK()
		return formatISODate(ms), nil
	case bson.TypeTimestamp:
		t, i, _ := v.TimestampOK()
		return "Timestamp(" + itoa(int64(t)) + ", " + itoa(int64(i)) + ")", nil
	}
	return "", mongoerr.New(16007, "can't convert from BSON type %s to String", TypeName(v))
}

func numString(v bson.RawValue) string {
	n, _ := toNum(v)
	switch n.kind {
	case kInt32, kInt64:
		return itoa(n.i)
	case kDouble:
		return formatDouble(n.f)
	}
	return n.dRaw.String()
}

func stringArg(v bson.RawValue) (string, bool) {
	if v.Type != bson.TypeString {
		return "", false
	}
	return v.StringValueOK()
}

func evalConcat(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	var sb strings.Builder
	for _, v := range vals {
		if IsNullish(v) {
			return Null(), nil
		}
		s, ok := stringArg(v)
		if !ok {
			return Missing, mongoerr.New(16702, "$concat only supports strings, not %s", TypeName(v))
		}
		sb.WriteString(s)
	}
	return String(sb.String()), nil
}

func evalCase(name string, vals []bson.RawValue) (bson.RawValue, error) {
	s, err := coerceToString(vals[0])
	if err != nil {
		return Missing, err
	}
	// MongoDB changes the case of ASCII letters only.
	b := []byte(s)
	for i, c := range b {
		if name == "$toLower" && c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		} else if name == "$toUpper" && c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return String(string(b)), nil
}

func intArg(v bson.RawValue) (int64, bool) {
	n, ok := toNum(v)
	if !ok {
		return 0, false
	}
	if n.kind == kDouble || n.kind == kDecimal {
		i, ok := n.asInt64()
		if !ok {
			// MongoDB truncates non-integral indexes of $substrBytes.
			f := n.float()
			if f != f || f > 9e18 || f < -9e18 {
				return 0, false
			}
			return int64(f), true
		}
		return i, true
	}
	return n.i, true
}

func evalSubstrBytes(name string, vals []bson.RawValue) (bson.RawValue, error) {
	s, err := coerceToString(vals[0])
	if err != nil {
		return Missing, err
	}
	if !isNumber(vals[1]) {
		return Missing, mongoerr.New(16034, "%s: starting index must be a numeric type (is BSON type %s)", name, TypeName(vals[1]))
	}
	if !isNumber(vals[2]) {
		return Missing, mongoerr.New(16035, "%s: length must be a numeric type (is BSON type %s)", name, TypeName(vals[2]))
	}
	start, ok := intArg(vals[1])
	if !ok || start < 0 {
		return Missing, mongoerr.New(50752, "%s: starting index must be non-negative (got: %s)", name, numString(vals[1]))
	}
	length, ok := intArg(vals[2])
	if !ok {
		length = -1
	}
	if start >= int64(len(s)) {
		return String(""), nil
	}
	end := int64(len(s))
	if length >= 0 && start+length < end {
		end = start + length
	}
	if !utf8.RuneStart(s[start]) {
		return Missing, mongoerr.New(28656, "%s:  Invalid range, starting index is a UTF-8 continuation byte.", name)
	}
	if end < int64(len(s)) && !utf8.RuneStart(s[end]) {
		return Missing, mongoerr.New(28657, "%s:  Invalid range, ending index is in the middle of a UTF-8 character.", name)
	}
	return String(s[start:end]), nil
}

func evalSubstrCP(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	s, err := coerceToString(vals[0])
	if err != nil {
		return Missing, err
	}
	if !isNumber(vals[1]) {
		return Missing, mongoerr.New(34450, "$substrCP: starting index must be a numeric type (is BSON type %s)", TypeName(vals[1]))
	}
	if !isNumber(vals[2]) {
		return Missing, mongoerr.New(34452, "$substrCP: length must be a numeric type (is BSON type %s)", TypeName(vals[2]))
	}
	n1, _ := toNum(vals[1])
	start, ok := n1.asInt32()
	if !ok {
		return Missing, mongoerr.New(34451, "$substrCP: starting index cannot be represented as a 32-bit integral value")
	}
	n2, _ := toNum(vals[2])
	length, ok := n2.asInt32()
	if !ok {
		return Missing, mongoerr.New(34453, "$substrCP: length cannot be represented as a 32-bit integral value")
	}
	if start < 0 {
		return Missing, mongoerr.New(34454, "$substrCP: the starting index must be nonnegative integer.")
	}
	if length < 0 {
		return Missing, mongoerr.New(34455, "$substrCP: length must be a nonnegative integer.")
	}
	runes := []rune(s)
	if int(start) >= len(runes) {
		return String(""), nil
	}
	end := int(start) + int(length)
	if end > len(runes) {
		end = len(runes)
	}
	return String(string(runes[start:end])), nil
}

func evalStrLen(name string, vals []bson.RawValue) (bson.RawValue, error) {
	s, ok := stringArg(vals[0])
	if !ok {
		code := mongoerr.Code(34473)
		if name == "$strLenCP" {
			code = 34471
		}
		return Missing, mongoerr.New(code, "%s requires a string argument, found: %s", name, TypeName(vals[0]))
	}
	if name == "$strLenCP" {
		return Int32(int32(utf8.RuneCountInString(s))), nil
	}
	return Int32(int32(len(s))), nil
}

func evalSplit(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	if IsNullish(vals[0]) {
		return Null(), nil
	}
	s, ok := stringArg(vals[0])
	if !ok {
		return Missing, mongoerr.New(40085, "$split requires an expression that evaluates to a string as a first argument, found: %s", TypeName(vals[0]))
	}
	sep, ok := stringArg(vals[1])
	if !ok {
		return Missing, mongoerr.New(40086, "$split requires an expression that evaluates to a string as a second argument, found: %s", TypeName(vals[1]))
	}
	if sep == "" {
		return Missing, mongoerr.New(40087, "$split requires a non-empty separator")
	}
	var b ArrayBuilder
	for _, part := range strings.Split(s, sep) {
		b.Append(String(part))
	}
	return b.Value(), nil
}

// defaultTrim is MongoDB's default set of characters $trim removes.
const defaultTrim = "\x00 \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"

type trimExpr struct {
	name  string
	input Expr
	chars Expr
}

func parseTrim(p *parser, name string, arg bson.RawValue) (Expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(50696, "%s only supports an object as an argument, found: %s", name, TypeName(arg))
	}
	elems, err := Elems(arg.Value)
	if err != nil {
		return nil, err
	}
	t := &trimExpr{name: name}
	for _, el := range elems {
		e, err := p.parse(el.Value)
		if err != nil {
			return nil, err
		}
		switch el.Key {
		case "input":
			t.input = e
		case "chars":
			t.chars = e
		default:
			return nil, mongoerr.New(50694, "%s found an unknown argument: %s", name, el.Key)
		}
	}
	if t.input == nil {
		return nil, mongoerr.New(50695, "%s requires an 'input' field", name)
	}
	return t, nil
}

func (t *trimExpr) Eval(ctx *Context) (bson.RawValue, error) {
	v, err := t.input.Eval(ctx)
	if err != nil {
		return Missing, err
	}
	if IsNullish(v) {
		return Null(), nil
	}
	s, ok := stringArg(v)
	if !ok {
		return Missing, mongoerr.New(50699, "%s requires its input to be a string, got %s (of type %s) instead.", t.name, v.String(), TypeName(v))
	}
	cutset := defaultTrim
	if t.chars != nil {
		c, err := t.chars.Eval(ctx)
		if err != nil {
			return Missing, err
		}
		if IsNullish(c) {
			return Null(), nil
		}
		cs, ok := stringArg(c)
		if !ok {
			return Missing, mongoerr.New(50700, "%s requires 'chars' to be a string, got %s (of type %s) instead.", t.name, c.String(), TypeName(c))
		}
		cutset = cs
	}
	switch t.name {
	case "$ltrim":
		s = strings.TrimLeft(s, cutset)
	case "$rtrim":
		s = strings.TrimRight(s, cutset)
	default:
		s = strings.Trim(s, cutset)
	}
	return String(s), nil
}

func evalIndexOfBytes(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	if IsNullish(vals[0]) {
		return Null(), nil
	}
	s, ok := stringArg(vals[0])
	if !ok {
		return Missing, mongoerr.New(40091, "$indexOfBytes requires a string as the first argument, found: %s", TypeName(vals[0]))
	}
	sub, ok := stringArg(vals[1])
	if !ok {
		return Missing, mongoerr.New(40092, "$indexOfBytes requires a string as the second argument, found: %s", TypeName(vals[1]))
	}
	start, end := int64(0), int64(len(s))
	for i, v := range vals[2:] {
		n, ok := toNum(v)
		if !ok {
			return Missing, mongoerr.New(40096, "$indexOfBytes requires an integral starting index, found a value of type: %s, with value: %s", TypeName(v), v.String())
		}
		x, ok := n.asInt64()
		if !ok {
			return Missing, mongoerr.New(40096, "$indexOfBytes requires an integral starting index, found a value of type: %s, with value: %s", TypeName(v), v.String())
		}
		if x < 0 {
			return Missing, mongoerr.New(40097, "$indexOfBytes requires a nonnegative start index, found: %d", x)
		}
		if i == 0 {
			start = x
		} else if x < end {
			end = x
		}
	}
	if start > int64(len(s)) || start > end {
		return Int32(-1), nil
	}
	idx := strings.Index(s[start:end], sub)
	if idx < 0 {
		return Int32(-1), nil
	}
	return Int32(int32(start + int64(idx))), nil
}

func evalStrcasecmp(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	a, err := coerceToString(vals[0])
	if err != nil {
		return Missing, err
	}
	b, err := coerceToString(vals[1])
	if err != nil {
		return Missing, err
	}
	return Int32(int32(strings.Compare(strings.ToLower(a), strings.ToLower(b)))), nil
}

func itoa(i int64) string {
	if i == 0 {
		return "0"
	}
	var buf [20]byte
	pos := len(buf)
	neg := i < 0
	u := uint64(i)
	if neg {
		u = uint64(-i)
	}
	for u > 0 {
		pos--
		buf[pos] = byte('0' + u%10)
		u /= 10
	}
	if neg {
		pos--
		buf[pos] = '-'
	}
	return string(buf[pos:])
}
