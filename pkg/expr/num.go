package expr

import (
	"math"
	"math/big"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// numKind orders numeric types by width: an operation on two numbers
// produces the wider kind (int32 < int64 < double < decimal), as MongoDB's
// arithmetic does.
type numKind int

const (
	kInt32 numKind = iota
	kInt64
	kDouble
	kDecimal
)

// num is a decoded BSON number.
type num struct {
	kind numKind
	i    int64   // kInt32, kInt64
	f    float64 // kDouble
	d    *big.Rat
	dRaw bson.Decimal128 // kDecimal (exact source value; NaN/Inf kept here)
}

func isNumber(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		return true
	}
	return false
}

func toNum(v bson.RawValue) (num, bool) {
	switch v.Type {
	case bson.TypeInt32:
		i, ok := v.Int32OK()
		return num{kind: kInt32, i: int64(i)}, ok
	case bson.TypeInt64:
		i, ok := v.Int64OK()
		return num{kind: kInt64, i: i}, ok
	case bson.TypeDouble:
		f, ok := v.DoubleOK()
		return num{kind: kDouble, f: f}, ok
	case bson.TypeDecimal128:
		d, ok := v.Decimal128OK()
		return num{kind: kDecimal, dRaw: d}, ok
	}
	return num{}, false
}

func intNum(i int64) num {
	if i >= math.MinInt32 && i <= math.MaxInt32 {
		return num{kind: kInt32, i: i}
	}
	return num{kind: kInt64, i: i}
}

func (n num) isZero() bool {
	switch n.kind {
	case kInt32, kInt64:
		return n.i == 0
	case kDouble:
		return n.f == 0
	}
	if n.d != nil {
		return n.d.Sign() == 0
	}
	bi, _, err := n.dRaw.BigInt()
	return err == nil && bi.Sign() == 0
}

// float returns n as a float64 (decimals are rounded).
func (n num) float() float64 {
	switch n.kind {
	case kInt32, kInt64:
		return float64(n.i)
	case kDouble:
		return n.f
	}
	f, _ := strconv.ParseFloat(decString(n.dRaw), 64)
	return f
}

// decString renders a decimal so strconv.ParseFloat accepts it.
func decString(d bson.Decimal128) string {
	switch {
	case d.IsNaN():
		return "NaN"
	case d.IsInf() > 0:
		return "+Inf"
	case d.IsInf() < 0:
		return "-Inf"
	}
	return d.String()
}

// rat returns n as an exact rational, or false for NaN and infinities.
func (n num) rat() (*big.Rat, bool) {
	switch n.kind {
	case kInt32, kInt64:
		return new(big.Rat).SetInt64(n.i), true
	case kDouble:
		if math.IsNaN(n.f) || math.IsInf(n.f, 0) {
			return nil, false
		}
		// Doubles convert to decimal with their shortest round-trip digits,
		// as MongoDB converts a double to decimal (15 significant digits
		// would lose the value's identity).
		r, ok := new(big.Rat).SetString(strconv.FormatFloat(n.f, 'g', -1, 64))
		return r, ok
	}
	if n.d != nil {
		return n.d, true
	}
	bi, exp, err := n.dRaw.BigInt()
	if err != nil {
		return nil, false
	}
	r := new(big.Rat).SetInt(bi)
	if exp > 0 {
		r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)))
	} else if exp < 0 {
		r.Quo(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-exp)), nil)))
	}
	return r, true
}

// decimalFromRat rounds r to 34 significant digits (half to even).
func decimalFromRat(r *big.Rat) bson.Decimal128 {
	if r.Sign() == 0 {
		d, _ := bson.ParseDecimal128("0")
		return d
	}
	// Find exponent e such that |r| / 10^e has 34 integer digits.
	neg := r.Sign() < 0
	a := new(big.Rat).Abs(r)
	f, _ := a.Float64()
	e := 0
	if f > 0 && !math.IsInf(f, 0) {
		e = int(math.Floor(math.Log10(f))) - 33
	} else {
		// Out of float range: estimate from the sizes of num and denom.
		e = len(a.Num().String()) - len(a.Denom().String()) - 33
	}
	scaled := new(big.Rat).Set(a)
	pow := func(k int) *big.Rat {
		return new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(k)), nil))
	}
	if e > 0 {
		scaled.Quo(scaled, pow(e))
	} else if e < 0 {
		scaled.Mul(scaled, pow(-e))
	}
	q, rem := new(big.Int).QuoRem(scaled.Num(), scaled.Denom(), new(big.Int))
	// Half-even rounding.
	twice := new(big.Int).Mul(rem, big.NewInt(2))
	switch twice.Cmp(scaled.Denom()) {
	case 1:
		q.Add(q, big.NewInt(1))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(1))
		}
	}
	limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(34), nil)
	for q.Cmp(limit) >= 0 {
		q.Quo(q, big.NewInt(10))
		e++
	}
	// Strip trailing zeros produced by the scaling, keeping the value.
	ten := big.NewInt(10)
	m := new(big.Int)
	for e < 0 && q.Sign() != 0 {
		qq, mm := new(big.Int).QuoRem(q, ten, m)
		if mm.Sign() != 0 {
			break
		}
		q = qq
		e++
	}
	if neg {
		q.Neg(q)
	}
	d, ok := bson.ParseDecimal128FromBigInt(q, e)
	if !ok {
		if e > 0 {
			if neg {
				return bson.NewDecimal128(0xF800000000000000, 0)
			}
			return bson.NewDecimal128(0x7800000000000000, 0)
		}
		d, _ = bson.ParseDecimal128("0")
	}
	return d
}

// value encodes n as a BSON value.
func (n num) value() bson.RawValue {
	switch n.kind {
	case kInt32:
		return Int32(int32(n.i))
	case kInt64:
		return Int64(n.i)
	case kDouble:
		return Double(n.f)
	}
	if n.d != nil {
		return Decimal(decimalFromRat(n.d))
	}
	return Decimal(n.dRaw)
}

func decNum(r *big.Rat) num { return num{kind: kDecimal, d: r} }

func nanDecimal() num {
	return num{kind: kDecimal, dRaw: bson.NewDecimal128(0x7C00000000000000, 0)}
}

// decimalFromFloat converts a float result to a decimal num.
func decimalFromFloat(f float64) num {
	if math.IsNaN(f) {
		return nanDecimal()
	}
	if math.IsInf(f, 1) {
		return num{kind: kDecimal, dRaw: bson.NewDecimal128(0x7800000000000000, 0)}
	}
	if math.IsInf(f, -1) {
		return num{kind: kDecimal, dRaw: bson.NewDecimal128(0xF800000000000000, 0)}
	}
	r, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	return decNum(r)
}

func maxKind(a, b numKind) numKind {
	if a > b {
		return a
	}
	return b
}

type arithOp int

const (
	opAdd arithOp = iota
	opSub
	opMul
)

// arith applies +, - or * with MongoDB's type widening: int32 results that
// overflow become int64, int64 results that overflow become double.
func arith(op arithOp, a, b num) num {
	k := maxKind(a.kind, b.kind)
	switch k {
	case kInt32, kInt64:
		var r int64
		var overflow bool
		switch op {
		case opAdd:
			r = a.i + b.i
			overflow = (a.i >= 0) == (b.i >= 0) && (r >= 0) != (a.i >= 0)
		case opSub:
			r = a.i - b.i
			overflow = (a.i >= 0) != (b.i >= 0) && (r >= 0) != (a.i >= 0)
		case opMul:
			if a.i != 0 && b.i != 0 {
				r = a.i * b.i
				overflow = r/b.i != a.i || (a.i == -1 && b.i == math.MinInt64) || (b.i == -1 && a.i == math.MinInt64)
			}
		}
		if overflow {
			return num{kind: kDouble, f: floatArith(op, float64(a.i), float64(b.i))}
		}
		if k == kInt32 {
			return intNum(r)
		}
		return num{kind: kInt64, i: r}
	case kDouble:
		return num{kind: kDouble, f: floatArith(op, a.float(), b.float())}
	}
	ra, okA := a.rat()
	rb, okB := b.rat()
	if !okA || !okB {
		return decimalFromFloat(floatArith(op, a.float(), b.float()))
	}
	r := new(big.Rat)
	switch op {
	case opAdd:
		r.Add(ra, rb)
	case opSub:
		r.Sub(ra, rb)
	case opMul:
		r.Mul(ra, rb)
	}
	return decNum(r)
}

func floatArith(op arithOp, a, b float64) float64 {
	switch op {
	case opAdd:
		return a + b
	case opSub:
		return a - b
	}
	return a * b
}

// cmpNum compares two numbers by value.
func cmpNum(a, b num) int { return Compare(a.value(), b.value()) }

// asInt64 returns n as an exact int64 if it has an integral value in range.
func (n num) asInt64() (int64, bool) {
	switch n.kind {
	case kInt32, kInt64:
		return n.i, true
	case kDouble:
		if n.f != math.Trunc(n.f) || n.f < -9.223372036854775808e18 || n.f >= 9.223372036854775808e18 {
			return 0, false
		}
		return int64(n.f), true
	}
	r, ok := n.rat()
	if !ok || !r.IsInt() || !r.Num().IsInt64() {
		return 0, false
	}
	return r.Num().Int64(), true
}

// asInt32 returns n as an exact int32 if it has an integral value in range.
func (n num) asInt32() (int32, bool) {
	i, ok := n.asInt64()
	if !ok || i < math.MinInt32 || i > math.MaxInt32 {
		return 0, false
	}
	return int32(i), true
}

// Sum is a running sum of numbers with MongoDB's type widening ($sum, and
// the numerator of $avg); non-numeric values are ignored. The zero value
// is an int32 0. It is not safe for concurrent use.
type Sum struct {
	n     num
	count int64
}

// Add adds v if it is a number and reports whether it was.
func (s *Sum) Add(v bson.RawValue) bool {
	n, ok := toNum(v)
	if !ok {
		return false
	}
	s.n = arith(opAdd, s.n, n)
	s.count++
	return true
}

// Count returns how many numbers were added.
func (s *Sum) Count() int64 { return s.count }

// Value returns the sum.
func (s *Sum) Value() bson.RawValue { return s.n.value() }

// Avg returns the mean of the numbers added, or null when there were none.
func (s *Sum) Avg() bson.RawValue { return Avg(s.n.value(), s.count) }
