package keys

import (
	"encoding/binary"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// valueGen builds BSON values deterministically from fuzz bytes. It favours
// small alphabets and small numbers so that generated pairs often tie or
// share prefixes, and numbers of different types often have equal values.
type valueGen struct {
	b []byte
}

func (g *valueGen) byte() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

func (g *valueGen) bytes(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = g.byte()
	}
	return out
}

func (g *valueGen) u64() uint64 { return binary.LittleEndian.Uint64(g.bytes(8)) }

// text returns a short string over a tiny alphabet; withNUL allows 0x00.
func (g *valueGen) text(withNUL bool) []byte {
	alphabet := []byte{'a', 'b', 0xff, 0x01}
	if withNUL {
		alphabet[3] = 0x00
	}
	n := int(g.byte() % 5)
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[g.byte()%4]
	}
	return out
}

func bsonStr(s []byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(s)+1))
	out = append(out, s...)
	return append(out, 0)
}

// specialNumbers are edge cases mixed into generated numbers.
func specialNumbers() []bson.RawValue {
	f := func(x float64) bson.RawValue {
		return bson.RawValue{Type: bson.TypeDouble, Value: binary.LittleEndian.AppendUint64(nil, math.Float64bits(x))}
	}
	i := func(x int64) bson.RawValue {
		return bson.RawValue{Type: bson.TypeInt64, Value: binary.LittleEndian.AppendUint64(nil, uint64(x))}
	}
	d := func(s string) bson.RawValue {
		v, err := bson.ParseDecimal128(s)
		if err != nil {
			panic(err)
		}
		h, l := v.GetBytes()
		return bson.RawValue{Type: bson.TypeDecimal128, Value: binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, l), h)}
	}
	return []bson.RawValue{
		f(math.NaN()), f(math.Inf(1)), f(math.Inf(-1)), f(0), f(math.Copysign(0, -1)),
		f(math.MaxFloat64), f(-math.MaxFloat64), f(math.SmallestNonzeroFloat64), f(-math.SmallestNonzeroFloat64),
		f(0.1), f(-0.1), f(float64(math.MaxInt64)), f(float64(math.MinInt64)), f(1 << 53), f(1<<53 + 2),
		f(9.223372036854775807e18), f(2.2250738585072014e-308), f(1.5), f(1e21), f(1e-7),
		i(math.MaxInt64), i(math.MinInt64), i(1<<53 + 1), i(-(1<<53 + 1)), i(1 << 53), i(0), i(1), i(-1),
		d("NaN"), d("-NaN"), d("Infinity"), d("-Infinity"), d("0"), d("-0"), d("0.1"), d("-0.1"),
		d("1E+6144"), d("-9.999999999999999999999999999999999E+6144"), d("1E-6176"), d("-1E-6176"),
		d("9223372036854775807"), d("9223372036854775808"), d("0.1000000000000000055511151231257827"),
		d("1.0"), d("1.000000000000000000000000000000001"), d("4.940656458412465441765687928682214E-324"),
	}
}

const genKinds = 26

// value returns the next value; depth limits nesting.
func (g *valueGen) value(depth int) bson.RawValue {
	k := g.byte() % genKinds
	if depth >= 3 && (k == 9 || k == 10 || k == 20) {
		k = 0
	}
	switch k {
	case 0: // small int32
		return bson.RawValue{Type: bson.TypeInt32, Value: binary.LittleEndian.AppendUint32(nil, uint32(int32(int8(g.byte()))))}
	case 1: // any int32
		return bson.RawValue{Type: bson.TypeInt32, Value: g.bytes(4)}
	case 2: // any int64
		return bson.RawValue{Type: bson.TypeInt64, Value: g.bytes(8)}
	case 3: // small int64 scaled
		x := int64(int8(g.byte())) << (g.byte() % 64)
		return bson.RawValue{Type: bson.TypeInt64, Value: binary.LittleEndian.AppendUint64(nil, uint64(x))}
	case 4: // any double bits
		return bson.RawValue{Type: bson.TypeDouble, Value: g.bytes(8)}
	case 5: // small fraction: int8 / 2^k or * 2^k
		x := math.Ldexp(float64(int8(g.byte())), int(int8(g.byte()))%70)
		return bson.RawValue{Type: bson.TypeDouble, Value: binary.LittleEndian.AppendUint64(nil, math.Float64bits(x))}
	case 6: // structured decimal: small coefficient, small exponent
		coef := uint64(g.byte()) * uint64(1+g.byte()%3)
		exp := int(int8(g.byte())) % 8
		return decimalValue(g.byte()&1 == 1, 0, coef, exp)
	case 7: // structured decimal: full coefficient, any exponent
		hi := g.u64() % (maxCoefHi + 1)
		lo := g.u64()
		exp := int(binary.LittleEndian.Uint16(g.bytes(2))%(6111+6176+1)) - 6176
		return decimalValue(g.byte()&1 == 1, hi, lo, exp)
	case 8: // raw decimal bits
		return bson.RawValue{Type: bson.TypeDecimal128, Value: g.bytes(16)}
	case 9: // document
		n := int(g.byte() % 4)
		names := []string{"", "a", "b", "ab"}
		doc := []byte{0, 0, 0, 0}
		for i := 0; i < n; i++ {
			v := g.value(depth + 1)
			doc = append(doc, byte(v.Type))
			doc = append(doc, names[g.byte()%4]...)
			doc = append(doc, 0)
			doc = append(doc, v.Value...)
		}
		doc = append(doc, 0)
		binary.LittleEndian.PutUint32(doc, uint32(len(doc)))
		return bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: doc}
	case 10: // array
		n := int(g.byte() % 4)
		doc := []byte{0, 0, 0, 0}
		for i := 0; i < n; i++ {
			v := g.value(depth + 1)
			doc = append(doc, byte(v.Type), byte('0'+i), 0)
			doc = append(doc, v.Value...)
		}
		doc = append(doc, 0)
		binary.LittleEndian.PutUint32(doc, uint32(len(doc)))
		return bson.RawValue{Type: bson.TypeArray, Value: doc}
	case 11:
		t := bson.TypeString
		if g.byte()&1 == 1 {
			t = bson.TypeSymbol
		}
		return bson.RawValue{Type: t, Value: bsonStr(g.text(true))}
	case 12: // binary
		data := g.text(true)
		sub := []byte{0, 5, 0x80}[g.byte()%3]
		v := binary.LittleEndian.AppendUint32(nil, uint32(len(data)))
		v = append(v, sub)
		return bson.RawValue{Type: bson.TypeBinary, Value: append(v, data...)}
	case 13: // ObjectId over a tiny alphabet
		v := make([]byte, 12)
		for i := range v {
			v[i] = g.byte() % 3
		}
		return bson.RawValue{Type: bson.TypeObjectID, Value: v}
	case 14:
		return bson.RawValue{Type: bson.TypeBoolean, Value: []byte{g.byte() % 3}}
	case 15:
		return bson.RawValue{Type: bson.TypeDateTime, Value: g.bytes(8)}
	case 16:
		return bson.RawValue{Type: bson.TypeTimestamp, Value: g.bytes(8)}
	case 17:
		v := append(g.text(false), 0)
		v = append(v, g.text(false)...)
		return bson.RawValue{Type: bson.TypeRegex, Value: append(v, 0)}
	case 18:
		v := bsonStr(g.text(true))
		oid := make([]byte, 12)
		oid[11] = g.byte() % 3
		return bson.RawValue{Type: bson.TypeDBPointer, Value: append(v, oid...)}
	case 19:
		return bson.RawValue{Type: bson.TypeJavaScript, Value: bsonStr(g.text(true))}
	case 20: // code with scope
		code := bsonStr(g.text(true))
		scope := g.value(depth + 1)
		if scope.Type != bson.TypeEmbeddedDocument {
			scope = bson.RawValue{Value: []byte{5, 0, 0, 0, 0}}
		}
		v := binary.LittleEndian.AppendUint32(nil, uint32(4+len(code)+len(scope.Value)))
		v = append(v, code...)
		return bson.RawValue{Type: bson.TypeCodeWithScope, Value: append(v, scope.Value...)}
	case 21:
		return []bson.RawValue{MinKey(), MaxKey(), {Type: bson.TypeNull}, {Type: bson.TypeUndefined}}[g.byte()%4]
	case 22, 23:
		s := specialNumbers()
		return s[int(g.byte())%len(s)]
	case 24: // numbers equal across types: int8 as int32/int64/double/decimal
		x := int64(int8(g.byte()))
		switch g.byte() % 4 {
		case 0:
			return bson.RawValue{Type: bson.TypeInt32, Value: binary.LittleEndian.AppendUint32(nil, uint32(x))}
		case 1:
			return bson.RawValue{Type: bson.TypeInt64, Value: binary.LittleEndian.AppendUint64(nil, uint64(x))}
		case 2:
			return bson.RawValue{Type: bson.TypeDouble, Value: binary.LittleEndian.AppendUint64(nil, math.Float64bits(float64(x)))}
		default:
			neg := x < 0
			if neg {
				x = -x
			}
			return decimalValue(neg, 0, uint64(x)*10, -1)
		}
	}
	// Malformed: any type byte, a few bytes.
	if depth > 0 {
		return bson.RawValue{Type: bson.TypeNull}
	}
	return bson.RawValue{Type: bson.Type(g.byte()), Value: g.text(true)}
}

// decimalValue builds a decimal128 from sign, coefficient words and exponent
// (-6176..6111).
func decimalValue(neg bool, hi, lo uint64, exp int) bson.RawValue {
	h := hi | uint64(exp+6176)<<49
	if neg {
		h |= 1 << 63
	}
	v := binary.LittleEndian.AppendUint64(nil, lo)
	return bson.RawValue{Type: bson.TypeDecimal128, Value: binary.LittleEndian.AppendUint64(v, h)}
}
