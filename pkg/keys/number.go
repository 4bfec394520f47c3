package keys

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// This file converts the four BSON number types to one exact decimal form,
// which both Compare and the encoding use, so that numbers of different
// types order (and encode) by their mathematical value.

// numClass orders the kinds of numbers: NaN < -Inf < negative < zero <
// positive < +Inf.
type numClass int8

const (
	numNaN numClass = iota
	numNegInf
	numNeg
	numZero
	numPos
	numPosInf
)

// decimal is an exact number. For numNeg and numPos,
// |value| = 0.d1d2...dn × 10^exp where digits holds d1..dn as ASCII, d1 != '0'
// and dn != '0' (so every value has exactly one form).
type decimal struct {
	class  numClass
	exp    int
	digits []byte
}

// Largest canonical decimal128 coefficient, 10^34-1, as high and low words.
const (
	maxCoefHi = 0x1ed09bead87c0
	maxCoefLo = 0x378d8e63ffffffff
)

// toDecimal converts a well-formed number of type t to its exact decimal
// form. buf is scratch space for the digits (may be reused by the result).
func toDecimal(t bson.Type, val []byte, buf []byte) decimal {
	switch t {
	case bson.TypeInt32:
		return intDecimal(int64(int32(binary.LittleEndian.Uint32(val))), buf)
	case bson.TypeInt64:
		return intDecimal(int64(binary.LittleEndian.Uint64(val)), buf)
	case bson.TypeDouble:
		return floatDecimal(math.Float64frombits(binary.LittleEndian.Uint64(val)), buf)
	case bson.TypeDecimal128:
		return dec128Decimal(binary.LittleEndian.Uint64(val[8:]), binary.LittleEndian.Uint64(val), buf)
	}
	return decimal{class: numNaN}
}

// finish strips trailing zeros from digits and builds the decimal with
// |value| = 0.digits × 10^exp.
func finish(neg bool, digits []byte, exp int) decimal {
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
	}
	if len(digits) == 0 {
		return decimal{class: numZero}
	}
	c := numPos
	if neg {
		c = numNeg
	}
	return decimal{class: c, exp: exp, digits: digits}
}

func intDecimal(i int64, buf []byte) decimal {
	if i == 0 {
		return decimal{class: numZero}
	}
	u := uint64(i)
	neg := i < 0
	if neg {
		u = -u // two's complement: also right for math.MinInt64
	}
	d := strconv.AppendUint(buf[:0], u, 10)
	return finish(neg, d, len(d))
}

func floatDecimal(f float64, buf []byte) decimal {
	switch {
	case math.IsNaN(f):
		return decimal{class: numNaN}
	case math.IsInf(f, 1):
		return decimal{class: numPosInf}
	case math.IsInf(f, -1):
		return decimal{class: numNegInf}
	case f == 0:
		return decimal{class: numZero}
	}
	fb := math.Float64bits(f)
	neg := fb>>63 == 1
	e := int(fb>>52) & 0x7ff
	m := fb & (1<<52 - 1)
	if e == 0 {
		e = 1 // subnormal
	} else {
		m |= 1 << 52
	}
	e2 := e - 1075 // |f| = m × 2^e2 exactly
	tz := bits.TrailingZeros64(m)
	m >>= uint(tz)
	e2 += tz
	if e2 >= 0 {
		if bits.Len64(m)+e2 <= 64 {
			d := strconv.AppendUint(buf[:0], m<<uint(e2), 10)
			return finish(neg, d, len(d))
		}
		var n nat
		n.setShifted(m, e2)
		d := n.appendDecimal(buf[:0])
		return finish(neg, d, len(d))
	}
	// |f| = m / 2^k = m × 5^k / 10^k.
	k := -e2
	var n nat
	n.setPow5Times(m, k)
	d := n.appendDecimal(buf[:0])
	return finish(neg, d, len(d)-k)
}

// nat is a natural number in little-endian 64-bit words, big enough for
// the exact decimal expansion of any double: m × 5^1074 with m < 2^53 needs
// 2548 bits, m × 2^971 needs 1024.
type nat struct {
	w [41]uint64
	n int // words in use; w[n-1] != 0 unless n == 0
}

func (x *nat) setShifted(m uint64, s int) {
	q, r := s/64, uint(s%64)
	*x = nat{}
	x.w[q] = m << r
	x.n = q + 1
	if r > 0 && m>>(64-r) != 0 {
		x.w[q+1] = m >> (64 - r)
		x.n = q + 2
	}
}

// pow5x27 is 5^27, the largest power of 5 below 2^63.
const pow5x27 = 7450580596923828125

func (x *nat) setPow5Times(m uint64, k int) {
	*x = nat{}
	x.w[0] = m
	x.n = 1
	for ; k >= 27; k -= 27 {
		x.mulSmall(pow5x27)
	}
	p := uint64(1)
	for ; k > 0; k-- {
		p *= 5
	}
	x.mulSmall(p)
}

func (x *nat) mulSmall(y uint64) {
	var carry uint64
	for i := 0; i < x.n; i++ {
		hi, lo := bits.Mul64(x.w[i], y)
		var c uint64
		x.w[i], c = bits.Add64(lo, carry, 0)
		carry = hi + c
	}
	if carry != 0 {
		x.w[x.n] = carry
		x.n++
	}
}

// appendDecimal appends the decimal digits of x (which must be nonzero) and
// destroys x.
func (x *nat) appendDecimal(dst []byte) []byte {
	const chunk = 1e19
	var parts [48]uint64 // base-10^19 digits, least significant first
	np := 0
	for x.n > 0 {
		var r uint64
		for i := x.n - 1; i >= 0; i-- {
			x.w[i], r = bits.Div64(r, x.w[i], chunk)
		}
		for x.n > 0 && x.w[x.n-1] == 0 {
			x.n--
		}
		parts[np] = r
		np++
	}
	dst = strconv.AppendUint(dst, parts[np-1], 10)
	for i := np - 2; i >= 0; i-- {
		var tmp [20]byte
		s := strconv.AppendUint(tmp[:0], parts[i], 10)
		for j := len(s); j < 19; j++ {
			dst = append(dst, '0')
		}
		dst = append(dst, s...)
	}
	return dst
}

// dec128Decimal converts an IEEE 754-2008 decimal128 (BID encoding) given as
// its high and low words. Non-canonical coefficients (above 10^34-1) are zero,
// as the standard says.
func dec128Decimal(hi, lo uint64, buf []byte) decimal {
	neg := hi>>63 == 1
	switch (hi >> 58) & 0x1f {
	case 0x1f:
		return decimal{class: numNaN}
	case 0x1e:
		if neg {
			return decimal{class: numNegInf}
		}
		return decimal{class: numPosInf}
	}
	if (hi>>61)&3 == 3 {
		// The "11" form implies a coefficient >= 2^113, which is never canonical.
		return decimal{class: numZero}
	}
	exp := int((hi>>49)&0x3fff) - 6176
	ch := hi & (1<<49 - 1)
	if ch > maxCoefHi || (ch == maxCoefHi && lo > maxCoefLo) || (ch == 0 && lo == 0) {
		return decimal{class: numZero}
	}
	var d []byte
	if ch == 0 {
		d = strconv.AppendUint(buf[:0], lo, 10)
	} else {
		q, r := bits.Div64(ch, lo, 1e19) // ch < 1e19, so q fits
		d = strconv.AppendUint(buf[:0], q, 10)
		var tmp [20]byte
		rs := strconv.AppendUint(tmp[:0], r, 10)
		for i := len(rs); i < 19; i++ {
			d = append(d, '0')
		}
		d = append(d, rs...)
	}
	return finish(neg, d, len(d)+exp)
}

// compareDecimal compares two exact decimals.
func compareDecimal(a, b decimal) int {
	if a.class != b.class {
		return cmpInt(int(a.class), int(b.class))
	}
	var c int
	switch a.class {
	case numPos:
		c = compareMagnitude(a, b)
	case numNeg:
		c = -compareMagnitude(a, b)
	}
	return c
}

func compareMagnitude(a, b decimal) int {
	if a.exp != b.exp {
		return cmpInt(a.exp, b.exp)
	}
	// Digits have no trailing zeros, so a proper prefix is the smaller number.
	return bytes.Compare(a.digits, b.digits)
}

// compareNumbers compares two well-formed numbers of any numeric types.
func compareNumbers(ta bson.Type, a []byte, tb bson.Type, b []byte) int {
	ia, aInt := intValue(ta, a)
	ib, bInt := intValue(tb, b)
	switch {
	case aInt && bInt:
		return cmpInt64(ia, ib)
	case aInt && tb == bson.TypeDouble:
		return compareIntFloat(ia, floatValue(b))
	case ta == bson.TypeDouble && bInt:
		return -compareIntFloat(ib, floatValue(a))
	case ta == bson.TypeDouble && tb == bson.TypeDouble:
		return compareFloats(floatValue(a), floatValue(b))
	}
	var sa, sb [80]byte
	return compareDecimal(toDecimal(ta, a, sa[:0]), toDecimal(tb, b, sb[:0]))
}

func intValue(t bson.Type, v []byte) (int64, bool) {
	switch t {
	case bson.TypeInt32:
		return int64(int32(binary.LittleEndian.Uint32(v))), true
	case bson.TypeInt64:
		return int64(binary.LittleEndian.Uint64(v)), true
	}
	return 0, false
}

func floatValue(v []byte) float64 {
	return math.Float64frombits(binary.LittleEndian.Uint64(v))
}

// compareFloats orders doubles with NaN equal to NaN and below everything.
func compareFloats(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareIntFloat compares an int64 with a double exactly (no rounding of
// the integer to a double).
func compareIntFloat(i int64, f float64) int {
	const two63 = float64(1 << 63)
	switch {
	case math.IsNaN(f):
		return 1
	case f >= two63:
		return -1
	case f < -two63:
		return 1
	}
	t := math.Trunc(f)
	ti := int64(t)
	if i != ti {
		return cmpInt64(i, ti)
	}
	switch frac := f - t; {
	case frac > 0:
		return -1
	case frac < 0:
		return 1
	}
	return 0
}
