package plan

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/query"
)

func mustFilter(t testing.TB, f bson.D) *query.Filter {
	t.Helper()
	if f == nil {
		f = bson.D{}
	}
	raw, err := bson.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	flt, err := query.ParseFilter(raw)
	if err != nil {
		t.Fatalf("parse %v: %v", f, err)
	}
	return flt
}

func mustSort(t testing.TB, s bson.D) *query.Sort {
	t.Helper()
	raw, _ := bson.Marshal(s)
	srt, err := query.ParseSort(raw)
	if err != nil {
		t.Fatal(err)
	}
	return srt
}

var (
	idIndex = Index{Name: IDIndexName, Key: []KeyPart{{Field: "_id"}}, Unique: true}
	aIndex  = Index{Name: "a_1", Key: []KeyPart{{Field: "a"}}}
	aMulti  = Index{Name: "a_1", Key: []KeyPart{{Field: "a"}}, Multikey: true}
	abIndex = Index{Name: "a_1_b_1", Key: []KeyPart{{Field: "a"}, {Field: "b"}}}
	abDesc  = Index{Name: "a_1_b_-1", Key: []KeyPart{{Field: "a"}, {Field: "b", Desc: true}}}
	aSparse = Index{Name: "a_1", Key: []KeyPart{{Field: "a"}}, Sparse: true}
)

func TestChoose(t *testing.T) {
	cases := []struct {
		name    string
		filter  bson.D
		sort    bson.D
		indexes []Index
		// want: "COLLSCAN" or "IXSCAN <index> <bounds> [covered] [reverse]"
		want string
	}{
		{"no indexes", bson.D{{Key: "a", Value: 1}}, nil, nil, "COLLSCAN"},
		{"id equality", bson.D{{Key: "_id", Value: 5}}, nil, []Index{idIndex}, `IXSCAN _id_ _id:[5, 5]`},
		{"unindexed field", bson.D{{Key: "b", Value: 5}}, nil, []Index{idIndex, aIndex}, "COLLSCAN"},
		{"range intersected", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 1}, {Key: "$lte", Value: 5}}}}, nil,
			[]Index{idIndex, aIndex}, `IXSCAN a_1 a:(1, 5]`},
		{"multikey range not intersected", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 1}, {Key: "$lte", Value: 5}}}}, nil,
			[]Index{aMulti}, `IXSCAN a_1 a:(1, MaxKey]`},
		{"multikey prefers equality", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 1}, {Key: "$eq", Value: 3}}}}, nil,
			[]Index{aMulti}, `IXSCAN a_1 a:[3, 3]`},
		{"contradiction scans nothing", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 5}, {Key: "$lt", Value: 1}}}}, nil,
			[]Index{aIndex}, `IXSCAN a_1 a:`},
		{"in sorted and deduplicated", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{3, 1, 3.0, 2}}}}}, nil,
			[]Index{aIndex}, `IXSCAN a_1 a:[1, 1],[2, 2],[3, 3]`},
		{"compound prefix and range", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: bson.D{{Key: "$lt", Value: 9}}}}, nil,
			[]Index{aIndex, abIndex}, `IXSCAN a_1_b_1 a:[1, 1] b:[MinKey, 9)`},
		{"compound beats single", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, nil,
			[]Index{aIndex, abIndex}, `IXSCAN a_1_b_1 a:[1, 1] b:[2, 2]`},
		{"id beats equal score", bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 2}}, nil,
			[]Index{aIndex, idIndex}, `IXSCAN _id_ _id:[1, 1]`},
		{"sparse not for null", bson.D{{Key: "a", Value: nil}}, nil, []Index{aSparse}, "COLLSCAN"},
		{"sparse for value", bson.D{{Key: "a", Value: 1}}, nil, []Index{aSparse}, `IXSCAN a_1 a:[1, 1]`},
		{"sort only from index", nil, bson.D{{Key: "a", Value: -1}}, []Index{idIndex, aIndex}, `IXSCAN a_1 a:[MinKey, MaxKey] covered reverse`},
		{"sort not from multikey", nil, bson.D{{Key: "a", Value: 1}}, []Index{aMulti}, "COLLSCAN"},
		{"equality then sort", bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "b", Value: 1}},
			[]Index{abIndex}, `IXSCAN a_1_b_1 a:[1, 1] b:[MinKey, MaxKey] covered`},
		{"equality then reverse sort", bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: -1}},
			[]Index{abIndex}, `IXSCAN a_1_b_1 a:[1, 1] b:[MinKey, MaxKey] covered reverse`},
		{"mixed directions need a sort", nil, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 1}},
			[]Index{abDesc}, "COLLSCAN"},
		{"matching mixed directions", nil, bson.D{{Key: "a", Value: -1}, {Key: "b", Value: 1}},
			[]Index{abDesc}, `IXSCAN a_1_b_-1 a:[MinKey, MaxKey] b:[MinKey, MaxKey] covered reverse`},
		{"in breaks sort coverage", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{1, 2}}}}}, bson.D{{Key: "b", Value: 1}},
			[]Index{abIndex}, `IXSCAN a_1_b_1 a:[1, 1],[2, 2] b:[MinKey, MaxKey]`},
		{"or is not indexed", bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 2}}}}}, nil,
			[]Index{aIndex}, "COLLSCAN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := Query{Filter: mustFilter(t, c.filter)}
			if c.sort != nil {
				q.Sort = mustSort(t, c.sort)
			}
			if got := describe(Choose(q, c.indexes)); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func describe(p *Plan) string {
	if p.Kind == CollScan {
		return "COLLSCAN"
	}
	parts := []string{"IXSCAN", p.Index.Name}
	for i, kp := range p.Index.Key {
		var ivs []string
		for _, iv := range p.Bounds[i] {
			ivs = append(ivs, intervalString(iv, false))
		}
		parts = append(parts, kp.Field+":"+strings.Join(ivs, ","))
	}
	if p.SortCovered {
		parts = append(parts, "covered")
	}
	if p.Reverse {
		parts = append(parts, "reverse")
	}
	return strings.Join(parts, " ")
}

// TestRangesAreSuperset is the planner's invariant as a property: for
// random documents and filters, every document the filter matches has its
// index key inside one of the plan's ranges, and the ranges are sorted and
// disjoint.
func TestRangesAreSuperset(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	indexes := [][]Index{{aIndex}, {abIndex}, {abDesc}, {{Name: "b_-1_a_1", Key: []KeyPart{{Field: "b", Desc: true}, {Field: "a"}}}}}
	value := func() any {
		switch rng.IntN(6) {
		case 0:
			return nil
		case 1:
			return fmt.Sprintf("s%d", rng.IntN(4))
		case 2:
			return float64(rng.IntN(10)) / 2
		default:
			return int32(rng.IntN(8))
		}
	}
	cond := func() any {
		ops := []string{"$eq", "$gt", "$gte", "$lt", "$lte", "$in"}
		var d bson.D
		for n := 1 + rng.IntN(2); n > 0; n-- {
			op := ops[rng.IntN(len(ops))]
			if op == "$in" {
				d = append(d, bson.E{Key: op, Value: bson.A{value(), value(), value()}})
			} else {
				d = append(d, bson.E{Key: op, Value: value()})
			}
		}
		return d
	}
	for iter := 0; iter < 400; iter++ {
		var docs []bson.Raw
		for i := 0; i < 40; i++ {
			d := bson.D{{Key: "_id", Value: i}}
			if rng.IntN(8) > 0 {
				d = append(d, bson.E{Key: "a", Value: value()})
			}
			if rng.IntN(8) > 0 {
				d = append(d, bson.E{Key: "b", Value: value()})
			}
			raw, _ := bson.Marshal(d)
			docs = append(docs, raw)
		}
		fd := bson.D{{Key: "a", Value: cond()}}
		if rng.IntN(2) == 0 {
			fd = append(fd, bson.E{Key: "b", Value: cond()})
		}
		flt := mustFilter(t, fd)
		for _, ixs := range indexes {
			p := Choose(Query{Filter: flt}, ixs)
			if p.Kind != IndexScan {
				continue
			}
			rs := p.Ranges()
			for i := 1; i < len(rs); i++ {
				if rs[i-1].Hi == nil || bytes.Compare(rs[i-1].Hi, rs[i].Lo) > 0 {
					t.Fatalf("ranges overlap or unsorted for %v on %s: %x", fd, p.Index.Name, rs)
				}
			}
			for _, doc := range docs {
				if !flt.Match(doc) {
					continue
				}
				key := indexKey(doc, p.Index)
				if !inRanges(key, rs) {
					t.Fatalf("doc %v matches %v but its key on %s is outside the plan's ranges %s",
						doc, fd, p.Index.Name, describe(p))
				}
			}
		}
	}
}

func indexKey(doc bson.Raw, ix *Index) []byte {
	vals := make([]bson.RawValue, len(ix.Key))
	desc := make([]bool, len(ix.Key))
	for i, kp := range ix.Key {
		v, err := doc.LookupErr(kp.Field)
		if err != nil {
			v = bson.RawValue{Type: bson.TypeNull}
		}
		vals[i], desc[i] = v, kp.Desc
	}
	return keys.EncodeTuple(vals, desc)
}

func inRanges(key []byte, rs []Range) bool {
	for _, r := range rs {
		if (r.Lo == nil || bytes.Compare(key, r.Lo) >= 0) && (r.Hi == nil || bytes.Compare(key, r.Hi) < 0) {
			return true
		}
	}
	return false
}

func TestExplainShape(t *testing.T) {
	q := Query{
		Filter: mustFilter(t, bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 5}}}}),
		Sort:   mustSort(t, bson.D{{Key: "c", Value: 1}}),
		Skip:   2, Limit: 3,
	}
	p := Choose(q, []Index{idIndex, aIndex})
	raw, err := bson.Marshal(p.QueryPlanner("db.c"))
	if err != nil {
		t.Fatal(err)
	}
	wp := bson.Raw(raw).Lookup("winningPlan").Document()
	var stages []string
	for d := wp; ; {
		stages = append(stages, d.Lookup("stage").StringValue())
		in, err := d.LookupErr("inputStage")
		if err != nil {
			break
		}
		d = in.Document()
	}
	if got := strings.Join(stages, ">"); got != "LIMIT>SKIP>SORT>FETCH>IXSCAN" {
		t.Fatalf("stages %s", got)
	}
	bounds := bson.Raw(raw).Lookup("winningPlan", "inputStage", "inputStage", "inputStage", "inputStage", "indexBounds", "a").Array()
	if s := bounds.Index(0).StringValue(); s != "[5, MaxKey]" {
		t.Fatalf("bounds %s", s)
	}
	if lim := bson.Raw(raw).Lookup("winningPlan", "inputStage", "inputStage", "limitAmount").Int64(); lim != 5 {
		t.Fatalf("SORT limitAmount %d, want limit+skip 5", lim)
	}
	cs := Choose(Query{Filter: mustFilter(t, bson.D{{Key: "z", Value: 1}})}, []Index{idIndex})
	if s := cs.Explain()[0].Value; s != "COLLSCAN" {
		t.Fatalf("stage %v", s)
	}
}
