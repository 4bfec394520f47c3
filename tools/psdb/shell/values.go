package shell

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dop251/goja"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The BSON types JavaScript has no value for are host objects: Go values
// wrapped by goja, whose exported methods are visible to scripts under
// lower-camel names (toHexString, toString, toJSON, ...). Their printed
// forms are mongosh's (ObjectId('...'), Long('...'), ...).

// ObjectID is a BSON ObjectId in the shell (ObjectId()).
type ObjectID struct{ id bson.ObjectID }

// ToHexString returns the 24 hex digits.
func (o *ObjectID) ToHexString() string { return o.id.Hex() }

// ToString returns the 24 hex digits, as mongosh's ObjectId does.
func (o *ObjectID) ToString() string { return o.id.Hex() }

// ToJSON is what JSON.stringify writes: the hex digits.
func (o *ObjectID) ToJSON() string { return o.id.Hex() }

// GetTimestamp returns the creation time stored in the ObjectId.
func (o *ObjectID) GetTimestamp() time.Time { return o.id.Timestamp() }

// Equals compares with another ObjectId or a hex string.
func (o *ObjectID) Equals(other goja.Value) bool {
	switch v := other.Export().(type) {
	case *ObjectID:
		return v.id == o.id
	case string:
		return v == o.id.Hex()
	}
	return false
}

// Long is a BSON int64 (NumberLong(), Long('...')).
type Long struct{ v int64 }

// ToString returns the decimal digits.
func (l *Long) ToString() string { return strconv.FormatInt(l.v, 10) }

// ToNumber returns the value as a JavaScript number.
func (l *Long) ToNumber() float64 { return float64(l.v) }

// ValueOf makes arithmetic on a Long work as on a number.
func (l *Long) ValueOf() float64 { return float64(l.v) }

// ToJSON is what JSON.stringify writes: a number when it is exact, else
// the digits.
func (l *Long) ToJSON() any {
	if l.v >= -(1<<53) && l.v <= 1<<53 {
		return l.v
	}
	return l.ToString()
}

// Int32 is a BSON int32 made with NumberInt(); values read from the
// server come back as plain numbers.
type Int32 struct{ v int32 }

// ToString returns the decimal digits.
func (i *Int32) ToString() string { return strconv.Itoa(int(i.v)) }

// ValueOf makes arithmetic work as on a number.
func (i *Int32) ValueOf() int32 { return i.v }

// ToJSON is the number.
func (i *Int32) ToJSON() int32 { return i.v }

// Decimal is a BSON Decimal128 (NumberDecimal(), Decimal128('...')).
type Decimal struct{ v bson.Decimal128 }

// ToString returns the decimal string.
func (d *Decimal) ToString() string { return d.v.String() }

// ToJSON is {$numberDecimal: "..."}, extended JSON's form.
func (d *Decimal) ToJSON() map[string]string {
	return map[string]string{"$numberDecimal": d.v.String()}
}

// Timestamp is a BSON timestamp (Timestamp(t, i), Timestamp({t, i})).
type Timestamp struct {
	T uint32
	I uint32
}

// ToString is mongosh's printed form.
func (ts *Timestamp) ToString() string { return fmt.Sprintf("Timestamp({ t: %d, i: %d })", ts.T, ts.I) }

// ToJSON is {$timestamp: {t, i}}.
func (ts *Timestamp) ToJSON() map[string]any {
	return map[string]any{"$timestamp": map[string]any{"t": ts.T, "i": ts.I}}
}

// Binary is BSON binary data (BinData(), UUID()).
type Binary struct {
	sub  byte
	data []byte
}

// Base64 returns the data in base64.
func (b *Binary) Base64() string { return base64.StdEncoding.EncodeToString(b.data) }

// Hex returns the data in hex.
func (b *Binary) Hex() string { return hex.EncodeToString(b.data) }

// SubType returns the binary subtype.
func (b *Binary) SubType() int { return int(b.sub) }

// ToString returns the base64 form.
func (b *Binary) ToString() string { return b.Base64() }

// ToJSON is {$binary: {base64, subType}}.
func (b *Binary) ToJSON() map[string]any {
	return map[string]any{"$binary": map[string]any{"base64": b.Base64(), "subType": fmt.Sprintf("%02x", b.sub)}}
}

// uuidString formats 16 bytes as 8-4-4-4-12 hex.
func uuidString(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) != 32 {
		return h
	}
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// MinKey and MaxKey are the BSON bounds (MinKey(), MaxKey()).
type MinKey struct{}

// MaxKey is the BSON upper bound.
type MaxKey struct{}

// ToJSON is {$minKey: 1}.
func (MinKey) ToJSON() map[string]int { return map[string]int{"$minKey": 1} }

// ToJSON is {$maxKey: 1}.
func (MaxKey) ToJSON() map[string]int { return map[string]int{"$maxKey": 1} }

// Regex is a BSON regular expression JavaScript's RegExp cannot hold (its
// options are not JavaScript flags); others become RegExp objects.
type Regex struct {
	Pattern string
	Options string
}

// ToString is /pattern/options.
func (r *Regex) ToString() string { return "/" + r.Pattern + "/" + r.Options }

// Code is BSON JavaScript code.
type Code struct{ Code string }

// ---- JavaScript to BSON ----

// converter turns values between goja and BSON for one runtime.
type converter struct {
	vm  *goja.Runtime
	reg map[*goja.Object]any // the db and collection handles (proxies) and what they stand for
}

// toDoc converts a JavaScript object into a BSON document; undefined and
// null give an empty document.
func (c converter) toDoc(v goja.Value) (bson.D, error) {
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return bson.D{}, nil
	}
	x, err := c.toBSON(v, 0)
	if err != nil {
		return nil, err
	}
	d, ok := x.(bson.D)
	if !ok {
		return nil, fmt.Errorf("expected a document (an object), got %s", describe(v))
	}
	return d, nil
}

// describe names a value's kind for error messages.
func describe(v goja.Value) string {
	switch {
	case v == nil || goja.IsUndefined(v):
		return "undefined"
	case goja.IsNull(v):
		return "null"
	}
	if o, ok := v.(*goja.Object); ok {
		if o.ClassName() == "Array" {
			return "an array"
		}
		return "an object"
	}
	return fmt.Sprintf("%s %s", v.ExportType(), v.String())
}

const maxDepth = 150

// toBSON converts one JavaScript value. Integers that fit in 32 bits
// become int32 and other numbers doubles, as mongosh's BSON library does.
func (c converter) toBSON(v goja.Value, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("value nested deeper than %d levels (a cycle?)", maxDepth)
	}
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return nil, nil
	}
	obj, isObj := v.(*goja.Object)
	if !isObj {
		switch x := v.Export().(type) {
		case int64:
			if x >= math.MinInt32 && x <= math.MaxInt32 {
				return int32(x), nil
			}
			if x >= -(1<<53) && x <= 1<<53 {
				return float64(x), nil
			}
			return x, nil
		case float64:
			if x == math.Trunc(x) && x >= math.MinInt32 && x <= math.MaxInt32 && !(x == 0 && math.Signbit(x)) {
				return int32(x), nil
			}
			return x, nil
		case bool, string:
			return x, nil
		default:
			if bi, ok := x.(interface{ IsInt64() bool }); ok && bi.IsInt64() {
				if i, ok := x.(interface{ Int64() int64 }); ok {
					return i.Int64(), nil
				}
			}
			return v.String(), nil
		}
	}
	if h, ok := c.reg[obj]; ok {
		switch x := h.(type) {
		case *dbObject:
			return x.name, nil
		case *collObject:
			return x.coll, nil
		}
	}
	switch obj.ClassName() {
	case "Array":
		n := int(obj.Get("length").ToInteger())
		arr := make(bson.A, 0, n)
		for i := range n {
			x, err := c.toBSON(obj.Get(strconv.Itoa(i)), depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, x)
		}
		return arr, nil
	case "Date":
		t, ok := obj.Export().(time.Time)
		if !ok {
			return nil, fmt.Errorf("invalid Date")
		}
		return bson.NewDateTimeFromTime(t), nil
	case "RegExp":
		return bson.Regex{Pattern: obj.Get("source").String(), Options: regexOptions(obj.Get("flags").String())}, nil
	case "Function":
		return bson.JavaScript(obj.String()), nil
	case "Number", "String", "Boolean":
		return c.toBSON(c.vm.ToValue(obj.Export()), depth)
	}
	hv, isHost := c.hostValue(obj)
	switch x := hv.(type) {
	case *ObjectID:
		return x.id, nil
	case *Long:
		return x.v, nil
	case *Int32:
		return x.v, nil
	case *Decimal:
		return x.v, nil
	case *Timestamp:
		return bson.Timestamp{T: x.T, I: x.I}, nil
	case *Binary:
		return bson.Binary{Subtype: x.sub, Data: x.data}, nil
	case *MinKey, MinKey:
		return bson.MinKey{}, nil
	case *MaxKey, MaxKey:
		return bson.MaxKey{}, nil
	case *Regex:
		return bson.Regex{Pattern: x.Pattern, Options: x.Options}, nil
	case *Code:
		return bson.JavaScript(x.Code), nil
	case *dbObject:
		return x.name, nil
	case *collObject:
		return x.coll, nil
	}
	if isHost {
		return nil, fmt.Errorf("cannot store %s in a document", obj.String())
	}
	d := bson.D{}
	for _, k := range obj.Keys() {
		x, err := c.toBSON(obj.Get(k), depth+1)
		if err != nil {
			return nil, err
		}
		d = append(d, bson.E{Key: k, Value: x})
	}
	return d, nil
}

// regexOptions keeps the JavaScript flags BSON knows (i, m, s, u) in
// BSON's alphabetical order; g and y have no meaning in a query.
func regexOptions(flags string) string {
	var b strings.Builder
	for _, f := range "imsux" {
		if strings.ContainsRune(flags, f) {
			b.WriteRune(f)
		}
	}
	return b.String()
}

// ---- BSON to JavaScript ----

// docToJS converts a BSON document into a JavaScript object.
func (c converter) docToJS(raw bson.Raw) goja.Value {
	obj := c.vm.NewObject()
	elems, err := raw.Elements()
	if err != nil {
		return c.vm.ToValue(fmt.Sprintf("<invalid BSON: %v>", err))
	}
	for _, e := range elems {
		_ = obj.Set(e.Key(), c.valueToJS(e.Value()))
	}
	return obj
}

// valueToJS converts one BSON value: numbers that JavaScript holds exactly
// (double, int32) become numbers, dates Date objects, regular expressions
// RegExp objects, and the rest host objects.
func (c converter) valueToJS(v bson.RawValue) goja.Value {
	vm := c.vm
	switch v.Type {
	case bson.TypeDouble:
		return vm.ToValue(v.Double())
	case bson.TypeString:
		return vm.ToValue(v.StringValue())
	case bson.TypeEmbeddedDocument:
		return c.docToJS(v.Document())
	case bson.TypeArray:
		vals, _ := v.Array().Values()
		items := make([]any, len(vals))
		for i, x := range vals {
			items[i] = c.valueToJS(x)
		}
		return vm.NewArray(items...)
	case bson.TypeBinary:
		sub, data := v.Binary()
		return vm.ToValue(&Binary{sub: sub, data: data})
	case bson.TypeUndefined:
		return goja.Undefined()
	case bson.TypeObjectID:
		return vm.ToValue(&ObjectID{id: v.ObjectID()})
	case bson.TypeBoolean:
		return vm.ToValue(v.Boolean())
	case bson.TypeDateTime:
		return c.date(v.DateTime())
	case bson.TypeNull:
		return goja.Null()
	case bson.TypeRegex:
		p, o := v.Regex()
		if r, err := vm.New(vm.Get("RegExp"), vm.ToValue(p), vm.ToValue(o)); err == nil && !strings.ContainsAny(o, "lx") {
			return r
		}
		return vm.ToValue(&Regex{Pattern: p, Options: o})
	case bson.TypeJavaScript:
		return vm.ToValue(&Code{Code: v.JavaScript()})
	case bson.TypeSymbol:
		return vm.ToValue(v.Symbol())
	case bson.TypeInt32:
		return vm.ToValue(v.Int32())
	case bson.TypeTimestamp:
		t, i := v.Timestamp()
		return vm.ToValue(&Timestamp{T: t, I: i})
	case bson.TypeInt64:
		return vm.ToValue(&Long{v: v.Int64()})
	case bson.TypeDecimal128:
		return vm.ToValue(&Decimal{v: v.Decimal128()})
	case bson.TypeMinKey:
		return vm.ToValue(&MinKey{})
	case bson.TypeMaxKey:
		return vm.ToValue(&MaxKey{})
	}
	return vm.ToValue(v.String())
}

// date makes a JavaScript Date from milliseconds since the epoch.
func (c converter) date(ms int64) goja.Value {
	d, err := c.vm.New(c.vm.Get("Date"), c.vm.ToValue(ms))
	if err != nil {
		return c.vm.ToValue(time.UnixMilli(ms).UTC())
	}
	return d
}

// anyToJS converts a Go value built by the shell (bson.D, bson.Raw, ...).
func (c converter) anyToJS(x any) goja.Value {
	switch v := x.(type) {
	case bson.Raw:
		return c.docToJS(v)
	case nil:
		return goja.Null()
	}
	t, data, err := bson.MarshalValue(x)
	if err != nil {
		return c.vm.ToValue(x)
	}
	return c.valueToJS(bson.RawValue{Type: t, Value: data})
}

// parseISODate reads the date forms ISODate() accepts: RFC 3339 with or
// without fractional seconds or zone, and a bare date.
func parseISODate(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700",
		"2006-01-02T15:04Z07:00", "2006-01-02T15:04", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid ISO date %q", s)
}

func decodeHex(s string) ([]byte, error) { return hex.DecodeString(s) }

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
