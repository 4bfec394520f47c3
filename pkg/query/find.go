package query

import (
	"slices"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// FindSpec is a find command's query part (a plain value). Limit 0 means
// no limit.
type FindSpec struct {
	Filter, Projection, Sort bson.Raw
	Skip, Limit              int64
}

// limitCode is MongoDB's code for a negative skip or limit in find.
const limitCode mongoerr.Code = 51024

// CheckSkipLimit refuses a negative skip or limit as the find command does.
func CheckSkipLimit(skip, limit int64) error {
	if skip < 0 {
		return mongoerr.New(limitCode, "BSON field 'skip' value must be >= 0, actual value '%d'", skip)
	}
	if limit < 0 {
		return mongoerr.New(limitCode, "BSON field 'limit' value must be >= 0, actual value '%d'", limit)
	}
	return nil
}

// Find runs a find over docs on one node: filter, then sort (stable, so
// documents that sort equal keep their input order), skip, limit, and
// projection last (so sorting on a projected-away field works). docs is not
// modified; the result shares unprojected documents with it.
func Find(docs []bson.Raw, spec FindSpec) ([]bson.Raw, error) {
	if err := CheckSkipLimit(spec.Skip, spec.Limit); err != nil {
		return nil, err
	}
	f, err := ParseFilter(spec.Filter)
	if err != nil {
		return nil, err
	}
	s, err := ParseSort(spec.Sort)
	if err != nil {
		return nil, err
	}
	p, err := ParseProjection(spec.Projection)
	if err != nil {
		return nil, err
	}
	st := &matchState{}
	type hit struct {
		doc bson.Raw
		pos int
	}
	var hits []hit
	for _, d := range docs {
		ok, pos, err := f.evaluate(d, st)
		if err != nil {
			return nil, err
		}
		if ok {
			hits = append(hits, hit{d, pos})
		}
	}
	if s.Natural < 0 {
		slices.Reverse(hits)
	}
	if len(s.Fields) > 0 && len(hits) > 0 {
		idx, err := sortIndex(len(hits), s, func(i int) bson.Raw { return hits[i].doc })
		if err != nil {
			return nil, err
		}
		sorted := make([]hit, len(hits))
		for i, j := range idx {
			sorted[i] = hits[j]
		}
		hits = sorted
	}
	if spec.Skip >= int64(len(hits)) {
		hits = nil
	} else {
		hits = hits[spec.Skip:]
	}
	if spec.Limit > 0 && spec.Limit < int64(len(hits)) {
		hits = hits[:spec.Limit]
	}
	out := make([]bson.Raw, 0, len(hits))
	for _, h := range hits {
		d, err := p.Apply(h.doc, h.pos)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Count counts the documents of docs that match filter, after skip and
// limit as the count command applies them (limit 0: no limit; a negative
// limit counts as its absolute value, as MongoDB's count does; a negative
// skip is BadValue).
func Count(docs []bson.Raw, filter bson.Raw, skip, limit int64) (int64, error) {
	if skip < 0 {
		return 0, mongoerr.New(mongoerr.BadValue, "skip value is negative in count query")
	}
	if limit < 0 {
		limit = -limit
	}
	f, err := ParseFilter(filter)
	if err != nil {
		return 0, err
	}
	var n int64
	st := &matchState{}
	for _, d := range docs {
		ok, _, err := f.evaluate(d, st)
		if err != nil {
			return 0, err
		}
		if ok {
			n++
		}
	}
	n -= skip
	if n < 0 {
		n = 0
	}
	if limit > 0 && n > limit {
		n = limit
	}
	return n, nil
}

// Distinct returns the distinct values of key among the documents matching
// filter: values are collected with Lookup (arrays at the end of the path
// are unwound one level, missing fields contribute nothing, null counts),
// deduplicated by keys.Compare (so 1 and 1.0 are one value, the first seen
// is kept) and returned in keys.Compare order.
func Distinct(docs []bson.Raw, key string, filter bson.Raw) ([]bson.RawValue, error) {
	if key == "" {
		return nil, mongoerr.New(mongoerr.InvalidOptions, "distinct key must not be empty")
	}
	f, err := ParseFilter(filter)
	if err != nil {
		return nil, err
	}
	var vals []bson.RawValue
	st := &matchState{}
	for _, d := range docs {
		ok, _, err := f.evaluate(d, st)
		if err != nil {
			return nil, err
		}
		if ok {
			vals = append(vals, Lookup(d, key)...)
		}
	}
	sort.SliceStable(vals, func(i, j int) bool { return keys.Compare(vals[i], vals[j]) < 0 })
	out := vals[:0:0]
	for _, v := range vals {
		if len(out) > 0 && keys.Compare(out[len(out)-1], v) == 0 {
			continue
		}
		out = append(out, v)
	}
	return out, nil
}
