package query

import (
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// The bitwise query operators $bitsAllSet, $bitsAnySet, $bitsAllClear and
// $bitsAnyClear. The argument is a non-negative integral bitmask, an array
// of bit positions or a BinData mask. They match integral numbers that fit
// an int64 (two's complement, sign-extended beyond bit 63) and BinData
// (bytes little-endian, bit 0 the least significant bit of the first byte,
// zero-extended); every other value, including non-integral numbers and
// NaN, does not match.

type bitsOp int

const (
	bitsAllSet bitsOp = iota
	bitsAnySet
	bitsAllClear
	bitsAnyClear
)

var bitsOps = map[string]bitsOp{
	"$bitsAllSet": bitsAllSet, "$bitsAnySet": bitsAnySet,
	"$bitsAllClear": bitsAllClear, "$bitsAnyClear": bitsAnyClear,
}

type bitsPred struct {
	op        bitsOp
	positions []uint32
}

func parseBits(name string, op bitsOp, v bson.RawValue) (*bitsPred, error) {
	p := &bitsPred{op: op}
	switch {
	case isNumber(v.Type):
		f, ok := numberAsFloat(v)
		if !ok || math.IsNaN(f) || f != math.Trunc(f) {
			return nil, mongoerr.New(mongoerr.BadValue, "%s takes an integral bitmask, got %s", name, v.String())
		}
		if f < 0 {
			return nil, mongoerr.New(mongoerr.BadValue, "%s bitmask may not be negative", name)
		}
		mask, ok := numberAsInt64(v)
		if !ok {
			return nil, mongoerr.New(mongoerr.BadValue, "%s bitmask does not fit in a 64-bit integer", name)
		}
		for i := uint32(0); i < 64; i++ {
			if uint64(mask)&(1<<i) != 0 {
				p.positions = append(p.positions, i)
			}
		}
	case v.Type == bson.TypeArray:
		for _, e := range arrayElems(v.Value) {
			f, ok := numberAsFloat(e)
			if !ok || math.IsNaN(f) || f != math.Trunc(f) {
				return nil, mongoerr.New(mongoerr.BadValue, "%s bit positions must be integers", name)
			}
			if f < 0 || f > math.MaxInt32 {
				return nil, mongoerr.New(mongoerr.BadValue, "%s bit positions must be non-negative 32-bit integers", name)
			}
			p.positions = append(p.positions, uint32(f))
		}
	case v.Type == bson.TypeBinary:
		_, data, ok := v.BinaryOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.BadValue, "%s: malformed BinData", name)
		}
		for i, b := range data {
			for j := uint32(0); j < 8; j++ {
				if b&(1<<j) != 0 {
					p.positions = append(p.positions, uint32(i)*8+j)
				}
			}
		}
	default:
		return nil, mongoerr.New(mongoerr.BadValue, "%s takes an Array, a number, or a BinData but received: %s", name, v.String())
	}
	return p, nil
}

func (p *bitsPred) matchValue(v bson.RawValue) bool {
	var bit func(pos uint32) bool
	switch {
	case v.Type == bson.TypeBinary:
		_, data, ok := v.BinaryOK()
		if !ok {
			return false
		}
		bit = func(pos uint32) bool {
			i := int(pos / 8)
			return i < len(data) && data[i]&(1<<(pos%8)) != 0
		}
	case isNumber(v.Type):
		f, ok := numberAsFloat(v)
		if !ok || math.IsNaN(f) || f != math.Trunc(f) {
			return false
		}
		n, ok := numberAsInt64(v)
		if !ok {
			return false
		}
		bit = func(pos uint32) bool {
			if pos >= 64 {
				return n < 0
			}
			return uint64(n)&(1<<pos) != 0
		}
	default:
		return false
	}
	for _, pos := range p.positions {
		set := bit(pos)
		switch p.op {
		case bitsAllSet:
			if !set {
				return false
			}
		case bitsAllClear:
			if set {
				return false
			}
		case bitsAnySet:
			if set {
				return true
			}
		case bitsAnyClear:
			if !set {
				return true
			}
		}
	}
	return p.op == bitsAllSet || p.op == bitsAllClear
}
