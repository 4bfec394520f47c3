package keys

import (
	"bytes"
	"encoding/binary"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// This file reads raw BSON value bytes. valid is the single definition of a
// well-formed value: every other reader here may assume its input passed it.

// valid reports whether val is exactly one well-formed value of type t,
// with nested documents no deeper than maxDepth.
func valid(t bson.Type, val []byte, depth int) bool {
	switch t {
	case bson.TypeMinKey, bson.TypeMaxKey, bson.TypeNull, bson.TypeUndefined, typeMissing:
		return len(val) == 0
	case bson.TypeDouble, bson.TypeInt64, bson.TypeDateTime, bson.TypeTimestamp:
		return len(val) == 8
	case bson.TypeInt32:
		return len(val) == 4
	case bson.TypeDecimal128:
		return len(val) == 16
	case bson.TypeObjectID:
		return len(val) == 12
	case bson.TypeBoolean:
		return len(val) == 1
	case bson.TypeString, bson.TypeSymbol, bson.TypeJavaScript:
		n, ok := stringLen(val)
		return ok && n == len(val)
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		return validDoc(val, depth+1)
	case bson.TypeBinary:
		if len(val) < 5 {
			return false
		}
		n := binary.LittleEndian.Uint32(val)
		return uint64(n)+5 == uint64(len(val))
	case bson.TypeRegex:
		i := bytes.IndexByte(val, 0)
		if i < 0 {
			return false
		}
		j := bytes.IndexByte(val[i+1:], 0)
		return j >= 0 && i+1+j+1 == len(val)
	case bson.TypeDBPointer:
		n, ok := stringLen(val)
		return ok && n+12 == len(val)
	case bson.TypeCodeWithScope:
		if len(val) < 4 || uint64(binary.LittleEndian.Uint32(val)) != uint64(len(val)) {
			return false
		}
		n, ok := stringLen(val[4:])
		if !ok {
			return false
		}
		return validDoc(val[4+n:], depth+1)
	}
	return false
}

// stringLen returns the total length (4-byte length prefix, bytes, NUL) of
// the BSON string at the start of b.
func stringLen(b []byte) (int, bool) {
	if len(b) < 5 {
		return 0, false
	}
	n := binary.LittleEndian.Uint32(b)
	if n < 1 || uint64(n)+4 > uint64(len(b)) || b[4+int(n)-1] != 0 {
		return 0, false
	}
	return 4 + int(n), true
}

// stringBytes returns the content of a well-formed BSON string (without the
// length prefix and the trailing NUL).
func stringBytes(b []byte) []byte {
	n := binary.LittleEndian.Uint32(b)
	return b[4 : 4+int(n)-1]
}

// validDoc reports whether b is exactly one well-formed document.
func validDoc(b []byte, depth int) bool {
	if depth > maxDepth || len(b) < 5 {
		return false
	}
	if uint64(binary.LittleEndian.Uint32(b)) != uint64(len(b)) || b[len(b)-1] != 0 {
		return false
	}
	pos := 4
	for {
		if pos >= len(b) {
			return false
		}
		t := bson.Type(b[pos])
		if t == 0 {
			return pos == len(b)-1
		}
		pos++
		i := bytes.IndexByte(b[pos:], 0)
		if i < 0 {
			return false
		}
		pos += i + 1
		if pos > len(b)-1 {
			return false
		}
		n, ok := valueLen(t, b[pos:len(b)-1])
		if !ok || !valid(t, b[pos:pos+n], depth) {
			return false
		}
		pos += n
	}
}

// valueLen returns the length of the value of type t at the start of b,
// from its type and length prefixes only.
func valueLen(t bson.Type, b []byte) (int, bool) {
	fixed := -1
	switch t {
	case bson.TypeMinKey, bson.TypeMaxKey, bson.TypeNull, bson.TypeUndefined:
		fixed = 0
	case bson.TypeDouble, bson.TypeInt64, bson.TypeDateTime, bson.TypeTimestamp:
		fixed = 8
	case bson.TypeInt32:
		fixed = 4
	case bson.TypeDecimal128:
		fixed = 16
	case bson.TypeObjectID:
		fixed = 12
	case bson.TypeBoolean:
		fixed = 1
	case bson.TypeString, bson.TypeSymbol, bson.TypeJavaScript:
		return stringLen(b)
	case bson.TypeEmbeddedDocument, bson.TypeArray, bson.TypeCodeWithScope:
		if len(b) < 4 {
			return 0, false
		}
		n := binary.LittleEndian.Uint32(b)
		if uint64(n) > uint64(len(b)) {
			return 0, false
		}
		return int(n), true
	case bson.TypeBinary:
		if len(b) < 5 {
			return 0, false
		}
		n := uint64(binary.LittleEndian.Uint32(b)) + 5
		if n > uint64(len(b)) {
			return 0, false
		}
		return int(n), true
	case bson.TypeRegex:
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return 0, false
		}
		j := bytes.IndexByte(b[i+1:], 0)
		if j < 0 {
			return 0, false
		}
		return i + 1 + j + 1, true
	case bson.TypeDBPointer:
		n, ok := stringLen(b)
		if !ok || n+12 > len(b) {
			return 0, false
		}
		return n + 12, true
	}
	if fixed < 0 || fixed > len(b) {
		return 0, false
	}
	return fixed, true
}

// docIter walks the elements of a well-formed document.
type docIter struct {
	b   []byte
	pos int
}

// next returns the next element's type, name and value, or ok=false at the
// end of the document.
func (it *docIter) next() (t bson.Type, name, val []byte, ok bool) {
	if it.pos >= len(it.b)-1 {
		return 0, nil, nil, false
	}
	t = bson.Type(it.b[it.pos])
	it.pos++
	i := bytes.IndexByte(it.b[it.pos:], 0)
	name = it.b[it.pos : it.pos+i]
	it.pos += i + 1
	n, _ := valueLen(t, it.b[it.pos:len(it.b)-1])
	val = it.b[it.pos : it.pos+n]
	it.pos += n
	return t, name, val, true
}

// splitRegex returns the pattern and options of a well-formed regex.
func splitRegex(b []byte) (pattern, options []byte) {
	i := bytes.IndexByte(b, 0)
	return b[:i], b[i+1 : len(b)-1]
}

// splitCodeScope returns the code and scope document of a well-formed
// code-with-scope value.
func splitCodeScope(b []byte) (code, scope []byte) {
	n, _ := stringLen(b[4:])
	return stringBytes(b[4:]), b[4+n:]
}
