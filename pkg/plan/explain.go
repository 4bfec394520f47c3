package plan

import (
	"fmt"
	"math"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Explain returns the plan's winningPlan in MongoDB's shape: nested stages
// (PROJECTION_DEFAULT, LIMIT, SKIP, SORT, FETCH, IXSCAN or COLLSCAN) each
// with its inputStage.
func (p *Plan) Explain() bson.D {
	var filter bson.Raw
	if p.Query.Filter != nil {
		filter = p.Query.Filter.Raw()
	}
	var stage bson.D
	if p.Kind == CollScan {
		stage = bson.D{{Key: "stage", Value: "COLLSCAN"}}
		if len(filter) > 5 {
			stage = append(stage, bson.E{Key: "filter", Value: filter})
		}
		stage = append(stage, bson.E{Key: "direction", Value: "forward"})
	} else {
		dir := "forward"
		if p.Reverse {
			dir = "backward"
		}
		ix := bson.D{
			{Key: "stage", Value: "IXSCAN"},
			{Key: "keyPattern", Value: keyPattern(p.Index)},
			{Key: "indexName", Value: p.Index.Name},
			{Key: "isMultiKey", Value: p.Index.Multikey},
			{Key: "isUnique", Value: p.Index.Unique},
			{Key: "isSparse", Value: p.Index.Sparse},
			{Key: "direction", Value: dir},
			{Key: "indexBounds", Value: p.explainBounds()},
		}
		stage = bson.D{{Key: "stage", Value: "FETCH"}}
		if len(filter) > 5 {
			stage = append(stage, bson.E{Key: "filter", Value: filter})
		}
		stage = append(stage, bson.E{Key: "inputStage", Value: ix})
	}
	if p.NeedsSort() {
		s := bson.D{{Key: "stage", Value: "SORT"}, {Key: "sortPattern", Value: sortPattern(p.Query)}, {Key: "memLimit", Value: int64(100 << 20)}}
		if p.Query.Limit > 0 {
			s = append(s, bson.E{Key: "limitAmount", Value: p.Query.Limit + p.Query.Skip})
		}
		s = append(s, bson.E{Key: "type", Value: "simple"}, bson.E{Key: "inputStage", Value: stage})
		stage = s
	}
	if p.Query.Skip > 0 {
		stage = bson.D{{Key: "stage", Value: "SKIP"}, {Key: "skipAmount", Value: p.Query.Skip}, {Key: "inputStage", Value: stage}}
	}
	if p.Query.Limit > 0 {
		stage = bson.D{{Key: "stage", Value: "LIMIT"}, {Key: "limitAmount", Value: p.Query.Limit}, {Key: "inputStage", Value: stage}}
	}
	if len(p.Query.Projection) > 5 {
		stage = bson.D{{Key: "stage", Value: "PROJECTION_DEFAULT"}, {Key: "transformBy", Value: p.Query.Projection}, {Key: "inputStage", Value: stage}}
	}
	return stage
}

// QueryPlanner returns explain's queryPlanner section for namespace ns.
func (p *Plan) QueryPlanner(ns string) bson.D {
	parsed := bson.Raw(bsonEmpty)
	if p.Query.Filter != nil && len(p.Query.Filter.Raw()) > 0 {
		parsed = p.Query.Filter.Raw()
	}
	return bson.D{
		{Key: "namespace", Value: ns},
		{Key: "indexFilterSet", Value: false},
		{Key: "parsedQuery", Value: parsed},
		{Key: "winningPlan", Value: p.Explain()},
		{Key: "rejectedPlans", Value: bson.A{}},
	}
}

var bsonEmpty = []byte{5, 0, 0, 0, 0}

func keyPattern(ix *Index) bson.D {
	d := make(bson.D, len(ix.Key))
	for i, kp := range ix.Key {
		dir := int32(1)
		if kp.Desc {
			dir = -1
		}
		d[i] = bson.E{Key: kp.Field, Value: dir}
	}
	return d
}

func sortPattern(q Query) bson.D {
	d := make(bson.D, len(q.Sort.Fields))
	for i, f := range q.Sort.Fields {
		dir := int32(1)
		if f.Desc {
			dir = -1
		}
		d[i] = bson.E{Key: f.Path, Value: dir}
	}
	return d
}

// explainBounds renders bounds as MongoDB does: per field a list of
// interval strings such as "[5, inf.0]" or "(\"a\", MaxKey]", listed in
// the scan's direction.
func (p *Plan) explainBounds() bson.D {
	d := make(bson.D, len(p.Index.Key))
	for i, kp := range p.Index.Key {
		ivs := p.Bounds[i]
		strs := make(bson.A, len(ivs))
		// Bounds are kept in ascending value order; a descending field or a
		// backward scan (but not both) lists them high to low, as MongoDB does.
		flip := kp.Desc != p.Reverse
		for j, iv := range ivs {
			k := j
			if flip {
				k = len(ivs) - 1 - j
			}
			strs[k] = intervalString(iv, flip)
		}
		d[i] = bson.E{Key: kp.Field, Value: strs}
	}
	return d
}

func intervalString(iv Interval, flip bool) string {
	lo, loIncl, hi, hiIncl := iv.Lo, iv.LoIncl, iv.Hi, iv.HiIncl
	if flip {
		lo, loIncl, hi, hiIncl = hi, hiIncl, lo, loIncl
	}
	var b strings.Builder
	if loIncl {
		b.WriteByte('[')
	} else {
		b.WriteByte('(')
	}
	b.WriteString(valueString(lo))
	b.WriteString(", ")
	b.WriteString(valueString(hi))
	if hiIncl {
		b.WriteByte(']')
	} else {
		b.WriteByte(')')
	}
	return b.String()
}

func valueString(v bson.RawValue) string {
	switch v.Type {
	case bson.TypeMinKey:
		return "MinKey"
	case bson.TypeMaxKey:
		return "MaxKey"
	case bson.TypeDouble:
		f := v.Double()
		switch {
		case math.IsInf(f, 1):
			return "inf.0"
		case math.IsInf(f, -1):
			return "-inf.0"
		}
		return fmt.Sprint(f)
	case bson.TypeInt32:
		return fmt.Sprint(v.Int32())
	case bson.TypeInt64:
		return fmt.Sprint(v.Int64())
	case bson.TypeString:
		return fmt.Sprintf("%q", v.StringValue())
	}
	// Anything else in relaxed extended JSON, as mongosh shows it.
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false)
	if err != nil {
		return v.String()
	}
	return strings.TrimSuffix(strings.TrimPrefix(string(b), `{"v":`), "}")
}
