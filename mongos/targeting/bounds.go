package targeting

import (
	"encoding/binary"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/plan"
	"github.com/psdb/psdb/pkg/query"
)

// This file turns a filter's predicates into shard-key space: per key
// field a sorted list of value intervals (pkg/plan's intervals, shared with
// index bounds), then encoded key ranges. Hashed fields, the absence of
// multikey paths and of directions are what differ from index bounds.
//
// Invariant (superset): every shard-key tuple of a document the filter
// matches lies in one of the computed ranges. It holds because
//   - predicates are necessary conditions of the top-level conjunction;
//   - shard-key paths never hold arrays (inserts refuse them), so a
//     predicate on a key path constrains the single stored value, and two
//     predicates on one path may be intersected;
//   - a missing field is stored as null and only null predicates match it
//     ({k: null}, $in with null, $lte/$gte null, $lt/$lte MaxKey,
//     $gt/$gte MinKey), whose intervals all contain null;
//   - ranges are not clipped to a type bracket, only widened.

// maxPoints caps the number of full-key tuples (the product of the $in
// lists); past it the field that would exceed it is bounded by the hull
// of its points (a hashed one not at all), which only widens.
const maxPoints = 16384

// interval is a range of one field's values in keys.Compare order: the
// planner's, so index bounds and shard-key bounds follow one definition.
type interval = plan.Interval

func int64Value(n int64) bson.RawValue {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(n))
	return bson.RawValue{Type: bson.TypeInt64, Value: b}
}

func hashValue(v bson.RawValue) bson.RawValue { return int64Value(keys.Hash(v)) }

// predIntervals returns the sorted, disjoint intervals of one predicate;
// ok false when the predicate cannot bound the field (a range on a hashed
// field). On a hashed field the intervals are points of hashes.
func predIntervals(p query.Predicate, hashed bool) ([]interval, bool) {
	if !hashed {
		ivs := plan.PredicateIntervals(p)
		return ivs, ivs != nil // $in: [] gives no interval: nothing matches
	}
	if p.Op != "$eq" && p.Op != "$in" {
		return nil, false
	}
	vals := make([]bson.RawValue, len(p.Values))
	for i, v := range p.Values {
		vals[i] = hashValue(v)
	}
	slices.SortStableFunc(vals, keys.Compare)
	vals = slices.CompactFunc(vals, func(a, b bson.RawValue) bool { return keys.Compare(a, b) == 0 })
	out := make([]interval, len(vals))
	for i, v := range vals {
		out[i] = plan.Point(v)
	}
	return out, true
}

// fieldIntervals intersects the intervals of every usable predicate on a
// field; ok false when none bounds it.
func fieldIntervals(preds []query.Predicate, hashed bool) ([]interval, bool) {
	var out []interval
	found := false
	for _, p := range preds {
		ivs, ok := predIntervals(p, hashed)
		if !ok {
			continue
		}
		if !found {
			out, found = ivs, true
			continue
		}
		out = plan.Intersect(out, ivs)
	}
	return out, found
}

// keyRange is an encoded shard-key range [lo, hi); nil is unbounded.
type keyRange struct{ lo, hi []byte }

// keyBounds is where a filter's shard-key predicates lead.
type keyBounds struct {
	// empty: the predicates contradict each other; nothing matches.
	empty bool
	// points: full-key tuples (hashed fields hashed), when every field is
	// bounded by points.
	points [][]bson.RawValue
	// ranges: encoded ranges, when a prefix is bounded but not the whole key.
	ranges []keyRange
	// reason for the Target.
	reason string
}

// maxOrBranches caps the $or branches targeted one by one.
const maxOrBranches = 64

// bounds computes the shard-key bounds of a filter. It never fails; an
// unbounded result has neither points nor ranges and reason ReasonNoKey
// or ReasonHashedRange.
//
// A top-level $or is targeted branch by branch: a document matching
// {rest..., $or: [b1, b2]} matches {$and: [{rest...}, bi]} for some i, so
// the union of the branches' bounds is a superset, and each branch's
// bounds are at most as wide as the conjunction's (a branch has all of its
// predicates and more). When the conjunction alone pins full-key points
// or nothing, or a branch is unbounded, or there are too many branches,
// the conjunction's bounds are used.
func bounds(key catalog.ShardKey, f *query.Filter) keyBounds {
	kb := conjBounds(key, f)
	if kb.empty || kb.ranges == nil && kb.points != nil {
		return kb
	}
	branches, ok := orBranches(f.Raw())
	if !ok {
		return kb
	}
	out := keyBounds{empty: true, reason: ReasonEmpty}
	for _, bf := range branches {
		b := conjBounds(key, bf)
		switch {
		case b.unbounded():
			return kb
		case b.empty:
			continue
		}
		if out.empty {
			out = keyBounds{reason: b.reason}
		} else if out.reason != b.reason {
			out.reason = ReasonOr
		}
		out.points = append(out.points, b.points...)
		out.ranges = append(out.ranges, b.ranges...)
	}
	return out
}

func (kb keyBounds) unbounded() bool { return !kb.empty && kb.points == nil && kb.ranges == nil }

// orBranches splits a filter with one top-level $or into the filters
// {$and: [rest, branch]}; ok false when there is no usable $or.
func orBranches(filter bson.Raw) ([]*query.Filter, bool) {
	if v, err := filter.LookupErr("$or"); err != nil || v.Type != bson.TypeArray {
		return nil, false // the common case, without allocating
	}
	elems, err := filter.Elements()
	if err != nil {
		return nil, false
	}
	var or bson.RawValue
	rest := bson.D{}
	for _, e := range elems {
		if e.Key() == "$or" && or.Type == 0 {
			or = e.Value()
			continue
		}
		rest = append(rest, bson.E{Key: e.Key(), Value: e.Value()})
	}
	if or.Type != bson.TypeArray {
		return nil, false
	}
	vals, err := or.Array().Values()
	if err != nil || len(vals) == 0 || len(vals) > maxOrBranches {
		return nil, false
	}
	out := make([]*query.Filter, 0, len(vals))
	for _, v := range vals {
		b, err := bson.Marshal(bson.D{{Key: "$and", Value: bson.A{rest, v}}})
		if err != nil {
			return nil, false
		}
		bf, err := query.ParseFilter(b)
		if err != nil {
			return nil, false
		}
		out = append(out, bf)
	}
	return out, true
}

// conjBounds computes the bounds of the filter's top-level conjunction.
func conjBounds(key catalog.ShardKey, f *query.Filter) keyBounds {
	byPath := map[string][]query.Predicate{}
	for _, p := range f.Predicates() {
		byPath[p.Path] = append(byPath[p.Path], p)
	}
	var fields [][]interval // bounded prefix
	combos := 1
	rangeField := false
	hashedUnbounded := false
	for _, kf := range key {
		ivs, ok := fieldIntervals(byPath[kf.Field], kf.Hashed)
		if !ok {
			if kf.Hashed && len(byPath[kf.Field]) > 0 {
				hashedUnbounded = true
			}
			break
		}
		if len(ivs) == 0 {
			return keyBounds{empty: true, reason: ReasonEmpty}
		}
		if plan.AllPoints(ivs) {
			if combos*len(ivs) > maxPoints {
				// Too many tuples: bound the field by the hull of its
				// points instead (wider, still a superset).
				if kf.Hashed {
					break
				}
				fields = append(fields, []interval{{Lo: ivs[0].Lo, Hi: ivs[len(ivs)-1].Hi, LoIncl: true, HiIncl: true}})
				rangeField = true
				break
			}
			combos *= len(ivs)
			fields = append(fields, ivs)
			continue
		}
		fields = append(fields, ivs)
		rangeField = true
		break
	}
	if len(fields) == 0 {
		if hashedUnbounded {
			return keyBounds{reason: ReasonHashedRange}
		}
		return keyBounds{reason: ReasonNoKey}
	}
	nPoints := len(fields)
	if rangeField {
		nPoints--
	}
	// Cross product of the point prefix.
	tuples := [][]bson.RawValue{nil}
	for _, ivs := range fields[:nPoints] {
		next := make([][]bson.RawValue, 0, len(tuples)*len(ivs))
		for _, t := range tuples {
			for _, iv := range ivs {
				next = append(next, append(slices.Clip(t), iv.Lo))
			}
		}
		tuples = next
	}
	if nPoints == len(key) {
		return keyBounds{points: tuples, reason: ReasonFullKey}
	}
	kb := keyBounds{reason: ReasonPrefix}
	if rangeField {
		kb.reason = ReasonRange
	}
	for _, t := range tuples {
		prefix := keys.EncodeTuple(t, nil)
		if !rangeField {
			kb.ranges = append(kb.ranges, keyRange{lo: prefix, hi: keys.PrefixEnd(prefix)})
			continue
		}
		for _, iv := range fields[nPoints] {
			lo := keys.AppendValue(slices.Clip(prefix), iv.Lo)
			if !iv.LoIncl {
				lo = keys.PrefixEnd(lo)
			}
			hi := keys.AppendValue(slices.Clip(prefix), iv.Hi)
			if iv.HiIncl {
				hi = keys.PrefixEnd(hi)
			}
			kb.ranges = append(kb.ranges, keyRange{lo: lo, hi: hi})
		}
	}
	return kb
}
