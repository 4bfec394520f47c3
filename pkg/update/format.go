package update

import (
	"encoding/hex"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
)

// Rendering of values inside error messages, in the shape MongoDB's server
// uses ({ a: 1, b: "x" }, [ 1, 2 ]), so messages read as MongoDB's do.

// maxFormatLen bounds a rendered value; longer renderings are cut.
const maxFormatLen = 512

// typeName returns MongoDB's name for a BSON type.
func typeName(t bson.Type) string { return keys.TypeName(t) }

// formatElem renders "name: value".
func formatElem(name string, v bson.RawValue) string {
	var sb strings.Builder
	sb.WriteString(name)
	sb.WriteString(": ")
	writeValue(&sb, v, 0)
	return cut(sb.String())
}

// formatValue renders a value.
func formatValue(v bson.RawValue) string {
	var sb strings.Builder
	writeValue(&sb, v, 0)
	return cut(sb.String())
}

// formatDoc renders a document.
func formatDoc(d bson.Raw) string {
	return formatValue(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: d})
}

func cut(s string) string {
	if len(s) > maxFormatLen {
		return s[:maxFormatLen] + "..."
	}
	return s
}

func writeValue(sb *strings.Builder, v bson.RawValue, depth int) {
	if sb.Len() > maxFormatLen || depth > 20 {
		sb.WriteString("...")
		return
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		isArr := v.Type == bson.TypeArray
		open, close := "{", "}"
		if isArr {
			open, close = "[", "]"
		}
		n := 0
		sb.WriteString(open)
		_ = eachElem(v.Value, func(key string, c bson.RawValue) {
			if n > 0 {
				sb.WriteString(",")
			}
			sb.WriteString(" ")
			if !isArr {
				sb.WriteString(key)
				sb.WriteString(": ")
			}
			writeValue(sb, c, depth+1)
			n++
		})
		if n > 0 {
			sb.WriteString(" ")
		}
		sb.WriteString(close)
	case bson.TypeString:
		s, _ := v.StringValueOK()
		sb.WriteString(strconv.Quote(s))
	case bson.TypeInt32:
		i, _ := v.Int32OK()
		sb.WriteString(strconv.Itoa(int(i)))
	case bson.TypeInt64:
		i, _ := v.Int64OK()
		sb.WriteString(strconv.FormatInt(i, 10))
	case bson.TypeDouble:
		f, _ := v.DoubleOK()
		sb.WriteString(formatDouble(f))
	case bson.TypeDecimal128:
		d, _ := v.Decimal128OK()
		sb.WriteString("NumberDecimal(\"" + d.String() + "\")")
	case bson.TypeBoolean:
		b, _ := v.BooleanOK()
		sb.WriteString(strconv.FormatBool(b))
	case bson.TypeNull:
		sb.WriteString("null")
	case bson.TypeUndefined:
		sb.WriteString("undefined")
	case bson.TypeObjectID:
		o, _ := v.ObjectIDOK()
		sb.WriteString("ObjectId('" + hex.EncodeToString(o[:]) + "')")
	case bson.TypeDateTime:
		ms, _ := v.DateTimeOK()
		sb.WriteString("new Date(" + strconv.FormatInt(ms, 10) + ")")
	case bson.TypeTimestamp:
		t, i, _ := v.TimestampOK()
		sb.WriteString("Timestamp(" + strconv.FormatUint(uint64(t), 10) + ", " + strconv.FormatUint(uint64(i), 10) + ")")
	case bson.TypeRegex:
		p, o, _ := v.RegexOK()
		sb.WriteString("/" + p + "/" + o)
	case bson.TypeMinKey:
		sb.WriteString("MinKey")
	case bson.TypeMaxKey:
		sb.WriteString("MaxKey")
	default:
		sb.WriteString(typeName(v.Type))
	}
}

func formatDouble(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan.0"
	case math.IsInf(f, 1):
		return "inf.0"
	case math.IsInf(f, -1):
		return "-inf.0"
	case f == math.Trunc(f) && math.Abs(f) < 1e15:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// idString renders the document's _id as MongoDB does in update errors:
// "{_id: 1}".
func idString(doc *docNode) string {
	if v := doc.get("_id"); v != nil {
		return "{" + formatElem("_id", v.rawValue()) + "}"
	}
	return "{}"
}
