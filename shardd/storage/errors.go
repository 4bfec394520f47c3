package storage

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Internal errors. Errors a client may see carry a MongoDB code instead
// (*mongoerr.Error, or *DuplicateKeyError which wraps one).
var (
	// ErrCorrupt marks damage to the store: unreadable metadata, a
	// malformed key or value, or Pebble's own corruption marker. Open
	// refuses such a directory; test with errors.Is.
	ErrCorrupt = errors.New("storage corrupt")
	// ErrNotStore is returned by Open for a directory that holds files but
	// no PSDB store (another program's data, or a Pebble database that PSDB
	// did not create).
	ErrNotStore = errors.New("not a PSDB store")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("storage engine closed")
)

// DuplicateKeyError is a unique-index violation. It wraps a *mongoerr.Error
// with code DuplicateKey (11000) and MongoDB's E11000 message, so
// mongoerr.CodeOf sees 11000; callers that build a write error reply can
// reach KeyPattern and KeyValue with errors.As.
type DuplicateKeyError struct {
	NS         string
	Index      string
	KeyPattern bson.D // {field: 1|-1, ...}
	KeyValue   bson.D // {field: value, ...} in the index's field order
	err        *mongoerr.Error
}

func newDuplicateKeyError(ns string, spec IndexSpec, vals []bson.RawValue) *DuplicateKeyError {
	d := &DuplicateKeyError{NS: ns, Index: spec.Name}
	var b strings.Builder
	b.WriteString("{ ")
	for i, part := range spec.Key {
		dir := int32(1)
		if part.Desc {
			dir = -1
		}
		d.KeyPattern = append(d.KeyPattern, bson.E{Key: part.Field, Value: dir})
		var v bson.RawValue
		if i < len(vals) {
			v = vals[i]
		}
		d.KeyValue = append(d.KeyValue, bson.E{Key: part.Field, Value: v})
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(part.Field)
		b.WriteString(": ")
		writeShellValue(&b, v)
	}
	b.WriteString(" }")
	d.err = mongoerr.New(mongoerr.DuplicateKey,
		"E11000 duplicate key error collection: %s index: %s dup key: %s", ns, spec.Name, b.String())
	return d
}

// Error implements error with MongoDB's message.
func (d *DuplicateKeyError) Error() string { return d.err.Error() }

// Unwrap returns the *mongoerr.Error (code 11000).
func (d *DuplicateKeyError) Unwrap() error { return d.err }

// writeShellValue writes v the way mongod prints key values in its E11000
// messages (the shell's notation: strings in double quotes, 1.0 for whole
// doubles, ObjectId('…'), new Date(…)).
func writeShellValue(b *strings.Builder, v bson.RawValue) {
	switch v.Type {
	case 0, bson.TypeNull:
		b.WriteString("null")
	case bson.TypeUndefined:
		b.WriteString("undefined")
	case bson.TypeMinKey:
		b.WriteString("MinKey")
	case bson.TypeMaxKey:
		b.WriteString("MaxKey")
	case bson.TypeString:
		b.WriteString(strconv.Quote(v.StringValue()))
	case bson.TypeInt32:
		b.WriteString(strconv.FormatInt(int64(v.Int32()), 10))
	case bson.TypeInt64:
		b.WriteString(strconv.FormatInt(v.Int64(), 10))
	case bson.TypeDouble:
		f := v.Double()
		switch {
		case math.IsNaN(f):
			b.WriteString("nan.0")
		case math.IsInf(f, 1):
			b.WriteString("inf.0")
		case math.IsInf(f, -1):
			b.WriteString("-inf.0")
		case f == math.Trunc(f) && math.Abs(f) < 1e15:
			b.WriteString(strconv.FormatFloat(f, 'f', 1, 64))
		default:
			b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		}
	case bson.TypeDecimal128:
		fmt.Fprintf(b, "NumberDecimal(%q)", v.Decimal128().String())
	case bson.TypeBoolean:
		b.WriteString(strconv.FormatBool(v.Boolean()))
	case bson.TypeObjectID:
		fmt.Fprintf(b, "ObjectId('%s')", v.ObjectID().Hex())
	case bson.TypeDateTime:
		fmt.Fprintf(b, "new Date(%d)", v.DateTime())
	case bson.TypeTimestamp:
		t, i := v.Timestamp()
		fmt.Fprintf(b, "Timestamp(%d, %d)", t, i)
	case bson.TypeEmbeddedDocument:
		elems, err := v.Document().Elements()
		if err != nil {
			b.WriteString("{}")
			return
		}
		if len(elems) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{ ")
		for i, el := range elems {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(el.Key())
			b.WriteString(": ")
			writeShellValue(b, el.Value())
		}
		b.WriteString(" }")
	case bson.TypeArray:
		vals, err := v.Array().Values()
		if err != nil || len(vals) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[ ")
		for i, el := range vals {
			if i > 0 {
				b.WriteString(", ")
			}
			writeShellValue(b, el)
		}
		b.WriteString(" ]")
	default:
		b.WriteString(v.String())
	}
}
