// Package keys owns MongoDB's comparison order for BSON values and the
// order-preserving byte encoding of values and tuples of values that PSDB's
// storage keys (documents by _id, index entries), range shard keys and sorted
// merges are built on. It also owns the 64-bit hash of hashed shard keys.
//
// # Order
//
// Compare implements MongoDB's comparison/sort order without collation.
// Values are first ordered by their canonical type bracket (TypeRank):
//
//	MinKey < Undefined < Null < Numbers < String/Symbol < Object < Array <
//	BinData < ObjectId < Boolean < Date < Timestamp < Regex < DBPointer <
//	JavaScript < CodeWithScope < MaxKey
//
// then by value inside a bracket. Numbers (int32, int64, double, decimal128)
// compare by their exact mathematical value across types; every NaN equals
// every other NaN and sorts below all other numbers; -0 equals 0. Malformed
// values (a Value whose bytes do not match its Type, or an unknown Type) sort
// after MaxKey, by type byte and then by raw bytes, so the order stays total.
//
// # Encoding
//
// AppendValue/Encode produce bytes whose bytes.Compare order is the Compare
// order, and values that compare equal (1, int64(1), 1.0, decimal 1.0) encode
// to the same bytes. Encodings are prefix-free (self-delimiting), so tuples are
// plain concatenations and descending components are the bitwise complement
// of the ascending encoding. The format is described in docs/design/keys.md and
// next to the code in encode.go; it is stored on disk and must never change.
//
// # Hash
//
// Hash(v) is the first 8 bytes, read little-endian as an int64, of
// MD5(0x01 || Encode(v)). The leading 0x01 is the hash version. Values that
// Compare equal hash equal, because they encode equal. The function decides
// data placement of hashed shard keys and must never change.
//
// The package never allocates state shared between calls, never panics on
// malformed input and never logs; all functions are safe for concurrent use.
package keys

import (
	"bytes"
	"encoding/binary"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Canonical type brackets, as MongoDB's canonicalizeBSONType numbers them.
const (
	rankMinKey    = -1
	rankUndefined = 0
	rankNull      = 5
	rankNumber    = 10
	rankString    = 15
	rankObject    = 20
	rankArray     = 25
	rankBinary    = 30
	rankObjectID  = 35
	rankBoolean   = 40
	rankDate      = 45
	rankTimestamp = 47
	rankRegex     = 50
	rankDBPointer = 55
	rankCode      = 60
	rankCodeScope = 65
	rankMaxKey    = 127
	// rankInvalid is the bracket of malformed values and unknown types. It is
	// not a MongoDB bracket; it keeps Compare total on bad input.
	rankInvalid = 1000
)

// typeMissing is the zero Type (BSON's end-of-object byte, MongoDB's EOO).
// A zero RawValue stands for a missing value; like MongoDB, it shares the
// Undefined bracket and compares equal to Undefined.
const typeMissing bson.Type = 0

// maxDepth bounds the nesting of documents and arrays that Compare and the
// encoding accept; deeper values are treated as malformed. MongoDB itself
// refuses documents nested deeper than 200 levels.
const maxDepth = 512

// TypeRank returns the canonical type bracket of t, with MongoDB's numbering
// (MinKey -1, Undefined 0, Null 5, numbers 10, ..., MaxKey 127). The zero
// Type (a missing value) ranks with Undefined. Unknown types return 1000,
// which sorts after MaxKey.
func TypeRank(t bson.Type) int {
	switch t {
	case bson.TypeMinKey:
		return rankMinKey
	case bson.TypeUndefined, typeMissing:
		return rankUndefined
	case bson.TypeNull:
		return rankNull
	case bson.TypeDouble, bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128:
		return rankNumber
	case bson.TypeString, bson.TypeSymbol:
		return rankString
	case bson.TypeEmbeddedDocument:
		return rankObject
	case bson.TypeArray:
		return rankArray
	case bson.TypeBinary:
		return rankBinary
	case bson.TypeObjectID:
		return rankObjectID
	case bson.TypeBoolean:
		return rankBoolean
	case bson.TypeDateTime:
		return rankDate
	case bson.TypeTimestamp:
		return rankTimestamp
	case bson.TypeRegex:
		return rankRegex
	case bson.TypeDBPointer:
		return rankDBPointer
	case bson.TypeJavaScript:
		return rankCode
	case bson.TypeCodeWithScope:
		return rankCodeScope
	case bson.TypeMaxKey:
		return rankMaxKey
	}
	return rankInvalid
}

// MinKey returns the BSON MinKey value, smaller than every other value.
func MinKey() bson.RawValue { return bson.RawValue{Type: bson.TypeMinKey} }

// MaxKey returns the BSON MaxKey value, greater than every well-formed value.
func MaxKey() bson.RawValue { return bson.RawValue{Type: bson.TypeMaxKey} }

// Compare compares two BSON values in MongoDB's comparison order (see the
// package comment) and returns -1, 0 or +1. It never panics: malformed values
// sort after MaxKey by type byte, then raw bytes.
func Compare(a, b bson.RawValue) int {
	ra, rb := rankOf(a), rankOf(b)
	if ra != rb {
		return cmpInt(ra, rb)
	}
	if ra == rankInvalid {
		if a.Type != b.Type {
			return cmpInt(int(a.Type), int(b.Type))
		}
		return bytes.Compare(a.Value, b.Value)
	}
	return compareValid(a.Type, a.Value, b.Type, b.Value)
}

// rankOf returns the bracket of v, or rankInvalid when v is malformed.
func rankOf(v bson.RawValue) int {
	if !valid(v.Type, v.Value, 0) {
		return rankInvalid
	}
	return TypeRank(v.Type)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareValid compares two values already known to be well formed.
func compareValid(ta bson.Type, a []byte, tb bson.Type, b []byte) int {
	ra, rb := TypeRank(ta), TypeRank(tb)
	if ra != rb {
		return cmpInt(ra, rb)
	}
	switch ra {
	case rankMinKey, rankMaxKey, rankNull, rankUndefined:
		return 0
	case rankNumber:
		return compareNumbers(ta, a, tb, b)
	case rankString, rankCode:
		return bytes.Compare(stringBytes(a), stringBytes(b))
	case rankObject:
		return compareDocs(a, b, true)
	case rankArray:
		return compareDocs(a, b, false)
	case rankBinary:
		// Length, then subtype, then bytes: exactly the memcmp of the value
		// once the little-endian length is compared as a number.
		la, lb := binary.LittleEndian.Uint32(a), binary.LittleEndian.Uint32(b)
		if la != lb {
			return cmpU64(uint64(la), uint64(lb))
		}
		return bytes.Compare(a[4:], b[4:])
	case rankObjectID:
		return bytes.Compare(a, b)
	case rankBoolean:
		return cmpInt(boolInt(a[0]), boolInt(b[0]))
	case rankDate:
		return cmpInt64(int64(binary.LittleEndian.Uint64(a)), int64(binary.LittleEndian.Uint64(b)))
	case rankTimestamp:
		return cmpU64(binary.LittleEndian.Uint64(a), binary.LittleEndian.Uint64(b))
	case rankRegex:
		pa, fa := splitRegex(a)
		pb, fb := splitRegex(b)
		if c := bytes.Compare(pa, pb); c != 0 {
			return c
		}
		return bytes.Compare(fa, fb)
	case rankDBPointer:
		// MongoDB memcmps the whole value after comparing its size, which
		// orders by namespace length, namespace bytes, then ObjectId.
		sa, sb := stringBytes(a), stringBytes(b)
		if len(sa) != len(sb) {
			return cmpInt(len(sa), len(sb))
		}
		if c := bytes.Compare(sa, sb); c != 0 {
			return c
		}
		return bytes.Compare(a[len(a)-12:], b[len(b)-12:])
	case rankCodeScope:
		ca, sa := splitCodeScope(a)
		cb, sb := splitCodeScope(b)
		if c := bytes.Compare(ca, cb); c != 0 {
			return c
		}
		return compareDocs(sa, sb, true)
	}
	return 0
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func boolInt(b byte) int {
	if b != 0 {
		return 1
	}
	return 0
}

// compareDocs compares two well-formed documents (or arrays) element by
// element: type bracket, then field name (objects only), then value; a
// document that is a prefix of the other sorts first.
func compareDocs(a, b []byte, names bool) int {
	ia, ib := docIter{b: a, pos: 4}, docIter{b: b, pos: 4}
	for {
		ta, na, va, okA := ia.next()
		tb, nb, vb, okB := ib.next()
		switch {
		case !okA && !okB:
			return 0
		case !okA:
			return -1
		case !okB:
			return 1
		}
		if ra, rb := TypeRank(ta), TypeRank(tb); ra != rb {
			return cmpInt(ra, rb)
		}
		if names {
			if c := bytes.Compare(na, nb); c != 0 {
				return c
			}
		}
		if c := compareValid(ta, va, tb, vb); c != 0 {
			return c
		}
	}
}

// TypeName returns MongoDB's alias of a BSON type ("int", "string",
// "objectId", ...), as $type reports it and error messages name it; the
// zero Type (a missing value) is "missing".
func TypeName(t bson.Type) string {
	switch t {
	case 0:
		return "missing"
	case bson.TypeDouble:
		return "double"
	case bson.TypeString:
		return "string"
	case bson.TypeEmbeddedDocument:
		return "object"
	case bson.TypeArray:
		return "array"
	case bson.TypeBinary:
		return "binData"
	case bson.TypeUndefined:
		return "undefined"
	case bson.TypeObjectID:
		return "objectId"
	case bson.TypeBoolean:
		return "bool"
	case bson.TypeDateTime:
		return "date"
	case bson.TypeNull:
		return "null"
	case bson.TypeRegex:
		return "regex"
	case bson.TypeDBPointer:
		return "dbPointer"
	case bson.TypeJavaScript:
		return "javascript"
	case bson.TypeSymbol:
		return "symbol"
	case bson.TypeCodeWithScope:
		return "javascriptWithScope"
	case bson.TypeInt32:
		return "int"
	case bson.TypeTimestamp:
		return "timestamp"
	case bson.TypeInt64:
		return "long"
	case bson.TypeDecimal128:
		return "decimal"
	case bson.TypeMinKey:
		return "minKey"
	case bson.TypeMaxKey:
		return "maxKey"
	}
	return "unknown"
}
