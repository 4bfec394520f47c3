package update

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func mustDoc(t testing.TB, js string) bson.Raw {
	t.Helper()
	var d bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(js), false, &d); err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	return d
}

// canonical renders a document as canonical extended JSON, so that
// comparisons see BSON types and field order.
func canonical(t testing.TB, d bson.Raw) string {
	t.Helper()
	b, err := bson.MarshalExtJSON(d, true, false)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return string(b)
}

type applyCase struct {
	name    string
	doc     string
	update  string
	filters []string
	// pos is ApplyContext.MatchPos+1, so that the zero value means "no
	// positional match".
	pos       int
	inserting bool
	// want is the expected document; empty when an error is expected.
	want string
	// code is the expected error code (from Parse or Apply).
	code mongoerr.Code
	// noop says the update must report modified=false.
	noop bool
}

var fixedNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func runApplyCases(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var opts Options
			for _, f := range c.filters {
				opts.ArrayFilters = append(opts.ArrayFilters, mustDoc(t, f))
			}
			in := mustDoc(t, c.doc)
			inCopy := append(bson.Raw(nil), in...)
			u, err := Parse(mustDoc(t, c.update), opts)
			var out bson.Raw
			var modified bool
			if err == nil {
				out, modified, err = u.Apply(in, ApplyContext{Now: fixedNow, Inserting: c.inserting, MatchPos: c.pos - 1})
			}
			if !bytes.Equal(in, inCopy) {
				t.Fatalf("Apply modified its input")
			}
			if c.code != 0 {
				if mongoerr.CodeOf(err) != c.code {
					t.Fatalf("want error code %d, got %v (doc %v)", c.code, err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			want := canonical(t, mustDoc(t, c.want))
			if got := canonical(t, out); got != want {
				t.Fatalf("\n got: %s\nwant: %s", got, want)
			}
			if modified == c.noop {
				t.Fatalf("modified = %v, want %v", modified, !c.noop)
			}
		})
	}
}

func TestSet(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "existing field keeps position", doc: `{"_id": 1, "a": 1, "b": 2}`, update: `{"$set": {"a": 5}}`, want: `{"_id": 1, "a": 5, "b": 2}`},
		{name: "new field appended", doc: `{"_id": 1, "b": 2}`, update: `{"$set": {"a": 5}}`, want: `{"_id": 1, "b": 2, "a": 5}`},
		{name: "new fields in lexicographic order", doc: `{"_id": 1}`, update: `{"$set": {"z": 1, "b": 2, "a": 3}}`, want: `{"_id": 1, "a": 3, "b": 2, "z": 1}`},
		{name: "order across operators", doc: `{"_id": 1}`, update: `{"$set": {"y": 1}, "$inc": {"x": 1}}`, want: `{"_id": 1, "x": 1, "y": 1}`},
		{name: "numeric array positions in numeric order", doc: `{"_id": 1, "a": []}`, update: `{"$set": {"a.10": 1, "a.2": 2}}`, want: `{"_id": 1, "a": [null, null, 2, null, null, null, null, null, null, null, 1]}`},
		{name: "nested creates documents", doc: `{"_id": 1}`, update: `{"$set": {"a.b.c": 1}}`, want: `{"_id": 1, "a": {"b": {"c": 1}}}`},
		{name: "numeric component on missing creates document", doc: `{"_id": 1}`, update: `{"$set": {"a.0.b": 1}}`, want: `{"_id": 1, "a": {"0": {"b": 1}}}`},
		{name: "into existing subdocument", doc: `{"_id": 1, "a": {"x": 1}}`, update: `{"$set": {"a.y": 2}}`, want: `{"_id": 1, "a": {"x": 1, "y": 2}}`},
		{name: "array index", doc: `{"_id": 1, "a": [1, 2, 3]}`, update: `{"$set": {"a.1": 9}}`, want: `{"_id": 1, "a": [1, 9, 3]}`},
		{name: "array index pads with nulls", doc: `{"_id": 1, "a": [1]}`, update: `{"$set": {"a.3": 9}}`, want: `{"_id": 1, "a": [1, null, null, 9]}`},
		{name: "field inside array element", doc: `{"_id": 1, "a": [{"b": 1}, {"b": 2}]}`, update: `{"$set": {"a.1.b": 5}}`, want: `{"_id": 1, "a": [{"b": 1}, {"b": 5}]}`},
		{name: "same value is a no-op", doc: `{"_id": 1, "a": 1}`, update: `{"$set": {"a": 1}}`, want: `{"_id": 1, "a": 1}`, noop: true},
		{name: "same number of another type changes the type", doc: `{"_id": 1, "a": 1}`, update: `{"$set": {"a": 1.0}}`, want: `{"_id": 1, "a": 1.0}`},
		{name: "empty operator is a no-op", doc: `{"_id": 1, "a": 1}`, update: `{"$set": {}}`, want: `{"_id": 1, "a": 1}`, noop: true},
		{name: "whole document value", doc: `{"_id": 1, "a": 1}`, update: `{"$set": {"a": {"x": [1, 2]}}}`, want: `{"_id": 1, "a": {"x": [1, 2]}}`},
		{name: "through scalar", doc: `{"_id": 1, "a": 5}`, update: `{"$set": {"a.b": 1}}`, code: mongoerr.PathNotViable},
		{name: "through null", doc: `{"_id": 1, "a": null}`, update: `{"$set": {"a.b": 1}}`, code: mongoerr.PathNotViable},
		{name: "array with field name", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$set": {"a.b": 1}}`, code: mongoerr.PathNotViable},
		{name: "through scalar array element", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$set": {"a.0.b": 1}}`, code: mongoerr.PathNotViable},
		{name: "_id same value allowed", doc: `{"_id": 1, "a": 1}`, update: `{"$set": {"_id": 1, "a": 2}}`, want: `{"_id": 1, "a": 2}`},
		{name: "_id change refused", doc: `{"_id": 1}`, update: `{"$set": {"_id": 2}}`, code: mongoerr.ImmutableField},
		{name: "_id subfield change refused", doc: `{"_id": {"x": 1}}`, update: `{"$set": {"_id.x": 2}}`, code: mongoerr.ImmutableField},
		{name: "conflict prefix", doc: `{"_id": 1}`, update: `{"$set": {"a": 1, "a.b": 2}}`, code: mongoerr.ConflictingUpdateOperators},
		{name: "conflict across operators", doc: `{"_id": 1}`, update: `{"$set": {"a.b": 1}, "$inc": {"a": 2}}`, code: mongoerr.ConflictingUpdateOperators},
		{name: "conflict same path", doc: `{"_id": 1}`, update: `{"$set": {"a": 1}, "$unset": {"a": 1}}`, code: mongoerr.ConflictingUpdateOperators},
		{name: "sibling paths do not conflict", doc: `{"_id": 1}`, update: `{"$set": {"a.b": 1, "a.c": 2}}`, want: `{"_id": 1, "a": {"b": 1, "c": 2}}`},
		{name: "empty path", doc: `{"_id": 1}`, update: `{"$set": {"": 1}}`, code: mongoerr.EmptyFieldName},
		{name: "empty component", doc: `{"_id": 1}`, update: `{"$set": {"a..b": 1}}`, code: mongoerr.EmptyFieldName},
		{name: "dollar field on existing doc", doc: `{"_id": 1}`, update: `{"$set": {"$x": 1}}`, code: mongoerr.DollarPrefixedFieldName},
		{name: "dollar field on insert", doc: `{}`, update: `{"$set": {"$x": 1}}`, inserting: true, want: `{"$x": 1}`},
		{name: "not a document", doc: `{"_id": 1}`, update: `{"$set": 1}`, code: mongoerr.FailedToParse},
		{name: "unknown modifier", doc: `{"_id": 1}`, update: `{"$foo": {"a": 1}}`, code: mongoerr.FailedToParse},
		{name: "mixed operator and field", doc: `{"_id": 1}`, update: `{"$set": {"a": 1}, "b": 2}`, code: mongoerr.FailedToParse},
		{name: "value too deep for its path", doc: `{"_id": 1}`, update: `{"$set": {"` + strings.Repeat("a.", 98) + `a": {"b": {"c": 1}}}}`, code: mongoerr.Overflow},
		{name: "deepest allowed value", doc: `{"_id": 1}`, update: `{"$set": {"` + strings.Repeat("a.", 97) + `a": {"b": 1}}}`, want: `{"_id": 1, "a": ` + strings.Repeat(`{"a": `, 97) + `{"b": 1}` + strings.Repeat("}", 97) + `}`},
		{name: "deep path refused", doc: `{"_id": 1}`, update: `{"$set": {"` + strings.Repeat("a.", 100) + `a": 1}}`, code: mongoerr.Overflow},
	})
}

func TestUnset(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "removes field", doc: `{"_id": 1, "a": 1, "b": 2}`, update: `{"$unset": {"a": ""}}`, want: `{"_id": 1, "b": 2}`},
		{name: "missing is no-op", doc: `{"_id": 1}`, update: `{"$unset": {"a": 1}}`, want: `{"_id": 1}`, noop: true},
		{name: "nested", doc: `{"_id": 1, "a": {"b": 1, "c": 2}}`, update: `{"$unset": {"a.b": 1}}`, want: `{"_id": 1, "a": {"c": 2}}`},
		{name: "array element becomes null", doc: `{"_id": 1, "a": [1, 2, 3]}`, update: `{"$unset": {"a.1": 1}}`, want: `{"_id": 1, "a": [1, null, 3]}`},
		{name: "through scalar is no-op", doc: `{"_id": 1, "a": 5}`, update: `{"$unset": {"a.b": 1}}`, want: `{"_id": 1, "a": 5}`, noop: true},
		{name: "through array by name is no-op", doc: `{"_id": 1, "a": [{"b": 1}]}`, update: `{"$unset": {"a.b": 1}}`, want: `{"_id": 1, "a": [{"b": 1}]}`, noop: true},
		{name: "_id refused", doc: `{"_id": 1}`, update: `{"$unset": {"_id": 1}}`, code: mongoerr.ImmutableField},
	})
}

func TestIncMul(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "inc int", doc: `{"_id": 1, "a": 1}`, update: `{"$inc": {"a": 2}}`, want: `{"_id": 1, "a": 3}`},
		{name: "inc negative", doc: `{"_id": 1, "a": 1}`, update: `{"$inc": {"a": -5}}`, want: `{"_id": 1, "a": -4}`},
		{name: "inc missing sets", doc: `{"_id": 1}`, update: `{"$inc": {"a": 2}}`, want: `{"_id": 1, "a": 2}`},
		{name: "inc nested missing", doc: `{"_id": 1}`, update: `{"$inc": {"a.b": {"$numberLong": "2"}}}`, want: `{"_id": 1, "a": {"b": {"$numberLong": "2"}}}`},
		{name: "inc int32 overflow promotes to long", doc: `{"_id": 1, "a": 2147483647}`, update: `{"$inc": {"a": 1}}`, want: `{"_id": 1, "a": {"$numberLong": "2147483648"}}`},
		{name: "inc int32 underflow promotes to long", doc: `{"_id": 1, "a": -2147483648}`, update: `{"$inc": {"a": -1}}`, want: `{"_id": 1, "a": {"$numberLong": "-2147483649"}}`},
		{name: "inc long", doc: `{"_id": 1, "a": {"$numberLong": "5"}}`, update: `{"$inc": {"a": 1}}`, want: `{"_id": 1, "a": {"$numberLong": "6"}}`},
		{name: "inc long overflow fails", doc: `{"_id": 1, "a": {"$numberLong": "9223372036854775807"}}`, update: `{"$inc": {"a": 1}}`, code: mongoerr.BadValue},
		{name: "inc int plus double", doc: `{"_id": 1, "a": 1}`, update: `{"$inc": {"a": 0.5}}`, want: `{"_id": 1, "a": 1.5}`},
		{name: "inc double", doc: `{"_id": 1, "a": 1.5}`, update: `{"$inc": {"a": 1}}`, want: `{"_id": 1, "a": 2.5}`},
		{name: "inc decimal", doc: `{"_id": 1, "a": {"$numberDecimal": "1.1"}}`, update: `{"$inc": {"a": {"$numberDecimal": "2.25"}}}`, want: `{"_id": 1, "a": {"$numberDecimal": "3.35"}}`},
		{name: "inc int with decimal", doc: `{"_id": 1, "a": 1}`, update: `{"$inc": {"a": {"$numberDecimal": "0.5"}}}`, want: `{"_id": 1, "a": {"$numberDecimal": "1.5"}}`},
		{name: "inc double with decimal", doc: `{"_id": 1, "a": 0.1}`, update: `{"$inc": {"a": {"$numberDecimal": "1"}}}`, want: `{"_id": 1, "a": {"$numberDecimal": "1.100000000000000"}}`},
		{name: "inc by zero is no-op", doc: `{"_id": 1, "a": 3}`, update: `{"$inc": {"a": 0}}`, want: `{"_id": 1, "a": 3}`, noop: true},
		{name: "inc string field", doc: `{"_id": 1, "a": "x"}`, update: `{"$inc": {"a": 1}}`, code: mongoerr.TypeMismatch},
		{name: "inc null field", doc: `{"_id": 1, "a": null}`, update: `{"$inc": {"a": 1}}`, code: mongoerr.TypeMismatch},
		{name: "inc string argument", doc: `{"_id": 1, "a": 1}`, update: `{"$inc": {"a": "1"}}`, code: mongoerr.TypeMismatch},
		{name: "inc array element", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$inc": {"a.1": 10}}`, want: `{"_id": 1, "a": [1, 12]}`},
		{name: "mul int", doc: `{"_id": 1, "a": 3}`, update: `{"$mul": {"a": 4}}`, want: `{"_id": 1, "a": 12}`},
		{name: "mul missing int sets int zero", doc: `{"_id": 1}`, update: `{"$mul": {"a": 4}}`, want: `{"_id": 1, "a": 0}`},
		{name: "mul missing long sets long zero", doc: `{"_id": 1}`, update: `{"$mul": {"a": {"$numberLong": "4"}}}`, want: `{"_id": 1, "a": {"$numberLong": "0"}}`},
		{name: "mul missing double sets double zero", doc: `{"_id": 1}`, update: `{"$mul": {"a": 2.5}}`, want: `{"_id": 1, "a": 0.0}`},
		{name: "mul int overflow promotes", doc: `{"_id": 1, "a": 65536}`, update: `{"$mul": {"a": 65536}}`, want: `{"_id": 1, "a": {"$numberLong": "4294967296"}}`},
		{name: "mul long overflow fails", doc: `{"_id": 1, "a": {"$numberLong": "9223372036854775807"}}`, update: `{"$mul": {"a": 2}}`, code: mongoerr.BadValue},
		{name: "mul double", doc: `{"_id": 1, "a": 10.5}`, update: `{"$mul": {"a": 2}}`, want: `{"_id": 1, "a": 21.0}`},
		{name: "mul decimal", doc: `{"_id": 1, "a": {"$numberDecimal": "1.5"}}`, update: `{"$mul": {"a": 3}}`, want: `{"_id": 1, "a": {"$numberDecimal": "4.5"}}`},
		{name: "mul non numeric", doc: `{"_id": 1, "a": true}`, update: `{"$mul": {"a": 2}}`, code: mongoerr.TypeMismatch},
		{name: "mul non numeric argument", doc: `{"_id": 1, "a": 1}`, update: `{"$mul": {"a": null}}`, code: mongoerr.TypeMismatch},
	})
}

func TestMinMax(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "min lower", doc: `{"_id": 1, "a": 5}`, update: `{"$min": {"a": 3}}`, want: `{"_id": 1, "a": 3}`},
		{name: "min higher no-op", doc: `{"_id": 1, "a": 5}`, update: `{"$min": {"a": 8}}`, want: `{"_id": 1, "a": 5}`, noop: true},
		{name: "min missing sets", doc: `{"_id": 1}`, update: `{"$min": {"a": 8}}`, want: `{"_id": 1, "a": 8}`},
		{name: "min across numeric types", doc: `{"_id": 1, "a": 5}`, update: `{"$min": {"a": 4.5}}`, want: `{"_id": 1, "a": 4.5}`},
		{name: "min equal other type no-op", doc: `{"_id": 1, "a": 5}`, update: `{"$min": {"a": 5.0}}`, want: `{"_id": 1, "a": 5}`, noop: true},
		{name: "min null sorts before numbers", doc: `{"_id": 1, "a": 5}`, update: `{"$min": {"a": null}}`, want: `{"_id": 1, "a": null}`},
		{name: "min dates", doc: `{"_id": 1, "d": {"$date": "2020-01-01T00:00:00Z"}}`, update: `{"$min": {"d": {"$date": "2019-01-01T00:00:00Z"}}}`, want: `{"_id": 1, "d": {"$date": "2019-01-01T00:00:00Z"}}`},
		{name: "max higher", doc: `{"_id": 1, "a": 5}`, update: `{"$max": {"a": 7}}`, want: `{"_id": 1, "a": 7}`},
		{name: "max lower no-op", doc: `{"_id": 1, "a": 5}`, update: `{"$max": {"a": 2}}`, want: `{"_id": 1, "a": 5}`, noop: true},
		{name: "max string above numbers", doc: `{"_id": 1, "a": 5}`, update: `{"$max": {"a": "x"}}`, want: `{"_id": 1, "a": "x"}`},
		{name: "max nested missing", doc: `{"_id": 1}`, update: `{"$max": {"a.b": 1}}`, want: `{"_id": 1, "a": {"b": 1}}`},
	})
}

func TestRename(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "top level moves to end", doc: `{"_id": 1, "a": 1, "b": 2}`, update: `{"$rename": {"a": "c"}}`, want: `{"_id": 1, "b": 2, "c": 1}`},
		{name: "overwrites existing target in place", doc: `{"_id": 1, "a": 1, "b": 2}`, update: `{"$rename": {"b": "a"}}`, want: `{"_id": 1, "a": 2}`},
		{name: "missing source is no-op", doc: `{"_id": 1, "b": 2}`, update: `{"$rename": {"a": "c"}}`, want: `{"_id": 1, "b": 2}`, noop: true},
		{name: "into subdocument", doc: `{"_id": 1, "a": 1, "n": {"x": 1}}`, update: `{"$rename": {"a": "n.a"}}`, want: `{"_id": 1, "n": {"x": 1, "a": 1}}`},
		{name: "out of subdocument", doc: `{"_id": 1, "n": {"x": 1, "y": 2}}`, update: `{"$rename": {"n.x": "x"}}`, want: `{"_id": 1, "n": {"y": 2}, "x": 1}`},
		{name: "creates target path", doc: `{"_id": 1, "a": 1}`, update: `{"$rename": {"a": "p.q"}}`, want: `{"_id": 1, "p": {"q": 1}}`},
		{name: "same field", doc: `{"_id": 1, "a": 1}`, update: `{"$rename": {"a": "a"}}`, code: mongoerr.BadValue},
		{name: "same path", doc: `{"_id": 1, "a": 1}`, update: `{"$rename": {"a": "a.b"}}`, code: mongoerr.BadValue},
		{name: "non-string target", doc: `{"_id": 1, "a": 1}`, update: `{"$rename": {"a": 1}}`, code: mongoerr.BadValue},
		{name: "source in array", doc: `{"_id": 1, "a": [{"b": 1}]}`, update: `{"$rename": {"a.0.b": "c"}}`, code: mongoerr.BadValue},
		{name: "target in array", doc: `{"_id": 1, "a": 1, "b": [1]}`, update: `{"$rename": {"a": "b.0"}}`, code: mongoerr.BadValue},
		{name: "dynamic source", doc: `{"_id": 1, "a": [1]}`, update: `{"$rename": {"a.$": "b"}}`, code: mongoerr.BadValue},
		{name: "conflicts with set", doc: `{"_id": 1, "a": 1}`, update: `{"$rename": {"a": "b"}, "$set": {"b": 2}}`, code: mongoerr.ConflictingUpdateOperators},
		{name: "_id refused", doc: `{"_id": 1}`, update: `{"$rename": {"_id": "x"}}`, code: mongoerr.ImmutableField},
	})
}

func TestCurrentDate(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "true is a date", doc: `{"_id": 1}`, update: `{"$currentDate": {"d": true}}`, want: `{"_id": 1, "d": {"$date": "2026-01-02T03:04:05Z"}}`},
		{name: "type date", doc: `{"_id": 1, "d": 1}`, update: `{"$currentDate": {"d": {"$type": "date"}}}`, want: `{"_id": 1, "d": {"$date": "2026-01-02T03:04:05Z"}}`},
		{name: "type timestamp", doc: `{"_id": 1}`, update: `{"$currentDate": {"t": {"$type": "timestamp"}}}`, want: `{"_id": 1, "t": {"$timestamp": {"t": 1767323045, "i": 1}}}`},
		{name: "bad type", doc: `{"_id": 1}`, update: `{"$currentDate": {"d": {"$type": "string"}}}`, code: mongoerr.BadValue},
		{name: "bad argument", doc: `{"_id": 1}`, update: `{"$currentDate": {"d": 1}}`, code: mongoerr.BadValue},
		{name: "unknown option", doc: `{"_id": 1}`, update: `{"$currentDate": {"d": {"x": 1}}}`, code: mongoerr.BadValue},
	})
}

func TestCurrentDateTimestampFromContext(t *testing.T) {
	u, err := Parse(mustDoc(t, `{"$currentDate": {"t": {"$type": "timestamp"}}}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := u.Apply(mustDoc(t, `{"_id": 1}`), ApplyContext{MatchPos: -1, Timestamp: bson.Timestamp{T: 7, I: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := canonical(t, out), canonical(t, mustDoc(t, `{"_id": 1, "t": {"$timestamp": {"t": 7, "i": 3}}}`)); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestSetOnInsert(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "ignored on update", doc: `{"_id": 1, "a": 1}`, update: `{"$setOnInsert": {"b": 2}}`, want: `{"_id": 1, "a": 1}`, noop: true},
		{name: "applied on insert", doc: `{"_id": 1, "a": 1}`, update: `{"$setOnInsert": {"b": 2}}`, inserting: true, want: `{"_id": 1, "a": 1, "b": 2}`},
		{name: "still conflicts", doc: `{"_id": 1}`, update: `{"$setOnInsert": {"b": 2}, "$set": {"b.c": 1}}`, code: mongoerr.ConflictingUpdateOperators},
	})
}

func TestPush(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "append", doc: `{"_id": 1, "a": [1]}`, update: `{"$push": {"a": 2}}`, want: `{"_id": 1, "a": [1, 2]}`},
		{name: "missing creates array", doc: `{"_id": 1}`, update: `{"$push": {"a": 2}}`, want: `{"_id": 1, "a": [2]}`},
		{name: "array value pushed as one element", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": [1, 2]}}`, want: `{"_id": 1, "a": [[1, 2]]}`},
		{name: "each", doc: `{"_id": 1, "a": [1]}`, update: `{"$push": {"a": {"$each": [2, 3]}}}`, want: `{"_id": 1, "a": [1, 2, 3]}`},
		{name: "each empty creates empty array", doc: `{"_id": 1}`, update: `{"$push": {"a": {"$each": []}}}`, want: `{"_id": 1, "a": []}`},
		{name: "position 0", doc: `{"_id": 1, "a": [3, 4]}`, update: `{"$push": {"a": {"$each": [1, 2], "$position": 0}}}`, want: `{"_id": 1, "a": [1, 2, 3, 4]}`},
		{name: "position past end", doc: `{"_id": 1, "a": [3, 4]}`, update: `{"$push": {"a": {"$each": [1], "$position": 10}}}`, want: `{"_id": 1, "a": [3, 4, 1]}`},
		{name: "negative position", doc: `{"_id": 1, "a": [1, 2, 3]}`, update: `{"$push": {"a": {"$each": [9], "$position": -1}}}`, want: `{"_id": 1, "a": [1, 2, 9, 3]}`},
		{name: "negative position before start", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$push": {"a": {"$each": [9], "$position": -5}}}`, want: `{"_id": 1, "a": [9, 1, 2]}`},
		{name: "slice first", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$push": {"a": {"$each": [3, 4], "$slice": 3}}}`, want: `{"_id": 1, "a": [1, 2, 3]}`},
		{name: "slice last", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$push": {"a": {"$each": [3, 4], "$slice": -3}}}`, want: `{"_id": 1, "a": [2, 3, 4]}`},
		{name: "slice zero empties", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$push": {"a": {"$each": [3], "$slice": 0}}}`, want: `{"_id": 1, "a": []}`},
		{name: "sort ascending", doc: `{"_id": 1, "a": [3, 1]}`, update: `{"$push": {"a": {"$each": [2], "$sort": 1}}}`, want: `{"_id": 1, "a": [1, 2, 3]}`},
		{name: "sort descending mixed types", doc: `{"_id": 1, "a": ["b", 1]}`, update: `{"$push": {"a": {"$each": [null, 2.5], "$sort": -1}}}`, want: `{"_id": 1, "a": ["b", 2.5, 1, null]}`},
		{name: "sort by field then slice", doc: `{"_id": 1, "q": [{"s": 8}, {"s": 3}]}`, update: `{"$push": {"q": {"$each": [{"s": 5}, {"s": 9}], "$sort": {"s": -1}, "$slice": 3}}}`, want: `{"_id": 1, "q": [{"s": 9}, {"s": 8}, {"s": 5}]}`},
		{name: "sort by nested field", doc: `{"_id": 1, "q": [{"x": {"y": 2}}, {"x": {"y": 1}}]}`, update: `{"$push": {"q": {"$each": [], "$sort": {"x.y": 1}}}}`, want: `{"_id": 1, "q": [{"x": {"y": 1}}, {"x": {"y": 2}}]}`},
		{name: "sort by field missing sorts first", doc: `{"_id": 1, "q": [{"s": 1}, {"t": 1}, 5]}`, update: `{"$push": {"q": {"$each": [], "$sort": {"s": 1}}}}`, want: `{"_id": 1, "q": [{"t": 1}, 5, {"s": 1}]}`},
		{name: "sort by array field compares whole arrays", doc: `{"_id": 1, "q": [{"s": [0, 9]}, {"s": 5}]}`, update: `{"$push": {"q": {"$each": [], "$sort": {"s": 1}}}}`, want: `{"_id": 1, "q": [{"s": 5}, {"s": [0, 9]}]}`},
		{name: "sort by array index path", doc: `{"_id": 1, "q": [{"s": [3]}, {"s": [1]}]}`, update: `{"$push": {"q": {"$each": [], "$sort": {"s.0": 1}}}}`, want: `{"_id": 1, "q": [{"s": [1]}, {"s": [3]}]}`},
		{name: "duplicate clause", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"$each": [1], "$slice": 1, "$slice": 2}}}`, code: mongoerr.BadValue},
		{name: "document without each is a value", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"x": 1}}}`, want: `{"_id": 1, "a": [{"x": 1}]}`},
		{name: "non-array field", doc: `{"_id": 1, "a": 1}`, update: `{"$push": {"a": 2}}`, code: mongoerr.BadValue},
		{name: "each not array", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"$each": 1}}}`, code: mongoerr.BadValue},
		{name: "bad slice", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"$each": [1], "$slice": "x"}}}`, code: mongoerr.BadValue},
		{name: "fractional slice", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"$each": [1], "$slice": 1.5}}}`, code: mongoerr.BadValue},
		{name: "bad sort", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"$each": [1], "$sort": 2}}}`, code: mongoerr.BadValue},
		{name: "empty sort pattern", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"$each": [1], "$sort": {}}}}`, code: mongoerr.BadValue},
		{name: "bad position", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"$each": [1], "$position": "x"}}}`, code: mongoerr.BadValue},
		{name: "unknown clause", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"$each": [1], "$foo": 1}}}`, code: mongoerr.BadValue},
	})
}

func TestAddToSet(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "adds new", doc: `{"_id": 1, "a": [1]}`, update: `{"$addToSet": {"a": 2}}`, want: `{"_id": 1, "a": [1, 2]}`},
		{name: "existing is no-op", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$addToSet": {"a": 2}}`, want: `{"_id": 1, "a": [1, 2]}`, noop: true},
		{name: "numbers equal across types", doc: `{"_id": 1, "a": [1]}`, update: `{"$addToSet": {"a": 1.0}}`, want: `{"_id": 1, "a": [1]}`, noop: true},
		{name: "documents compare with field order", doc: `{"_id": 1, "a": [{"x": 1, "y": 2}]}`, update: `{"$addToSet": {"a": {"y": 2, "x": 1}}}`, want: `{"_id": 1, "a": [{"x": 1, "y": 2}, {"y": 2, "x": 1}]}`},
		{name: "missing creates", doc: `{"_id": 1}`, update: `{"$addToSet": {"a": 1}}`, want: `{"_id": 1, "a": [1]}`},
		{name: "each deduplicates", doc: `{"_id": 1, "a": [1]}`, update: `{"$addToSet": {"a": {"$each": [1, 2, 2, 3]}}}`, want: `{"_id": 1, "a": [1, 2, 3]}`},
		{name: "each on missing", doc: `{"_id": 1}`, update: `{"$addToSet": {"a": {"$each": [2, 2]}}}`, want: `{"_id": 1, "a": [2]}`},
		{name: "array value is one element", doc: `{"_id": 1, "a": [1]}`, update: `{"$addToSet": {"a": [1, 2]}}`, want: `{"_id": 1, "a": [1, [1, 2]]}`},
		{name: "non-array", doc: `{"_id": 1, "a": 1}`, update: `{"$addToSet": {"a": 1}}`, code: mongoerr.BadValue},
		{name: "each not array", doc: `{"_id": 1}`, update: `{"$addToSet": {"a": {"$each": 1}}}`, code: mongoerr.TypeMismatch},
		{name: "fields after each", doc: `{"_id": 1}`, update: `{"$addToSet": {"a": {"$each": [1], "x": 1}}}`, code: mongoerr.BadValue},
	})
}

func TestPopPull(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "pop last", doc: `{"_id": 1, "a": [1, 2, 3]}`, update: `{"$pop": {"a": 1}}`, want: `{"_id": 1, "a": [1, 2]}`},
		{name: "pop first", doc: `{"_id": 1, "a": [1, 2, 3]}`, update: `{"$pop": {"a": -1}}`, want: `{"_id": 1, "a": [2, 3]}`},
		{name: "pop empty", doc: `{"_id": 1, "a": []}`, update: `{"$pop": {"a": 1}}`, want: `{"_id": 1, "a": []}`, noop: true},
		{name: "pop missing", doc: `{"_id": 1}`, update: `{"$pop": {"a": 1}}`, want: `{"_id": 1}`, noop: true},
		{name: "pop last element leaves empty array", doc: `{"_id": 1, "a": [1]}`, update: `{"$pop": {"a": 1}}`, want: `{"_id": 1, "a": []}`},
		{name: "pop non-array", doc: `{"_id": 1, "a": 1}`, update: `{"$pop": {"a": 1}}`, code: mongoerr.TypeMismatch},
		{name: "pop bad argument", doc: `{"_id": 1, "a": []}`, update: `{"$pop": {"a": 2}}`, code: mongoerr.FailedToParse},
		{name: "pop string argument", doc: `{"_id": 1, "a": []}`, update: `{"$pop": {"a": "x"}}`, code: mongoerr.FailedToParse},
		{name: "pull value", doc: `{"_id": 1, "a": [1, 2, 1, 3]}`, update: `{"$pull": {"a": 1}}`, want: `{"_id": 1, "a": [2, 3]}`},
		{name: "pull numbers by value", doc: `{"_id": 1, "a": [1, 2.0, 3]}`, update: `{"$pull": {"a": 2}}`, want: `{"_id": 1, "a": [1, 3]}`},
		{name: "pull condition", doc: `{"_id": 1, "a": [1, 6, 7, 2]}`, update: `{"$pull": {"a": {"$gte": 6}}}`, want: `{"_id": 1, "a": [1, 2]}`},
		{name: "pull in", doc: `{"_id": 1, "a": ["x", "y", "z"]}`, update: `{"$pull": {"a": {"$in": ["x", "z"]}}}`, want: `{"_id": 1, "a": ["y"]}`},
		{name: "pull documents by query", doc: `{"_id": 1, "r": [{"s": 8, "i": "A"}, {"s": 7, "i": "B"}, {"s": 8, "i": "B"}]}`, update: `{"$pull": {"r": {"s": 8, "i": "B"}}}`, want: `{"_id": 1, "r": [{"s": 8, "i": "A"}, {"s": 7, "i": "B"}]}`},
		{name: "pull documents by condition", doc: `{"_id": 1, "r": [{"s": 8}, {"s": 3}, 5]}`, update: `{"$pull": {"r": {"s": {"$gt": 5}}}}`, want: `{"_id": 1, "r": [{"s": 3}, 5]}`},
		{name: "pull elemMatch", doc: `{"_id": 1, "r": [{"x": [1, 9]}, {"x": [1]}]}`, update: `{"$pull": {"r": {"x": {"$elemMatch": {"$gt": 5}}}}}`, want: `{"_id": 1, "r": [{"x": [1]}]}`},
		{name: "pull regex", doc: `{"_id": 1, "a": ["apple", "bob", "avocado"]}`, update: `{"$pull": {"a": {"$regularExpression": {"pattern": "^a", "options": ""}}}}`, want: `{"_id": 1, "a": ["bob"]}`},
		{name: "pull nothing is no-op", doc: `{"_id": 1, "a": [1]}`, update: `{"$pull": {"a": 5}}`, want: `{"_id": 1, "a": [1]}`, noop: true},
		{name: "pull missing", doc: `{"_id": 1}`, update: `{"$pull": {"a": 5}}`, want: `{"_id": 1}`, noop: true},
		{name: "pull non-array", doc: `{"_id": 1, "a": 5}`, update: `{"$pull": {"a": 5}}`, code: mongoerr.BadValue},
		{name: "pull whole document equality", doc: `{"_id": 1, "a": [[1, 2], [3]]}`, update: `{"$pull": {"a": [1, 2]}}`, want: `{"_id": 1, "a": [[3]]}`},
		{name: "pull bad condition", doc: `{"_id": 1, "a": []}`, update: `{"$pull": {"a": {"$foo": 1}}}`, code: mongoerr.BadValue},
		{name: "pullAll", doc: `{"_id": 1, "a": [0, 2, 5, 5, 1, 0]}`, update: `{"$pullAll": {"a": [0, 5]}}`, want: `{"_id": 1, "a": [2, 1]}`},
		{name: "pullAll documents exact", doc: `{"_id": 1, "a": [{"x": 1}, {"x": 1, "y": 2}]}`, update: `{"$pullAll": {"a": [{"x": 1}]}}`, want: `{"_id": 1, "a": [{"x": 1, "y": 2}]}`},
		{name: "pullAll not array", doc: `{"_id": 1, "a": []}`, update: `{"$pullAll": {"a": 1}}`, code: mongoerr.BadValue},
		{name: "pullAll non-array field", doc: `{"_id": 1, "a": 1}`, update: `{"$pullAll": {"a": [1]}}`, code: mongoerr.BadValue},
	})
}

func TestPositional(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "dollar", doc: `{"_id": 1, "g": [80, 85, 90]}`, update: `{"$set": {"g.$": 82}}`, pos: 2, want: `{"_id": 1, "g": [80, 82, 90]}`},
		{name: "dollar nested field", doc: `{"_id": 1, "g": [{"v": 1}, {"v": 2}]}`, update: `{"$inc": {"g.$.v": 10}}`, pos: 2, want: `{"_id": 1, "g": [{"v": 1}, {"v": 12}]}`},
		{name: "dollar without match", doc: `{"_id": 1, "g": [1]}`, update: `{"$set": {"g.$": 2}}`, code: mongoerr.BadValue},
		{name: "two dollars", doc: `{"_id": 1}`, update: `{"$set": {"a.$.b.$": 2}}`, code: mongoerr.BadValue},
		{name: "dollar first", doc: `{"_id": 1}`, update: `{"$set": {"$": 2}}`, code: mongoerr.BadValue},
		{name: "dollar and index conflict", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$set": {"a.$": 5, "a.0": 6}}`, pos: 1, code: mongoerr.ConflictingUpdateOperators},
		{name: "all elements", doc: `{"_id": 1, "g": [1, 2, 3]}`, update: `{"$inc": {"g.$[]": 10}}`, want: `{"_id": 1, "g": [11, 12, 13]}`},
		{name: "all elements nested", doc: `{"_id": 1, "g": [{"v": 1}, {"w": 2}]}`, update: `{"$set": {"g.$[].v": 0}}`, want: `{"_id": 1, "g": [{"v": 0}, {"w": 2, "v": 0}]}`},
		{name: "all elements of nested arrays", doc: `{"_id": 1, "m": [[1, 2], [3]]}`, update: `{"$mul": {"m.$[].$[]": 2}}`, want: `{"_id": 1, "m": [[2, 4], [6]]}`},
		{name: "all elements empty array no-op", doc: `{"_id": 1, "g": []}`, update: `{"$set": {"g.$[]": 1}}`, want: `{"_id": 1, "g": []}`, noop: true},
		{name: "all elements missing array", doc: `{"_id": 1}`, update: `{"$set": {"g.$[]": 1}}`, code: mongoerr.BadValue},
		{name: "all elements non-array", doc: `{"_id": 1, "g": 5}`, update: `{"$set": {"g.$[]": 1}}`, code: mongoerr.BadValue},
		{name: "all elements through scalars", doc: `{"_id": 1, "g": [1, {"v": 1}]}`, update: `{"$set": {"g.$[].v": 0}}`, code: mongoerr.PathNotViable},
		{name: "unset all elements", doc: `{"_id": 1, "g": [{"v": 1}, {"v": 2}]}`, update: `{"$unset": {"g.$[].v": 1}}`, want: `{"_id": 1, "g": [{}, {}]}`},
		{name: "filtered", doc: `{"_id": 1, "g": [95, 102, 90, 150]}`, update: `{"$set": {"g.$[e]": 100}}`, filters: []string{`{"e": {"$gte": 100}}`}, want: `{"_id": 1, "g": [95, 100, 90, 100]}`},
		{name: "filtered documents", doc: `{"_id": 1, "g": [{"grade": 80, "mean": 75}, {"grade": 85, "mean": 90}]}`, update: `{"$set": {"g.$[elem].mean": 100}}`, filters: []string{`{"elem.grade": {"$gte": 85}}`}, want: `{"_id": 1, "g": [{"grade": 80, "mean": 75}, {"grade": 85, "mean": 100}]}`},
		{name: "filtered none match", doc: `{"_id": 1, "g": [1, 2]}`, update: `{"$set": {"g.$[e]": 0}}`, filters: []string{`{"e": {"$gt": 5}}`}, want: `{"_id": 1, "g": [1, 2]}`, noop: true},
		{name: "two identifiers", doc: `{"_id": 1, "a": [{"b": [1, 5]}, {"b": [7]}]}`, update: `{"$inc": {"a.$[x].b.$[y]": 100}}`, filters: []string{`{"x.b": 7}`, `{"y": {"$gte": 5}}`}, want: `{"_id": 1, "a": [{"b": [1, 5]}, {"b": [107]}]}`},
		{name: "filters overlapping same element", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$set": {"a.$[x]": 0, "a.$[y]": 5}}`, filters: []string{`{"x": 1}`, `{"y": {"$lte": 1}}`}, code: mongoerr.ConflictingUpdateOperators},
		{name: "filters disjoint", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$set": {"a.$[x]": 0, "a.$[y]": 5}}`, filters: []string{`{"x": 1}`, `{"y": 2}`}, want: `{"_id": 1, "a": [0, 5]}`},
		{name: "filter with and", doc: `{"_id": 1, "a": [1, 5, 9]}`, update: `{"$set": {"a.$[x]": 0}}`, filters: []string{`{"$and": [{"x": {"$gt": 2}}, {"x": {"$lt": 8}}]}`}, want: `{"_id": 1, "a": [1, 0, 9]}`},
		{name: "push into filtered", doc: `{"_id": 1, "a": [{"k": 1, "v": []}, {"k": 2, "v": []}]}`, update: `{"$push": {"a.$[x].v": 7}}`, filters: []string{`{"x.k": 2}`}, want: `{"_id": 1, "a": [{"k": 1, "v": []}, {"k": 2, "v": [7]}]}`},
		{name: "unused filter", doc: `{"_id": 1}`, update: `{"$set": {"a": 1}}`, filters: []string{`{"x": 1}`}, code: mongoerr.FailedToParse},
		{name: "unknown identifier", doc: `{"_id": 1}`, update: `{"$set": {"a.$[x]": 1}}`, code: mongoerr.BadValue},
		{name: "duplicate identifier", doc: `{"_id": 1}`, update: `{"$set": {"a.$[x]": 1}}`, filters: []string{`{"x": 1}`, `{"x": 2}`}, code: mongoerr.FailedToParse},
		{name: "filter with two identifiers", doc: `{"_id": 1}`, update: `{"$set": {"a.$[x]": 1}}`, filters: []string{`{"x": 1, "y": 2}`}, code: mongoerr.FailedToParse},
		{name: "empty filter", doc: `{"_id": 1}`, update: `{"$set": {"a.$[x]": 1}}`, filters: []string{`{}`}, code: mongoerr.FailedToParse},
		{name: "bad identifier", doc: `{"_id": 1}`, update: `{"$set": {"a.$[X]": 1}}`, filters: []string{`{"X": 1}`}, code: mongoerr.BadValue},
		{name: "filter with bad operator", doc: `{"_id": 1}`, update: `{"$set": {"a.$[x]": 1}}`, filters: []string{`{"x": {"$foo": 1}}`}, code: mongoerr.BadValue},
		{name: "array filter and field conflict", doc: `{"_id": 1}`, update: `{"$set": {"a.$[]": 1, "a.b": 2}}`, code: mongoerr.ConflictingUpdateOperators},
		{name: "array filter first component", doc: `{"_id": 1}`, update: `{"$set": {"$[]": 1}}`, code: mongoerr.BadValue},
	})
}

func TestReplacement(t *testing.T) {
	runApplyCases(t, []applyCase{
		{name: "keeps _id first", doc: `{"_id": 1, "a": 1}`, update: `{"b": 2, "c": 3}`, want: `{"_id": 1, "b": 2, "c": 3}`},
		{name: "same _id anywhere", doc: `{"_id": 1, "a": 1}`, update: `{"b": 2, "_id": 1}`, want: `{"_id": 1, "b": 2}`},
		{name: "empty document", doc: `{"_id": 1, "a": 1}`, update: `{}`, want: `{"_id": 1}`},
		{name: "identical is no-op", doc: `{"_id": 1, "a": 1}`, update: `{"a": 1}`, want: `{"_id": 1, "a": 1}`, noop: true},
		{name: "_id change refused", doc: `{"_id": 1, "a": 1}`, update: `{"_id": 2}`, code: mongoerr.ImmutableField},
		{name: "dollar field refused", doc: `{"_id": 1}`, update: `{"a": 1, "$set": {"b": 1}}`, code: mongoerr.DollarPrefixedFieldName},
		{name: "array filters are not checked for use", doc: `{"_id": 1, "a": 1}`, update: `{"b": 2}`, filters: []string{`{"x": 1}`}, want: `{"_id": 1, "b": 2}`},
		{name: "nested dollar allowed", doc: `{"_id": 1}`, update: `{"a": {"$x": 1}}`, want: `{"_id": 1, "a": {"$x": 1}}`},
	})
}

func TestUpsertDocument(t *testing.T) {
	cases := []struct {
		name, filter, update, want string
		code                       mongoerr.Code
	}{
		{name: "seeds equality", filter: `{"_id": 1, "a": 2}`, update: `{"$set": {"b": 3}}`, want: `{"_id": 1, "a": 2, "b": 3}`},
		{name: "seeds eq and and", filter: `{"$and": [{"_id": 1}, {"x": {"$eq": 5}}], "y": {"$gt": 1}}`, update: `{"$inc": {"n": 1}}`, want: `{"_id": 1, "x": 5, "n": 1}`},
		{name: "dotted becomes nested", filter: `{"_id": 1, "a.b": 2, "a.c": 3}`, update: `{"$set": {"z": 1}}`, want: `{"_id": 1, "a": {"b": 2, "c": 3}, "z": 1}`},
		{name: "operators do not seed", filter: `{"_id": 1, "a": {"$in": [1, 2]}, "b": {"$regularExpression": {"pattern": "x", "options": ""}}}`, update: `{"$set": {"c": 1}}`, want: `{"_id": 1, "c": 1}`},
		{name: "or does not seed", filter: `{"_id": 1, "$or": [{"a": 1}, {"a": 2}]}`, update: `{"$set": {"c": 1}}`, want: `{"_id": 1, "c": 1}`},
		{name: "setOnInsert applies", filter: `{"_id": 1}`, update: `{"$set": {"a": 1}, "$setOnInsert": {"b": 2}}`, want: `{"_id": 1, "a": 1, "b": 2}`},
		{name: "update overrides seeded", filter: `{"_id": 1, "a": 1}`, update: `{"$set": {"a": 5}}`, want: `{"_id": 1, "a": 5}`},
		{name: "_id from update moved first", filter: `{"a": 1}`, update: `{"$set": {"_id": 7}}`, want: `{"_id": 7, "a": 1}`},
		{name: "_id change of seeded refused", filter: `{"_id": 1}`, update: `{"$set": {"_id": 2}}`, code: mongoerr.ImmutableField},
		{name: "replacement takes filter _id", filter: `{"_id": 3, "a": 1}`, update: `{"b": 2}`, want: `{"_id": 3, "b": 2}`},
		{name: "replacement _id moved first", filter: `{"a": 1}`, update: `{"b": 2, "_id": 4}`, want: `{"_id": 4, "b": 2}`},
		{name: "replacement _id differs from filter", filter: `{"_id": 1}`, update: `{"_id": 2}`, code: mongoerr.ImmutableField},
		{name: "same path twice", filter: `{"$and": [{"a": 1}, {"a": 2}]}`, update: `{"$set": {"b": 1}}`, code: mongoerr.NotSingleValueField},
		{name: "path and subpath", filter: `{"a": {"x": 1}, "a.b": 2}`, update: `{"$set": {"b": 1}}`, code: mongoerr.NotSingleValueField},
		{name: "array _id refused", filter: `{"a": 1}`, update: `{"$set": {"_id": [1]}}`, code: mongoerr.InvalidIdField},
		{name: "one-element in and or seed", filter: `{"_id": 1, "a": {"$in": [5]}, "$or": [{"b": 2}]}`, update: `{"$set": {"c": 1}}`, want: `{"_id": 1, "a": 5, "b": 2, "c": 1}`},
		{name: "all seeds its element", filter: `{"_id": 1, "t": {"$all": ["x"]}}`, update: `{"$set": {"c": 1}}`, want: `{"_id": 1, "t": "x", "c": 1}`},
		{name: "all with two elements matches twice", filter: `{"_id": 1, "t": {"$all": ["x", "y"]}}`, update: `{"$set": {"c": 1}}`, code: mongoerr.NotSingleValueField},
		{name: "seeded in path string order", filter: `{"b": 1, "a-b": 2, "a": {"x": 1}, "_id": 1}`, update: `{"$set": {"c": 1}}`, want: `{"_id": 1, "a": {"x": 1}, "a-b": 2, "b": 1, "c": 1}`},
		{name: "positional fails", filter: `{"_id": 1, "a": 1}`, update: `{"$set": {"a.$": 1}}`, code: mongoerr.BadValue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, err := Parse(mustDoc(t, c.update), Options{})
			var out bson.Raw
			if err == nil {
				out, err = UpsertDocument(mustDoc(t, c.filter), u, ApplyContext{Now: fixedNow, MatchPos: -1})
			}
			if c.code != 0 {
				if mongoerr.CodeOf(err) != c.code {
					t.Fatalf("want code %d, got %v", c.code, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := canonical(t, out), canonical(t, mustDoc(t, c.want)); got != want {
				t.Fatalf("\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func TestUpsertGeneratesID(t *testing.T) {
	u, err := Parse(mustDoc(t, `{"$set": {"b": 1}}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := UpsertDocument(mustDoc(t, `{"a": 1}`), u, ApplyContext{MatchPos: -1})
	if err != nil {
		t.Fatal(err)
	}
	elems, _ := out.Elements()
	if len(elems) != 3 || elems[0].Key() != "_id" || elems[0].Value().Type != bson.TypeObjectID {
		t.Fatalf("want generated ObjectId _id first, got %s", out)
	}
}

func TestErrorMessages(t *testing.T) {
	cases := []struct{ doc, update, msg string }{
		{`{"_id": 1}`, `{"$foo": {"a": 1}}`, "Unknown modifier: $foo. Expected a valid update modifier or pipeline-style update specified as an array"},
		{`{"_id": 1}`, `{"$set": {"a.b": 1, "a": 2}}`, "Updating the path 'a' would create a conflict at 'a'"},
		{`{"_id": 1}`, `{"$set": {"a": 1, "a.b": 2}}`, "Updating the path 'a.b' would create a conflict at 'a'"},
		{`{"_id": 1, "a": "x"}`, `{"$inc": {"a": 1}}`, "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 'a' of non-numeric type string"},
		{`{"_id": 1}`, `{"$set": {"_id": 2}}`, "Performing an update on the path '_id' would modify the immutable field '_id'"},
		{`{"_id": 1, "a": 5}`, `{"$set": {"a.b": 1}}`, "Cannot create field 'b' in element {a: 5}"},
		{`{"_id": 1, "a": [1, 2]}`, `{"$set": {"a.b": 1}}`, "Cannot create field 'b' in element {a: [ 1, 2 ]}"},
		{`{"_id": "x", "a": {"$numberLong": "9223372036854775807"}}`, `{"$inc": {"a": 1}}`, `Failed to apply $inc operations to current value ((NumberLong)9223372036854775807) for document {_id: "x"}`},
		{`{"_id": 1, "a": 1}`, `{"$push": {"a": 1}}`, "The field 'a' must be an array but is of type int in document {_id: 1}"},
		{`{"_id": 1}`, `{"$pop": {"a": 2}}`, "$pop expects 1 or -1, found: 2"},
	}
	for _, c := range cases {
		u, err := Parse(mustDoc(t, c.update), Options{})
		if err == nil {
			_, _, err = u.Apply(mustDoc(t, c.doc), ApplyContext{MatchPos: -1})
		}
		e, ok := mongoerr.As(err)
		if !ok || e.Msg != c.msg {
			t.Errorf("%s on %s:\n got: %v\nwant: %s", c.update, c.doc, err, c.msg)
		}
	}
}

func TestIsReplacement(t *testing.T) {
	for js, want := range map[string]bool{`{"a": 1}`: true, `{}`: true, `{"$set": {"a": 1}}`: false} {
		u, err := Parse(mustDoc(t, js), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if u.IsReplacement() != want {
			t.Errorf("%s: IsReplacement = %v", js, !want)
		}
	}
}

func TestWideDocument(t *testing.T) {
	// More fields than indexThreshold, so field lookups go through the
	// name index.
	var sb, want strings.Builder
	sb.WriteString(`{"_id": 1`)
	want.WriteString(`{"_id": 1`)
	for i := 0; i < 50; i++ {
		f := `, "f` + strconv.Itoa(i) + `": ` + strconv.Itoa(i)
		sb.WriteString(f)
		switch i {
		case 10:
			// unset
		case 20:
			want.WriteString(`, "f20": 200`)
		default:
			want.WriteString(f)
		}
	}
	sb.WriteString("}")
	want.WriteString(`, "g": 1}`)
	runApplyCases(t, []applyCase{{
		name:   "rename onto an unset field conflicts",
		doc:    sb.String(),
		update: `{"$unset": {"f10": 1}, "$rename": {"f49": "f10"}}`,
		code:   mongoerr.ConflictingUpdateOperators,
	}, {
		name:   "many fields",
		doc:    sb.String(),
		update: `{"$unset": {"f10": 1}, "$set": {"f20": 200, "g": 1}}`,
		want:   want.String(),
	}})
}

func TestBadBytes(t *testing.T) {
	good := mustDoc(t, `{"$set": {"a": 1}}`)
	cases := []struct {
		name string
		upd  []byte
		code mongoerr.Code
	}{
		{name: "trailing bytes", upd: append(append([]byte(nil), good...), 0), code: mongoerr.FailedToParse},
		{name: "truncated", upd: good[:len(good)-1], code: mongoerr.FailedToParse},
		{name: "empty", upd: nil, code: mongoerr.FailedToParse},
	}
	for _, c := range cases {
		if _, err := Parse(c.upd, Options{}); mongoerr.CodeOf(err) != c.code {
			t.Errorf("%s: want code %d, got %v", c.name, c.code, err)
		}
	}
	u, err := Parse(good, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.Apply(bson.Raw{5, 0, 0}, ApplyContext{MatchPos: -1}); mongoerr.CodeOf(err) != mongoerr.InvalidBSON {
		t.Errorf("Apply on truncated document: want InvalidBSON, got %v", err)
	}
	// A $rename target is a string and may hold a NUL, which no field name
	// can.
	nul, err := bson.Marshal(bson.D{{Key: "$rename", Value: bson.D{{Key: "a", Value: "b\x00c"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(nul, Options{}); mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Errorf("rename to a name with NUL: want BadValue, got %v", err)
	}
	// A nil filter is an empty one.
	if out, err := UpsertDocument(nil, u, ApplyContext{MatchPos: -1}); err != nil || out.Lookup("a").Int32() != 1 {
		t.Errorf("UpsertDocument with nil filter: %v, %v", out, err)
	}
}
