package query

import (
	"encoding/binary"
	"math"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// This file reads raw BSON without decoding it. Documents handed to the
// matcher normally come from storage and are valid, but the readers below
// never trust lengths: a malformed document ends the iteration early instead
// of panicking (the fuzz target relies on this).

// elemIter iterates the elements of a BSON document or array.
type elemIter struct {
	b []byte
}

func newElemIter(doc []byte) elemIter {
	if len(doc) < 5 {
		return elemIter{}
	}
	n := int(int32(binary.LittleEndian.Uint32(doc)))
	if n < 5 || n > len(doc) {
		n = len(doc)
	}
	return elemIter{b: doc[4 : n-1]}
}

// next returns the next element's key and value; ok is false at the end or
// on malformed input.
func (it *elemIter) next() (key []byte, v bson.RawValue, ok bool) {
	if len(it.b) < 2 {
		it.b = nil
		return nil, bson.RawValue{}, false
	}
	t := bson.Type(it.b[0])
	rest := it.b[1:]
	end := -1
	for i, c := range rest {
		if c == 0 {
			end = i
			break
		}
	}
	if end < 0 {
		it.b = nil
		return nil, bson.RawValue{}, false
	}
	key = rest[:end]
	rest = rest[end+1:]
	n := valueLen(t, rest)
	if n < 0 || n > len(rest) {
		it.b = nil
		return nil, bson.RawValue{}, false
	}
	it.b = rest[n:]
	return key, bson.RawValue{Type: t, Value: rest[:n:n]}, true
}

// valueLen returns the length of a value of type t at the start of b, or -1.
func valueLen(t bson.Type, b []byte) int {
	i32 := func() int {
		if len(b) < 4 {
			return -1
		}
		return int(int32(binary.LittleEndian.Uint32(b)))
	}
	switch t {
	case bson.TypeDouble, bson.TypeDateTime, bson.TypeTimestamp, bson.TypeInt64:
		return 8
	case bson.TypeString, bson.TypeJavaScript, bson.TypeSymbol:
		n := i32()
		if n < 1 {
			return -1
		}
		return 4 + n
	case bson.TypeEmbeddedDocument, bson.TypeArray, bson.TypeCodeWithScope:
		n := i32()
		if n < 5 {
			return -1
		}
		return n
	case bson.TypeBinary:
		n := i32()
		if n < 0 {
			return -1
		}
		return 5 + n
	case bson.TypeUndefined, bson.TypeNull, bson.TypeMinKey, bson.TypeMaxKey:
		return 0
	case bson.TypeObjectID:
		return 12
	case bson.TypeBoolean:
		return 1
	case bson.TypeRegex:
		zeros, i := 0, 0
		for ; i < len(b) && zeros < 2; i++ {
			if b[i] == 0 {
				zeros++
			}
		}
		if zeros < 2 {
			return -1
		}
		return i
	case bson.TypeDBPointer:
		n := i32()
		if n < 1 {
			return -1
		}
		return 4 + n + 12
	case bson.TypeInt32:
		return 4
	case bson.TypeDecimal128:
		return 16
	}
	return -1
}

// lookupField returns the value of the first field named key in doc.
func lookupField(doc []byte, key string) (bson.RawValue, bool) {
	it := newElemIter(doc)
	for {
		k, v, ok := it.next()
		if !ok {
			return bson.RawValue{}, false
		}
		if string(k) == key {
			return v, true
		}
	}
}

// arrayLen counts the elements of a BSON array.
func arrayLen(arr []byte) int {
	n := 0
	it := newElemIter(arr)
	for {
		if _, _, ok := it.next(); !ok {
			return n
		}
		n++
	}
}

// arrayElems returns the values of a BSON array.
func arrayElems(arr []byte) []bson.RawValue {
	var out []bson.RawValue
	it := newElemIter(arr)
	for {
		_, v, ok := it.next()
		if !ok {
			return out
		}
		out = append(out, v)
	}
}

func isNumber(t bson.Type) bool {
	switch t {
	case bson.TypeDouble, bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128:
		return true
	}
	return false
}

// numberAsFloat returns a number as float64 (decimal128 through its
// string form); ok is false for non-numbers or malformed values.
func numberAsFloat(v bson.RawValue) (float64, bool) {
	switch v.Type {
	case bson.TypeInt32:
		if len(v.Value) != 4 {
			return 0, false
		}
		return float64(int32(binary.LittleEndian.Uint32(v.Value))), true
	case bson.TypeInt64:
		if len(v.Value) != 8 {
			return 0, false
		}
		return float64(int64(binary.LittleEndian.Uint64(v.Value))), true
	case bson.TypeDouble:
		if len(v.Value) != 8 {
			return 0, false
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(v.Value)), true
	case bson.TypeDecimal128:
		d, ok := v.Decimal128OK()
		if !ok {
			return 0, false
		}
		f, err := decimalToFloat(d)
		return f, err == nil
	}
	return 0, false
}

// numberAsInt64 truncates a number toward zero; ok is false for
// non-numbers, NaN, infinities and values out of the int64 range.
func numberAsInt64(v bson.RawValue) (int64, bool) {
	switch v.Type {
	case bson.TypeInt32:
		if len(v.Value) != 4 {
			return 0, false
		}
		return int64(int32(binary.LittleEndian.Uint32(v.Value))), true
	case bson.TypeInt64:
		if len(v.Value) != 8 {
			return 0, false
		}
		return int64(binary.LittleEndian.Uint64(v.Value)), true
	}
	f, ok := numberAsFloat(v)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f >= 9.223372036854775807e18 || f < -9.223372036854775808e18 {
		return 0, false
	}
	return int64(f), true
}

func decimalToFloat(d bson.Decimal128) (float64, error) {
	s := d.String()
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

// isNaN reports whether v is a NaN number.
func isNaN(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeDouble:
		f, ok := numberAsFloat(v)
		return ok && math.IsNaN(f)
	case bson.TypeDecimal128:
		d, ok := v.Decimal128OK()
		return ok && d.IsNaN()
	}
	return false
}

// docValue wraps a document as a value.
func docValue(d bson.Raw) bson.RawValue {
	return bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: d}
}

var missing = bson.RawValue{}

var nullValue = bson.RawValue{Type: bson.TypeNull}
