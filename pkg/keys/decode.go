package keys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ErrMalformed is wrapped by every decoding error: the bytes are not an
// encoding this package produces. For stored keys it means data damage.
var ErrMalformed = errors.New("malformed key encoding")

// maxNumberBytes bounds the digit bytes of one number. The longest exact
// expansion of a double has 767 significant digits (384 base-100 digits).
const maxNumberBytes = 400

// DecodeValue decodes one ascending-encoded value from the start of b and
// returns it with the rest of b. The result compares equal to the encoded
// value; numbers come back in a canonical type: int32 if integral and in its
// range, else int64 if integral and in its range, else double if exactly a
// double (NaN and infinities are doubles), else decimal128.
func DecodeValue(b []byte) (v bson.RawValue, rest []byte, err error) {
	return decodeOne(b, 0)
}

// DecodeValueDesc decodes one value written by AppendValueDesc.
func DecodeValueDesc(b []byte) (v bson.RawValue, rest []byte, err error) {
	return decodeOne(b, 0xff)
}

// DecodeTuple decodes n components of a compound key written by EncodeTuple
// with the same desc, and returns them with the rest of b.
func DecodeTuple(b []byte, n int, desc []bool) (vals []bson.RawValue, rest []byte, err error) {
	vals = make([]bson.RawValue, 0, n)
	rest = b
	for i := 0; i < n; i++ {
		var v bson.RawValue
		if i < len(desc) && desc[i] {
			v, rest, err = DecodeValueDesc(rest)
		} else {
			v, rest, err = DecodeValue(rest)
		}
		if err != nil {
			return nil, b, fmt.Errorf("component %d: %w", i, err)
		}
		vals = append(vals, v)
	}
	return vals, rest, nil
}

func decodeOne(b []byte, mask byte) (bson.RawValue, []byte, error) {
	d := decoder{b: b, mask: mask}
	t, val, err := d.value(nil)
	if err != nil {
		return bson.RawValue{}, b, err
	}
	return bson.RawValue{Type: t, Value: val}, b[d.pos:], nil
}

// decoder reads one encoding; mask is 0xff for descending encodings, whose
// bytes are complemented.
type decoder struct {
	b     []byte
	pos   int
	mask  byte
	depth int
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("decode key at byte %d: %s: %w", d.pos, fmt.Sprintf(format, args...), ErrMalformed)
}

func (d *decoder) byte() (byte, error) {
	if d.pos >= len(d.b) {
		return 0, d.errorf("unexpected end")
	}
	c := d.b[d.pos] ^ d.mask
	d.pos++
	return c, nil
}

// appendN appends the next n (unmasked) bytes to out.
func (d *decoder) appendN(out []byte, n int) ([]byte, error) {
	if n < 0 || n > len(d.b)-d.pos {
		return out, d.errorf("unexpected end")
	}
	for _, c := range d.b[d.pos : d.pos+n] {
		out = append(out, c^d.mask)
	}
	d.pos += n
	return out, nil
}

func (d *decoder) uint32() (uint32, error) {
	var buf [4]byte
	if _, err := d.appendN(buf[:0], 4); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(buf[:]), nil
}

func (d *decoder) uint64() (uint64, error) {
	var buf [8]byte
	if _, err := d.appendN(buf[:0], 8); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(buf[:]), nil
}

// unescape appends the bytes of an escaped string up to its terminator.
func (d *decoder) unescape(out []byte) ([]byte, error) {
	for {
		c, err := d.byte()
		if err != nil {
			return out, err
		}
		if c != 0 {
			out = append(out, c)
			continue
		}
		c, err = d.byte()
		if err != nil {
			return out, err
		}
		switch c {
		case 0xff:
			out = append(out, 0)
		case 0x01:
			return out, nil
		default:
			return out, d.errorf("bad escape 0x00 0x%02x", c)
		}
	}
}

// cstring appends the bytes up to a 0x00 and the 0x00.
func (d *decoder) cstring(out []byte) ([]byte, error) {
	for {
		c, err := d.byte()
		if err != nil {
			return out, err
		}
		out = append(out, c)
		if c == 0 {
			return out, nil
		}
	}
}

// bsonString appends a BSON string (length, bytes, NUL) read by read.
func bsonString(out []byte, read func([]byte) ([]byte, error)) ([]byte, error) {
	start := len(out)
	out = append(out, 0, 0, 0, 0)
	out, err := read(out)
	if err != nil {
		return out, err
	}
	out = append(out, 0)
	n := len(out) - start - 4
	if uint64(n) > math.MaxInt32 {
		return out, fmt.Errorf("decode key: string of %d bytes: %w", n, ErrMalformed)
	}
	binary.LittleEndian.PutUint32(out[start:], uint32(n))
	return out, nil
}

// value decodes one value and appends its BSON bytes to out.
func (d *decoder) value(out []byte) (bson.Type, []byte, error) {
	tag, err := d.byte()
	if err != nil {
		return 0, out, err
	}
	switch {
	case tag == tagMinKey:
		return bson.TypeMinKey, out, nil
	case tag == tagMaxKey:
		return bson.TypeMaxKey, out, nil
	case tag == tagUndefined:
		return bson.TypeUndefined, out, nil
	case tag == tagNull:
		return bson.TypeNull, out, nil
	case tag >= tagNaN && tag <= tagPosInf:
		return d.number(tag, out)
	case tag == tagString:
		out, err = bsonString(out, d.unescape)
		return bson.TypeString, out, err
	case tag == tagCode:
		out, err = bsonString(out, d.unescape)
		return bson.TypeJavaScript, out, err
	case tag == tagObject:
		out, err = d.elements(out, true)
		return bson.TypeEmbeddedDocument, out, err
	case tag == tagArray:
		out, err = d.elements(out, false)
		return bson.TypeArray, out, err
	case tag == tagBinary:
		n, err := d.uint32()
		if err != nil {
			return 0, out, err
		}
		out = binary.LittleEndian.AppendUint32(out, n)
		if uint64(n) > uint64(len(d.b)-d.pos) {
			return 0, out, d.errorf("binary length %d past the end", n)
		}
		out, err = d.appendN(out, int(n)+1)
		return bson.TypeBinary, out, err
	case tag == tagObjectID:
		out, err = d.appendN(out, 12)
		return bson.TypeObjectID, out, err
	case tag == tagFalse:
		return bson.TypeBoolean, append(out, 0), nil
	case tag == tagTrue:
		return bson.TypeBoolean, append(out, 1), nil
	case tag == tagDate:
		u, err := d.uint64()
		return bson.TypeDateTime, binary.LittleEndian.AppendUint64(out, u^(1<<63)), err
	case tag == tagTimestamp:
		u, err := d.uint64()
		return bson.TypeTimestamp, binary.LittleEndian.AppendUint64(out, u), err
	case tag == tagRegex:
		if out, err = d.cstring(out); err != nil {
			return 0, out, err
		}
		out, err = d.cstring(out)
		return bson.TypeRegex, out, err
	case tag == tagDBPointer:
		n, err := d.uint32()
		if err != nil {
			return 0, out, err
		}
		if uint64(n) > uint64(len(d.b)-d.pos) {
			return 0, out, d.errorf("namespace length %d past the end", n)
		}
		out, err = bsonString(out, func(o []byte) ([]byte, error) { return d.appendN(o, int(n)) })
		if err != nil {
			return 0, out, err
		}
		out, err = d.appendN(out, 12)
		return bson.TypeDBPointer, out, err
	case tag == tagCodeScope:
		start := len(out)
		out = append(out, 0, 0, 0, 0)
		if out, err = bsonString(out, d.unescape); err != nil {
			return 0, out, err
		}
		if out, err = d.elements(out, true); err != nil {
			return 0, out, err
		}
		n := len(out) - start
		if uint64(n) > math.MaxInt32 {
			return 0, out, d.errorf("code with scope of %d bytes", n)
		}
		binary.LittleEndian.PutUint32(out[start:], uint32(n))
		return bson.TypeCodeWithScope, out, nil
	case tag == tagInvalid && d.depth == 0:
		t, err := d.byte()
		if err != nil {
			return 0, out, err
		}
		out, err = d.unescape(out)
		return bson.Type(t), out, err
	}
	return 0, out, d.errorf("unknown tag 0x%02x", tag)
}

// elements decodes the elements of a document (names) or array and appends
// the BSON document.
func (d *decoder) elements(out []byte, names bool) ([]byte, error) {
	if d.depth++; d.depth > maxDepth {
		return out, d.errorf("nested deeper than %d", maxDepth)
	}
	defer func() { d.depth-- }()
	start := len(out)
	out = append(out, 0, 0, 0, 0)
	for i := 0; ; i++ {
		var bracket byte
		if names {
			c, err := d.byte()
			if err != nil {
				return out, err
			}
			if c == tagEnd {
				break
			}
			bracket = c
		} else {
			if d.pos >= len(d.b) {
				return out, d.errorf("unexpected end")
			}
			if d.b[d.pos]^d.mask == tagEnd {
				d.pos++
				break
			}
		}
		typePos := len(out)
		out = append(out, 0)
		var err error
		if names {
			out, err = d.cstring(out)
		} else {
			out = strconv.AppendInt(out, int64(i), 10)
			out = append(out, 0)
		}
		if err != nil {
			return out, err
		}
		t, o, err := d.value(out)
		out = o
		if err != nil {
			return out, err
		}
		if names && bracketByte(t) != bracket {
			return out, d.errorf("element bracket 0x%02x does not match its value", bracket)
		}
		out[typePos] = byte(t)
	}
	out = append(out, 0)
	n := len(out) - start
	if uint64(n) > math.MaxInt32 {
		return out, d.errorf("document of %d bytes", n)
	}
	binary.LittleEndian.PutUint32(out[start:], uint32(n))
	return out, nil
}

// number decodes the body of a number whose tag has been read.
func (d *decoder) number(tag byte, out []byte) (bson.Type, []byte, error) {
	switch tag {
	case tagNaN:
		return bson.TypeDouble, binary.LittleEndian.AppendUint64(out, math.Float64bits(math.NaN())), nil
	case tagNegInf:
		return bson.TypeDouble, binary.LittleEndian.AppendUint64(out, math.Float64bits(math.Inf(-1))), nil
	case tagPosInf:
		return bson.TypeDouble, binary.LittleEndian.AppendUint64(out, math.Float64bits(math.Inf(1))), nil
	case tagZero:
		return bson.TypeInt32, append(out, 0, 0, 0, 0), nil
	}
	neg := tag < tagZero
	var numMask byte
	if neg {
		numMask = 0xff
	}
	var e int
	switch tag {
	case tagNegLarge, tagNegSmall, tagPosLarge, tagPosSmall:
		var buf [2]byte
		if _, err := d.appendN(buf[:0], 2); err != nil {
			return 0, out, err
		}
		e = int(binary.BigEndian.Uint16(buf[:])^uint16(numMask)*0x0101) - 0x8000
		large := tag == tagNegLarge || tag == tagPosLarge
		if (large && e <= mediumExpMax) || (!large && e >= 0) {
			return 0, out, d.errorf("exponent %d in the wrong class", e)
		}
	default:
		if neg {
			e = mediumExpMax - int(tag-tagNegMedium)
		} else {
			e = int(tag - tagPosMedium)
		}
	}
	var buf [2 * maxNumberBytes]byte
	digits := buf[:0]
	for {
		c, err := d.byte()
		if err != nil {
			return 0, out, err
		}
		c ^= numMask
		m := c / 2
		if m > 99 || (len(digits) == 0 && m == 0) || (c&1 == 0 && m == 0) {
			return 0, out, d.errorf("bad number digit byte 0x%02x", c)
		}
		if len(digits) == len(buf) {
			return 0, out, d.errorf("number longer than %d digit bytes", maxNumberBytes)
		}
		digits = append(digits, '0'+m/10, '0'+m%10)
		if c&1 == 0 {
			break
		}
	}
	e10 := 2 * e
	if digits[0] == '0' {
		digits = digits[1:]
		e10--
	}
	t, out, ok := appendCanonicalNumber(out, finish(neg, digits, e10))
	if !ok {
		return 0, out, d.errorf("number not representable in BSON")
	}
	return t, out, nil
}

// appendCanonicalNumber appends the BSON bytes of a finite nonzero number in
// its canonical type; ok is false if no BSON number type holds it exactly.
func appendCanonicalNumber(out []byte, dd decimal) (bson.Type, []byte, bool) {
	neg := dd.class == numNeg
	n := len(dd.digits)
	if dd.exp >= n && dd.exp <= 19 {
		var u uint64
		for _, c := range dd.digits {
			u = u*10 + uint64(c-'0')
		}
		for i := n; i < dd.exp; i++ {
			u *= 10 // below 10^19: no overflow
		}
		switch {
		case !neg && u <= math.MaxInt32:
			return bson.TypeInt32, binary.LittleEndian.AppendUint32(out, uint32(u)), true
		case neg && u <= 1<<31:
			return bson.TypeInt32, binary.LittleEndian.AppendUint32(out, uint32(-int64(u))), true
		case !neg && u <= math.MaxInt64:
			return bson.TypeInt64, binary.LittleEndian.AppendUint64(out, u), true
		case neg && u <= 1<<63:
			return bson.TypeInt64, binary.LittleEndian.AppendUint64(out, -u), true
		}
	}
	if dd.exp <= 310 && dd.exp >= -330 {
		var sbuf [2*maxNumberBytes + 16]byte
		s := append(sbuf[:0], "0."...)
		s = append(s, dd.digits...)
		s = append(s, 'e')
		s = strconv.AppendInt(s, int64(dd.exp), 10)
		if f, err := strconv.ParseFloat(string(s), 64); err == nil && f != 0 && !math.IsInf(f, 0) {
			if neg {
				f = -f
			}
			var fbuf [80]byte
			if compareDecimal(floatDecimal(f, fbuf[:0]), dd) == 0 {
				return bson.TypeDouble, binary.LittleEndian.AppendUint64(out, math.Float64bits(f)), true
			}
		}
	}
	// decimal128: coefficient × 10^q with at most 34 digits, -6176 <= q <= 6111.
	q := dd.exp - n
	pad := 0
	if q > 6111 {
		pad = q - 6111
		q = 6111
	}
	if n+pad > 34 || q < -6176 {
		return 0, out, false
	}
	var hi, lo uint64
	mul10 := func(add uint64) {
		h, l := bits.Mul64(lo, 10)
		var carry uint64
		lo, carry = bits.Add64(l, add, 0)
		hi = hi*10 + h + carry
	}
	for _, c := range dd.digits {
		mul10(uint64(c - '0'))
	}
	for i := 0; i < pad; i++ {
		mul10(0)
	}
	hi |= uint64(q+6176) << 49
	if neg {
		hi |= 1 << 63
	}
	out = binary.LittleEndian.AppendUint64(out, lo)
	out = binary.LittleEndian.AppendUint64(out, hi)
	return bson.TypeDecimal128, out, true
}
