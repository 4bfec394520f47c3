package keys

import (
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// rv marshals a Go value into a RawValue (test helper).
func rv(t testing.TB, x any) bson.RawValue {
	t.Helper()
	typ, val, err := bson.MarshalValue(x)
	if err != nil {
		t.Fatalf("marshal %#v: %v", x, err)
	}
	return bson.RawValue{Type: typ, Value: val}
}

func dec(t testing.TB, s string) bson.Decimal128 {
	t.Helper()
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		t.Fatalf("parse decimal %q: %v", s, err)
	}
	return d
}

func oid(b byte) bson.ObjectID {
	var o bson.ObjectID
	for i := range o {
		o[i] = b
	}
	return o
}

// orderedGroups returns test values in ascending order: values inside one
// group compare equal, every group is less than the next.
func orderedGroups(t testing.TB) [][]bson.RawValue {
	g := func(xs ...any) []bson.RawValue {
		out := make([]bson.RawValue, len(xs))
		for i, x := range xs {
			if v, ok := x.(bson.RawValue); ok {
				out[i] = v
				continue
			}
			out[i] = rv(t, x)
		}
		return out
	}
	const two53 = int64(1) << 53
	return [][]bson.RawValue{
		g(bson.MinKey{}),
		g(bson.Undefined{}, bson.RawValue{}),
		g(bson.Null{}),
		// Numbers.
		g(math.NaN(), -math.NaN(), dec(t, "NaN"), dec(t, "-NaN")),
		g(math.Inf(-1), dec(t, "-Infinity")),
		g(dec(t, "-9.999999999999999999999999999999999E+6144")),
		g(-math.MaxFloat64),
		g(float64(math.MinInt64)-4096, dec(t, "-9223372036854779904")),
		g(int64(math.MinInt64), float64(math.MinInt64), dec(t, "-9223372036854775808")),
		g(int64(math.MinInt64) + 1),
		g(int32(math.MinInt32), float64(math.MinInt32), int64(math.MinInt32)),
		g(-1.5, dec(t, "-1.50")),
		g(int32(-1), int64(-1), -1.0, dec(t, "-1"), dec(t, "-1.000")),
		g(-0.1),
		g(dec(t, "-0.1")),
		g(-math.SmallestNonzeroFloat64),
		g(dec(t, "-1E-6176")),
		g(int32(0), int64(0), 0.0, math.Copysign(0, -1), dec(t, "0"), dec(t, "-0"), dec(t, "0E-6176"), dec(t, "0E+6111")),
		g(dec(t, "1E-6176")),
		g(math.SmallestNonzeroFloat64),
		g(dec(t, "4.940656458412465441765687928682214E-324")),
		g(2.2250738585072014e-308),
		g(dec(t, "0.1")),
		g(0.1),
		g(dec(t, "0.1000000000000000055511151231257828")),
		g(0.5, dec(t, "0.5"), dec(t, "5E-1")),
		g(int32(1), int64(1), 1.0, dec(t, "1"), dec(t, "1.0"), dec(t, "1.000000000000000000000000000000000")),
		g(dec(t, "1.000000000000000000000000000000001")),
		g(1.0000000000000002),
		g(int32(2), 2.0, dec(t, "2"), dec(t, "0.2E1")),
		g(int32(100), int64(100), 100.0, dec(t, "1E2"), dec(t, "100")),
		g(int32(math.MaxInt32), int64(math.MaxInt32)),
		g(float64(two53), two53, dec(t, "9007199254740992")),
		g(two53+1, dec(t, "9007199254740993")),
		g(float64(two53+2), two53+2),
		g(int64(math.MaxInt64 - 1)),
		g(int64(math.MaxInt64), dec(t, "9223372036854775807")),
		g(float64(math.MaxInt64), dec(t, "9223372036854775808"), dec(t, "9.223372036854775808E18")),
		g(1e300),
		g(math.MaxFloat64),
		g(dec(t, "1E+6144")),
		g(dec(t, "9.999999999999999999999999999999999E+6144")),
		g(math.Inf(1), dec(t, "Infinity")),
		// Strings and symbols.
		g("", bson.Symbol("")),
		g("\x00"),
		g("\x00\x00"),
		g("\x00a"),
		g("A"),
		g("a", bson.Symbol("a")),
		g("a\x00"),
		g("ab"),
		g("b"),
		g("\xff"),
		// Objects.
		g(bson.D{}),
		g(bson.D{{Key: "a", Value: nil}}),
		g(bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 1}}),
		g(bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2.0}}),
		g(bson.D{{Key: "a", Value: 2}}),
		g(bson.D{{Key: "b", Value: 1}}, bson.D{{Key: "b", Value: int64(1)}}),
		g(bson.D{{Key: "a", Value: "x"}}),
		g(bson.D{{Key: "a", Value: bson.D{{Key: "z", Value: 1}}}}),
		g(bson.D{{Key: "a", Value: bson.A{}}}),
		g(bson.D{{Key: "a", Value: true}}),
		// Arrays.
		g(bson.A{}),
		g(bson.A{nil}),
		g(bson.A{1, 2}, bson.A{1.0, int64(2)}),
		g(bson.A{1, 2, 3}),
		g(bson.A{1, 3}),
		g(bson.A{"a"}),
		g(bson.A{bson.A{}}),
		g(bson.A{bson.MaxKey{}}),
		// Binary: length, then subtype, then bytes.
		g(bson.Binary{Subtype: 0x80, Data: nil}),
		g(bson.Binary{Subtype: 0, Data: []byte{9}}),
		g(bson.Binary{Subtype: 5, Data: []byte{1}}),
		g(bson.Binary{Subtype: 0, Data: []byte{0, 0}}),
		// ObjectId.
		g(oid(0)),
		g(oid(1)),
		g(oid(0xff)),
		// Booleans.
		g(false),
		g(true, bson.RawValue{Type: bson.TypeBoolean, Value: []byte{7}}),
		// Dates: signed milliseconds.
		g(bson.DateTime(math.MinInt64)),
		g(bson.DateTime(-1)),
		g(bson.DateTime(0)),
		g(bson.DateTime(math.MaxInt64)),
		// Timestamps: unsigned (t, i).
		g(bson.Timestamp{T: 0, I: 0}),
		g(bson.Timestamp{T: 0, I: math.MaxUint32}),
		g(bson.Timestamp{T: 1, I: 0}),
		g(bson.Timestamp{T: math.MaxUint32, I: math.MaxUint32}),
		// Regex: pattern, then options.
		g(bson.Regex{Pattern: "", Options: ""}),
		g(bson.Regex{Pattern: "a", Options: ""}),
		g(bson.Regex{Pattern: "a", Options: "i"}),
		g(bson.Regex{Pattern: "ab", Options: ""}),
		// DBPointer: namespace length first.
		g(bson.DBPointer{DB: "z", Pointer: oid(9)}),
		g(bson.DBPointer{DB: "aa", Pointer: oid(1)}),
		g(bson.DBPointer{DB: "aa", Pointer: oid(2)}),
		// JavaScript.
		g(bson.JavaScript("")),
		g(bson.JavaScript("f()")),
		// Code with scope.
		g(bson.CodeWithScope{Code: "a", Scope: bson.D{}}),
		g(bson.CodeWithScope{Code: "a", Scope: bson.D{{Key: "x", Value: 1}}}, bson.CodeWithScope{Code: "a", Scope: bson.D{{Key: "x", Value: 1.0}}}),
		g(bson.CodeWithScope{Code: "b", Scope: bson.D{}}),
		g(bson.MaxKey{}),
		// Malformed values sort after MaxKey, by type byte then bytes.
		g(bson.RawValue{Type: bson.TypeDouble, Value: []byte{1}}),
		g(bson.RawValue{Type: bson.TypeString, Value: []byte{1, 0, 0, 0, 'x'}}),
		g(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: []byte{5, 0, 0, 0, 1}}),
		g(bson.RawValue{Type: 0x42, Value: nil}),
		g(bson.RawValue{Type: 0x42, Value: []byte{0}}),
		g(bson.RawValue{Type: bson.TypeMaxKey, Value: []byte{0}}),
	}
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

func TestCompareOrder(t *testing.T) {
	groups := orderedGroups(t)
	type item struct {
		v     bson.RawValue
		group int
	}
	var items []item
	for gi, grp := range groups {
		for _, v := range grp {
			items = append(items, item{v, gi})
		}
	}
	for _, a := range items {
		for _, b := range items {
			want := sign(a.group - b.group)
			if got := Compare(a.v, b.v); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a.v, b.v, got, want)
			}
		}
	}
}

func TestCompareCases(t *testing.T) {
	cases := []struct {
		name string
		a, b any
		want int
	}{
		{"int64 max vs its double neighbour", int64(math.MaxInt64), 9.223372036854775807e18, -1},
		{"2^53+1 int64 vs 2^53 double", int64(1)<<53 + 1, float64(int64(1) << 53), 1},
		{"2^53+1 int64 vs 2^53+2 double", int64(1)<<53 + 1, float64(int64(1)<<53 + 2), -1},
		{"NaN equals NaN", math.NaN(), math.NaN(), 0},
		{"NaN below -Inf", math.NaN(), math.Inf(-1), -1},
		{"NaN below decimal -Inf", math.NaN(), dec(t, "-Infinity"), -1},
		{"decimal NaN equals double NaN", dec(t, "NaN"), math.NaN(), 0},
		{"-0 equals 0", math.Copysign(0, -1), int32(0), 0},
		{"+Inf above int64 max", math.Inf(1), int64(math.MaxInt64), 1},
		{"-Inf below int64 min", math.Inf(-1), int64(math.MinInt64), -1},
		{"decimal 0.1 below double 0.1", dec(t, "0.1"), 0.1, -1},
		{"decimal Inf equals double Inf", dec(t, "Infinity"), math.Inf(1), 0},
		{"decimal Inf above max double", dec(t, "Infinity"), math.MaxFloat64, 1},
		{"decimal 1E+400 above max double", dec(t, "1E+400"), math.MaxFloat64, 1},
		{"int32 vs int64", int32(5), int64(5), 0},
		{"int32 vs double fraction", int32(5), 5.5, -1},
		{"negative fraction", int32(-5), -5.5, 1},
		{"null below numbers", bson.Null{}, math.NaN(), -1},
		{"MinKey below null", bson.MinKey{}, bson.Null{}, -1},
		{"MaxKey above CodeWithScope", bson.MaxKey{}, bson.CodeWithScope{Code: "x", Scope: bson.D{}}, 1},
		{"string above numbers", "", math.Inf(1), 1},
		{"object field type before name", bson.D{{Key: "b", Value: 1}}, bson.D{{Key: "a", Value: "x"}}, -1},
		{"object field name before value", bson.D{{Key: "a", Value: 9}}, bson.D{{Key: "b", Value: 1}}, -1},
		{"nested docs by value", bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}}, bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1.0}}}}, 0},
		{"nested arrays", bson.A{bson.A{1, 2}}, bson.A{bson.A{1, 2, 0}}, -1},
		{"array elements by type", bson.A{"a"}, bson.A{99}, 1},
		{"date vs timestamp", bson.DateTime(math.MaxInt64), bson.Timestamp{}, -1},
		{"undefined below null", bson.Undefined{}, bson.Null{}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := rv(t, c.a), rv(t, c.b)
			if got := Compare(a, b); got != c.want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a, b, got, c.want)
			}
			if got := Compare(b, a); got != -c.want {
				t.Errorf("Compare(%s, %s) = %d, want %d", b, a, got, -c.want)
			}
		})
	}
}

func TestTypeRank(t *testing.T) {
	order := []bson.Type{
		bson.TypeMinKey, bson.TypeUndefined, bson.TypeNull, bson.TypeDouble, bson.TypeString,
		bson.TypeEmbeddedDocument, bson.TypeArray, bson.TypeBinary, bson.TypeObjectID,
		bson.TypeBoolean, bson.TypeDateTime, bson.TypeTimestamp, bson.TypeRegex,
		bson.TypeDBPointer, bson.TypeJavaScript, bson.TypeCodeWithScope, bson.TypeMaxKey,
	}
	for i := 1; i < len(order); i++ {
		if TypeRank(order[i-1]) >= TypeRank(order[i]) {
			t.Errorf("TypeRank(%v)=%d not below TypeRank(%v)=%d", order[i-1], TypeRank(order[i-1]), order[i], TypeRank(order[i]))
		}
	}
	for _, same := range [][2]bson.Type{
		{bson.TypeInt32, bson.TypeDouble}, {bson.TypeInt64, bson.TypeDecimal128}, {bson.TypeSymbol, bson.TypeString},
	} {
		if TypeRank(same[0]) != TypeRank(same[1]) {
			t.Errorf("TypeRank(%v) != TypeRank(%v)", same[0], same[1])
		}
	}
	if TypeRank(0x42) <= TypeRank(bson.TypeMaxKey) {
		t.Errorf("unknown type must rank after MaxKey")
	}
	if Compare(MinKey(), MaxKey()) != -1 {
		t.Errorf("MinKey must be below MaxKey")
	}
}

func TestTypeName(t *testing.T) {
	for typ, want := range map[bson.Type]string{
		0: "missing", bson.TypeInt32: "int", bson.TypeInt64: "long", bson.TypeDouble: "double",
		bson.TypeDecimal128: "decimal", bson.TypeEmbeddedDocument: "object", bson.TypeObjectID: "objectId",
		bson.TypeMinKey: "minKey", bson.Type(0x77): "unknown",
	} {
		if got := TypeName(typ); got != want {
			t.Errorf("TypeName(%#x) = %q, want %q", byte(typ), got, want)
		}
	}
}
