package expr

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/keys"
)

// Missing is the value of a field that does not exist: a RawValue whose
// Type is 0. Expressions return it for absent fields and $$REMOVE; stages
// that build documents leave such fields out.
var Missing = bson.RawValue{}

// IsMissing reports whether v is the missing value (Type 0).
func IsMissing(v bson.RawValue) bool { return v.Type == 0 }

// IsNullish reports whether v is null, undefined or missing: the values
// most expressions propagate as null.
func IsNullish(v bson.RawValue) bool {
	return v.Type == 0 || v.Type == bson.TypeNull || v.Type == bson.TypeUndefined
}

// Null returns the BSON null value.
func Null() bson.RawValue { return bson.RawValue{Type: bson.TypeNull} }

// Int32 returns an int32 value.
func Int32(i int32) bson.RawValue {
	return bson.RawValue{Type: bson.TypeInt32, Value: bsoncore.AppendInt32(nil, i)}
}

// Int64 returns an int64 value.
func Int64(i int64) bson.RawValue {
	return bson.RawValue{Type: bson.TypeInt64, Value: bsoncore.AppendInt64(nil, i)}
}

// Double returns a double value.
func Double(f float64) bson.RawValue {
	return bson.RawValue{Type: bson.TypeDouble, Value: bsoncore.AppendDouble(nil, f)}
}

// Decimal returns a decimal128 value.
func Decimal(d bson.Decimal128) bson.RawValue {
	h, l := d.GetBytes()
	return bson.RawValue{Type: bson.TypeDecimal128, Value: bsoncore.AppendDecimal128(nil, h, l)}
}

// String returns a string value.
func String(s string) bson.RawValue {
	return bson.RawValue{Type: bson.TypeString, Value: bsoncore.AppendString(nil, s)}
}

// Bool returns a boolean value.
func Bool(b bool) bson.RawValue {
	return bson.RawValue{Type: bson.TypeBoolean, Value: bsoncore.AppendBoolean(nil, b)}
}

// DateTime returns a date value (milliseconds since the Unix epoch).
func DateTime(ms int64) bson.RawValue {
	return bson.RawValue{Type: bson.TypeDateTime, Value: bsoncore.AppendDateTime(nil, ms)}
}

// Doc returns an embedded document value.
func Doc(d bson.Raw) bson.RawValue {
	return bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: d}
}

// Array returns an array value holding vals (missing values are skipped).
func Array(vals []bson.RawValue) bson.RawValue {
	var b ArrayBuilder
	for _, v := range vals {
		b.Append(v)
	}
	return b.Value()
}

// DocBuilder builds a BSON document field by field. The zero value is
// ready to use; it is not safe for concurrent use.
type DocBuilder struct {
	buf   []byte
	start int32
	open  bool
}

// Grow reserves room for about n more bytes.
func (b *DocBuilder) Grow(n int) {
	if cap(b.buf)-len(b.buf) < n {
		nb := make([]byte, len(b.buf), len(b.buf)+n)
		copy(nb, b.buf)
		b.buf = nb
	}
}

func (b *DocBuilder) begin() {
	if !b.open {
		b.start, b.buf = bsoncore.AppendDocumentStart(b.buf)
		b.open = true
	}
}

// Append adds a field; a missing value adds nothing.
func (b *DocBuilder) Append(key string, v bson.RawValue) {
	b.begin()
	if v.Type == 0 {
		return
	}
	b.buf = bsoncore.AppendHeader(b.buf, bsoncore.Type(v.Type), key)
	b.buf = append(b.buf, v.Value...)
}

// Doc returns the finished document. The builder must not be used after.
func (b *DocBuilder) Doc() bson.Raw {
	b.begin()
	b.buf = append(b.buf, 0)
	binary.LittleEndian.PutUint32(b.buf[b.start:], uint32(len(b.buf)-int(b.start)))
	b.open = false
	return bson.Raw(b.buf)
}

// ArrayBuilder builds a BSON array. The zero value is ready to use; it is
// not safe for concurrent use.
type ArrayBuilder struct {
	d DocBuilder
	n int
}

// Append adds an element; a missing value adds nothing.
func (b *ArrayBuilder) Append(v bson.RawValue) {
	if v.Type == 0 {
		b.d.begin()
		return
	}
	b.d.Append(strconv.Itoa(b.n), v)
	b.n++
}

// Len returns the number of elements appended.
func (b *ArrayBuilder) Len() int { return b.n }

// Value returns the finished array.
func (b *ArrayBuilder) Value() bson.RawValue {
	return bson.RawValue{Type: bson.TypeArray, Value: b.d.Doc()}
}

// Elem is one field of a document: its name and value.
type Elem struct {
	Key   string
	Value bson.RawValue
}

// Elems returns the fields of a document (or the elements of an array, with
// their index as key). It returns an error on malformed BSON.
func Elems(doc []byte) ([]Elem, error) {
	var out []Elem
	err := Each(doc, func(k string, v bson.RawValue) bool {
		out = append(out, Elem{k, v})
		return true
	})
	return out, err
}

// Each calls fn for every field of a document or array in order until fn
// returns false. It returns an error on malformed BSON.
func Each(doc []byte, fn func(key string, v bson.RawValue) bool) error {
	return eachRaw(doc, func(key []byte, v bson.RawValue) bool { return fn(string(key), v) })
}

// EachRaw is Each with the key as bytes, valid only during the call: it
// lets callers look fields up without allocating.
func EachRaw(doc []byte, fn func(key []byte, v bson.RawValue) bool) error {
	return eachRaw(doc, fn)
}

// eachRaw is Each with the key as bytes (valid only during the call), so
// lookups need not allocate. It checks every length it reads against the
// buffer, so malformed input ends with an error, never a panic.
func eachRaw(doc []byte, fn func(key []byte, v bson.RawValue) bool) error {
	if len(doc) < 5 {
		return errMalformed
	}
	length := int(int32(binary.LittleEndian.Uint32(doc)))
	if length < 5 || length > len(doc) || doc[length-1] != 0 {
		return errMalformed
	}
	b := doc[4 : length-1]
	for len(b) > 0 {
		t := bson.Type(b[0])
		b = b[1:]
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return errMalformed
		}
		key := b[:i]
		b = b[i+1:]
		n, ok := valueLen(t, b)
		if !ok {
			return errMalformed
		}
		if !fn(key, bson.RawValue{Type: t, Value: b[:n:n]}) {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// valueLen returns the encoded length of a value of type t at the start of
// b, or false when b is too short or t unknown.
func valueLen(t bson.Type, b []byte) (int, bool) {
	fixed := func(n int) (int, bool) { return n, len(b) >= n }
	prefixed := func(extra int) (int, bool) {
		if len(b) < 4 {
			return 0, false
		}
		n := int(int32(binary.LittleEndian.Uint32(b))) + extra
		if n < 4 || n > len(b) {
			return 0, false
		}
		return n, true
	}
	switch t {
	case bson.TypeDouble, bson.TypeDateTime, bson.TypeTimestamp, bson.TypeInt64:
		return fixed(8)
	case bson.TypeString, bson.TypeJavaScript, bson.TypeSymbol:
		n, ok := prefixed(4)
		return n, ok && n >= 5
	case bson.TypeEmbeddedDocument, bson.TypeArray, bson.TypeCodeWithScope:
		n, ok := prefixed(0)
		return n, ok && n >= 5
	case bson.TypeBinary:
		return prefixed(5)
	case bson.TypeUndefined, bson.TypeNull, bson.TypeMinKey, bson.TypeMaxKey:
		return 0, true
	case bson.TypeObjectID:
		return fixed(12)
	case bson.TypeBoolean:
		return fixed(1)
	case bson.TypeRegex:
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return 0, false
		}
		j := bytes.IndexByte(b[i+1:], 0)
		if j < 0 {
			return 0, false
		}
		return i + j + 2, true
	case bson.TypeDBPointer:
		n, ok := prefixed(4)
		return n + 12, ok && n >= 5 && n+12 <= len(b)
	case bson.TypeInt32:
		return fixed(4)
	case bson.TypeDecimal128:
		return fixed(16)
	}
	return 0, false
}

// Lookup returns the value of a top-level field of doc, or Missing.
func Lookup(doc []byte, key string) bson.RawValue {
	out := Missing
	_ = eachRaw(doc, func(k []byte, v bson.RawValue) bool {
		if string(k) == key {
			out = v
			return false
		}
		return true
	})
	return out
}

// arrayValues returns the elements of an array value.
func arrayValues(v bson.RawValue) ([]bson.RawValue, error) {
	var out []bson.RawValue
	err := Each(v.Value, func(_ string, e bson.RawValue) bool {
		out = append(out, e)
		return true
	})
	return out, err
}

// Compare compares two values in MongoDB's order (keys.Compare), with the
// missing value sorting like undefined: below null, above MinKey, as
// MongoDB's aggregation does.
func Compare(a, b bson.RawValue) int {
	if a.Type == 0 || b.Type == 0 {
		ra, rb := rankMissing(a), rankMissing(b)
		switch {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		if a.Type == 0 && b.Type == 0 {
			return 0
		}
		if a.Type == 0 {
			a = bson.RawValue{Type: bson.TypeUndefined}
		}
		if b.Type == 0 {
			b = bson.RawValue{Type: bson.TypeUndefined}
		}
	}
	return keys.Compare(a, b)
}

func rankMissing(v bson.RawValue) int {
	if v.Type == 0 {
		return keys.TypeRank(bson.TypeUndefined)
	}
	return keys.TypeRank(v.Type)
}

// Equal reports whether a and b compare equal.
func Equal(a, b bson.RawValue) bool { return Compare(a, b) == 0 }

// TypeName returns MongoDB's alias of a value's type ("int", "string",
// "missing", ...), as $type reports it.
func TypeName(v bson.RawValue) string { return keys.TypeName(v.Type) }

// Truthy reports whether v is true in a boolean context: false, null,
// undefined, missing and every numeric zero are false; everything else
// (including "", [] and {}) is true.
func Truthy(v bson.RawValue) bool {
	switch v.Type {
	case 0, bson.TypeNull, bson.TypeUndefined:
		return false
	case bson.TypeBoolean:
		b, ok := v.BooleanOK()
		return ok && b
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		n, ok := toNum(v)
		return ok && !n.isZero()
	}
	return true
}

// dateMillis returns the instant of a date, timestamp or ObjectId in
// milliseconds since the epoch.
func dateMillis(v bson.RawValue) (int64, bool) {
	switch v.Type {
	case bson.TypeDateTime:
		return v.DateTimeOK()
	case bson.TypeTimestamp:
		t, _, ok := v.TimestampOK()
		return int64(t) * 1000, ok
	case bson.TypeObjectID:
		oid, ok := v.ObjectIDOK()
		if !ok {
			return 0, false
		}
		return int64(binary.BigEndian.Uint32(oid[0:4])) * 1000, true
	}
	return 0, false
}

func msToTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// formatISODate renders a date as MongoDB's $toString does.
func formatISODate(ms int64) string {
	return msToTime(ms).Format("2006-01-02T15:04:05.000Z")
}

// formatDouble renders a double as MongoDB's string conversions do.
func formatDouble(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
