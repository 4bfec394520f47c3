package keys

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func benchEncode(b *testing.B, v bson.RawValue) {
	b.ReportAllocs()
	buf := make([]byte, 0, 256)
	for b.Loop() {
		buf = AppendValue(buf[:0], v)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeInt(b *testing.B)    { benchEncode(b, rv(b, int32(123456))) }
func BenchmarkEncodeInt64(b *testing.B)  { benchEncode(b, rv(b, int64(1)<<60+7)) }
func BenchmarkEncodeDouble(b *testing.B) { benchEncode(b, rv(b, 1234.0)) }
func BenchmarkEncodeDoubleFraction(b *testing.B) {
	benchEncode(b, rv(b, 0.1))
}
func BenchmarkEncodeDecimal(b *testing.B) { benchEncode(b, rv(b, dec(b, "1234.5678"))) }
func BenchmarkEncodeString(b *testing.B)  { benchEncode(b, rv(b, "user:000012345@example.com")) }
func BenchmarkEncodeObjectID(b *testing.B) {
	benchEncode(b, rv(b, oid(0x5f)))
}

func BenchmarkEncodeTuple(b *testing.B) {
	vals := []bson.RawValue{rv(b, "alice"), rv(b, int32(42)), rv(b, oid(7))}
	desc := []bool{false, true, false}
	b.ReportAllocs()
	for b.Loop() {
		_ = EncodeTuple(vals, desc)
	}
}

func BenchmarkDecodeTuple(b *testing.B) {
	key := EncodeTuple([]bson.RawValue{rv(b, "alice"), rv(b, int32(42)), rv(b, oid(7))}, nil)
	b.ReportAllocs()
	for b.Loop() {
		rest := key
		for rest != nil && len(rest) > 0 {
			var err error
			_, rest, err = DecodeValue(rest)
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func benchCompare(b *testing.B, x, y bson.RawValue) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Compare(x, y)
	}
}

func BenchmarkCompareInt(b *testing.B) { benchCompare(b, rv(b, int32(5)), rv(b, int64(7))) }
func BenchmarkCompareIntDouble(b *testing.B) {
	benchCompare(b, rv(b, int64(5)), rv(b, 5.5))
}
func BenchmarkCompareDecimalDouble(b *testing.B) {
	benchCompare(b, rv(b, dec(b, "0.1")), rv(b, 0.1))
}
func BenchmarkCompareString(b *testing.B) { benchCompare(b, rv(b, "user:00001"), rv(b, "user:00002")) }
func BenchmarkCompareDoc(b *testing.B) {
	x := rv(b, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: "x"}, {Key: "c", Value: bson.A{1, 2, 3}}})
	y := rv(b, bson.D{{Key: "a", Value: 1.0}, {Key: "b", Value: "x"}, {Key: "c", Value: bson.A{1, 2, 4}}})
	benchCompare(b, x, y)
}

func BenchmarkHashInt(b *testing.B) {
	v := rv(b, int64(123456789))
	b.ReportAllocs()
	for b.Loop() {
		_ = Hash(v)
	}
}

func BenchmarkHashString(b *testing.B) {
	v := rv(b, "user:000012345@example.com")
	b.ReportAllocs()
	for b.Loop() {
		_ = Hash(v)
	}
}
