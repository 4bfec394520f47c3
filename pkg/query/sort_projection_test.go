package query

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func ids(t *testing.T, docs []bson.Raw) string {
	t.Helper()
	var out []string
	for _, d := range docs {
		out = append(out, relaxed(d.Lookup("_id")))
	}
	return strings.Join(out, ",")
}

func TestSortDocs(t *testing.T) {
	mixed := []string{
		`{"_id": 1, "a": "str"}`,
		`{"_id": 2, "a": 5}`,
		`{"_id": 3}`,
		`{"_id": 4, "a": null}`,
		`{"_id": 5, "a": {"x": 1}}`,
		`{"_id": 6, "a": true}`,
		`{"_id": 7, "a": {"$minKey": 1}}`,
		`{"_id": 8, "a": {"$date": "2020-01-01T00:00:00Z"}}`,
		`{"_id": 9, "a": {"$oid": "5f0000000000000000000000"}}`,
		`{"_id": 10, "a": {"$maxKey": 1}}`,
		`{"_id": 11, "a": 2.5}`,
		`{"_id": 12, "a": {"$binary": {"base64": "AA==", "subType": "00"}}}`,
	}
	arrays := []string{
		`{"_id": 1, "a": [3, 9]}`,
		`{"_id": 2, "a": 5}`,
		`{"_id": 3, "a": [1, 10]}`,
		`{"_id": 4, "a": []}`,
		`{"_id": 5, "a": null}`,
		`{"_id": 6, "a": [7]}`,
	}
	nested := []string{
		`{"_id": 1, "a": [{"b": 5}, {"b": 1}]}`,
		`{"_id": 2, "a": {"b": 3}}`,
		`{"_id": 3, "a": [{"b": 2}, {"c": 1}]}`,
		`{"_id": 4, "a": [{"b": 4}]}`,
	}
	stable := []string{
		`{"_id": 1, "a": 1, "b": 2}`,
		`{"_id": 2, "a": 0, "b": 2}`,
		`{"_id": 3, "a": 1, "b": 1}`,
		`{"_id": 4, "a": 1.0, "b": 2}`,
		`{"_id": 5, "a": 0, "b": 1}`,
	}
	cases := []struct {
		name string
		docs []string
		sort string
		want string
	}{
		{"mixed asc", mixed, `{"a": 1}`, "7,3,4,11,2,1,5,12,9,6,8,10"},
		{"mixed desc", mixed, `{"a": -1}`, "10,8,6,9,12,5,1,2,11,3,4,7"},
		{"arrays asc", arrays, `{"a": 1}`, "4,5,3,1,2,6"},
		{"arrays desc", arrays, `{"a": -1}`, "3,1,6,2,5,4"},
		{"nested asc", nested, `{"a.b": 1}`, "3,1,2,4"},
		{"nested desc", nested, `{"a.b": -1}`, "1,4,2,3"},
		{"stable single", stable, `{"a": 1}`, "2,5,1,3,4"},
		{"two keys", stable, `{"a": -1, "b": 1}`, "3,1,4,5,2"},
		{"empty sort", stable, `{}`, "1,2,3,4,5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var docs []bson.Raw
			for _, d := range c.docs {
				docs = append(docs, doc(t, d))
			}
			s, err := ParseSort(doc(t, c.sort))
			if err != nil {
				t.Fatal(err)
			}
			SortDocs(docs, s)
			if got := ids(t, docs); got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
			for i := 1; i < len(docs); i++ {
				if s.Compare(docs[i-1], docs[i]) > 0 {
					t.Errorf("Compare disagrees with SortDocs at %d", i)
				}
			}
		})
	}
}

func TestParseSortErrors(t *testing.T) {
	cases := []struct {
		spec string
		code mongoerr.Code
	}{
		{`{"a": 2}`, 15975},
		{`{"a": "x"}`, 15975},
		{`{"a": 0}`, 15975},
		{`{"a": {"$meta": "textScore"}}`, mongoerr.BadValue},
		{`{"a": {"b": 1}}`, 15974},
		{`{"": 1}`, 40352},
		{`{"a..b": 1}`, 15998},
		{`{"$a": 1}`, 16410},
	}
	for _, c := range cases {
		_, err := ParseSort(doc(t, c.spec))
		if got := mongoerr.CodeOf(err); got != c.code {
			t.Errorf("ParseSort(%s): %v, want code %d", c.spec, err, c.code)
		}
	}
	if _, err := ParseSort(doc(t, `{"a": -1.0, "b": {"$numberLong": "1"}}`)); err != nil {
		t.Errorf("numeric directions: %v", err)
	}
}

func TestProjection(t *testing.T) {
	base := `{"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "e": [{"f": 1, "g": 2}, {"f": 3}, 5, [{"f": 4, "h": 1}]], "s": [1, 2, 3, 4, 5]}`
	cases := []struct {
		proj, doc string
		pos       int
		want      string
	}{
		{`{}`, base, -1, base},
		{`{"a": 1}`, base, -1, `{"_id":1,"a":1}`},
		{`{"a": true, "_id": 0}`, base, -1, `{"a":1}`},
		{`{"_id": 0}`, `{"_id": 1, "a": 1}`, -1, `{"a":1}`},
		{`{"_id": 1}`, `{"_id": 1, "a": 1}`, -1, `{"_id":1}`},
		{`{"a": 0}`, `{"_id": 1, "a": 1, "z": 2}`, -1, `{"_id":1,"z":2}`},
		{`{"a": 0, "_id": 1}`, `{"_id": 1, "a": 1, "z": 2}`, -1, `{"_id":1,"z":2}`},
		{`{"b.c": 1}`, base, -1, `{"_id":1,"b":{"c":2}}`},
		{`{"b": {"c": 1}}`, base, -1, `{"_id":1,"b":{"c":2}}`},
		{`{"b.c": 0}`, base, -1, `{"_id":1,"a":1,"b":{"d":3},"e":[{"f":1,"g":2},{"f":3},5,[{"f":4,"h":1}]],"s":[1,2,3,4,5]}`},
		{`{"e.f": 1, "_id": 0}`, base, -1, `{"e":[{"f":1},{"f":3},[{"f":4}]]}`},
		{`{"e.f": 0, "_id": 0, "a": 0, "b": 0, "s": 0}`, base, -1, `{"e":[{"g":2},{},5,[{"h":1}]]}`},
		{`{"a.x": 1}`, base, -1, `{"_id":1}`},
		{`{"b.x": 1}`, base, -1, `{"_id":1,"b":{}}`},
		{`{"z": 1}`, base, -1, `{"_id":1}`},
		{`{"b.d": 1, "a": 1}`, base, -1, `{"_id":1,"a":1,"b":{"d":3}}`},
		{`{"s": {"$slice": 2}}`, `{"_id": 1, "s": [1, 2, 3], "z": 1}`, -1, `{"_id":1,"s":[1,2],"z":1}`},
		{`{"s": {"$slice": -2}}`, `{"_id": 1, "s": [1, 2, 3]}`, -1, `{"_id":1,"s":[2,3]}`},
		{`{"s": {"$slice": [1, 2]}}`, `{"_id": 1, "s": [1, 2, 3, 4]}`, -1, `{"_id":1,"s":[2,3]}`},
		{`{"s": {"$slice": [-3, 2]}}`, `{"_id": 1, "s": [1, 2, 3, 4]}`, -1, `{"_id":1,"s":[2,3]}`},
		{`{"s": {"$slice": [10, 2]}}`, `{"_id": 1, "s": [1, 2]}`, -1, `{"_id":1,"s":[]}`},
		{`{"s": {"$slice": 5}}`, `{"_id": 1, "s": "x"}`, -1, `{"_id":1,"s":"x"}`},
		{`{"s": {"$slice": 1}, "z": 1}`, `{"_id": 1, "s": [1, 2], "y": 0, "z": 1}`, -1, `{"_id":1,"s":[1],"z":1}`},
		{`{"s": {"$slice": 1}, "_id": 0}`, `{"_id": 1, "s": [1, 2], "y": 0}`, -1, `{"s":[1],"y":0}`},
		{`{"s": {"$slice": 1}, "y": 0}`, `{"_id": 1, "s": [1, 2], "y": 0}`, -1, `{"_id":1,"s":[1]}`},
		{`{"e": {"$elemMatch": {"f": 3}}}`, base, -1, `{"_id":1,"e":[{"f":3}]}`},
		{`{"e": {"$elemMatch": {"f": 9}}}`, base, -1, `{"_id":1}`},
		{`{"e": {"$elemMatch": {"f": 3}}, "a": 1}`, `{"_id": 1, "e": [{"f": 3}], "a": 1}`, -1, `{"_id":1,"a":1,"e":[{"f":3}]}`},
		{`{"s.$": 1}`, base, 2, `{"_id":1,"s":[3]}`},
		{`{"e.$": 1, "a": 1}`, base, 1, `{"_id":1,"a":1,"e":[{"f":3}]}`},
		{`{"x": "$a", "_id": 0}`, base, -1, `{"x":1}`},
		{`{"a": 0, "e": {"$elemMatch": {"f": 3}}}`, `{"_id": 1, "a": 1, "e": [{"f": 1}, {"f": 3}], "z": 1}`, -1, `{"_id":1,"e":[{"f":3}],"z":1}`},
		{`{"a.b.$": 1}`, `{"_id": 1, "a": [{"b": 4, "c": 1}, {"b": 5, "c": 2}]}`, 1, `{"_id":1,"a":[{"b":5}]}`},
		{`{"a.$": 1}`, `{"_id": 1, "a": 7}`, -1, `{"_id":1,"a":7}`},
		{`{"a": {"b.$": 1}}`, `{"_id": 1, "a": [{"b": 4, "c": 1}, {"b": 5, "c": 2}]}`, 1, `{"_id":1,"a":[{"b":5}]}`},
		{`{"e.f": {"$slice": 1}}`, `{"_id": 1, "e": [{"f": [1, 2], "g": 1}, {"f": 3}]}`, -1, `{"_id":1,"e":[{"f":[1],"g":1},{"f":3}]}`},
		{`{"x": {"$add": ["$a", 10]}, "a": 1}`, base, -1, `{"_id":1,"a":1,"x":11}`},
		{`{"b.x": {"$literal": 7}}`, `{"_id": 1}`, -1, `{"_id":1,"b":{"x":7}}`},
	}
	for _, c := range cases {
		p, err := ParseProjection(doc(t, c.proj))
		if err != nil {
			t.Errorf("ParseProjection(%s): %v", c.proj, err)
			continue
		}
		got, err := p.Apply(doc(t, c.doc), c.pos)
		if err != nil {
			t.Errorf("Apply(%s): %v", c.proj, err)
			continue
		}
		want := c.want
		if c.proj == `{}` {
			want = js(doc(t, c.doc))
		}
		if js(got) != want {
			t.Errorf("projection %s on %s:\n got %s\nwant %s", c.proj, c.doc, js(got), want)
		}
	}
}

func TestProjectionErrors(t *testing.T) {
	cases := []struct {
		proj string
		code mongoerr.Code
	}{
		{`{"a": 1, "b": 0}`, 31254},
		{`{"a": 0, "b": 1}`, 31253},
		{`{"a": 1, "a.b": 1}`, 31249},
		{`{"a.b": 1, "a": 1}`, 31250},
		{`{"a": {}}`, 51270},
		{`{"a": {"$slice": "x"}}`, 31273},
		{`{"a": {"$slice": [1]}}`, 31272},
		{`{"a": {"$slice": [1, 0]}}`, 31259},
		{`{"a": {"$slice": ["x", 1]}}`, 31257},
		{`{"a": {"$slice": [1, "x"]}}`, 31258},
		{`{"a.b": {"$elemMatch": {"c": 1}}}`, 31275},
		{`{"a": {"$elemMatch": 1}}`, 31274},
		{`{"a.$": 1, "b.$": 1}`, 31276},
		{`{"a.$": 1, "b": {"$elemMatch": {"c": 1}}}`, 31255},
		{`{"b": {"$elemMatch": {"c": 1}}, "a.$": 1}`, 31256},
		{`{"a.$": 0}`, 31395},
		{`{"a.$.b": 1}`, 31394},
		{`{"a.$": "x"}`, 31308},
		{`{"a.$": {"b": 1}}`, 31271},
		{`{"a": 0, "b": "$x"}`, 31310},
		{`{"a": 0, "b": {"$add": [1, 2]}}`, 31252},
		{`{"a": {"$foo": 1}}`, 31325},
		{`{"a": {"$meta": "textScore"}}`, mongoerr.BadValue},
		{`{"a..b": 1}`, 15998},
		{`{"$a": 1}`, 16410},
	}
	for _, c := range cases {
		_, err := ParseProjection(doc(t, c.proj))
		if got := mongoerr.CodeOf(err); got != c.code {
			t.Errorf("ParseProjection(%s): %v, want code %d", c.proj, err, c.code)
		}
	}
	p, err := ParseProjection(doc(t, `{"a.$": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(doc(t, `{"a": [1, 2]}`), -1); mongoerr.CodeOf(err) != 51246 {
		t.Errorf("positional without match position: %v, want 51246", err)
	}
}

func TestFindCountDistinct(t *testing.T) {
	docs := []bson.Raw{
		doc(t, `{"_id": 1, "a": 5, "t": ["x", "y"]}`),
		doc(t, `{"_id": 2, "a": 2, "t": ["y"]}`),
		doc(t, `{"_id": 3, "a": 9, "t": "z"}`),
		doc(t, `{"_id": 4, "t": [["x"], null]}`),
	}
	got, err := Find(docs, FindSpec{Filter: doc(t, `{"a": {"$gt": 1}}`), Sort: doc(t, `{"a": -1}`), Skip: 1, Limit: 1, Projection: doc(t, `{"a": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || js(got[0]) != `{"_id":1,"a":5}` {
		t.Errorf("Find: %v", got)
	}
	if _, err := Find(docs, FindSpec{Limit: -1}); mongoerr.CodeOf(err) != 51024 {
		t.Errorf("negative limit: %v", err)
	}
	n, err := Count(docs, doc(t, `{"t": "y"}`), 0, 0)
	if err != nil || n != 2 {
		t.Errorf("Count = %d, %v", n, err)
	}
	n, _ = Count(docs, nil, 1, 2)
	if n != 2 {
		t.Errorf("Count skip/limit = %d", n)
	}
	vals, err := Distinct(docs, "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, v := range vals {
		s = append(s, relaxed(v))
	}
	if strings.Join(s, ",") != `null,"x","y","z",["x"]` {
		t.Errorf("Distinct = %v", s)
	}
	if _, err := Find(docs, FindSpec{Filter: doc(t, `{"$expr": {"$divide": [1, 0]}}`)}); err == nil {
		t.Errorf("$expr evaluation error not reported")
	}
}

func TestSortParallelArraysAndNatural(t *testing.T) {
	docs := []bson.Raw{doc(t, `{"_id": 1, "a": [1, 2], "b": [3, 4]}`), doc(t, `{"_id": 2, "a": 0, "b": 1}`)}
	_, err := Find(docs, FindSpec{Sort: doc(t, `{"a": 1, "b": 1}`)})
	if mongoerr.CodeOf(err) != mongoerr.BadValue || !strings.Contains(err.Error(), "parallel arrays") {
		t.Errorf("parallel arrays: %v", err)
	}
	shared := []bson.Raw{doc(t, `{"_id": 1, "a": [{"b": 2, "c": 1}, {"b": 1, "c": 5}]}`), doc(t, `{"_id": 2, "a": {"b": 1, "c": 0}}`)}
	got, err := Find(shared, FindSpec{Sort: doc(t, `{"a.b": 1, "a.c": 1}`)})
	if err != nil || ids(t, got) != "2,1" {
		t.Errorf("one shared array: %v %v", ids(t, got), err)
	}
	got, err = Find(docs, FindSpec{Sort: doc(t, `{"$natural": -1}`)})
	if err != nil || ids(t, got) != "2,1" {
		t.Errorf("$natural -1: %v %v", ids(t, got), err)
	}
	if _, err := ParseSort(doc(t, `{"$natural": 1, "a": 1}`)); mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Errorf("$natural with fields: %v", err)
	}
}
