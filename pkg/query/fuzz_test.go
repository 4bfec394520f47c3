package query

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// fuzzDocs are the documents every fuzzed filter is matched against.
var fuzzDocs = []string{
	`{}`,
	`{"_id": 1, "a": 1, "b": "x"}`,
	`{"a": [1, 2, [3]], "b": {"c": null}}`,
	`{"a": [{"b": 1, "c": [1, 2]}, {"b": "x"}, 5], "d": {"$date": "2020-01-01T00:00:00Z"}}`,
	`{"a": {"b": {"c": [{"d": 1.5}]}}, "e": {"$minKey": 1}, "f": {"$numberDecimal": "NaN"}}`,
}

func fuzzSeeds(f *testing.F, seeds []any) {
	for _, s := range seeds {
		b, err := bson.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseFilter(f *testing.F) {
	fuzzSeeds(f, []any{
		bson.D{},
		bson.D{{Key: "a", Value: 1}},
		bson.D{{Key: "a.b", Value: bson.D{{Key: "$gt", Value: 1}, {Key: "$lt", Value: 5}}}},
		bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{1, "x", nil, bson.Regex{Pattern: "^a", Options: "i"}}}}}},
		bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "a", Value: nil}}, bson.D{{Key: "b", Value: bson.D{{Key: "$exists", Value: false}}}}}}},
		bson.D{{Key: "a", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "b", Value: 1}, {Key: "c", Value: bson.D{{Key: "$size", Value: 2}}}}}}}},
		bson.D{{Key: "a", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "$gte", Value: 1}}}}}},
		bson.D{{Key: "a", Value: bson.D{{Key: "$all", Value: bson.A{bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "b", Value: 1}}}}}}}}},
		bson.D{{Key: "a", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$regex", Value: "x"}, {Key: "$options", Value: "smix"}}}}}},
		bson.D{{Key: "a", Value: bson.D{{Key: "$type", Value: bson.A{"number", 2, "array"}}}}},
		bson.D{{Key: "a", Value: bson.D{{Key: "$mod", Value: bson.A{4, 1}}}}},
		bson.D{{Key: "$nor", Value: bson.A{bson.D{{Key: "a.0", Value: bson.D{{Key: "$ne", Value: 1}}}}}}},
		bson.D{{Key: "$expr", Value: bson.D{{Key: "$gt", Value: bson.A{"$a", 1}}}}},
		bson.D{{Key: "a", Value: bson.D{{Key: "$foo", Value: 1}}}},
		bson.D{{Key: "a", Value: bson.D{{Key: "$bitsAnySet", Value: bson.A{1, 70}}}}},
		bson.D{{Key: "a", Value: 1}, {Key: "b.$", Value: 1}, {Key: "c", Value: bson.D{{Key: "$slice", Value: bson.A{-1, 2}}}}},
	})
	var docs []bson.Raw
	for _, s := range fuzzDocs {
		docs = append(docs, doc(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if bson.Raw(data).Validate() != nil {
			return
		}
		flt, err := ParseFilter(data)
		if err != nil {
			return
		}
		for _, d := range docs {
			flt.Match(d)
			flt.MatchDetails(d)
		}
		flt.Predicates()
		flt.EqualityFields()
		// The filter document is also a document to match, sort and
		// project.
		flt.Match(data)
		if p, err := ParseProjection(data); err == nil {
			for _, d := range docs {
				_, _ = p.Apply(d, 0)
			}
		}
		if s, err := ParseSort(data); err == nil {
			SortDocs(append([]bson.Raw(nil), docs...), s)
		}
		Lookup(data, "a.b")
	})
}
