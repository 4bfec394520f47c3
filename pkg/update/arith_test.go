package update

import (
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func dec128(t *testing.T, s string) bson.RawValue {
	t.Helper()
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		t.Fatal(err)
	}
	return decimalVal(d)
}

func TestArith(t *testing.T) {
	cases := []struct {
		name   string
		a, b   bson.RawValue
		mul    bool
		want   bson.RawValue
		failed bool
	}{
		{name: "int32 add", a: int32Val(2), b: int32Val(3), want: int32Val(5)},
		{name: "int32 add overflow", a: int32Val(math.MaxInt32), b: int32Val(1), want: int64Val(math.MaxInt32 + 1)},
		{name: "int32 mul overflow", a: int32Val(math.MinInt32), b: int32Val(-1), mul: true, want: int64Val(-math.MinInt32)},
		{name: "int32 plus int64", a: int32Val(1), b: int64Val(1), want: int64Val(2)},
		{name: "int64 add overflow", a: int64Val(math.MaxInt64), b: int32Val(1), failed: true},
		{name: "int64 add underflow", a: int64Val(math.MinInt64), b: int64Val(-1), failed: true},
		{name: "int64 mul overflow", a: int64Val(math.MaxInt64 / 2), b: int32Val(3), mul: true, failed: true},
		{name: "int64 mul min by -1", a: int64Val(math.MinInt64), b: int32Val(-1), mul: true, failed: true},
		{name: "int64 mul zero", a: int64Val(math.MinInt64), b: int32Val(0), mul: true, want: int64Val(0)},
		{name: "double", a: doubleVal(1.5), b: int64Val(2), mul: true, want: doubleVal(3)},
		{name: "decimal add", a: dec128(t, "0.1"), b: dec128(t, "0.2"), want: dec128(t, "0.3")},
		{name: "decimal mul", a: dec128(t, "1.5"), b: int32Val(-2), mul: true, want: dec128(t, "-3.0")},
		{name: "decimal rounds to 34 digits", a: dec128(t, "9999999999999999999999999999999999"), b: int32Val(1), want: dec128(t, "1.000000000000000000000000000000000E+34")},
		{name: "decimal huge exponent gap", a: dec128(t, "1E+6000"), b: dec128(t, "1E-6000"), want: dec128(t, "1.000000000000000000000000000000000E+6000")},
		{name: "decimal NaN", a: dec128(t, "NaN"), b: int32Val(1), want: dec128(t, "NaN")},
		{name: "decimal infinity", a: dec128(t, "Infinity"), b: int32Val(-1), mul: true, want: dec128(t, "-Infinity")},
		{name: "decimal inf minus inf", a: dec128(t, "Infinity"), b: dec128(t, "-Infinity"), want: dec128(t, "NaN")},
		{name: "decimal overflow to infinity", a: dec128(t, "9E+6144"), b: int32Val(10), mul: true, want: dec128(t, "Infinity")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := arith(c.a, c.b, c.mul)
			if c.failed {
				if ok {
					t.Fatalf("want overflow, got %v", got)
				}
				return
			}
			if !ok {
				t.Fatal("unexpected overflow")
			}
			if got.Type != c.want.Type || got.String() != c.want.String() {
				t.Fatalf("got %v (%v), want %v (%v)", got, got.Type, c.want, c.want.Type)
			}
		})
	}
}

func TestFormatValue(t *testing.T) {
	d := mustDoc(t, `{"a": [1, "x", {"b": null}], "c": 1.0, "e": {}, "f": []}`)
	got := formatDoc(d)
	want := `{ a: [ 1, "x", { b: null } ], c: 1.0, e: {}, f: [] }`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
