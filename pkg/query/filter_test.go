package query

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestMatch(t *testing.T) {
	type tc struct {
		filter, doc string
		want        bool
	}
	groups := map[string][]tc{
		"eq": {
			{`{"a": 1}`, `{"a": 1}`, true},
			{`{"a": 1}`, `{"a": 1.0}`, true},
			{`{"a": 1}`, `{"a": {"$numberLong": "1"}}`, true},
			{`{"a": 1}`, `{"a": {"$numberDecimal": "1.00"}}`, true},
			{`{"a": 1}`, `{"a": "1"}`, false},
			{`{"a": 1}`, `{"b": 1}`, false},
			{`{"a": 1}`, `{"a": [0, 1]}`, true},
			{`{"a": 1}`, `{"a": [[1]]}`, false},
			{`{"a": [1]}`, `{"a": [[1]]}`, true},
			{`{"a": [1, 2]}`, `{"a": [1, 2]}`, true},
			{`{"a": [1, 2]}`, `{"a": [2, 1]}`, false},
			{`{"a": {"$eq": 1}}`, `{"a": [3, 1]}`, true},
			{`{"a": {"b": 1, "c": 2}}`, `{"a": {"b": 1, "c": 2}}`, true},
			{`{"a": {"b": 1, "c": 2}}`, `{"a": {"c": 2, "b": 1}}`, false},
			{`{"a": {"b": 1}}`, `{"a": {"b": 1, "c": 2}}`, false},
			{`{"a.b": 1}`, `{"a": {"b": 1}}`, true},
			{`{"a.b": 1}`, `{"a": [{"b": 0}, {"b": 1}]}`, true},
			{`{"a.b": 1}`, `{"a": [{"b": [0, 1]}]}`, true},
			{`{"a.b": 1}`, `{"a": [[{"b": 1}]]}`, false},
			{`{"a.b.c": 1}`, `{"a": [{"b": [{"c": 1}]}]}`, true},
			{`{"a.1": 5}`, `{"a": [4, 5]}`, true},
			{`{"a.0": 5}`, `{"a": [4, 5]}`, false},
			{`{"a.1.b": 5}`, `{"a": [{"b": 4}, {"b": 5}]}`, true},
			{`{"a.0.b": 5}`, `{"a": [{"b": 4}, {"b": 5}]}`, false},
			{`{"a.0": 5}`, `{"a": {"0": 5}}`, true},
			{`{"a.0": 1}`, `{"a": [[1, 2]]}`, false},
			{`{"a.0": [1, 2]}`, `{"a": [[1, 2]]}`, true},
			{`{"a.0.1": 2}`, `{"a": [[1, 2]]}`, true},
			{`{"a.0.b": null}`, `{"a": [5]}`, false},
			// MongoDB's iterator also searches document elements for a
			// field named "0", which is missing here.
			{`{"a.0": null}`, `{"a": [{"x": 1}]}`, true},
			{`{"a.0.x": 1}`, `{"a": [{"x": 1}]}`, true},
			{`{"a": {"$minKey": 1}}`, `{"a": {"$minKey": 1}}`, true},
			{`{"a": {"$maxKey": 1}}`, `{"a": 1}`, false},
			{`{"a": {"$numberDouble": "NaN"}}`, `{"a": {"$numberDouble": "NaN"}}`, true},
			{`{"a": {"$eq": {"$regularExpression": {"pattern": "x", "options": ""}}}}`, `{"a": "x"}`, false},
			{`{"a": {"$eq": {"$regularExpression": {"pattern": "x", "options": ""}}}}`, `{"a": {"$regularExpression": {"pattern": "x", "options": ""}}}`, true},
			{`{}`, `{"a": 1}`, true},
		},
		"null": {
			{`{"a": null}`, `{"a": null}`, true},
			{`{"a": null}`, `{}`, true},
			{`{"a": null}`, `{"a": [1, null]}`, true},
			{`{"a": null}`, `{"a": []}`, false},
			{`{"a": null}`, `{"a": 0}`, false},
			{`{"a": null}`, `{"a": {"$undefined": true}}`, false},
			{`{"a.b": null}`, `{"a": 4}`, true},
			{`{"a.b": null}`, `{"a": [{"b": 1}, {}]}`, true},
			{`{"a.b": null}`, `{"a": [{"b": 1}, {"b": 2}]}`, false},
			{`{"a.b": null}`, `{"a": [1, 2]}`, false},
			{`{"a": {"$ne": null}}`, `{}`, false},
			{`{"a": {"$ne": null}}`, `{"a": 1}`, true},
			{`{"a": {"$gte": null}}`, `{}`, true},
			{`{"a": {"$gt": null}}`, `{"a": 1}`, false},
			{`{"a": {"$lt": null}}`, `{}`, false},
			{`{"a": {"$in": [null]}}`, `{}`, true},
			{`{"a": {"$nin": [null]}}`, `{}`, false},
		},
		"ne": {
			{`{"a": {"$ne": 1}}`, `{"a": 2}`, true},
			{`{"a": {"$ne": 1}}`, `{"a": [1, 2]}`, false},
			{`{"a": {"$ne": 1}}`, `{}`, true},
			{`{"a": {"$ne": [1, 2]}}`, `{"a": [1, 2]}`, false},
			{`{"a.b": {"$ne": 1}}`, `{"a": [{"b": 2}, {"b": 1}]}`, false},
		},
		"comparison": {
			{`{"a": {"$gt": 1}}`, `{"a": 2}`, true},
			{`{"a": {"$gt": 1}}`, `{"a": 1}`, false},
			{`{"a": {"$gte": 1}}`, `{"a": 1}`, true},
			{`{"a": {"$lt": 1}}`, `{"a": 0.5}`, true},
			{`{"a": {"$lte": 1}}`, `{"a": {"$numberDecimal": "1.0"}}`, true},
			{`{"a": {"$gt": 1}}`, `{"a": "2"}`, false},
			{`{"a": {"$lt": "b"}}`, `{"a": "a"}`, true},
			{`{"a": {"$lt": "b"}}`, `{"a": 1}`, false},
			{`{"a": {"$gt": 1}}`, `{"a": [0, 5]}`, true},
			{`{"a": {"$gt": 1, "$lt": 3}}`, `{"a": [0, 5]}`, true},
			{`{"a": {"$elemMatch": {"$gt": 1, "$lt": 3}}}`, `{"a": [0, 5]}`, false},
			{`{"a": {"$gt": {"$minKey": 1}}}`, `{"a": "x"}`, true},
			{`{"a": {"$lt": {"$maxKey": 1}}}`, `{"a": {"x": 1}}`, true},
			{`{"a": {"$gt": {"$maxKey": 1}}}`, `{"a": 1}`, false},
			{`{"a": {"$lt": {"$maxKey": 1}}}`, `{}`, true},
			{`{"a": {"$gte": {"$minKey": 1}}}`, `{}`, true},
			{`{"a": {"$eq": {"$minKey": 1}}}`, `{}`, false},
			{`{"a": {"$gt": 1}}`, `{}`, false},
			{`{"a": {"$gt": {"$numberDouble": "NaN"}}}`, `{"a": 1}`, false},
			{`{"a": {"$lt": 1}}`, `{"a": {"$numberDouble": "NaN"}}`, false},
			{`{"a": {"$gte": {"$numberDouble": "NaN"}}}`, `{"a": {"$numberDouble": "NaN"}}`, true},
			{`{"a": {"$gt": {"$date": "2020-01-01T00:00:00Z"}}}`, `{"a": {"$date": "2021-01-01T00:00:00Z"}}`, true},
			{`{"a": {"$gt": {"$date": "2020-01-01T00:00:00Z"}}}`, `{"a": 5}`, false},
			{`{"a": {"$gt": [1]}}`, `{"a": [2]}`, true},
			{`{"a": {"$gt": {"b": 1}}}`, `{"a": {"b": 2}}`, true},
			{`{"a": {"$lt": true}}`, `{"a": false}`, true},
		},
		"in": {
			{`{"a": {"$in": [1, 2]}}`, `{"a": 2}`, true},
			{`{"a": {"$in": [1, 2]}}`, `{"a": 3}`, false},
			{`{"a": {"$in": [1, 2]}}`, `{"a": [3, 2]}`, true},
			{`{"a": {"$in": [[3, 2]]}}`, `{"a": [3, 2]}`, true},
			{`{"a": {"$in": []}}`, `{"a": 1}`, false},
			{`{"a": {"$in": [{"$regularExpression": {"pattern": "^x", "options": ""}}, 5]}}`, `{"a": "xyz"}`, true},
			{`{"a": {"$in": [{"$regularExpression": {"pattern": "^x", "options": ""}}, 5]}}`, `{"a": 5.0}`, true},
			{`{"a": {"$in": ["a", 1, null, {"b": 1}]}}`, `{"a": {"b": 1}}`, true},
			{`{"a": {"$nin": [1, 2]}}`, `{"a": 3}`, true},
			{`{"a": {"$nin": [1, 2]}}`, `{"a": [3, 1]}`, false},
			{`{"a": {"$nin": [1, 2]}}`, `{}`, true},
		},
		"exists": {
			{`{"a": {"$exists": true}}`, `{"a": null}`, true},
			{`{"a": {"$exists": true}}`, `{}`, false},
			{`{"a": {"$exists": false}}`, `{}`, true},
			{`{"a": {"$exists": 0}}`, `{"a": 1}`, false},
			{`{"a.b": {"$exists": true}}`, `{"a": [{"c": 1}, {"b": null}]}`, true},
			{`{"a.b": {"$exists": false}}`, `{"a": [1, 2]}`, true},
			{`{"a": {"$exists": true}}`, `{"a": []}`, true},
		},
		"type": {
			{`{"a": {"$type": "string"}}`, `{"a": "x"}`, true},
			{`{"a": {"$type": 2}}`, `{"a": "x"}`, true},
			{`{"a": {"$type": "number"}}`, `{"a": {"$numberLong": "5"}}`, true},
			{`{"a": {"$type": "number"}}`, `{"a": "5"}`, false},
			{`{"a": {"$type": ["string", "double"]}}`, `{"a": 1.5}`, true},
			{`{"a": {"$type": "array"}}`, `{"a": []}`, true},
			{`{"a": {"$type": "array"}}`, `{"a": 1}`, false},
			{`{"a": {"$type": "int"}}`, `{"a": [1.5, 2]}`, true},
			{`{"a": {"$type": "null"}}`, `{}`, false},
			{`{"a": {"$type": "minKey"}}`, `{"a": {"$minKey": 1}}`, true},
			{`{"a": {"$type": -1}}`, `{"a": {"$minKey": 1}}`, true},
			{`{"a": {"$type": 127}}`, `{"a": {"$maxKey": 1}}`, true},
			{`{"a": {"$type": "object"}}`, `{"a": {"b": 1}}`, true},
			{`{"a": {"$type": "bool"}}`, `{"a": false}`, true},
		},
		"regex": {
			{`{"a": {"$regex": "^ab"}}`, `{"a": "abc"}`, true},
			{`{"a": {"$regex": "^ab"}}`, `{"a": "ABC"}`, false},
			{`{"a": {"$regex": "^ab", "$options": "i"}}`, `{"a": "ABC"}`, true},
			{`{"a": {"$regularExpression": {"pattern": "^ab", "options": "i"}}}`, `{"a": "ABC"}`, true},
			{`{"a": {"$regex": {"$regularExpression": {"pattern": "^ab", "options": "i"}}}}`, `{"a": "ABC"}`, true},
			{`{"a": {"$regex": "^b", "$options": "m"}}`, `{"a": "a\nb"}`, true},
			{`{"a": {"$regex": "^b"}}`, `{"a": "a\nb"}`, false},
			{`{"a": {"$regex": "a.b", "$options": "s"}}`, `{"a": "a\nb"}`, true},
			{`{"a": {"$regex": "a.b"}}`, `{"a": "a\nb"}`, false},
			{`{"a": {"$regex": "a b # comment\n c", "$options": "x"}}`, `{"a": "abc"}`, true},
			{`{"a": {"$regex": "[ ]x", "$options": "x"}}`, `{"a": " x"}`, true},
			{`{"a": {"$regex": "b"}}`, `{"a": ["abc", 1]}`, true},
			{`{"a": {"$regex": "1"}}`, `{"a": 1}`, false},
			{`{"a": {"$regex": "b"}}`, `{"a": {"$symbol": "abc"}}`, true},
			{`{"a": {"$regularExpression": {"pattern": "x", "options": ""}}}`, `{"a": {"$regularExpression": {"pattern": "x", "options": ""}}}`, true},
			{`{"a": {"$not": {"$regularExpression": {"pattern": "^a", "options": ""}}}}`, `{"a": "bcd"}`, true},
			{`{"a": {"$not": {"$regularExpression": {"pattern": "^a", "options": ""}}}}`, `{"a": "abc"}`, false},
			{`{"a": {"$not": {"$regex": "^a"}}}`, `{}`, true},
		},
		"logical": {
			{`{"$and": [{"a": 1}, {"b": 2}]}`, `{"a": 1, "b": 2}`, true},
			{`{"$and": [{"a": 1}, {"b": 2}]}`, `{"a": 1, "b": 3}`, false},
			{`{"$or": [{"a": 1}, {"b": 2}]}`, `{"a": 0, "b": 2}`, true},
			{`{"$or": [{"a": 1}, {"b": 2}]}`, `{"a": 0, "b": 0}`, false},
			{`{"$nor": [{"a": 1}, {"b": 2}]}`, `{"a": 0, "b": 0}`, true},
			{`{"$nor": [{"a": 1}, {"b": 2}]}`, `{"a": 1}`, false},
			{`{"a": {"$not": {"$gt": 5}}}`, `{"a": 3}`, true},
			{`{"a": {"$not": {"$gt": 5}}}`, `{}`, true},
			{`{"a": {"$not": {"$gt": 5}}}`, `{"a": [1, 6]}`, false},
			{`{"a": {"$not": {"$gt": 5}}}`, `{"a": "x"}`, true},
			{`{"$alwaysFalse": 1}`, `{}`, false},
			{`{"$comment": "hi", "a": 1}`, `{"a": 1}`, true},
		},
		"elemMatch": {
			{`{"a": {"$elemMatch": {"b": 1, "c": 2}}}`, `{"a": [{"b": 1, "c": 2}]}`, true},
			{`{"a": {"$elemMatch": {"b": 1, "c": 2}}}`, `{"a": [{"b": 1}, {"c": 2}]}`, false},
			{`{"a.b": 1, "a.c": 2}`, `{"a": [{"b": 1}, {"c": 2}]}`, true},
			{`{"a": {"$elemMatch": {"$gte": 80, "$lt": 85}}}`, `{"a": [82, 90]}`, true},
			{`{"a": {"$elemMatch": {"$gte": 80, "$lt": 85}}}`, `{"a": [79, 90]}`, false},
			{`{"a": {"$elemMatch": {"$gt": 1}}}`, `{"a": 5}`, false},
			{`{"a": {"$elemMatch": {"$gt": 1}}}`, `{"a": [[5]]}`, false},
			{`{"a": {"$elemMatch": {"$elemMatch": {"$gt": 1}}}}`, `{"a": [[5]]}`, true},
			{`{"a": {"$elemMatch": {"$not": {"$gt": 5}}}}`, `{"a": [9, 3]}`, true},
			{`{"a": {"$elemMatch": {"$ne": 9}}}`, `{"a": [9, 9]}`, false},
			{`{"a": {"$elemMatch": {}}}`, `{"a": [{"x": 1}]}`, true},
			{`{"a": {"$elemMatch": {}}}`, `{"a": [1]}`, false},
			{`{"a": {"$elemMatch": {"$or": [{"b": 1}, {"c": 1}]}}}`, `{"a": [{"c": 1}]}`, true},
			{`{"a.b": {"$elemMatch": {"c": 1}}}`, `{"a": [{"b": [{"c": 1}]}]}`, true},
			{`{"a": {"$elemMatch": {"0": 1}}}`, `{"a": [[1, 2]]}`, true},
		},
		"size": {
			{`{"a": {"$size": 2}}`, `{"a": [1, 2]}`, true},
			{`{"a": {"$size": 1}}`, `{"a": [[1, 2]]}`, true},
			{`{"a": {"$size": 2}}`, `{"a": [[1, 2]]}`, false},
			{`{"a": {"$size": 0}}`, `{"a": []}`, true},
			{`{"a": {"$size": 0}}`, `{}`, false},
			{`{"a.b": {"$size": 1}}`, `{"a": [{"b": [1]}, {"b": 2}]}`, true},
		},
		"all": {
			{`{"a": {"$all": [1, 2]}}`, `{"a": [2, 3, 1]}`, true},
			{`{"a": {"$all": [1, 2]}}`, `{"a": [2, 3]}`, false},
			{`{"a": {"$all": [1]}}`, `{"a": 1}`, true},
			{`{"a": {"$all": []}}`, `{"a": []}`, false},
			{`{"a": {"$all": [[1, 2]]}}`, `{"a": [1, 2]}`, true},
			{`{"a": {"$all": [[1, 2]]}}`, `{"a": [[1, 2], 3]}`, true},
			{`{"a": {"$all": [{"$regularExpression": {"pattern": "^x", "options": ""}}, "yy"]}}`, `{"a": ["xa", "yy"]}`, true},
			{`{"a": {"$all": [{"$elemMatch": {"b": 1}}, {"$elemMatch": {"c": 1}}]}}`, `{"a": [{"b": 1}, {"c": 1}]}`, true},
			{`{"a": {"$all": [{"$elemMatch": {"b": 1}}, {"$elemMatch": {"c": 1}}]}}`, `{"a": [{"b": 1}]}`, false},
		},
		"mod": {
			{`{"a": {"$mod": [4, 0]}}`, `{"a": 8}`, true},
			{`{"a": {"$mod": [4, 0]}}`, `{"a": 9}`, false},
			{`{"a": {"$mod": [4, 1]}}`, `{"a": 9.9}`, true},
			{`{"a": {"$mod": [4, -1]}}`, `{"a": -5}`, true},
			{`{"a": {"$mod": [4, 0]}}`, `{"a": "8"}`, false},
			{`{"a": {"$mod": [4, 0]}}`, `{"a": [1, 4]}`, true},
			{`{"a": {"$mod": [-1, 0]}}`, `{"a": {"$numberLong": "-9223372036854775808"}}`, true},
		},
		"bits": {
			{`{"a": {"$bitsAllSet": 5}}`, `{"a": 7}`, true},
			{`{"a": {"$bitsAllSet": 5}}`, `{"a": 6}`, false},
			{`{"a": {"$bitsAllSet": [0, 2]}}`, `{"a": 13.0}`, true},
			{`{"a": {"$bitsAnySet": [1, 5]}}`, `{"a": 32}`, true},
			{`{"a": {"$bitsAllClear": 3}}`, `{"a": 4}`, true},
			{`{"a": {"$bitsAnyClear": 3}}`, `{"a": 3}`, false},
			{`{"a": {"$bitsAllSet": [70]}}`, `{"a": -1}`, true},
			{`{"a": {"$bitsAllSet": 1}}`, `{"a": 1.5}`, false},
			{`{"a": {"$bitsAllSet": 1}}`, `{"a": "1"}`, false},
			{`{"a": {"$bitsAllSet": [9]}}`, `{"a": {"$binary": {"base64": "AAI=", "subType": "00"}}}`, true},
			{`{"a": {"$bitsAllSet": {"$binary": {"base64": "BQ==", "subType": "00"}}}}`, `{"a": 5}`, true},
			{`{"a": {"$bitsAnySet": 2}}`, `{"a": [1, 2]}`, true},
		},
		"expr": {
			{`{"$expr": {"$gt": ["$a", "$b"]}}`, `{"a": 3, "b": 2}`, true},
			{`{"$expr": {"$gt": ["$a", "$b"]}}`, `{"a": 1, "b": 2}`, false},
			{`{"$expr": {"$eq": ["$a", 1]}, "b": 2}`, `{"a": 1, "b": 2}`, true},
			{`{"$or": [{"$expr": {"$eq": ["$a", 5]}}, {"a": 1}]}`, `{"a": 5}`, true},
		},
	}
	for group, cases := range groups {
		for _, c := range cases {
			t.Run(group+"/"+c.filter+"~"+c.doc, func(t *testing.T) {
				f, err := ParseFilter(doc(t, c.filter))
				if err != nil {
					t.Fatalf("ParseFilter: %v", err)
				}
				if got := f.Match(doc(t, c.doc)); got != c.want {
					t.Errorf("Match(%s, %s) = %v, want %v", c.filter, c.doc, got, c.want)
				}
			})
		}
	}
}

func TestMatchDetailsArrayPos(t *testing.T) {
	cases := []struct {
		filter, doc string
		ok          bool
		pos         int
	}{
		{`{"a": 5}`, `{"a": [1, 5, 5]}`, true, 1},
		{`{"a": 5}`, `{"a": 5}`, true, -1},
		{`{"a.b": 2}`, `{"a": [{"b": 1}, {"b": 2}]}`, true, 1},
		{`{"a": {"$elemMatch": {"b": 2}}}`, `{"a": [{"b": 1}, {"b": 2}]}`, true, 1},
		{`{"a": {"$gt": 3}}`, `{"a": [1, 5]}`, true, 1},
		{`{"x": 1, "a": {"$gt": 3}}`, `{"x": 1, "a": [1, 2, 7]}`, true, 2},
		{`{"a": [1, 2]}`, `{"a": [1, 2]}`, true, -1},
		{`{"a": {"$ne": 1}}`, `{"a": [2, 3]}`, true, -1},
		{`{"$or": [{"a": 9}, {"a": 3}]}`, `{"a": [1, 3]}`, true, 1},
		{`{"a": 9}`, `{"a": [1, 3]}`, false, -1},
	}
	for _, c := range cases {
		f, err := ParseFilter(doc(t, c.filter))
		if err != nil {
			t.Fatal(err)
		}
		ok, pos := f.MatchDetails(doc(t, c.doc))
		if ok != c.ok || pos != c.pos {
			t.Errorf("MatchDetails(%s, %s) = %v, %d; want %v, %d", c.filter, c.doc, ok, pos, c.ok, c.pos)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	cases := []struct {
		filter string
		code   mongoerr.Code
		msg    string
	}{
		{`{"a": {"$foo": 1}}`, mongoerr.BadValue, "unknown operator: $foo"},
		{`{"$foo": 1}`, mongoerr.BadValue, "unknown top level operator: $foo"},
		{`{"a": {"$gt": 1, "b": 1}}`, mongoerr.BadValue, "unknown operator: b"},
		{`{"a": {"$in": 1}}`, mongoerr.BadValue, "$in needs an array"},
		{`{"a": {"$nin": {"x": 1}}}`, mongoerr.BadValue, "$nin needs an array"},
		{`{"a": {"$in": [{"$gt": 1}]}}`, mongoerr.BadValue, "cannot nest $ under $in"},
		{`{"a": {"$size": "x"}}`, mongoerr.BadValue, "$size needs a number"},
		{`{"a": {"$size": -1}}`, mongoerr.BadValue, "$size may not be negative"},
		{`{"a": {"$size": 1.5}}`, mongoerr.BadValue, "$size must be a whole number"},
		{`{"a": {"$regex": "("}}`, 51091, "Regular expression is invalid"},
		{`{"a": {"$regex": "(?=x)"}}`, mongoerr.BadValue, "does not support"},
		{`{"a": {"$regex": "(a)\\1"}}`, mongoerr.BadValue, "does not support"},
		{`{"a": {"$regex": "a", "$options": "z"}}`, 51108, "invalid flag"},
		{`{"a": {"$regex": 1}}`, mongoerr.BadValue, "$regex has to be a string"},
		{`{"a": {"$options": "i"}}`, mongoerr.BadValue, "$options needs a $regex"},
		{`{"a": {"$regex": {"$regularExpression": {"pattern": "a", "options": "i"}}, "$options": "m"}}`, 51075, "options set in both"},
		{`{"$and": []}`, mongoerr.BadValue, "nonempty"},
		{`{"$or": {}}`, mongoerr.BadValue, "must be an array"},
		{`{"$nor": [1]}`, mongoerr.BadValue, "full objects"},
		{`{"a": {"$not": {}}}`, mongoerr.BadValue, "$not cannot be empty"},
		{`{"a": {"$not": 5}}`, mongoerr.BadValue, "$not needs a regex or a document"},
		{`{"a": {"$elemMatch": 5}}`, mongoerr.BadValue, "$elemMatch needs an Object"},
		{`{"a": {"$all": 5}}`, mongoerr.BadValue, "$all needs an array"},
		{`{"a": {"$all": [{"$elemMatch": {"b": 1}}, 5]}}`, mongoerr.BadValue, "consistent"},
		{`{"a": {"$mod": 5}}`, mongoerr.BadValue, "needs to be an array"},
		{`{"a": {"$mod": [5]}}`, mongoerr.BadValue, "not enough elements"},
		{`{"a": {"$mod": [5, 1, 2]}}`, mongoerr.BadValue, "too many elements"},
		{`{"a": {"$mod": [0, 1]}}`, mongoerr.BadValue, "divisor cannot be 0"},
		{`{"a": {"$mod": ["x", 1]}}`, mongoerr.BadValue, "divisor not a number"},
		{`{"a": {"$type": "foo"}}`, mongoerr.BadValue, "Unknown type name alias: foo"},
		{`{"a": {"$type": 99}}`, mongoerr.BadValue, "Invalid numerical type code"},
		{`{"a": {"$type": {}}}`, mongoerr.TypeMismatch, "number or a string"},
		{`{"a": {"$ne": {"$regularExpression": {"pattern": "a", "options": ""}}}}`, mongoerr.BadValue, "regex"},
		{`{"a": {"$elemMatch": {"$expr": {"$eq": [1, 1]}}}}`, mongoerr.BadValue, "top-level"},
		{`{"$where": "this.a"}`, mongoerr.BadValue, "not supported"},
		{`{"a": {"$near": [0, 0]}}`, mongoerr.BadValue, "not supported"},
		{`{"a": {"$bitsAllSet": -1}}`, mongoerr.BadValue, "negative"},
		{`{"a": {"$bitsAllSet": "x"}}`, mongoerr.BadValue, "takes an Array"},
		{`{"a": {"$bitsAnySet": [1.5]}}`, mongoerr.BadValue, "integers"},
		{`{"$expr": {"$foo": 1}}`, mongoerr.InvalidPipelineOperator, ""},
	}
	for _, c := range cases {
		_, err := ParseFilter(doc(t, c.filter))
		if err == nil {
			t.Errorf("ParseFilter(%s): no error, want code %d", c.filter, c.code)
			continue
		}
		if got := mongoerr.CodeOf(err); got != c.code {
			t.Errorf("ParseFilter(%s): code %d (%v), want %d", c.filter, got, err, c.code)
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseFilter(%s): %q does not mention %q", c.filter, err.Error(), c.msg)
		}
	}
}

func TestParseFilterDepth(t *testing.T) {
	nest := func(n int, open, close string, leaf string) string {
		return strings.Repeat(open, n) + leaf + strings.Repeat(close, n)
	}
	cases := []struct {
		name   string
		filter string
		ok     bool
	}{
		{"and99", nest(99, `{"$and": [`, `]}`, `{"a": 1}`), true},
		{"and101", nest(101, `{"$and": [`, `]}`, `{"a": 1}`), false},
		{"not150", `{"a": ` + nest(150, `{"$not": `, `}`, `{"$gt": 1}`) + `}`, false},
		{"elemMatch99", `{"a": ` + nest(98, `{"$elemMatch": {"b": `, `}}`, `1`) + `}`, true},
	}
	var em any = int32(1)
	for i := 0; i < 150; i++ {
		em = bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "b", Value: em}}}}
	}
	deep, err := bson.Marshal(bson.D{{Key: "a", Value: em}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFilter(deep); mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Errorf("elemMatch150: got %v, want BadValue", err)
	}
	for _, c := range cases {
		_, err := ParseFilter(doc(t, c.filter))
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && mongoerr.CodeOf(err) != mongoerr.BadValue {
			t.Errorf("%s: got %v, want BadValue", c.name, err)
		}
	}
}

func TestPredicatesAndEqualityFields(t *testing.T) {
	f, err := ParseFilter(doc(t, `{"a": 1, "b": {"$gt": 2, "$lte": 9}, "c": {"$in": [3, 1]}, "d": {"$ne": 1},
		"$and": [{"e.f": "x"}, {"g": {"$eq": null}}], "$or": [{"h": 1}], "r": {"$regularExpression": {"pattern": "x", "options": ""}},
		"arr": [1, 2]}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range f.Predicates() {
		s := p.Path + " " + p.Op
		for _, v := range p.Values {
			s += " " + v.String()
		}
		got = append(got, s)
	}
	want := []string{`a $eq {"$numberInt":"1"}`, `b $gt {"$numberInt":"2"}`, `b $lte {"$numberInt":"9"}`,
		`c $in {"$numberInt":"1"} {"$numberInt":"3"}`, `e.f $eq "x"`, `g $eq null`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Predicates:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	eq := f.EqualityFields()
	for _, p := range []string{"a", "e.f", "g", "arr"} {
		if _, ok := eq[p]; !ok {
			t.Errorf("EqualityFields lacks %s: %v", p, eq)
		}
	}
	for _, p := range []string{"b", "c", "d", "h", "r"} {
		if _, ok := eq[p]; ok {
			t.Errorf("EqualityFields has %s", p)
		}
	}
}

func TestLookup(t *testing.T) {
	cases := []struct {
		doc, path string
		want      []string
	}{
		{`{"a": 1}`, "a", []string{"1"}},
		{`{"a": [1, [2, 3]]}`, "a", []string{"1", "[2,3]"}},
		{`{"a": [{"b": 1}, {"b": [2, 3]}, {"c": 1}, 7]}`, "a.b", []string{"1", "2", "3"}},
		{`{"a": [{"b": 1}, {"b": 2}]}`, "a.1.b", []string{"2"}},
		{`{"a": {"b": null}}`, "a.b", []string{"null"}},
		{`{"a": 1}`, "a.b", nil},
		{`{}`, "a", nil},
	}
	for _, c := range cases {
		var got []string
		for _, v := range Lookup(doc(t, c.doc), c.path) {
			got = append(got, relaxed(v))
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("Lookup(%s, %s) = %v, want %v", c.doc, c.path, got, c.want)
		}
	}
}
