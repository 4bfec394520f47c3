package keys

import (
	"encoding/binary"
	"math"
	"math/big"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ratOracle compares two numbers with math/big, independently of the
// decimal conversion that Compare and the encoding share. ok is false if a
// or b is not a number.
func ratOracle(t testing.TB, a, b bson.RawValue) (c int, ok bool) {
	ca, ra, okA := ratOf(t, a)
	cb, rb, okB := ratOf(t, b)
	if !okA || !okB {
		return 0, false
	}
	if ca != cb {
		return cmpInt(ca, cb), true
	}
	if ca != 2 {
		return 0, true
	}
	return ra.Cmp(rb), true
}

// ratOf returns a class (0 NaN, 1 -Inf, 2 finite, 3 +Inf) and the exact value.
func ratOf(t testing.TB, v bson.RawValue) (int, *big.Rat, bool) {
	if TypeRank(v.Type) != rankNumber || !valid(v.Type, v.Value, 0) {
		return 0, nil, false
	}
	switch v.Type {
	case bson.TypeInt32:
		return 2, new(big.Rat).SetInt64(int64(int32(binary.LittleEndian.Uint32(v.Value)))), true
	case bson.TypeInt64:
		return 2, new(big.Rat).SetInt64(int64(binary.LittleEndian.Uint64(v.Value))), true
	case bson.TypeDouble:
		f := math.Float64frombits(binary.LittleEndian.Uint64(v.Value))
		switch {
		case math.IsNaN(f):
			return 0, nil, true
		case math.IsInf(f, -1):
			return 1, nil, true
		case math.IsInf(f, 1):
			return 3, nil, true
		}
		return 2, new(big.Rat).SetFloat64(f), true
	}
	d := bson.NewDecimal128(binary.LittleEndian.Uint64(v.Value[8:]), binary.LittleEndian.Uint64(v.Value))
	if d.IsNaN() {
		return 0, nil, true
	}
	switch d.IsInf() {
	case -1:
		return 1, nil, true
	case 1:
		return 3, nil, true
	}
	coef, exp, err := d.BigInt()
	if err != nil {
		t.Fatalf("decimal %x: %v", v.Value, err)
	}
	// IEEE 754-2008: a coefficient above 10^34-1 is non-canonical and means
	// zero (the driver's BigInt does not apply this rule).
	maxCoef := new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(34), nil), big.NewInt(1))
	if new(big.Int).Abs(coef).Cmp(maxCoef) > 0 {
		coef = new(big.Int)
	}
	r := new(big.Rat).SetInt(coef)
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
	if exp >= 0 {
		r.Mul(r, new(big.Rat).SetInt(p))
	} else {
		r.Quo(r, new(big.Rat).SetInt(p))
	}
	return 2, r, true
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestRatOracleGroups(t *testing.T) {
	var nums []bson.RawValue
	for _, grp := range orderedGroups(t) {
		for _, v := range grp {
			if _, _, ok := ratOf(t, v); ok {
				nums = append(nums, v)
			}
		}
	}
	nums = append(nums, specialNumbers()...)
	for _, a := range nums {
		for _, b := range nums {
			want, _ := ratOracle(t, a, b)
			if got := Compare(a, b); got != want {
				t.Errorf("Compare(%s, %s) = %d, big.Rat says %d", a, b, got, want)
			}
		}
	}
}
