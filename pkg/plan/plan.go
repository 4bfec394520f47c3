// Package plan chooses how a shard answers a query: which index to scan
// with which bounds, or a collection scan, and whether a SORT stage is
// needed. A Plan is plain data computed from the filter's predicates and the
// collection's index descriptions, so it is tested without a store; the
// executor in shardd walks it over a storage snapshot, and Explain renders
// it in MongoDB's explain shape (queryPlanner.winningPlan with COLLSCAN,
// IXSCAN, FETCH, SORT, SKIP, LIMIT and PROJECTION stages).
//
// # The invariant
//
// Index bounds are only ever a superset of the matching documents: every
// plan runs the complete filter on each fetched document. The planner may
// therefore be conservative (wide bounds, a scan) but never narrow bounds
// beyond what the predicates imply. In particular:
//
//   - On a multikey index, two range predicates on one path are not
//     intersected ({a: {$gt: 1, $lt: 3}} matches a: [0, 5]); only one of
//     them bounds the scan.
//   - A sparse index is not used when a predicate could match a missing
//     field (an equality to null), since such documents have no entry.
//   - Ranges are not clipped to a type bracket: {a: {$gt: 5}} scans
//     (5, MaxKey] and the filter drops the strings.
//
// This package must never read or write a store, and never log.
package plan

import (
	"bytes"
	"slices"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/query"
)

// IDIndexName is the name of the index every collection has on _id.
const IDIndexName = "_id_"

// maxRanges bounds the number of index ranges a plan may scan (the product
// of $in lists over the equality prefix); past it the prefix is shortened.
const maxRanges = 4096

// KeyPart is one field of an index key pattern.
type KeyPart struct {
	Field string
	Desc  bool
}

// Index describes an index as the planner sees it.
type Index struct {
	Name   string
	Key    []KeyPart
	Unique bool
	Sparse bool
	// Multikey is true when some document produced more than one entry (an
	// array on an indexed path). When the store cannot tell, callers must
	// say true; the _id index is never multikey.
	Multikey bool
}

// Interval is a range of one field's values in keys.Compare order.
// MinKey and MaxKey stand for unbounded ends.
type Interval struct {
	Lo, Hi         bson.RawValue
	LoIncl, HiIncl bool
}

func fullInterval() Interval {
	return Interval{Lo: keys.MinKey(), Hi: keys.MaxKey(), LoIncl: true, HiIncl: true}
}

// Point is the interval holding exactly v.
func Point(v bson.RawValue) Interval { return Interval{Lo: v, Hi: v, LoIncl: true, HiIncl: true} }

// IsPoint reports whether the interval holds exactly one value.
func (iv Interval) IsPoint() bool {
	return iv.LoIncl && iv.HiIncl && keys.Compare(iv.Lo, iv.Hi) == 0
}

// Kind is the kind of scan a plan does.
type Kind int

// Scan kinds.
const (
	CollScan Kind = iota
	IndexScan
)

// Query is what a find asks for.
type Query struct {
	Filter *query.Filter
	Sort   *query.Sort // nil or empty: no sort
	Skip   int64
	Limit  int64 // 0: no limit
	// Projection is only shown by Explain.
	Projection bson.Raw
}

// Plan is the chosen way to answer a Query.
type Plan struct {
	Kind  Kind
	Index *Index // IndexScan only
	// Bounds holds, per index key field, the value intervals scanned, in
	// ascending value order. Fields past the bounded prefix are full.
	Bounds [][]Interval
	// Reverse walks the index backwards, to serve a descending sort.
	Reverse bool
	// SortCovered says the scan yields documents in the requested sort
	// order, so no SORT stage is needed.
	SortCovered bool
	Query       Query
}

// NeedsSort reports whether a SORT stage must order the fetched documents.
func (p *Plan) NeedsSort() bool {
	return p.Query.Sort != nil && len(p.Query.Sort.Fields) > 0 && !p.SortCovered
}

// Choose picks a plan for q among the given indexes. It never fails: a
// collection scan is always possible.
func Choose(q Query, indexes []Index) *Plan {
	preds := predicatesByPath(q.Filter)
	var best *Plan
	bestScore := 0
	for i := range indexes {
		ix := &indexes[i]
		p, score := planForIndex(q, ix, preds)
		if p == nil {
			continue
		}
		if best == nil || score > bestScore || (score == bestScore && better(ix, best.Index)) {
			best, bestScore = p, score
		}
	}
	if best != nil {
		return best
	}
	// No predicate can use an index: an index that yields the sort order
	// still saves the SORT stage (MongoDB does the same).
	if q.Sort != nil && len(q.Sort.Fields) > 0 {
		for i := range indexes {
			ix := &indexes[i]
			if ix.Sparse {
				continue
			}
			p := &Plan{Kind: IndexScan, Index: ix, Query: q, Bounds: fullBounds(ix)}
			if rev, ok := sortCovered(q.Sort, ix, 0); ok {
				p.SortCovered, p.Reverse = true, rev
				return p
			}
		}
	}
	return &Plan{Kind: CollScan, Query: q}
}

// better breaks ties between equally useful indexes: _id first, then
// unique, then fewer key fields, then the name (so plans are stable).
func better(a, b *Index) bool {
	if (a.Name == IDIndexName) != (b.Name == IDIndexName) {
		return a.Name == IDIndexName
	}
	if a.Unique != b.Unique {
		return a.Unique
	}
	if len(a.Key) != len(b.Key) {
		return len(a.Key) < len(b.Key)
	}
	return a.Name < b.Name
}

func predicatesByPath(f *query.Filter) map[string][]query.Predicate {
	out := make(map[string][]query.Predicate)
	if f == nil {
		return out
	}
	for _, p := range f.Predicates() {
		out[p.Path] = append(out[p.Path], p)
	}
	return out
}

// planForIndex computes bounds for one index and a score: two points per
// leading field bounded by equalities, one for a trailing range, one more
// when the plan also yields the sort order. nil when the index cannot help.
func planForIndex(q Query, ix *Index, preds map[string][]query.Predicate) (*Plan, int) {
	if len(ix.Key) == 0 {
		return nil, 0
	}
	multikey := ix.Multikey && ix.Name != IDIndexName
	if ix.Sparse {
		for _, kp := range ix.Key {
			for _, p := range preds[kp.Field] {
				if matchesNull(p) {
					return nil, 0
				}
			}
		}
	}
	bounds := fullBounds(ix)
	score, points, combos := 0, 0, 1
	for i, kp := range ix.Key {
		ivs, ok := intervalsFor(preds[kp.Field], multikey)
		if !ok {
			break
		}
		if AllPoints(ivs) {
			if combos*len(ivs) > maxRanges {
				break
			}
			combos *= len(ivs)
			bounds[i] = ivs
			score += 2
			points++
			continue
		}
		bounds[i] = ivs
		score++
		break
	}
	if score == 0 {
		return nil, 0
	}
	p := &Plan{Kind: IndexScan, Index: ix, Bounds: bounds, Query: q}
	if q.Sort != nil && len(q.Sort.Fields) > 0 && combos == 1 {
		if rev, ok := sortCovered(q.Sort, ix, points); ok {
			p.SortCovered, p.Reverse = true, rev
			score++
		}
	}
	return p, score
}

func fullBounds(ix *Index) [][]Interval {
	b := make([][]Interval, len(ix.Key))
	for i := range b {
		b[i] = []Interval{fullInterval()}
	}
	return b
}

func matchesNull(p query.Predicate) bool {
	for _, v := range p.Values {
		if v.Type == bson.TypeNull || v.Type == bson.TypeUndefined {
			return true
		}
	}
	return false
}

// AllPoints reports whether every interval holds exactly one value.
func AllPoints(ivs []Interval) bool {
	for _, iv := range ivs {
		if !iv.IsPoint() {
			return false
		}
	}
	return true
}

// intervalsFor turns the predicates on one path into sorted, disjoint
// intervals. On a multikey path only one predicate bounds the scan (an
// equality or $in if there is one), since different array elements may
// satisfy different predicates.
func intervalsFor(preds []query.Predicate, multikey bool) ([]Interval, bool) {
	if len(preds) == 0 {
		return nil, false
	}
	var sets [][]Interval
	for _, p := range preds {
		ivs := PredicateIntervals(p)
		if ivs == nil {
			continue
		}
		sets = append(sets, ivs)
	}
	if len(sets) == 0 {
		return nil, false
	}
	if multikey {
		for _, s := range sets {
			if AllPoints(s) {
				return s, true
			}
		}
		return sets[0], true
	}
	out := sets[0]
	for _, s := range sets[1:] {
		out = Intersect(out, s)
	}
	return out, true
}

// PredicateIntervals returns the sorted, disjoint intervals of values one
// predicate allows: points for $eq and $in (none for $in: []), a half-open
// range for $gt/$gte/$lt/$lte. nil means the predicate cannot bound a scan.
func PredicateIntervals(p query.Predicate) []Interval {
	if len(p.Values) == 0 {
		if p.Op == "$in" {
			return []Interval{} // $in: [] matches nothing
		}
		return nil
	}
	v := p.Values[0]
	switch p.Op {
	case "$eq":
		return []Interval{Point(v)}
	case "$in":
		vals := slices.Clone(p.Values)
		sort.SliceStable(vals, func(i, j int) bool { return keys.Compare(vals[i], vals[j]) < 0 })
		vals = slices.CompactFunc(vals, func(a, b bson.RawValue) bool { return keys.Compare(a, b) == 0 })
		out := make([]Interval, len(vals))
		for i, v := range vals {
			out[i] = Point(v)
		}
		return out
	case "$gt":
		return []Interval{{Lo: v, Hi: keys.MaxKey(), HiIncl: true}}
	case "$gte":
		return []Interval{{Lo: v, Hi: keys.MaxKey(), LoIncl: true, HiIncl: true}}
	case "$lt":
		return []Interval{{Lo: keys.MinKey(), Hi: v, LoIncl: true}}
	case "$lte":
		return []Interval{{Lo: keys.MinKey(), Hi: v, LoIncl: true, HiIncl: true}}
	}
	return nil
}

// Intersect intersects two sorted lists of disjoint intervals.
func Intersect(a, b []Interval) []Interval {
	var out []Interval
	for _, x := range a {
		for _, y := range b {
			if iv, ok := intersectOne(x, y); ok {
				out = append(out, iv)
			}
		}
	}
	return out
}

func intersectOne(x, y Interval) (Interval, bool) {
	iv := x
	if c := keys.Compare(y.Lo, x.Lo); c > 0 || (c == 0 && !y.LoIncl) {
		iv.Lo, iv.LoIncl = y.Lo, y.LoIncl
	}
	if c := keys.Compare(y.Hi, x.Hi); c < 0 || (c == 0 && !y.HiIncl) {
		iv.Hi, iv.HiIncl = y.Hi, y.HiIncl
	}
	c := keys.Compare(iv.Lo, iv.Hi)
	if c > 0 || (c == 0 && !(iv.LoIncl && iv.HiIncl)) {
		return Interval{}, false
	}
	return iv, true
}

// sortCovered reports whether scanning ix (after `points` leading fields
// fixed to single values) yields the sort order, and in which direction.
// Sort fields fixed by an equality may appear anywhere in the sort.
func sortCovered(s *query.Sort, ix *Index, points int) (reverse, ok bool) {
	if ix.Multikey && ix.Name != IDIndexName {
		return false, false
	}
	fixed := make(map[string]bool, points)
	for _, kp := range ix.Key[:points] {
		fixed[kp.Field] = true
	}
	pos := points
	dirSet := false
	for _, sf := range s.Fields {
		if fixed[sf.Path] {
			continue
		}
		if pos >= len(ix.Key) || ix.Key[pos].Field != sf.Path {
			return false, false
		}
		r := sf.Desc != ix.Key[pos].Desc
		if dirSet && r != reverse {
			return false, false
		}
		reverse, dirSet = r, true
		pos++
	}
	return reverse, true
}

// Range is one contiguous range of an index's encoded key tuples: Lo
// inclusive, Hi exclusive; nil means unbounded.
type Range struct {
	Lo, Hi []byte
}

// Ranges returns the encoded key ranges of an IndexScan in ascending byte
// order (a Reverse plan walks them last to first, each backwards). The
// bytes are keys.EncodeTuple over a prefix of the index's fields with its
// directions, as shardd/storage's ScanIndex expects.
func (p *Plan) Ranges() []Range {
	if p.Kind != IndexScan {
		return nil
	}
	ix := p.Index
	desc := make([]bool, len(ix.Key))
	for i, kp := range ix.Key {
		desc[i] = kp.Desc
	}
	// The prefix of fields bounded by points, then at most one range field.
	prefixes := [][]byte{nil}
	i := 0
	for ; i < len(p.Bounds); i++ {
		ivs := p.Bounds[i]
		if !AllPoints(ivs) || isFull(ivs) {
			break
		}
		next := make([][]byte, 0, len(prefixes)*len(ivs))
		for _, pre := range prefixes {
			for _, iv := range ivs {
				next = append(next, appendComponent(slices.Clone(pre), iv.Lo, desc[i]))
			}
		}
		prefixes = next
	}
	var out []Range
	for _, pre := range prefixes {
		if i < len(p.Bounds) && !isFull(p.Bounds[i]) {
			for _, iv := range p.Bounds[i] {
				out = append(out, intervalRange(pre, iv, desc[i]))
			}
			continue
		}
		if len(pre) == 0 {
			out = append(out, Range{})
			continue
		}
		out = append(out, Range{Lo: pre, Hi: keys.PrefixEnd(pre)})
	}
	sort.Slice(out, func(a, b int) bool { return bytes.Compare(out[a].Lo, out[b].Lo) < 0 })
	return out
}

func isFull(ivs []Interval) bool {
	return len(ivs) == 1 && ivs[0].LoIncl && ivs[0].HiIncl &&
		ivs[0].Lo.Type == bson.TypeMinKey && ivs[0].Hi.Type == bson.TypeMaxKey
}

func appendComponent(dst []byte, v bson.RawValue, desc bool) []byte {
	if desc {
		return keys.AppendValueDesc(dst, v)
	}
	return keys.AppendValue(dst, v)
}

// intervalRange encodes one interval of the field after prefix. On a
// descending field the byte order is the reverse of the value order, so
// the interval's high end becomes the range's low end.
func intervalRange(prefix []byte, iv Interval, desc bool) Range {
	loV, loIncl, hiV, hiIncl := iv.Lo, iv.LoIncl, iv.Hi, iv.HiIncl
	if desc {
		loV, loIncl, hiV, hiIncl = iv.Hi, iv.HiIncl, iv.Lo, iv.LoIncl
	}
	lo := appendComponent(slices.Clone(prefix), loV, desc)
	if !loIncl {
		lo = keys.PrefixEnd(lo)
	}
	hi := appendComponent(slices.Clone(prefix), hiV, desc)
	if hiIncl {
		hi = keys.PrefixEnd(hi)
	}
	return Range{Lo: lo, Hi: hi}
}
