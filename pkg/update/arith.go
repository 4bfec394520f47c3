package update

import (
	"encoding/binary"
	"math"
	"math/big"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Arithmetic for $inc and $mul with MongoDB's type rules:
//   - int32 op int32 gives int32, or int64 when the result does not fit;
//   - int32/int64 op int64 gives int64; an int64 overflow is an error
//     (MongoDB refuses rather than wrapping or switching to double);
//   - any double operand (without decimal) gives double;
//   - any decimal operand gives decimal (doubles converted with 15
//     significant digits, as MongoDB does).

func isNumber(t bson.Type) bool {
	switch t {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		return true
	}
	return false
}

func int32Val(i int32) bson.RawValue {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, uint32(i))
	return bson.RawValue{Type: bson.TypeInt32, Value: b}
}

func int64Val(i int64) bson.RawValue {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(i))
	return bson.RawValue{Type: bson.TypeInt64, Value: b}
}

func doubleVal(f float64) bson.RawValue {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, math.Float64bits(f))
	return bson.RawValue{Type: bson.TypeDouble, Value: b}
}

func decimalVal(d bson.Decimal128) bson.RawValue {
	h, l := d.GetBytes()
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, l)
	binary.LittleEndian.PutUint64(b[8:], h)
	return bson.RawValue{Type: bson.TypeDecimal128, Value: b}
}

func asInt64(v bson.RawValue) int64 {
	if v.Type == bson.TypeInt32 {
		return int64(v.Int32())
	}
	return v.Int64()
}

func asFloat(v bson.RawValue) float64 {
	switch v.Type {
	case bson.TypeInt32:
		return float64(v.Int32())
	case bson.TypeInt64:
		return float64(v.Int64())
	case bson.TypeDouble:
		return v.Double()
	}
	return 0
}

// arith applies $inc (mul=false) or $mul; ok is false on int64 overflow.
func arith(a, b bson.RawValue, mul bool) (bson.RawValue, bool) {
	switch {
	case a.Type == bson.TypeDecimal128 || b.Type == bson.TypeDecimal128:
		return decimalVal(decArith(toDecimal(a), toDecimal(b), mul)), true
	case a.Type == bson.TypeDouble || b.Type == bson.TypeDouble:
		x, y := asFloat(a), asFloat(b)
		if mul {
			return doubleVal(x * y), true
		}
		return doubleVal(x + y), true
	case a.Type == bson.TypeInt32 && b.Type == bson.TypeInt32:
		x, y := int64(a.Int32()), int64(b.Int32())
		r := x + y
		if mul {
			r = x * y
		}
		if r >= math.MinInt32 && r <= math.MaxInt32 {
			return int32Val(int32(r)), true
		}
		return int64Val(r), true
	}
	x, y := asInt64(a), asInt64(b)
	if mul {
		if x == 0 || y == 0 {
			return int64Val(0), true
		}
		r := x * y
		if r/y != x || (x == -1 && y == math.MinInt64) || (y == -1 && x == math.MinInt64) {
			return bson.RawValue{}, false
		}
		return int64Val(r), true
	}
	r := x + y
	if (y > 0 && r < x) || (y < 0 && r > x) {
		return bson.RawValue{}, false
	}
	return int64Val(r), true
}

func toDecimal(v bson.RawValue) bson.Decimal128 {
	var s string
	switch v.Type {
	case bson.TypeDecimal128:
		return v.Decimal128()
	case bson.TypeInt32, bson.TypeInt64:
		s = strconv.FormatInt(asInt64(v), 10)
	case bson.TypeDouble:
		f := v.Double()
		switch {
		case math.IsNaN(f):
			s = "NaN"
		case math.IsInf(f, 1):
			s = "Infinity"
		case math.IsInf(f, -1):
			s = "-Infinity"
		default:
			s = strconv.FormatFloat(f, 'e', 14, 64)
		}
	default:
		s = "0"
	}
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		d, _ = bson.ParseDecimal128("NaN")
	}
	return d
}

func decSpecial(s string) bson.Decimal128 {
	d, _ := bson.ParseDecimal128(s)
	return d
}

// decArith adds or multiplies two decimals, rounding half-even to 34
// significant digits.
func decArith(a, b bson.Decimal128, mul bool) bson.Decimal128 {
	if a.IsNaN() || b.IsNaN() {
		return decSpecial("NaN")
	}
	ai, bi := a.IsInf(), b.IsInf()
	if ai != 0 || bi != 0 {
		if mul {
			if (ai != 0 && b.IsZero()) || (bi != 0 && a.IsZero()) {
				return decSpecial("NaN")
			}
			sa, sb := decSign(a), decSign(b)
			if sa*sb < 0 {
				return decSpecial("-Infinity")
			}
			return decSpecial("Infinity")
		}
		if ai != 0 && bi != 0 && ai != bi {
			return decSpecial("NaN")
		}
		if ai > 0 || bi > 0 {
			return decSpecial("Infinity")
		}
		return decSpecial("-Infinity")
	}
	ac, ae, err1 := a.BigInt()
	bc, be, err2 := b.BigInt()
	if err1 != nil || err2 != nil {
		return decSpecial("NaN")
	}
	var c *big.Int
	var e int
	if mul {
		c = new(big.Int).Mul(ac, bc)
		e = ae + be
	} else {
		// Align exponents to the smaller one (at most 10^12287: cheap).
		if ae > be {
			ac, ae, bc, be = bc, be, ac, ae
		}
		scaled := new(big.Int).Mul(bc, new(big.Int).Exp(bigTen, big.NewInt(int64(be-ae)), nil))
		c = new(big.Int).Add(ac, scaled)
		e = ae
	}
	return roundDecimal(c, e)
}

func decSign(d bson.Decimal128) int {
	if d.IsInf() != 0 {
		return d.IsInf()
	}
	h, _ := d.GetBytes()
	if h>>63 == 1 {
		return -1
	}
	return 1
}

var (
	bigTen     = big.NewInt(10)
	maxDecCoef = new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(34), nil), big.NewInt(1))
)

func roundDecimal(c *big.Int, e int) bson.Decimal128 {
	neg := c.Sign() < 0
	m := new(big.Int).Abs(c)
	// Drop the digits beyond 34 (and below the smallest exponent) in one
	// division, rounding half to even.
	excess := len(m.Text(10)) - 34
	if e+excess < -6176 {
		excess = -6176 - e
	}
	if excess > 0 {
		div := new(big.Int).Exp(bigTen, big.NewInt(int64(excess)), nil)
		q, r := new(big.Int).QuoRem(m, div, new(big.Int))
		switch r.Lsh(r, 1).Cmp(div) {
		case 1:
			q.Add(q, big.NewInt(1))
		case 0:
			if q.Bit(0) == 1 {
				q.Add(q, big.NewInt(1))
			}
		}
		m, e = q, e+excess
		if m.Cmp(maxDecCoef) > 0 { // rounding carried to 10^34
			m.Quo(m, bigTen)
			e++
		}
	}
	if e > 6111 {
		if m.Sign() == 0 {
			e = 6111
		} else {
			// Try to absorb the exponent into the coefficient.
			for e > 6111 && m.Cmp(maxDecCoef) <= 0 {
				m.Mul(m, bigTen)
				e--
			}
			if e > 6111 || m.Cmp(maxDecCoef) > 0 {
				if neg {
					return decSpecial("-Infinity")
				}
				return decSpecial("Infinity")
			}
		}
	}
	if neg {
		m.Neg(m)
	}
	d, ok := bson.ParseDecimal128FromBigInt(m, e)
	if !ok {
		return decSpecial("NaN")
	}
	return d
}

// numString renders a value as MongoDB does in arithmetic errors.
func numString(v bson.RawValue) string {
	switch v.Type {
	case bson.TypeInt64:
		return "(NumberLong)" + strconv.FormatInt(v.Int64(), 10)
	case bson.TypeInt32:
		return "(NumberInt)" + strconv.Itoa(int(v.Int32()))
	}
	return formatValue(v)
}

func dateVal(ms int64) bson.RawValue {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(ms))
	return bson.RawValue{Type: bson.TypeDateTime, Value: b}
}

func timestampVal(t, i uint32) bson.RawValue {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, i)
	binary.LittleEndian.PutUint32(b[4:], t)
	return bson.RawValue{Type: bson.TypeTimestamp, Value: b}
}
