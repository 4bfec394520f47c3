package keys

import (
	"bytes"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// fuzzSeeds covers every generator kind, alone and paired with every other.
func fuzzSeeds(f *testing.F) {
	for k := byte(0); k < genKinds+2; k++ {
		f.Add([]byte{k, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17})
		f.Add([]byte{k, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, k, 0xff, 0x80})
		f.Add([]byte{k, 3, 9, 3, 22, 5, 24, 7, 1, 2, k, 3, 9, 3, 22, 6, 24, 7, 2, 2})
	}
	f.Add([]byte{22, 0, 23, 27})      // NaN vs decimal NaN
	f.Add([]byte{24, 5, 0, 24, 5, 3}) // int32 5 vs decimal 5.0
	f.Add([]byte{9, 2, 24, 1, 2, 1, 11, 0, 2, 9, 2, 24, 1, 3, 1, 11, 0, 2})
	f.Add([]byte{10, 3, 24, 1, 1, 10, 0, 21, 1, 10, 3, 24, 1, 2, 10, 1, 21, 0})
}

func FuzzEncodeOrder(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &valueGen{b: data}
		a := g.value(0)
		b := g.value(0)
		c := Compare(a, b)
		if r := Compare(b, a); r != -c {
			t.Fatalf("Compare not antisymmetric: Compare(%s, %s)=%d, reverse %d", a, b, c, r)
		}
		if want, ok := ratOracle(t, a, b); ok && want != c {
			t.Fatalf("Compare(%s, %s) = %d, big.Rat says %d", a, b, c, want)
		}
		ea, eb := Encode(a), Encode(b)
		if got := bytes.Compare(ea, eb); got != c {
			t.Fatalf("Compare(%s, %s) = %d but bytes.Compare = %d\n%x\n%x", a, b, c, got, ea, eb)
		}
		da, db := AppendValueDesc(nil, a), AppendValueDesc(nil, b)
		if got := bytes.Compare(da, db); got != -c {
			t.Fatalf("descending: Compare(%s, %s) = %d but bytes.Compare = %d", a, b, c, got)
		}
		if c == 0 && Hash(a) != Hash(b) {
			t.Fatalf("equal values %s and %s hash differently", a, b)
		}
		// Tuples compare component by component, in any direction.
		desc := []bool{g.byte()&1 == 1, g.byte()&1 == 1}
		want := c
		if desc[0] {
			want = -want
		}
		if want == 0 {
			want = -c // second components are (b, a)
			if desc[1] {
				want = -want
			}
		}
		ta, tb := EncodeTuple([]bson.RawValue{a, b}, desc), EncodeTuple([]bson.RawValue{b, a}, desc)
		if got := bytes.Compare(ta, tb); got != want {
			t.Fatalf("tuple (%s, %s) vs (%s, %s) desc %v: bytes.Compare = %d, want %d", a, b, b, a, desc, got, want)
		}
	})
}

func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	f.Add(Encode(bson.RawValue{Type: bson.TypeMaxKey}))
	f.Add([]byte{tagPosLarge, 0x80, 0x0b, 3, 5, 7, 8})
	f.Add([]byte{tagNegSmall, 0x7f, 0xfe, 0xfc})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Arbitrary bytes never panic, and whatever decodes is a usable value.
		for _, decode := range []func([]byte) (bson.RawValue, []byte, error){DecodeValue, DecodeValueDesc} {
			if v, rest, err := decode(data); err == nil {
				if len(rest) > len(data) {
					t.Fatalf("rest longer than input")
				}
				if Compare(v, v) != 0 {
					t.Fatalf("decoded value %s not equal to itself", v)
				}
				_ = Encode(v)
			}
		}
		// Generated values round-trip.
		g := &valueGen{b: data}
		v := g.value(0)
		enc := Encode(v)
		dv, rest, err := DecodeValue(enc)
		if err != nil || len(rest) != 0 {
			t.Fatalf("DecodeValue(Encode(%s)=%x): rest %x, err %v", v, enc, rest, err)
		}
		if Compare(dv, v) != 0 {
			t.Fatalf("DecodeValue(Encode(%s)) = %s", v, dv)
		}
		if re := Encode(dv); !bytes.Equal(re, enc) {
			t.Fatalf("re-encoding %s: %x, want %x", dv, re, enc)
		}
		denc := AppendValueDesc(nil, v)
		dd, rest, err := DecodeValueDesc(denc)
		if err != nil || len(rest) != 0 || Compare(dd, v) != 0 {
			t.Fatalf("DecodeValueDesc(AppendValueDesc(%s)=%x) = %s, rest %x, err %v", v, denc, dd, rest, err)
		}
	})
}

// FuzzRawValues feeds arbitrary type bytes and value bytes (mostly
// malformed BSON) to Compare, the encoding and Hash: nothing may panic, and
// the encoding must still agree with Compare.
func FuzzRawValues(f *testing.F) {
	f.Add(byte(bson.TypeEmbeddedDocument), []byte{5, 0, 0, 0, 0}, byte(bson.TypeArray), []byte{5, 0, 0, 0, 0})
	f.Add(byte(bson.TypeEmbeddedDocument), []byte{12, 0, 0, 0, 0x10, 'a', 0, 1, 0, 0, 0, 0}, byte(bson.TypeEmbeddedDocument), []byte{16, 0, 0, 0, 0x01, 'a', 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0})
	f.Add(byte(bson.TypeString), []byte{2, 0, 0, 0, 'a', 0}, byte(bson.TypeString), []byte{2, 0, 0, 0, 'a', 1})
	f.Add(byte(bson.TypeCodeWithScope), []byte{15, 0, 0, 0, 2, 0, 0, 0, 'x', 0, 5, 0, 0, 0, 0}, byte(bson.TypeDBPointer), []byte{1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add(byte(bson.TypeRegex), []byte{'a', 0, 'i', 0}, byte(bson.TypeBinary), []byte{1, 0, 0, 0, 0x80, 7})
	f.Add(byte(0), []byte{}, byte(bson.TypeUndefined), []byte{})
	f.Add(byte(bson.TypeDecimal128), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x30}, byte(bson.TypeInt32), []byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ta byte, a []byte, tb byte, b []byte) {
		va, vb := bson.RawValue{Type: bson.Type(ta), Value: a}, bson.RawValue{Type: bson.Type(tb), Value: b}
		c := Compare(va, vb)
		if r := Compare(vb, va); r != -c {
			t.Fatalf("Compare not antisymmetric: %d vs %d", c, r)
		}
		ea, eb := Encode(va), Encode(vb)
		if got := bytes.Compare(ea, eb); got != c {
			t.Fatalf("Compare = %d but bytes.Compare = %d\n%x\n%x", c, got, ea, eb)
		}
		if got := bytes.Compare(AppendValueDesc(nil, va), AppendValueDesc(nil, vb)); got != -c {
			t.Fatalf("descending: Compare = %d but bytes.Compare = %d", c, got)
		}
		if c == 0 && Hash(va) != Hash(vb) {
			t.Fatalf("equal values hash differently")
		}
		dv, rest, err := DecodeValue(ea)
		if err != nil || len(rest) != 0 || Compare(dv, va) != 0 {
			t.Fatalf("round trip of %x: %s, rest %x, err %v", ea, dv, rest, err)
		}
	})
}
