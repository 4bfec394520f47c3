package update

import (
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// The mutable document tree used while applying an update. Only the parts
// of a document an update walks through are decoded: every value starts as
// raw BSON and is turned into a docNode or arrNode when a path descends
// into it. Serialising copies raw values unchanged, so fields an update does
// not touch keep their exact bytes.

// value is one BSON value: raw bytes, or a decoded document or array.
// Invariant: at most one of doc and arr is set; when either is set, raw is
// ignored.
type value struct {
	raw bson.RawValue
	doc *docNode
	arr *arrNode
}

type field struct {
	name string
	val  value
}

// docNode is a decoded document. Field lookups scan the fields; documents
// with many fields get a name index (built on first lookup, kept up to date
// by set, dropped by remove) so that an update touching many fields of a
// wide document stays linear.
type docNode struct {
	fields []field
	byName map[string]int
}

// indexThreshold is the field count above which a docNode indexes names.
const indexThreshold = 32

type arrNode struct{ elems []value }

func rawVal(rv bson.RawValue) value { return value{raw: rv} }

func nullValue() value { return value{raw: bson.RawValue{Type: bson.TypeNull}} }

func (v *value) typ() bson.Type {
	switch {
	case v.doc != nil:
		return bson.TypeEmbeddedDocument
	case v.arr != nil:
		return bson.TypeArray
	}
	return v.raw.Type
}

func (v *value) isDoc() bool { return v.typ() == bson.TypeEmbeddedDocument }
func (v *value) isArr() bool { return v.typ() == bson.TypeArray }

// asDoc decodes v into a docNode in place. v must be a document.
func (v *value) asDoc() (*docNode, error) {
	if v.doc == nil {
		d, err := loadDoc(v.raw.Value)
		if err != nil {
			return nil, err
		}
		v.doc = d
	}
	return v.doc, nil
}

// asArr decodes v into an arrNode in place. v must be an array.
func (v *value) asArr() (*arrNode, error) {
	if v.arr == nil {
		a, err := loadArr(v.raw.Value)
		if err != nil {
			return nil, err
		}
		v.arr = a
	}
	return v.arr, nil
}

// rawValue returns v as BSON, serialising decoded nodes.
func (v *value) rawValue() bson.RawValue {
	switch {
	case v.doc != nil:
		return bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: v.doc.appendTo(nil)}
	case v.arr != nil:
		return bson.RawValue{Type: bson.TypeArray, Value: v.arr.appendTo(nil)}
	}
	return v.raw
}

var errBadBSON = mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in document")

// elemIter walks the elements of a BSON document or array body without
// allocating.
type elemIter struct{ rest []byte }

func iterate(b []byte) (elemIter, error) {
	if len(b) < 5 {
		return elemIter{}, errBadBSON
	}
	l, _, ok := bsoncore.ReadLength(b)
	if !ok || int(l) != len(b) || b[len(b)-1] != 0 {
		return elemIter{}, errBadBSON
	}
	return elemIter{rest: b[4 : len(b)-1]}, nil
}

// next returns the next element; ok is false at the end.
func (it *elemIter) next() (key []byte, v bson.RawValue, ok bool, err error) {
	if len(it.rest) == 0 {
		return nil, bson.RawValue{}, false, nil
	}
	el, rem, ok := bsoncore.ReadElement(it.rest)
	if !ok {
		return nil, bson.RawValue{}, false, errBadBSON
	}
	key, kerr := el.KeyBytesErr()
	val, verr := el.ValueErr()
	if kerr != nil || verr != nil {
		return nil, bson.RawValue{}, false, errBadBSON
	}
	it.rest = rem
	return key, bson.RawValue{Type: bson.Type(val.Type), Value: val.Data}, true, nil
}

// eachElem calls fn for every element of a BSON document or array body.
func eachElem(b []byte, fn func(key string, v bson.RawValue)) error {
	it, err := iterate(b)
	if err != nil {
		return err
	}
	for {
		key, v, ok, err := it.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		fn(string(key), v)
	}
}

func loadDoc(b []byte) (*docNode, error) {
	d := &docNode{}
	err := eachElem(b, func(key string, v bson.RawValue) {
		d.fields = append(d.fields, field{name: key, val: rawVal(v)})
	})
	return d, err
}

func loadArr(b []byte) (*arrNode, error) {
	a := &arrNode{}
	it, err := iterate(b)
	if err != nil {
		return nil, err
	}
	for {
		_, v, ok, err := it.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return a, nil
		}
		a.elems = append(a.elems, rawVal(v))
	}
}

func (d *docNode) index(name string) int {
	if len(d.fields) > indexThreshold {
		if d.byName == nil {
			d.byName = make(map[string]int, len(d.fields))
			for i := len(d.fields) - 1; i >= 0; i-- {
				d.byName[d.fields[i].name] = i // first occurrence wins
			}
		}
		if i, ok := d.byName[name]; ok {
			return i
		}
		return -1
	}
	for i := range d.fields {
		if d.fields[i].name == name {
			return i
		}
	}
	return -1
}

func (d *docNode) get(name string) *value {
	if i := d.index(name); i >= 0 {
		return &d.fields[i].val
	}
	return nil
}

// set replaces the field's value, or appends the field when it is absent:
// existing fields keep their position, new ones go last.
func (d *docNode) set(name string, v value) {
	if i := d.index(name); i >= 0 {
		d.fields[i].val = v
		return
	}
	d.fields = append(d.fields, field{name: name, val: v})
	if d.byName != nil {
		d.byName[name] = len(d.fields) - 1
	}
}

func (d *docNode) remove(name string) {
	if i := d.index(name); i >= 0 {
		d.fields = append(d.fields[:i], d.fields[i+1:]...)
		d.byName = nil
	}
}

func (d *docNode) appendTo(dst []byte) []byte {
	idx, dst := bsoncore.ReserveLength(dst)
	for i := range d.fields {
		dst = appendElem(dst, d.fields[i].name, &d.fields[i].val)
	}
	dst = append(dst, 0)
	return bsoncore.UpdateLength(dst, idx, int32(len(dst)-int(idx)))
}

func (a *arrNode) appendTo(dst []byte) []byte {
	idx, dst := bsoncore.ReserveLength(dst)
	var buf [20]byte
	for i := range a.elems {
		dst = appendElemKey(dst, strconv.AppendInt(buf[:0], int64(i), 10), &a.elems[i])
	}
	dst = append(dst, 0)
	return bsoncore.UpdateLength(dst, idx, int32(len(dst)-int(idx)))
}

func appendElem(dst []byte, name string, v *value) []byte {
	dst = append(dst, byte(v.typ()))
	dst = append(dst, name...)
	dst = append(dst, 0)
	return appendBody(dst, v)
}

func appendElemKey(dst []byte, name []byte, v *value) []byte {
	dst = append(dst, byte(v.typ()))
	dst = append(dst, name...)
	dst = append(dst, 0)
	return appendBody(dst, v)
}

func appendBody(dst []byte, v *value) []byte {
	switch {
	case v.doc != nil:
		return v.doc.appendTo(dst)
	case v.arr != nil:
		return v.arr.appendTo(dst)
	}
	return append(dst, v.raw.Value...)
}

// arrayIndex parses an array index path component: decimal digits only.
func arrayIndex(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// lookupRaw returns the child of a raw document or array, or a zero
// RawValue when it is absent or the container is neither.
func lookupRaw(v bson.RawValue, comp string) bson.RawValue {
	want := -1
	switch v.Type {
	case bson.TypeEmbeddedDocument:
	case bson.TypeArray:
		n, ok := arrayIndex(comp)
		if !ok {
			return bson.RawValue{}
		}
		want = n
	default:
		return bson.RawValue{}
	}
	it, err := iterate(v.Value)
	if err != nil {
		return bson.RawValue{}
	}
	for i := 0; ; i++ {
		key, c, ok, err := it.next()
		if err != nil || !ok {
			return bson.RawValue{}
		}
		if (want < 0 && string(key) == comp) || i == want {
			return c
		}
	}
}

// rawElems returns the elements of a raw array.
func rawElems(v bson.RawValue) []bson.RawValue {
	var out []bson.RawValue
	it, err := iterate(v.Value)
	if err != nil {
		return nil
	}
	for {
		_, c, ok, err := it.next()
		if err != nil || !ok {
			return out
		}
		out = append(out, c)
	}
}

// buildArray serialises values as a BSON array.
func buildArray(vals []bson.RawValue) bson.RawValue {
	a := &arrNode{elems: make([]value, len(vals))}
	for i, v := range vals {
		a.elems[i] = rawVal(v)
	}
	return bson.RawValue{Type: bson.TypeArray, Value: a.appendTo(nil)}
}
