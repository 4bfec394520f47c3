package expr

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func evalType(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	return String(TypeName(vals[0])), nil
}

func evalIsNumber(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	return Bool(isNumber(vals[0])), nil
}

// evalTo implements $toString, $toInt, ... as $convert without onError or
// onNull: null and missing give null, a failed conversion fails with
// ConversionFailure (241).
func evalTo(name string, vals []bson.RawValue) (bson.RawValue, error) {
	target := map[string]string{
		"$toString": "string", "$toInt": "int", "$toLong": "long", "$toDouble": "double",
		"$toDecimal": "decimal", "$toBool": "bool", "$toDate": "date", "$toObjectId": "objectId",
	}[name]
	if IsNullish(vals[0]) {
		return Null(), nil
	}
	return convertValue(vals[0], target)
}

type convertExpr struct {
	input, to, onError, onNull Expr
}

func parseConvert(p *parser, _ string, arg bson.RawValue) (Expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(mongoerr.FailedToParse, "$convert expects an object of named arguments but found: %s", TypeName(arg))
	}
	elems, err := Elems(arg.Value)
	if err != nil {
		return nil, err
	}
	c := &convertExpr{}
	for _, el := range elems {
		e, err := p.parse(el.Value)
		if err != nil {
			return nil, err
		}
		switch el.Key {
		case "input":
			c.input = e
		case "to":
			c.to = e
		case "onError":
			c.onError = e
		case "onNull":
			c.onNull = e
		default:
			return nil, mongoerr.New(mongoerr.FailedToParse, "$convert found an unknown argument: %s", el.Key)
		}
	}
	if c.input == nil {
		return nil, mongoerr.New(mongoerr.FailedToParse, "Missing 'input' parameter to $convert")
	}
	if c.to == nil {
		return nil, mongoerr.New(mongoerr.FailedToParse, "Missing 'to' parameter to $convert")
	}
	return c, nil
}

var typeNumbers = map[int32]string{1: "double", 2: "string", 7: "objectId", 8: "bool", 9: "date", 16: "int", 18: "long", 19: "decimal"}

func (c *convertExpr) Eval(ctx *Context) (bson.RawValue, error) {
	in, err := c.input.Eval(ctx)
	if err != nil {
		return Missing, err
	}
	to, err := c.to.Eval(ctx)
	if err != nil {
		return Missing, err
	}
	var target string
	switch {
	case IsNullish(to):
		return Null(), nil
	case to.Type == bson.TypeString:
		target, _ = to.StringValueOK()
		switch target {
		case "double", "string", "objectId", "bool", "date", "int", "long", "decimal":
		default:
			return Missing, mongoerr.New(mongoerr.BadValue, "Unknown type name: %s", target)
		}
	case isNumber(to):
		n, _ := toNum(to)
		i, ok := n.asInt32()
		if target = typeNumbers[i]; !ok || target == "" {
			return Missing, mongoerr.New(mongoerr.FailedToParse, "In $convert, numeric value for 'to' does not correspond to a BSON type: %s", to.String())
		}
	default:
		return Missing, mongoerr.New(mongoerr.FailedToParse, "$convert's 'to' argument must be a string or number, but is %s", TypeName(to))
	}
	if IsNullish(in) {
		if c.onNull != nil {
			return c.onNull.Eval(ctx)
		}
		return Null(), nil
	}
	out, err := convertValue(in, target)
	if err != nil && c.onError != nil && mongoerr.HasCode(err, mongoerr.ConversionFailure) {
		return c.onError.Eval(ctx)
	}
	return out, err
}

func convFail(v bson.RawValue, target string) error {
	return mongoerr.New(mongoerr.ConversionFailure, "Unsupported conversion from %s to %s in $convert with no onError value", TypeName(v), target)
}

func convertValue(v bson.RawValue, target string) (bson.RawValue, error) {
	switch target {
	case "string":
		switch v.Type {
		case bson.TypeString, bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128, bson.TypeDateTime:
			s, err := coerceToString(v)
			return String(s), err
		case bson.TypeBoolean:
			b, _ := v.BooleanOK()
			return String(strconv.FormatBool(b)), nil
		case bson.TypeObjectID:
			oid, _ := v.ObjectIDOK()
			return String(oid.Hex()), nil
		}
	case "bool":
		switch v.Type {
		case bson.TypeBoolean:
			return v, nil
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
			return Bool(Truthy(v)), nil
		case bson.TypeString, bson.TypeDateTime, bson.TypeObjectID, bson.TypeEmbeddedDocument, bson.TypeArray, bson.TypeBinary, bson.TypeTimestamp, bson.TypeRegex:
			return Bool(true), nil
		}
	case "int", "long":
		i, ok, err := toInteger(v, target)
		if err != nil {
			return Missing, err
		}
		if ok {
			if target == "int" {
				if i < math.MinInt32 || i > math.MaxInt32 {
					return Missing, mongoerr.New(mongoerr.ConversionFailure, "Conversion would overflow target type in $convert with no onError value: %s", v.String())
				}
				return Int32(int32(i)), nil
			}
			return Int64(i), nil
		}
	case "double":
		switch v.Type {
		case bson.TypeBoolean:
			b, _ := v.BooleanOK()
			if b {
				return Double(1), nil
			}
			return Double(0), nil
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
			n, _ := toNum(v)
			return Double(n.float()), nil
		case bson.TypeString:
			s, _ := v.StringValueOK()
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || strings.TrimSpace(s) != s {
				return Missing, mongoerr.New(mongoerr.ConversionFailure, "Failed to parse number '%s' in $convert with no onError value", s)
			}
			return Double(f), nil
		case bson.TypeDateTime:
			ms, _ := v.DateTimeOK()
			return Double(float64(ms)), nil
		}
	case "decimal":
		switch v.Type {
		case bson.TypeBoolean:
			b, _ := v.BooleanOK()
			if b {
				return decNum(big.NewRat(1, 1)).value(), nil
			}
			return decNum(new(big.Rat)).value(), nil
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
			n, _ := toNum(v)
			if n.kind == kDecimal {
				return v, nil
			}
			if n.kind == kDouble {
				return decimalFromFloat(n.f).value(), nil
			}
			return decNum(new(big.Rat).SetInt64(n.i)).value(), nil
		case bson.TypeString:
			s, _ := v.StringValueOK()
			d, err := bson.ParseDecimal128(s)
			if err != nil {
				return Missing, mongoerr.New(mongoerr.ConversionFailure, "Failed to parse number '%s' in $convert with no onError value", s)
			}
			return Decimal(d), nil
		case bson.TypeDateTime:
			ms, _ := v.DateTimeOK()
			return decNum(new(big.Rat).SetInt64(ms)).value(), nil
		}
	case "date":
		switch v.Type {
		case bson.TypeDateTime:
			return v, nil
		case bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
			n, _ := toNum(v)
			f := n.float()
			if math.IsNaN(f) || math.IsInf(f, 0) || f >= 9.2e18 || f <= -9.2e18 {
				return Missing, mongoerr.New(mongoerr.ConversionFailure, "Conversion would overflow target type in $convert with no onError value")
			}
			return DateTime(int64(f)), nil
		case bson.TypeTimestamp, bson.TypeObjectID:
			ms, _ := dateMillis(v)
			return DateTime(ms), nil
		case bson.TypeString:
			s, _ := v.StringValueOK()
			for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z0700", "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
				if t, err := time.Parse(layout, s); err == nil {
					return DateTime(t.UnixMilli()), nil
				}
			}
			return Missing, mongoerr.New(mongoerr.ConversionFailure, "Error parsing date string '%s' in $convert with no onError value", s)
		}
	case "objectId":
		switch v.Type {
		case bson.TypeObjectID:
			return v, nil
		case bson.TypeString:
			s, _ := v.StringValueOK()
			oid, err := bson.ObjectIDFromHex(s)
			if err != nil {
				return Missing, mongoerr.New(mongoerr.ConversionFailure, "Failed to parse objectId '%s' in $convert with no onError value", s)
			}
			return bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]}, nil
		}
	}
	return Missing, convFail(v, target)
}

// toInteger converts v to an int64 for $toInt/$toLong (doubles and
// decimals truncate toward zero). ok is false when the type cannot be
// converted at all.
func toInteger(v bson.RawValue, target string) (int64, bool, error) {
	switch v.Type {
	case bson.TypeBoolean:
		b, _ := v.BooleanOK()
		if b {
			return 1, true, nil
		}
		return 0, true, nil
	case bson.TypeInt32, bson.TypeInt64:
		n, _ := toNum(v)
		return n.i, true, nil
	case bson.TypeDouble, bson.TypeDecimal128:
		n, _ := toNum(v)
		f := math.Trunc(n.float())
		if math.IsNaN(f) || math.IsInf(f, 0) || f >= 9.223372036854775807e18 || f < -9.223372036854775808e18 {
			return 0, false, mongoerr.New(mongoerr.ConversionFailure, "Conversion would overflow target type in $convert with no onError value: %s", v.String())
		}
		return int64(f), true, nil
	case bson.TypeString:
		s, _ := v.StringValueOK()
		bits := 64
		if target == "int" {
			bits = 32
		}
		i, err := strconv.ParseInt(s, 10, bits)
		if err != nil {
			return 0, false, mongoerr.New(mongoerr.ConversionFailure, "Failed to parse number '%s' in $convert with no onError value", s)
		}
		return i, true, nil
	case bson.TypeDateTime:
		if target == "long" {
			ms, _ := v.DateTimeOK()
			return ms, true, nil
		}
	}
	return 0, false, nil
}
