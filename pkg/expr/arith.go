package expr

import (
	"math"
	"math/big"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// evalAdd sums numbers, and at most one date (the result is then a date).
// A null or missing argument makes the result null.
func evalAdd(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	sum := num{kind: kInt32}
	var date int64
	hasDate := false
	for _, v := range vals {
		switch {
		case IsNullish(v):
			return Null(), nil
		case v.Type == bson.TypeDateTime:
			if hasDate {
				return Missing, mongoerr.New(16612, "only one date allowed in an $add expression")
			}
			hasDate = true
			date, _ = v.DateTimeOK()
		case isNumber(v):
			n, _ := toNum(v)
			sum = arith(opAdd, sum, n)
		default:
			return Missing, mongoerr.New(mongoerr.TypeMismatch, "$add only supports numeric or date types, not %s", TypeName(v))
		}
	}
	if hasDate {
		ms, ok := roundMillis(sum)
		total := date + ms
		if !ok || (ms > 0 && total < date) || (ms < 0 && total > date) {
			return Missing, mongoerr.New(mongoerr.Overflow, "date overflow")
		}
		return DateTime(total), nil
	}
	return sum.value(), nil
}

// roundMillis rounds a number of milliseconds to an int64, as MongoDB does
// when adding a number to a date.
func roundMillis(n num) (int64, bool) {
	switch n.kind {
	case kInt32, kInt64:
		return n.i, true
	}
	f := math.Round(n.float())
	if math.IsNaN(f) || f >= 9.2e18 || f <= -9.2e18 {
		return 0, false
	}
	return int64(f), true
}

func evalSubtract(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	a, b := vals[0], vals[1]
	if IsNullish(a) || IsNullish(b) {
		return Null(), nil
	}
	switch {
	case isNumber(a) && isNumber(b):
		x, _ := toNum(a)
		y, _ := toNum(b)
		return arith(opSub, x, y).value(), nil
	case a.Type == bson.TypeDateTime && b.Type == bson.TypeDateTime:
		x, _ := a.DateTimeOK()
		y, _ := b.DateTimeOK()
		return Int64(x - y), nil
	case a.Type == bson.TypeDateTime && isNumber(b):
		x, _ := a.DateTimeOK()
		y, _ := toNum(b)
		ms, ok := roundMillis(y)
		total := x - ms
		if !ok || (ms > 0 && total > x) || (ms < 0 && total < x) {
			return Missing, mongoerr.New(mongoerr.Overflow, "date overflow")
		}
		return DateTime(total), nil
	}
	if a.Type == bson.TypeDateTime {
		return Missing, mongoerr.New(mongoerr.TypeMismatch, "can't $subtract %s from Date", TypeName(b))
	}
	return Missing, mongoerr.New(mongoerr.TypeMismatch, "can't $subtract %s from %s", TypeName(b), TypeName(a))
}

func evalMultiply(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	prod := num{kind: kInt32, i: 1}
	for _, v := range vals {
		switch {
		case IsNullish(v):
			return Null(), nil
		case isNumber(v):
			n, _ := toNum(v)
			prod = arith(opMul, prod, n)
		default:
			return Missing, mongoerr.New(mongoerr.TypeMismatch, "$multiply only supports numeric types, not %s", TypeName(v))
		}
	}
	return prod.value(), nil
}

func evalDivide(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	a, b := vals[0], vals[1]
	if IsNullish(a) || IsNullish(b) {
		return Null(), nil
	}
	if !isNumber(a) || !isNumber(b) {
		return Missing, mongoerr.New(mongoerr.TypeMismatch, "$divide only supports numeric types, not %s and %s", TypeName(a), TypeName(b))
	}
	x, _ := toNum(a)
	y, _ := toNum(b)
	if y.isZero() {
		return Missing, mongoerr.New(mongoerr.BadValue, "can't $divide by zero")
	}
	if x.kind == kDecimal || y.kind == kDecimal {
		rx, ok1 := x.rat()
		ry, ok2 := y.rat()
		if !ok1 || !ok2 {
			return decimalFromFloat(x.float() / y.float()).value(), nil
		}
		return decNum(new(big.Rat).Quo(rx, ry)).value(), nil
	}
	return Double(x.float() / y.float()), nil
}

func evalMod(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	a, b := vals[0], vals[1]
	if IsNullish(a) || IsNullish(b) {
		return Null(), nil
	}
	if !isNumber(a) || !isNumber(b) {
		return Missing, mongoerr.New(16611, "$mod only supports numeric types, not %s and %s", TypeName(a), TypeName(b))
	}
	x, _ := toNum(a)
	y, _ := toNum(b)
	k := maxKind(x.kind, y.kind)
	if y.isZero() {
		if k == kDecimal {
			return Missing, mongoerr.New(5733415, "can't $mod by zero")
		}
		return Missing, mongoerr.New(16610, "can't $mod by zero")
	}
	switch k {
	case kInt32, kInt64:
		if y.i == -1 {
			return (num{kind: k}).value(), nil
		}
		return num{kind: k, i: x.i % y.i}.value(), nil
	case kDouble:
		return Double(math.Mod(x.float(), y.float())), nil
	}
	rx, ok1 := x.rat()
	ry, ok2 := y.rat()
	if !ok1 || !ok2 {
		return decimalFromFloat(math.Mod(x.float(), y.float())).value(), nil
	}
	q := new(big.Rat).Quo(rx, ry)
	t := new(big.Int).Quo(q.Num(), q.Denom()) // truncates toward zero
	r := new(big.Rat).Sub(rx, new(big.Rat).Mul(ry, new(big.Rat).SetInt(t)))
	return decNum(r).value(), nil
}

func evalUnaryMath(name string, vals []bson.RawValue) (bson.RawValue, error) {
	v := vals[0]
	if IsNullish(v) {
		return Null(), nil
	}
	if !isNumber(v) {
		return Missing, mongoerr.New(28765, "%s only supports numeric types, not %s", name, TypeName(v))
	}
	n, _ := toNum(v)
	switch name {
	case "$abs":
		switch n.kind {
		case kInt32, kInt64:
			if n.i == math.MinInt64 {
				return Missing, mongoerr.New(28680, "can't take $abs of long long min")
			}
			if n.i >= 0 {
				return v, nil
			}
			if n.kind == kInt32 {
				return intNum(-n.i).value(), nil
			}
			return Int64(-n.i), nil
		case kDouble:
			return Double(math.Abs(n.f)), nil
		}
		if r, ok := n.rat(); ok {
			return decNum(new(big.Rat).Abs(r)).value(), nil
		}
		return decimalFromFloat(math.Abs(n.float())).value(), nil
	case "$ceil", "$floor":
		switch n.kind {
		case kInt32, kInt64:
			return v, nil
		case kDouble:
			if name == "$ceil" {
				return Double(math.Ceil(n.f)), nil
			}
			return Double(math.Floor(n.f)), nil
		}
		r, ok := n.rat()
		if !ok {
			return v, nil
		}
		fl := floorRat(r)
		if name == "$ceil" && !r.IsInt() {
			fl.Add(fl, big.NewInt(1))
		}
		return decNum(new(big.Rat).SetInt(fl)).value(), nil
	}
	f := n.float()
	var out float64
	switch name {
	case "$sqrt":
		if f < 0 {
			return Missing, mongoerr.New(28714, "$sqrt's argument must be greater than or equal to 0")
		}
		out = math.Sqrt(f)
	case "$exp":
		out = math.Exp(f)
	case "$ln":
		if !(f > 0) {
			return Missing, mongoerr.New(28766, "$ln's argument must be a positive number, but is %s", formatDouble(f))
		}
		out = math.Log(f)
	case "$log10":
		if !(f > 0) {
			return Missing, mongoerr.New(28761, "$log10's argument must be a positive number, but is %s", formatDouble(f))
		}
		out = math.Log10(f)
	}
	if n.kind == kDecimal {
		return decimalFromFloat(out).value(), nil
	}
	return Double(out), nil
}

func floorRat(r *big.Rat) *big.Int {
	q, m := new(big.Int).DivMod(r.Num(), r.Denom(), new(big.Int))
	_ = m
	return q // DivMod is Euclidean; with a positive denominator it floors
}

func evalPow(_ string, vals []bson.RawValue) (bson.RawValue, error) {
	a, b := vals[0], vals[1]
	if IsNullish(a) || IsNullish(b) {
		return Null(), nil
	}
	if !isNumber(a) {
		return Missing, mongoerr.New(28762, "$pow's base must be numeric, not %s", TypeName(a))
	}
	if !isNumber(b) {
		return Missing, mongoerr.New(28763, "$pow's exponent must be numeric, not %s", TypeName(b))
	}
	x, _ := toNum(a)
	y, _ := toNum(b)
	if x.isZero() && y.float() < 0 {
		return Missing, mongoerr.New(28764, "$pow cannot take a base of 0 and a negative exponent")
	}
	k := maxKind(x.kind, y.kind)
	if k <= kInt64 && y.i >= 0 {
		// Exact integer power when it fits; otherwise fall through to double.
		r := new(big.Int).Exp(big.NewInt(x.i), big.NewInt(y.i), nil)
		if y.i < 4096 && r.IsInt64() {
			n := r.Int64()
			if k == kInt32 && n >= math.MinInt32 && n <= math.MaxInt32 {
				return Int32(int32(n)), nil
			}
			return Int64(n), nil
		}
		return Double(math.Pow(x.float(), y.float())), nil
	}
	out := math.Pow(x.float(), y.float())
	if k == kDecimal {
		return decimalFromFloat(out).value(), nil
	}
	return Double(out), nil
}

// evalRound implements $round (half to even) and $trunc with an optional
// number of decimal places in [-20, 100].
func evalRound(name string, vals []bson.RawValue) (bson.RawValue, error) {
	v := vals[0]
	place := int64(0)
	if len(vals) == 2 {
		p := vals[1]
		if IsNullish(p) {
			return Null(), nil
		}
		pn, ok := toNum(p)
		if !ok {
			return Missing, mongoerr.New(51081, "%s only supports numeric types, not %s", name, TypeName(p))
		}
		pi, ok := pn.asInt64()
		if !ok {
			return Missing, mongoerr.New(51082, "precision argument to  %s must be a integral value", name)
		}
		if pi < -20 || pi > 100 {
			return Missing, mongoerr.New(51083, "cannot apply %s with precision value %d value must be in [-20, 100]", name, pi)
		}
		place = pi
	}
	if IsNullish(v) {
		return Null(), nil
	}
	n, ok := toNum(v)
	if !ok {
		return Missing, mongoerr.New(51081, "%s only supports numeric types, not %s", name, TypeName(v))
	}
	trunc := name == "$trunc"
	switch n.kind {
	case kInt32, kInt64:
		if place >= 0 {
			return v, nil
		}
		r := roundRat(new(big.Rat).SetInt64(n.i), place, trunc)
		if !r.IsInt() || !r.Num().IsInt64() {
			f, _ := r.Float64()
			return Double(f), nil
		}
		return num{kind: n.kind, i: r.Num().Int64()}.value(), nil
	case kDouble:
		if math.IsNaN(n.f) || math.IsInf(n.f, 0) {
			return v, nil
		}
		r, _ := n.rat()
		f, _ := roundRat(r, place, trunc).Float64()
		return Double(f), nil
	}
	r, ok := n.rat()
	if !ok {
		return v, nil
	}
	return decNum(roundRat(r, place, trunc)).value(), nil
}

func roundRat(r *big.Rat, place int64, trunc bool) *big.Rat {
	scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(abs64(place)), nil))
	x := new(big.Rat).Set(r)
	if place >= 0 {
		x.Mul(x, scale)
	} else {
		x.Quo(x, scale)
	}
	q, rem := new(big.Int).QuoRem(x.Num(), x.Denom(), new(big.Int)) // toward zero
	if !trunc && rem.Sign() != 0 {
		twice := new(big.Int).Mul(new(big.Int).Abs(rem), big.NewInt(2))
		c := twice.Cmp(x.Denom())
		if c > 0 || c == 0 && q.Bit(0) == 1 {
			if x.Sign() < 0 {
				q.Sub(q, big.NewInt(1))
			} else {
				q.Add(q, big.NewInt(1))
			}
		}
	}
	out := new(big.Rat).SetInt(q)
	if place >= 0 {
		out.Quo(out, scale)
	} else {
		out.Mul(out, scale)
	}
	return out
}

func abs64(i int64) int64 {
	if i < 0 {
		return -i
	}
	return i
}
