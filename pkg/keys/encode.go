package keys

import (
	"encoding/binary"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The encoding. Every value starts with one tag byte; tags increase with the
// type bracket, so the tag alone orders values of different brackets. Inside
// a bracket:
//
//	MinKey, Undefined, Null, MaxKey   tag only (a missing value is Undefined)
//	number                            see appendNumber
//	String, Symbol, JavaScript        tag, escaped bytes, 0x00 0x01
//	Object                            tag, elements, 0x00
//	  element                         bracket byte of the value, field name, 0x00, value
//	Array                             tag, values, 0x00
//	BinData                           tag, uint32 BE length, subtype, bytes
//	ObjectId                          tag, 12 bytes
//	Boolean                           tagFalse or tagTrue
//	Date                              tag, uint64 BE of (millis XOR 1<<63)
//	Timestamp                         tag, uint64 BE of (t<<32 | i)
//	Regex                             tag, pattern, 0x00, options, 0x00
//	DBPointer                         tag, uint32 BE namespace length, namespace, 12 bytes
//	CodeWithScope                     tag, escaped code, 0x00 0x01, scope elements, 0x00
//	malformed value                   tag, BSON type byte, escaped raw bytes, 0x00 0x01
//
// Escaping writes 0x00 as 0x00 0xFF, so the 0x00 0x01 terminator sorts below
// any continuation and a string sorts before its extensions. Field names,
// regex patterns and options are BSON cstrings and cannot hold 0x00, so a
// single 0x00 ends them. The element list end 0x00 sorts below every tag and
// bracket byte, so a document (or array) sorts before its extensions.
//
// Invariant: every encoding is prefix-free (no encoding is a proper prefix of
// another). Concatenations of encodings therefore compare component by
// component, and the bitwise complement of an encoding reverses its order,
// which is how descending components are stored.
const (
	tagEnd       = 0x00 // end of the elements of a document or array
	tagMinKey    = 0x05
	tagUndefined = 0x08
	tagNull      = 0x0a
	tagNaN       = 0x14 // first number tag, and the bracket byte of numbers
	tagNegInf    = 0x15
	tagNegLarge  = 0x16 // negative, base-100 exponent > 10
	tagNegMedium = 0x17 // 0x17..0x21: negative, exponent 10..0 (tag 0x21-exp)
	tagNegSmall  = 0x22 // negative, exponent < 0
	tagZero      = 0x23
	tagPosSmall  = 0x24 // positive, exponent < 0
	tagPosMedium = 0x25 // 0x25..0x2f: positive, exponent 0..10 (tag 0x25+exp)
	tagPosLarge  = 0x30 // positive, exponent > 10
	tagPosInf    = 0x31
	tagString    = 0x3c
	tagObject    = 0x46
	tagArray     = 0x50
	tagBinary    = 0x5a
	tagObjectID  = 0x64
	tagFalse     = 0x6e // also the bracket byte of booleans
	tagTrue      = 0x6f
	tagDate      = 0x78
	tagTimestamp = 0x82
	tagRegex     = 0x8c
	tagDBPointer = 0x96
	tagCode      = 0xa0
	tagCodeScope = 0xaa
	tagMaxKey    = 0xf0
	tagInvalid   = 0xfa

	mediumExpMax = 10 // largest base-100 exponent with a one-byte form
)

// bracketByte returns the byte that stands for t's type bracket in a
// document element; it orders like TypeRank.
func bracketByte(t bson.Type) byte {
	switch TypeRank(t) {
	case rankMinKey:
		return tagMinKey
	case rankUndefined:
		return tagUndefined
	case rankNull:
		return tagNull
	case rankNumber:
		return tagNaN
	case rankString:
		return tagString
	case rankObject:
		return tagObject
	case rankArray:
		return tagArray
	case rankBinary:
		return tagBinary
	case rankObjectID:
		return tagObjectID
	case rankBoolean:
		return tagFalse
	case rankDate:
		return tagDate
	case rankTimestamp:
		return tagTimestamp
	case rankRegex:
		return tagRegex
	case rankDBPointer:
		return tagDBPointer
	case rankCode:
		return tagCode
	case rankCodeScope:
		return tagCodeScope
	case rankMaxKey:
		return tagMaxKey
	}
	return tagInvalid
}

// AppendValue appends the order-preserving encoding of v to dst:
// sign(Compare(a, b)) == sign(bytes.Compare(Encode(a), Encode(b))), and values
// that compare equal encode to the same bytes.
func AppendValue(dst []byte, v bson.RawValue) []byte {
	if !valid(v.Type, v.Value, 0) {
		dst = append(dst, tagInvalid, byte(v.Type))
		return appendEscaped(dst, v.Value)
	}
	return appendValid(dst, v.Type, v.Value)
}

// AppendValueDesc appends the encoding of v for a descending component: the
// bitwise complement of AppendValue's, so it sorts in reverse order.
func AppendValueDesc(dst []byte, v bson.RawValue) []byte {
	n := len(dst)
	dst = AppendValue(dst, v)
	invert(dst[n:])
	return dst
}

// Encode returns the ascending encoding of v.
func Encode(v bson.RawValue) []byte {
	return AppendValue(nil, v)
}

// EncodeTuple encodes a compound key: the concatenation of the encodings of
// vals, component i in descending form when desc[i] is true (desc may be nil
// or shorter than vals; missing entries mean ascending).
func EncodeTuple(vals []bson.RawValue, desc []bool) []byte {
	size := 0
	for _, v := range vals {
		size += len(v.Value) + 4 // a good guess: most encodings are about as long as the BSON
	}
	return AppendTuple(make([]byte, 0, size), vals, desc)
}

// AppendTuple appends the encoding of a compound key to dst (see EncodeTuple).
func AppendTuple(dst []byte, vals []bson.RawValue, desc []bool) []byte {
	for i, v := range vals {
		if i < len(desc) && desc[i] {
			dst = AppendValueDesc(dst, v)
		} else {
			dst = AppendValue(dst, v)
		}
	}
	return dst
}

// PrefixEnd returns the smallest key greater than every key that starts with
// b, or nil when there is none (b empty or all 0xFF).
func PrefixEnd(b []byte) []byte {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0xff {
			end := make([]byte, i+1)
			copy(end, b[:i+1])
			end[i]++
			return end
		}
	}
	return nil
}

func invert(b []byte) {
	for i := range b {
		b[i] = ^b[i]
	}
}

// appendEscaped appends s with 0x00 escaped as 0x00 0xFF, then 0x00 0x01.
func appendEscaped(dst, s []byte) []byte {
	for {
		i := indexZero(s)
		if i < 0 {
			break
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, 0x00, 0xff)
		s = s[i+1:]
	}
	dst = append(dst, s...)
	return append(dst, 0x00, 0x01)
}

func indexZero(s []byte) int {
	for i, c := range s {
		if c == 0 {
			return i
		}
	}
	return -1
}

// appendValid appends the encoding of a value known to be well formed.
func appendValid(dst []byte, t bson.Type, val []byte) []byte {
	switch t {
	case bson.TypeMinKey:
		return append(dst, tagMinKey)
	case bson.TypeMaxKey:
		return append(dst, tagMaxKey)
	case bson.TypeUndefined, typeMissing:
		return append(dst, tagUndefined)
	case bson.TypeNull:
		return append(dst, tagNull)
	case bson.TypeInt32:
		return appendInt(dst, int64(int32(binary.LittleEndian.Uint32(val))))
	case bson.TypeInt64:
		return appendInt(dst, int64(binary.LittleEndian.Uint64(val)))
	case bson.TypeDouble, bson.TypeDecimal128:
		var buf [80]byte
		return appendNumber(dst, toDecimal(t, val, buf[:0]))
	case bson.TypeString, bson.TypeSymbol:
		dst = append(dst, tagString)
		return appendEscaped(dst, stringBytes(val))
	case bson.TypeJavaScript:
		dst = append(dst, tagCode)
		return appendEscaped(dst, stringBytes(val))
	case bson.TypeEmbeddedDocument:
		dst = append(dst, tagObject)
		return appendElements(dst, val, true)
	case bson.TypeArray:
		dst = append(dst, tagArray)
		return appendElements(dst, val, false)
	case bson.TypeBinary:
		dst = append(dst, tagBinary)
		dst = binary.BigEndian.AppendUint32(dst, binary.LittleEndian.Uint32(val))
		return append(dst, val[4:]...)
	case bson.TypeObjectID:
		dst = append(dst, tagObjectID)
		return append(dst, val...)
	case bson.TypeBoolean:
		if val[0] != 0 {
			return append(dst, tagTrue)
		}
		return append(dst, tagFalse)
	case bson.TypeDateTime:
		dst = append(dst, tagDate)
		return binary.BigEndian.AppendUint64(dst, binary.LittleEndian.Uint64(val)^(1<<63))
	case bson.TypeTimestamp:
		dst = append(dst, tagTimestamp)
		return binary.BigEndian.AppendUint64(dst, binary.LittleEndian.Uint64(val))
	case bson.TypeRegex:
		dst = append(dst, tagRegex)
		return append(dst, val...) // pattern NUL options NUL
	case bson.TypeDBPointer:
		ns := stringBytes(val)
		dst = append(dst, tagDBPointer)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(ns)))
		dst = append(dst, ns...)
		return append(dst, val[len(val)-12:]...)
	case bson.TypeCodeWithScope:
		code, scope := splitCodeScope(val)
		dst = append(dst, tagCodeScope)
		dst = appendEscaped(dst, code)
		return appendElements(dst, scope, true)
	}
	// Unreachable for well-formed values; keep the order total anyway.
	dst = append(dst, tagInvalid, byte(t))
	return appendEscaped(dst, val)
}

// appendElements appends the elements of a well-formed document or array
// and the end byte. Arrays drop the field names ("0", "1", ...).
func appendElements(dst, doc []byte, names bool) []byte {
	it := docIter{b: doc, pos: 4}
	for {
		t, name, val, ok := it.next()
		if !ok {
			return append(dst, tagEnd)
		}
		if names {
			dst = append(dst, bracketByte(t))
			dst = append(dst, name...)
			dst = append(dst, 0x00)
		}
		dst = appendValid(dst, t, val)
	}
}

// appendNumber appends a number in the base-100 form
// |value| = 0.m1 m2 ... mk × 100^e with m1 != 0 and mk != 0 (m are base-100
// digits). The tag gives the sign class and, for 0 <= e <= 10, the exponent;
// other exponents follow as uint16 BE of e+0x8000. The digits follow as one
// byte each: 2m+1, except the last, written 2m (even), which ends the number.
// Negative numbers complement the exponent and digit bytes, so a larger
// magnitude sorts lower.
func appendNumber(dst []byte, d decimal) []byte {
	switch d.class {
	case numNaN:
		return append(dst, tagNaN)
	case numNegInf:
		return append(dst, tagNegInf)
	case numZero:
		return append(dst, tagZero)
	case numPosInf:
		return append(dst, tagPosInf)
	}
	neg := d.class == numNeg
	digits := d.digits
	e10 := d.exp
	odd := e10&1 != 0
	e := e10 / 2
	if odd {
		// 0.d × 10^e10 = 0.0d × 10^(e10+1): shift in a leading zero digit.
		e = (e10 + 1) / 2
	}
	switch {
	case e >= 0 && e <= mediumExpMax && neg:
		dst = append(dst, tagNegMedium+byte(mediumExpMax-e))
	case e >= 0 && e <= mediumExpMax:
		dst = append(dst, tagPosMedium+byte(e))
	case neg:
		tag := byte(tagNegSmall)
		if e > 0 {
			tag = tagNegLarge
		}
		dst = append(dst, tag)
		dst = binary.BigEndian.AppendUint16(dst, ^uint16(e+0x8000))
	default:
		tag := byte(tagPosSmall)
		if e > 0 {
			tag = tagPosLarge
		}
		dst = append(dst, tag)
		dst = binary.BigEndian.AppendUint16(dst, uint16(e+0x8000))
	}
	i := 0
	for i < len(digits) {
		var hi, lo byte
		if odd && i == 0 {
			lo = digits[0] - '0'
			i = 1
		} else {
			hi = digits[i] - '0'
			if i+1 < len(digits) {
				lo = digits[i+1] - '0'
			}
			i += 2
		}
		b := 2 * (hi*10 + lo)
		if i < len(digits) {
			b++
		}
		if neg {
			b = ^b
		}
		dst = append(dst, b)
	}
	return dst
}

// appendInt is appendNumber for an integer, without the decimal detour: the
// base-100 digits of |i| are its mantissa, their count (at most 10) its
// exponent. It writes exactly the bytes appendNumber would.
func appendInt(dst []byte, i int64) []byte {
	if i == 0 {
		return append(dst, tagZero)
	}
	neg := i < 0
	u := uint64(i)
	if neg {
		u = -u
	}
	var m [10]byte // base-100 digits, least significant first
	n := 0
	for ; u > 0; n++ {
		m[n] = byte(u % 100)
		u /= 100
	}
	last := 0 // least significant nonzero digit: trailing zeros are dropped
	for m[last] == 0 {
		last++
	}
	if neg {
		dst = append(dst, tagNegMedium+byte(mediumExpMax-n))
	} else {
		dst = append(dst, tagPosMedium+byte(n))
	}
	for j := n - 1; j >= last; j-- {
		b := 2 * m[j]
		if j > last {
			b++
		}
		if neg {
			b = ^b
		}
		dst = append(dst, b)
	}
	return dst
}
