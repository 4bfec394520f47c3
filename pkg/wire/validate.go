package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// maxBSONDepth is how deeply documents and arrays may nest, counting the
// outermost document, as MongoDB's default BSON depth limit.
const maxBSONDepth = 200

// validateDocument checks that doc is exactly one well-formed BSON
// document, all the way down: the declared length equals len(doc), every
// element has a known type, a terminated name and a value that fits, every
// string is terminated, every embedded document and array is itself valid,
// and nesting stays within maxBSONDepth.
//
// It is stricter than bson.Raw.Validate, which checks only the top level:
// handlers read nested values with the bson package, and structurally broken
// nested documents must be refused here, at the edge, not discovered there.
func validateDocument(doc []byte) error {
	return validateDoc(doc, 1)
}

func validateDoc(doc []byte, depth int) error {
	if depth > maxBSONDepth {
		return fmt.Errorf("document nested deeper than %d levels", maxBSONDepth)
	}
	if len(doc) < 5 {
		return fmt.Errorf("document of %d bytes is shorter than the minimum 5", len(doc))
	}
	if n := int64(int32(binary.LittleEndian.Uint32(doc))); n != int64(len(doc)) {
		return fmt.Errorf("document declares %d bytes but has %d", n, len(doc))
	}
	end := len(doc) - 1
	if doc[end] != 0 {
		return fmt.Errorf("document does not end with a zero byte")
	}
	p := 4
	for p < end {
		t := bson.Type(doc[p])
		p++
		i := bytes.IndexByte(doc[p:end], 0)
		if i < 0 {
			return fmt.Errorf("element name at offset %d has no terminator", p)
		}
		name := doc[p : p+i]
		p += i + 1
		n, err := valueSize(t, doc[p:end], depth)
		if err != nil {
			if depth > 1 {
				return err // named once, at the top level: no quadratic messages
			}
			return fmt.Errorf("field %q: %w", name, err)
		}
		p += n
	}
	return nil
}

// valueSize returns how many bytes of b the value of type t occupies, after
// checking that it is well formed.
func valueSize(t bson.Type, b []byte, depth int) (int, error) {
	switch t {
	case bson.TypeDouble, bson.TypeDateTime, bson.TypeTimestamp, bson.TypeInt64:
		return fixedSize(t, b, 8)
	case bson.TypeInt32:
		return fixedSize(t, b, 4)
	case bson.TypeDecimal128:
		return fixedSize(t, b, 16)
	case bson.TypeObjectID:
		return fixedSize(t, b, 12)
	case bson.TypeBoolean:
		if len(b) < 1 {
			return 0, fmt.Errorf("boolean value missing")
		}
		if b[0] > 1 {
			return 0, fmt.Errorf("boolean value %d is neither 0 nor 1", b[0])
		}
		return 1, nil
	case bson.TypeNull, bson.TypeUndefined, bson.TypeMinKey, bson.TypeMaxKey:
		return 0, nil
	case bson.TypeString, bson.TypeJavaScript, bson.TypeSymbol:
		return stringSize(b)
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		n, err := lengthPrefix(b, 5)
		if err != nil {
			return 0, err
		}
		if err := validateDoc(b[:n], depth+1); err != nil {
			return 0, err
		}
		return n, nil
	case bson.TypeBinary:
		if len(b) < 5 {
			return 0, fmt.Errorf("binary value needs 5 bytes, %d left", len(b))
		}
		l := int64(int32(binary.LittleEndian.Uint32(b)))
		if l < 0 || l > int64(len(b)-5) {
			return 0, fmt.Errorf("binary length %d does not fit in %d bytes", l, len(b)-5)
		}
		if b[4] == 0x02 { // old binary subtype: an inner length that must agree
			if l < 4 || int64(int32(binary.LittleEndian.Uint32(b[5:]))) != l-4 {
				return 0, fmt.Errorf("binary subtype 2 has an inconsistent inner length")
			}
		}
		return 5 + int(l), nil
	case bson.TypeRegex:
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return 0, fmt.Errorf("regex pattern has no terminator")
		}
		j := bytes.IndexByte(b[i+1:], 0)
		if j < 0 {
			return 0, fmt.Errorf("regex options have no terminator")
		}
		return i + 1 + j + 1, nil
	case bson.TypeDBPointer:
		n, err := stringSize(b)
		if err != nil {
			return 0, err
		}
		if len(b)-n < 12 {
			return 0, fmt.Errorf("DBPointer id needs 12 bytes, %d left", len(b)-n)
		}
		return n + 12, nil
	case bson.TypeCodeWithScope:
		n, err := lengthPrefix(b, 14)
		if err != nil {
			return 0, err
		}
		s, err := stringSize(b[4:n])
		if err != nil {
			return 0, err
		}
		if err := validateDoc(b[4+s:n], depth+1); err != nil {
			return 0, fmt.Errorf("code with scope: %w", err)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("unknown BSON type 0x%02x", byte(t))
	}
}

// fixedSize checks that a value of fixed size n fits in b.
func fixedSize(t bson.Type, b []byte, n int) (int, error) {
	if len(b) < n {
		return 0, fmt.Errorf("%s value needs %d bytes, %d left", t, n, len(b))
	}
	return n, nil
}

// lengthPrefix reads an int32 length that counts itself and checks that it
// is at least least bytes and fits in b.
func lengthPrefix(b []byte, least int64) (int, error) {
	if len(b) < 4 {
		return 0, fmt.Errorf("length needs 4 bytes, %d left", len(b))
	}
	l := int64(int32(binary.LittleEndian.Uint32(b)))
	if l < least || l > int64(len(b)) {
		return 0, fmt.Errorf("length %d is not between %d and the %d bytes left", l, least, len(b))
	}
	return int(l), nil
}

// stringSize checks a BSON string (int32 length counting the terminator,
// bytes, zero byte) and returns its size.
func stringSize(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, fmt.Errorf("string length needs 4 bytes, %d left", len(b))
	}
	l := int64(int32(binary.LittleEndian.Uint32(b)))
	if l < 1 || l > int64(len(b)-4) {
		return 0, fmt.Errorf("string length %d does not fit in %d bytes", l, len(b)-4)
	}
	if b[4+l-1] != 0 {
		return 0, fmt.Errorf("string is not zero-terminated")
	}
	return 4 + int(l), nil
}
