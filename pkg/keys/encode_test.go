package keys

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestEncodeOrder(t *testing.T) {
	groups := orderedGroups(t)
	type item struct {
		v     bson.RawValue
		group int
		asc   []byte
		desc  []byte
	}
	var items []item
	for gi, grp := range groups {
		for _, v := range grp {
			items = append(items, item{v, gi, Encode(v), AppendValueDesc(nil, v)})
		}
	}
	for _, a := range items {
		for _, b := range items {
			want := sign(a.group - b.group)
			if got := bytes.Compare(a.asc, b.asc); got != want {
				t.Errorf("bytes.Compare(Encode(%s), Encode(%s)) = %d, want %d\n%x\n%x", a.v, b.v, got, want, a.asc, b.asc)
			}
			if got := bytes.Compare(a.desc, b.desc); got != -want {
				t.Errorf("bytes.Compare(desc(%s), desc(%s)) = %d, want %d", a.v, b.v, got, -want)
			}
		}
	}
}

func TestEncodeExamples(t *testing.T) {
	cases := []struct {
		v    any
		want []byte
	}{
		{int32(0), []byte{tagZero}},
		{int32(1), []byte{tagPosMedium + 1, 2}},
		{int64(1), []byte{tagPosMedium + 1, 2}},
		{1.0, []byte{tagPosMedium + 1, 2}},
		{dec(t, "1.00"), []byte{tagPosMedium + 1, 2}},
		{int32(100), []byte{tagPosMedium + 2, 2}},
		{int32(123), []byte{tagPosMedium + 2, 3, 46}},
		{int32(-1), []byte{tagNegMedium + mediumExpMax - 1, ^byte(2)}},
		{0.5, []byte{tagPosMedium, 100}},
		{0.001, nil}, // only checks that it encodes
		{"a\x00b", []byte{tagString, 'a', 0, 0xff, 'b', 0, 1}},
		{bson.D{{Key: "a", Value: true}}, []byte{tagObject, tagFalse, 'a', 0, tagTrue, tagEnd}},
		{bson.A{nil, bson.MinKey{}}, []byte{tagArray, tagNull, tagMinKey, tagEnd}},
		{math.NaN(), []byte{tagNaN}},
		{bson.MaxKey{}, []byte{tagMaxKey}},
	}
	for _, c := range cases {
		v := rv(t, c.v)
		got := Encode(v)
		if c.want != nil && !bytes.Equal(got, c.want) {
			t.Errorf("Encode(%s) = %x, want %x", v, got, c.want)
		}
		dv, rest, err := DecodeValue(got)
		if err != nil || len(rest) != 0 || Compare(dv, v) != 0 {
			t.Errorf("DecodeValue(Encode(%s)) = %s, rest %x, err %v", v, dv, rest, err)
		}
	}
}

func TestDecodeCanonicalTypes(t *testing.T) {
	cases := []struct {
		in   any
		want bson.Type
	}{
		{int64(5), bson.TypeInt32},
		{5.0, bson.TypeInt32},
		{dec(t, "5.000"), bson.TypeInt32},
		{int64(math.MinInt32), bson.TypeInt32},
		{int64(math.MaxInt32) + 1, bson.TypeInt64},
		{int64(math.MinInt64), bson.TypeInt64},
		{float64(math.MaxInt64), bson.TypeDouble},
		{0.1, bson.TypeDouble},
		{dec(t, "0.5"), bson.TypeDouble},
		{dec(t, "0.1"), bson.TypeDecimal128},
		{dec(t, "1E+6144"), bson.TypeDecimal128},
		{dec(t, "-1E-6176"), bson.TypeDecimal128},
		{dec(t, "NaN"), bson.TypeDouble},
		{dec(t, "-Infinity"), bson.TypeDouble},
		{math.Copysign(0, -1), bson.TypeInt32},
		{math.SmallestNonzeroFloat64, bson.TypeDouble},
	}
	for _, c := range cases {
		v := rv(t, c.in)
		for _, descending := range []bool{false, true} {
			var dv bson.RawValue
			var rest []byte
			var err error
			if descending {
				dv, rest, err = DecodeValueDesc(AppendValueDesc([]byte(nil), v))
			} else {
				dv, rest, err = DecodeValue(Encode(v))
			}
			if err != nil || len(rest) != 0 {
				t.Fatalf("decode %s (desc %v): rest %x, err %v", v, descending, rest, err)
			}
			if dv.Type != c.want || Compare(dv, v) != 0 {
				t.Errorf("decode %s (desc %v) = %s of type %v, want type %v", v, descending, dv, dv.Type, c.want)
			}
		}
	}
}

func TestRoundTripGroups(t *testing.T) {
	for _, grp := range orderedGroups(t) {
		for _, v := range grp {
			checkRoundTrip(t, v)
		}
	}
}

func checkRoundTrip(t *testing.T, v bson.RawValue) {
	t.Helper()
	enc := Encode(v)
	dv, rest, err := DecodeValue(append(enc, 0x42))
	if err != nil {
		t.Fatalf("DecodeValue(Encode(%s)=%x): %v", v, enc, err)
	}
	if !bytes.Equal(rest, []byte{0x42}) {
		t.Fatalf("DecodeValue(Encode(%s)) rest = %x", v, rest)
	}
	if Compare(dv, v) != 0 {
		t.Fatalf("DecodeValue(Encode(%s)) = %s, not equal", v, dv)
	}
	if re := Encode(dv); !bytes.Equal(re, enc) {
		t.Fatalf("Encode(DecodeValue(Encode(%s))) = %x, want %x", v, re, enc)
	}
	denc := AppendValueDesc(nil, v)
	dd, rest, err := DecodeValueDesc(append(denc, 0x42))
	if err != nil || !bytes.Equal(rest, []byte{0x42}) || Compare(dd, v) != 0 {
		t.Fatalf("DecodeValueDesc(AppendValueDesc(%s)=%x) = %s, rest %x, err %v", v, denc, dd, rest, err)
	}
}

func TestEncodeTuple(t *testing.T) {
	one, two := rv(t, int32(1)), rv(t, int32(2))
	a, b := rv(t, "a"), rv(t, "b")
	cases := []struct {
		name string
		x, y []bson.RawValue
		desc []bool
		want int
	}{
		{"first component decides", []bson.RawValue{one, b}, []bson.RawValue{two, a}, nil, -1},
		{"second component breaks ties", []bson.RawValue{one, a}, []bson.RawValue{one, b}, nil, -1},
		{"descending first", []bson.RawValue{one, b}, []bson.RawValue{two, a}, []bool{true, false}, 1},
		{"descending second", []bson.RawValue{one, a}, []bson.RawValue{one, b}, []bool{false, true}, 1},
		{"equal across types", []bson.RawValue{one, a}, []bson.RawValue{rv(t, 1.0), a}, []bool{true, true}, 0},
		{"string prefix stays ordered", []bson.RawValue{a, MaxKey()}, []bson.RawValue{rv(t, "a\x00"), MinKey()}, []bool{false, false}, -1},
		{"descending string prefix", []bson.RawValue{a, MinKey()}, []bson.RawValue{rv(t, "aa"), MinKey()}, []bool{true, false}, 1},
		{"descending doc prefix", []bson.RawValue{rv(t, bson.D{}), MinKey()}, []bson.RawValue{rv(t, bson.D{{Key: "a", Value: 1}}), MinKey()}, []bool{true}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ex, ey := EncodeTuple(c.x, c.desc), EncodeTuple(c.y, c.desc)
			if got := bytes.Compare(ex, ey); got != c.want {
				t.Errorf("bytes.Compare = %d, want %d (%x vs %x)", got, c.want, ex, ey)
			}
			// The components decode back in sequence.
			got, rest, err := DecodeTuple(ex, len(c.x), c.desc)
			if err != nil || len(rest) != 0 {
				t.Fatalf("DecodeTuple: rest %x, err %v", rest, err)
			}
			for i, v := range c.x {
				if Compare(got[i], v) != 0 {
					t.Fatalf("component %d: got %s, want %s", i, got[i], v)
				}
			}
		})
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct {
		in, want []byte
	}{
		{nil, nil},
		{[]byte{0xff, 0xff}, nil},
		{[]byte{1, 2}, []byte{1, 3}},
		{[]byte{1, 0xff}, []byte{2}},
		{[]byte{0xfe, 0xff, 0xff}, []byte{0xff}},
	}
	for _, c := range cases {
		if got := PrefixEnd(c.in); !bytes.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("PrefixEnd(%x) = %x, want %x", c.in, got, c.want)
		}
	}
	// Every encoding that starts with a prefix sorts below PrefixEnd(prefix).
	prefix := Encode(rv(t, "a"))
	prefix = prefix[:len(prefix)-2] // "a" without its terminator
	end := PrefixEnd(prefix)
	for _, s := range []string{"a", "a\x00", "ab", "a\xff\xff"} {
		if k := Encode(rv(t, s)); bytes.Compare(k, end) >= 0 || !bytes.HasPrefix(k, prefix) {
			t.Errorf("Encode(%q) = %x not in [%x, %x)", s, k, prefix, end)
		}
	}
	if k := Encode(rv(t, "b")); bytes.Compare(k, end) < 0 {
		t.Errorf("Encode(\"b\") below PrefixEnd")
	}
}

func TestDecodeMalformed(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown tag", []byte{0x01}},
		{"unterminated string", []byte{tagString, 'a'}},
		{"bad escape", []byte{tagString, 0, 7}},
		{"number without digits", []byte{tagPosMedium}},
		{"number digit over 99", []byte{tagPosMedium, 200}},
		{"number leading zero digit", []byte{tagPosMedium, 1, 2}},
		{"number trailing zero digit", []byte{tagPosMedium, 3, 0}},
		{"exponent in wrong class", []byte{tagPosLarge, 0x80, 0x01, 2}},
		{"unterminated document", []byte{tagObject, tagNull, 'a', 0, tagNull}},
		{"bracket mismatch", []byte{tagObject, tagString, 'a', 0, tagNull, tagEnd}},
		{"binary too long", []byte{tagBinary, 0, 0, 0, 9, 0}},
		{"short ObjectId", []byte{tagObjectID, 1, 2}},
		{"decimal out of range", []byte{tagPosLarge, 0xff, 0xff, 2}},
		{"nested invalid", []byte{tagArray, tagInvalid, 1, 0, 1, tagEnd}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := DecodeValue(c.in); !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeValue(%x) err = %v, want ErrMalformed", c.in, err)
			}
		})
	}
	deep := bytes.Repeat([]byte{tagArray}, maxDepth+2)
	if _, _, err := DecodeValue(deep); !errors.Is(err, ErrMalformed) {
		t.Errorf("deep nesting: err = %v", err)
	}
}

func TestHash(t *testing.T) {
	equal := [][]any{
		{int32(1), int64(1), 1.0, dec(t, "1"), dec(t, "1.000")},
		{math.NaN(), dec(t, "NaN"), dec(t, "-NaN")},
		{int32(0), math.Copysign(0, -1), dec(t, "-0E+10")},
		{"x", bson.Symbol("x")},
		{bson.D{{Key: "a", Value: int32(1)}}, bson.D{{Key: "a", Value: 1.0}}},
		{bson.A{int64(2), "s"}, bson.A{2.0, "s"}},
	}
	for _, grp := range equal {
		h0 := Hash(rv(t, grp[0]))
		for _, x := range grp[1:] {
			if h := Hash(rv(t, x)); h != h0 {
				t.Errorf("Hash(%v) = %d, Hash(%v) = %d; want equal", grp[0], h0, x, h)
			}
		}
	}
	if Hash(rv(t, int32(1))) == Hash(rv(t, int32(2))) {
		t.Errorf("Hash(1) == Hash(2)")
	}
	// Golden values: these decide where hashed shard keys live. A change here
	// moves data; never update them without a migration plan.
	golden := []struct {
		v    any
		want int64
	}{
		{int32(1), goldenHash1},
		{"hello", goldenHashHello},
		{bson.Null{}, goldenHashNull},
		{bson.D{{Key: "a", Value: 1}, {Key: "b", Value: bson.A{"x", 2.5}}}, goldenHashDoc},
		{oid(7), goldenHashOID},
		{bson.MinKey{}, goldenHashMinKey},
	}
	for _, g := range golden {
		if got := Hash(rv(t, g.v)); got != g.want {
			t.Errorf("Hash(%v) = %d, want %d", g.v, got, g.want)
		}
	}
}

// Golden hash values, computed outside Go from the documented encoding
// (MD5 of 0x01 followed by the encoding bytes shown).
const (
	goldenHash1      = 8065467375194380865  // encoding 2602
	goldenHashHello  = -5014630724512738933 // encoding 3c68656c6c6f0001
	goldenHashNull   = -1552665524146451187 // encoding 0a
	goldenHashDoc    = 7657024601056813363  // encoding 461461002602506200503c7800012605640000
	goldenHashOID    = -706683721776374256  // encoding 64070707070707070707070707
	goldenHashMinKey = -3206772170024660869 // encoding 05
)

// TestAppendIntMatchesDecimal checks the integer fast path against the
// general decimal path it must agree with byte for byte.
func TestAppendIntMatchesDecimal(t *testing.T) {
	vals := []int64{0, 1, -1, 9, 10, 99, 100, 101, 1000, 123456, math.MaxInt64, math.MinInt64, math.MaxInt32, math.MinInt32}
	p := int64(1)
	for i := 0; i < 19; i++ {
		vals = append(vals, p, p+1, p-1, -p, -p-1, p*7)
		p *= 10
	}
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i < 2000; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		vals = append(vals, int64(x), int64(x)>>(i%64))
	}
	for _, v := range vals {
		var buf [80]byte
		want := appendNumber(nil, intDecimal(v, buf[:0]))
		if got := appendInt(nil, v); !bytes.Equal(got, want) {
			t.Fatalf("appendInt(%d) = %x, appendNumber = %x", v, got, want)
		}
	}
}

// allTypes has one value of every BSON type.
func allTypes(t testing.TB) []any {
	return []any{
		bson.MinKey{}, bson.Undefined{}, bson.Null{}, int32(-7), int64(1 << 40), 2.5, dec(t, "-0.001"),
		"str\x00ing", bson.Symbol("sym"), bson.D{{Key: "x", Value: bson.A{1, "y"}}}, bson.A{bson.D{}, nil},
		bson.Binary{Subtype: 4, Data: []byte{1, 2, 3}}, oid(3), true, false, bson.DateTime(-5),
		bson.Timestamp{T: 7, I: 9}, bson.Regex{Pattern: "^a", Options: "im"},
		bson.DBPointer{DB: "db.c", Pointer: oid(4)}, bson.JavaScript("f()"),
		bson.CodeWithScope{Code: "g()", Scope: bson.D{{Key: "s", Value: 1}}}, bson.MaxKey{},
	}
}

func TestAllTypesNested(t *testing.T) {
	vals := allTypes(t)
	var doc bson.D
	for i, v := range vals {
		doc = append(doc, bson.E{Key: string(rune('a' + i)), Value: v})
	}
	for _, v := range []any{doc, bson.A(vals), bson.CodeWithScope{Code: "h", Scope: doc}} {
		x := rv(t, v)
		checkRoundTrip(t, x)
		// Changing the last component changes the order accordingly.
		var bigger bson.RawValue
		switch v := v.(type) {
		case bson.D:
			bigger = rv(t, append(append(bson.D{}, v[:len(v)-1]...), bson.E{Key: "w", Value: v[len(v)-1].Value}))
		case bson.A:
			bigger = rv(t, append(append(bson.A{}, v...), 1))
		default:
			bigger = rv(t, bson.CodeWithScope{Code: "h", Scope: append(append(bson.D{}, doc...), bson.E{Key: "z", Value: 1})})
		}
		if c := Compare(x, bigger); c != -1 {
			t.Errorf("Compare(%s, %s) = %d, want -1", x, bigger, c)
		}
		if bytes.Compare(Encode(x), Encode(bigger)) != -1 {
			t.Errorf("Encode order wrong for %s", x)
		}
	}
}
