package expr

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// jv parses one extended-JSON value.
func jv(t testing.TB, js string) bson.RawValue {
	t.Helper()
	var d bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(`{"v":`+js+`}`), false, &d); err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	return d.Lookup("v")
}

func jdoc(t testing.TB, js string) bson.Raw {
	t.Helper()
	var d bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(js), false, &d); err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	return d
}

const testDoc = `{"_id": 1, "a": 5, "b": 2, "l": {"$numberLong": "9223372036854775807"}, "i": 2147483647,
	"s": "abc", "n": null, "arr": [1, 2, 3], "docs": [{"x": 1}, {"y": 2}, {"x": [3, 4]}, 7],
	"nested": [[{"x": 1}], {"x": 2}], "dec": {"$numberDecimal": "0.1"}, "d": {"$date": "2020-02-29T23:59:59.999Z"}}`

func TestEval(t *testing.T) {
	doc := jdoc(t, testDoc)
	tests := []struct {
		name string
		expr string
		want string // extended JSON; "MISSING" for the missing value
		code mongoerr.Code
	}{
		// field paths and variables
		{"path", `"$a"`, `5`, 0},
		{"missing path", `"$nosuch"`, `MISSING`, 0},
		{"path through scalar", `"$a.b"`, `MISSING`, 0},
		{"path through array of docs", `"$docs.x"`, `[1, [3, 4]]`, 0},
		{"path skips nested arrays", `"$nested.x"`, `[2]`, 0},
		{"root", `"$$ROOT.s"`, `"abc"`, 0},
		{"current", `"$$CURRENT.a"`, `5`, 0},
		{"remove", `"$$REMOVE"`, `MISSING`, 0},
		{"undefined var", `"$$zz"`, ``, 17276},
		{"array literal missing becomes null", `["$nosuch", 1]`, `[null, 1]`, 0},
		{"object literal drops missing", `{"p": "$nosuch", "q": "$a"}`, `{"q": 5}`, 0},
		{"literal", `{"$literal": {"$add": 1}}`, `{"$add": 1}`, 0},
		// arithmetic type rules
		{"int add stays int", `{"$add": [1, 2]}`, `{"$numberInt": "3"}`, 0},
		{"int overflow to long", `{"$add": ["$i", 1]}`, `{"$numberLong": "2147483648"}`, 0},
		{"long overflow to double", `{"$add": ["$l", 1]}`, `{"$numberDouble": "9.223372036854775808E+18"}`, 0},
		{"int plus double", `{"$add": [1, 0.5]}`, `1.5`, 0},
		{"decimal exact", `{"$add": ["$dec", {"$numberDecimal": "0.2"}]}`, `{"$numberDecimal": "0.3"}`, 0},
		{"decimal plus int", `{"$multiply": ["$dec", 3]}`, `{"$numberDecimal": "0.3"}`, 0},
		{"add null first wins over error", `{"$add": [null, "x"]}`, `null`, 0},
		{"add error before null", `{"$add": ["x", null]}`, ``, mongoerr.TypeMismatch},
		{"add empty", `{"$add": []}`, `0`, 0},
		{"date plus double rounds", `{"$add": ["$d", 1.6]}`, `{"$date": "2020-03-01T00:00:00.001Z"}`, 0},
		{"date overflow", `{"$add": ["$d", 1e300]}`, ``, mongoerr.Overflow},
		{"subtract null", `{"$subtract": ["$nosuch", 1]}`, `null`, 0},
		{"subtract wrong arity", `{"$subtract": [1]}`, ``, 16020},
		{"multiply overflow", `{"$multiply": ["$l", 2]}`, `{"$numberDouble": "1.8446744073709552E+19"}`, 0},
		{"divide ints gives double", `{"$divide": [6, 3]}`, `{"$numberDouble": "2.0"}`, 0},
		{"divide decimal", `{"$divide": [{"$numberDecimal": "1"}, 4]}`, `{"$numberDecimal": "0.25"}`, 0},
		{"divide non number", `{"$divide": ["a", 1]}`, ``, mongoerr.TypeMismatch},
		{"divide by zero", `{"$divide": [1, 0.0]}`, ``, mongoerr.BadValue},
		{"subtract string", `{"$subtract": ["$d", "x"]}`, ``, mongoerr.TypeMismatch},
		{"mod decimal zero", `{"$mod": [1, {"$numberDecimal": "0"}]}`, ``, 5733415},
		{"range end not int", `{"$range": [0, 1.5]}`, ``, 34446},
		{"range step type", `{"$range": [0, 1, "x"]}`, ``, 34447},
		{"mod long", `{"$mod": ["$l", 10]}`, `{"$numberLong": "7"}`, 0},
		{"mod double", `{"$mod": [5.5, 2]}`, `1.5`, 0},
		{"abs int min", `{"$abs": {"$numberInt": "-2147483648"}}`, `{"$numberLong": "2147483648"}`, 0},
		{"ceil decimal", `{"$ceil": {"$numberDecimal": "1.2"}}`, `{"$numberDecimal": "2"}`, 0},
		{"floor negative decimal", `{"$floor": {"$numberDecimal": "-1.2"}}`, `{"$numberDecimal": "-2"}`, 0},
		{"pow int", `{"$pow": [3, 3]}`, `{"$numberInt": "27"}`, 0},
		{"pow negative exp", `{"$pow": [2, -1]}`, `0.5`, 0},
		{"pow zero negative", `{"$pow": [0, -1]}`, ``, 28764},
		{"pow base type", `{"$pow": ["a", 1]}`, ``, 28762},
		{"round int negative place", `{"$round": [1250, -2]}`, `{"$numberInt": "1200"}`, 0},
		{"round half even 2.5", `{"$round": 2.5}`, `2.0`, 0},
		{"round -2.5", `{"$round": -2.5}`, `-2.0`, 0},
		{"round decimal", `{"$round": [{"$numberDecimal": "1.255"}, 2]}`, `{"$numberDecimal": "1.26"}`, 0},
		{"trunc negative", `{"$trunc": [-1.99, 1]}`, `-1.9`, 0},
		{"round bad place", `{"$round": [1, 101]}`, ``, 51083},
		{"round null", `{"$round": ["$nosuch", 1]}`, `null`, 0},
		{"log10 negative", `{"$log10": -1}`, ``, 28761},
		// comparison
		{"eq arrays whole", `{"$eq": ["$arr", [1, 2, 3]]}`, `true`, 0},
		{"eq no array element match", `{"$eq": ["$arr", 1]}`, `false`, 0},
		{"missing lt null", `{"$lt": ["$nosuch", null]}`, `true`, 0},
		{"cmp strings", `{"$cmp": ["b", "a"]}`, `{"$numberInt": "1"}`, 0},
		{"cmp long double", `{"$cmp": ["$l", 1e300]}`, `{"$numberInt": "-1"}`, 0},
		// boolean and conditional
		{"and short circuit", `{"$and": [false, {"$divide": [1, 0]}]}`, `false`, 0},
		{"or truthy empty string", `{"$or": [""]}`, `true`, 0},
		{"not empty array", `{"$not": [[]]}`, `false`, 0},
		{"not decimal zero", `{"$not": {"$numberDecimal": "0"}}`, `true`, 0},
		{"cond lazy", `{"$cond": [true, 1, {"$divide": [1, 0]}]}`, `1`, 0},
		{"cond unknown key", `{"$cond": {"if": 1, "then": 1, "else": 1, "x": 1}}`, ``, 17083},
		{"ifNull multiple", `{"$ifNull": ["$nosuch", null, "$a"]}`, `5`, 0},
		{"ifNull one arg", `{"$ifNull": ["$a"]}`, ``, 1257300},
		{"switch not object", `{"$switch": 1}`, ``, 40060},
		{"switch no branches", `{"$switch": {"branches": []}}`, ``, 40068},
		{"let shadows", `{"$let": {"vars": {"a": 1}, "in": {"$let": {"vars": {"a": 2}, "in": "$$a"}}}}`, `2`, 0},
		{"let bad name", `{"$let": {"vars": {"A": 1}, "in": 1}}`, ``, 16870},
		// strings
		{"concat missing", `{"$concat": ["$nosuch", "a"]}`, `null`, 0},
		{"toLower null", `{"$toLower": null}`, `""`, 0},
		{"toUpper date", `{"$toUpper": "$d"}`, `"2020-02-29T23:59:59.999Z"`, 0},
		{"toLower array", `{"$toLower": [[1]]}`, ``, 16007},
		{"substrBytes past end", `{"$substrBytes": ["abc", 5, 2]}`, `""`, 0},
		{"substr start type", `{"$substr": ["abc", "x", 1]}`, ``, 16034},
		{"substrCP negative", `{"$substrCP": ["abc", -1, 1]}`, ``, 34454},
		{"strLenBytes number", `{"$strLenBytes": 1}`, ``, 34473},
		{"split null", `{"$split": [null, "a"]}`, `null`, 0},
		{"split non string", `{"$split": [1, "a"]}`, ``, 40085},
		{"trim default whitespace", `{"$trim": {"input": "\u00a0 x\t"}}`, `"x"`, 0},
		{"trim non string", `{"$trim": {"input": 1}}`, ``, 50699},
		{"trim unknown option", `{"$trim": {"input": "a", "x": 1}}`, ``, 50694},
		{"indexOfBytes start", `{"$indexOfBytes": ["abcabc", "b", 2]}`, `{"$numberInt": "4"}`, 0},
		{"indexOfBytes negative", `{"$indexOfBytes": ["abc", "b", -1]}`, ``, 40097},
		{"strcasecmp", `{"$strcasecmp": ["ABC", "abc"]}`, `{"$numberInt": "0"}`, 0},
		// arrays
		{"size wrong type", `{"$size": "$s"}`, ``, 17124},
		{"arrayElemAt null", `{"$arrayElemAt": ["$nosuch", 0]}`, `null`, 0},
		{"arrayElemAt fraction", `{"$arrayElemAt": ["$arr", 1.5]}`, ``, 28691},
		{"arrayElemAt not array", `{"$arrayElemAt": ["$s", 0]}`, ``, 28689},
		{"in numeric equality", `{"$in": [2.0, "$arr"]}`, `true`, 0},
		{"concatArrays null", `{"$concatArrays": ["$arr", null]}`, `null`, 0},
		{"concatArrays not array", `{"$concatArrays": ["$arr", 1]}`, ``, 28664},
		{"slice beyond", `{"$slice": ["$arr", 10]}`, `[1, 2, 3]`, 0},
		{"slice negative start", `{"$slice": ["$arr", -2, 1]}`, `[2]`, 0},
		{"slice bad count", `{"$slice": ["$arr", 0, 0]}`, ``, 28729},
		{"first empty array", `{"$first": [[]]}`, `MISSING`, 0},
		{"last null", `{"$last": null}`, `null`, 0},
		{"filter limit", `{"$filter": {"input": [1, 2, 3, 4], "cond": {"$gt": ["$$this", 1]}, "limit": 2}}`, `[2, 3]`, 0},
		{"filter null input", `{"$filter": {"input": null, "cond": true}}`, `null`, 0},
		{"filter bad input", `{"$filter": {"input": 1, "cond": true}}`, ``, 28651},
		{"filter missing cond", `{"$filter": {"input": []}}`, ``, 28650},
		{"map as", `{"$map": {"input": "$arr", "as": "v", "in": {"$add": ["$$v", "$a"]}}}`, `[6, 7, 8]`, 0},
		{"map bad input", `{"$map": {"input": "x", "in": 1}}`, ``, 16883},
		{"reduce concat", `{"$reduce": {"input": ["a", "b"], "initialValue": "", "in": {"$concat": ["$$value", "$$this"]}}}`, `"ab"`, 0},
		{"reduce missing in", `{"$reduce": {"input": [], "initialValue": 0}}`, ``, 40079},
		{"reduce missing initialValue", `{"$reduce": {"input": [], "in": 0}}`, ``, 40078},
		{"reduce bad input", `{"$reduce": {"input": 1, "initialValue": 0, "in": 1}}`, ``, 40080},
		{"range", `{"$range": [0, 10, 3]}`, `[0, 3, 6, 9]`, 0},
		{"range too big", `{"$range": [0, 2000000000]}`, ``, mongoerr.ExceededMemoryLimit},
		{"reverseArray", `{"$reverseArray": "$arr"}`, `[3, 2, 1]`, 0},
		{"sum expression array", `{"$sum": "$arr"}`, `6`, 0},
		{"sum expression args", `{"$sum": [1, "x", 2.5]}`, `3.5`, 0},
		{"avg expression", `{"$avg": [1, 2]}`, `1.5`, 0},
		{"avg no numbers", `{"$avg": "$s"}`, `null`, 0},
		{"max expression one array arg", `{"$max": ["$arr"]}`, `3`, 0},
		{"max expression two args", `{"$max": ["$arr", 1]}`, `[1, 2, 3]`, 0},
		{"min expression array", `{"$min": "$arr"}`, `1`, 0},
		// sets, searching, sorting, replacing
		{"setUnion", `{"$setUnion": [[1, 2], [2.0, 3], []]}`, `[1, 2, 3]`, 0},
		{"setUnion null", `{"$setUnion": [[1], null]}`, `null`, 0},
		{"setIntersection", `{"$setIntersection": [[1, 2, 2, 3], [3, 2]]}`, `[2, 3]`, 0},
		{"setDifference", `{"$setDifference": [[1, 2, 3], [2]]}`, `[1, 3]`, 0},
		{"setEquals", `{"$setEquals": [[1, 2, 2], [2, 1]]}`, `true`, 0},
		{"setEquals null errors", `{"$setEquals": [[1], null]}`, ``, 17044},
		{"setIsSubset", `{"$setIsSubset": [[1], [1, 2]]}`, `true`, 0},
		{"setIsSubset bad second", `{"$setIsSubset": [[1], 1]}`, ``, 17042},
		{"anyElementTrue", `{"$anyElementTrue": [[0, null, "x"]]}`, `true`, 0},
		{"allElementsTrue", `{"$allElementsTrue": [[1, false]]}`, `false`, 0},
		{"allElementsTrue not array", `{"$allElementsTrue": 1}`, ``, 17040},
		{"indexOfArray", `{"$indexOfArray": [["a", "abc", "de", ["de"]], "de"]}`, `{"$numberInt": "2"}`, 0},
		{"indexOfArray range", `{"$indexOfArray": [[1, 2, 1, 2], 2, 2]}`, `{"$numberInt": "3"}`, 0},
		{"indexOfArray not array", `{"$indexOfArray": ["x", 1]}`, ``, 40090},
		{"indexOfCP", `{"$indexOfCP": ["cafétéria", "é"]}`, `{"$numberInt": "3"}`, 0},
		{"indexOfCP start", `{"$indexOfCP": ["cafétéria", "é", 4]}`, `{"$numberInt": "5"}`, 0},
		{"sortArray values", `{"$sortArray": {"input": [1, 4, 1, 6, 12, 5], "sortBy": 1}}`, `[1, 1, 4, 5, 6, 12]`, 0},
		{"sortArray by field desc", `{"$sortArray": {"input": [{"a": 1}, {"a": 3}, {"b": 1}], "sortBy": {"a": -1}}}`, `[{"a": 3}, {"a": 1}, {"b": 1}]`, 0},
		{"sortArray bad input", `{"$sortArray": {"input": 1, "sortBy": 1}}`, ``, 2942504},
		{"replaceOne", `{"$replaceOne": {"input": "blue paint blue", "find": "blue", "replacement": "red"}}`, `"red paint blue"`, 0},
		{"replaceAll", `{"$replaceAll": {"input": "blue paint blue", "find": "blue", "replacement": "red"}}`, `"red paint red"`, 0},
		{"replaceAll null", `{"$replaceAll": {"input": null, "find": "a", "replacement": "b"}}`, `null`, 0},
		{"replaceAll bad find", `{"$replaceAll": {"input": "a", "find": 1, "replacement": "b"}}`, ``, 51745},
		// types and conversion
		{"type decimal", `{"$type": "$dec"}`, `"decimal"`, 0},
		{"isNumber", `{"$isNumber": "$l"}`, `true`, 0},
		{"toInt double truncates", `{"$toInt": 2.9}`, `{"$numberInt": "2"}`, 0},
		{"toInt overflow", `{"$toInt": "$l"}`, ``, mongoerr.ConversionFailure},
		{"toInt bool", `{"$toInt": true}`, `{"$numberInt": "1"}`, 0},
		{"toLong string", `{"$toLong": "123"}`, `{"$numberLong": "123"}`, 0},
		{"toDouble date", `{"$toDouble": {"$date": "1970-01-01T00:00:01Z"}}`, `1000.0`, 0},
		{"toString double", `{"$toString": 2.5}`, `"2.5"`, 0},
		{"toString bool", `{"$toString": false}`, `"false"`, 0},
		{"toString array", `{"$toString": [[1]]}`, ``, mongoerr.ConversionFailure},
		{"toDate long", `{"$toDate": {"$numberLong": "0"}}`, `{"$date": "1970-01-01T00:00:00Z"}`, 0},
		{"toDate string", `{"$toDate": "2018-03-20"}`, `{"$date": "2018-03-20T00:00:00Z"}`, 0},
		{"toObjectId", `{"$toObjectId": "5ab9cbfa31c2ab715d42129e"}`, `{"$oid": "5ab9cbfa31c2ab715d42129e"}`, 0},
		{"toDecimal double", `{"$toDecimal": 0.5}`, `{"$numberDecimal": "0.5"}`, 0},
		{"convert unknown type", `{"$convert": {"input": 1, "to": "nope"}}`, ``, mongoerr.BadValue},
		{"convert missing to", `{"$convert": {"input": 1}}`, ``, mongoerr.FailedToParse},
		{"convert onError only conversion", `{"$convert": {"input": "x", "to": "double", "onError": "bad"}}`, `"bad"`, 0},
		// dates
		{"leap day", `{"$dayOfMonth": "$d"}`, `{"$numberInt": "29"}`, 0},
		{"date array form", `{"$month": ["$d"]}`, `{"$numberInt": "2"}`, 0},
		{"timezone rolls day", `{"$dayOfMonth": {"date": "$d", "timezone": "+01:00"}}`, `{"$numberInt": "1"}`, 0},
		{"timezone bad", `{"$hour": {"date": "$d", "timezone": "Mars/Base"}}`, ``, 40485},
		{"date from objectId", `{"$year": {"$toObjectId": "5ab9cbfa31c2ab715d42129e"}}`, `{"$numberInt": "2018"}`, 0},
		{"isoWeekYear", `{"$isoWeekYear": {"$date": "2021-01-01T00:00:00Z"}}`, `{"$numberLong": "2020"}`, 0},
		{"isoDayOfWeek sunday", `{"$isoDayOfWeek": {"$date": "2023-01-01T00:00:00Z"}}`, `{"$numberInt": "7"}`, 0},
		{"dateToString onNull", `{"$dateToString": {"date": "$nosuch", "onNull": "none"}}`, `"none"`, 0},
		{"dateToString tz", `{"$dateToString": {"date": "$d", "format": "%Y-%m-%d %H:%M %z %Z", "timezone": "-02:00"}}`, `"2020-02-29 21:59 -0200 -120"`, 0},
		{"dateToString unmatched percent", `{"$dateToString": {"date": "$d", "format": "abc%"}}`, ``, 18535},
		{"dateToString missing date", `{"$dateToString": {"format": "%Y"}}`, ``, 18628},
		// objects
		{"mergeObjects array arg", `{"$mergeObjects": [[{"a": 1}, {"a": 2, "b": 3}]]}`, `{"a": 2, "b": 3}`, 0},
		{"objectToArray", `{"$objectToArray": {"a": 1}}`, `[{"k": "a", "v": 1}]`, 0},
		{"arrayToObject pairs", `{"$arrayToObject": [[["a", 1], ["b", 2]]]}`, `{"a": 1, "b": 2}`, 0},
		{"arrayToObject kv", `{"$arrayToObject": [[{"k": "a", "v": 1}]]}`, `{"a": 1}`, 0},
		// parse errors
		{"unknown operator", `{"$nope": 1}`, ``, mongoerr.InvalidPipelineOperator},
		{"two keys operator", `{"$add": [], "$sub": []}`, ``, 15983},
		{"dollar alone", `"$"`, ``, 16872},
		{"empty path component", `"$a..b"`, ``, 15998},
		{"dollar in path", `"$a.$b"`, ``, 16410},
		{"object field dotted", `{"a.b": 1}`, ``, 16412},
		{"empty var", `"$$"`, ``, 16869},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse(jv(t, tc.expr))
			var got bson.RawValue
			if err == nil {
				got, err = Eval(e, doc)
			}
			if tc.code != 0 {
				if mongoerr.CodeOf(err) != tc.code {
					t.Fatalf("want code %d, got %v (value %v)", tc.code, err, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.want == "MISSING" {
				if !IsMissing(got) {
					t.Fatalf("want missing, got %v", got)
				}
				return
			}
			want := jv(t, tc.want)
			if Compare(got, want) != 0 {
				t.Fatalf("got %v (%s), want %v (%s)", got, TypeName(got), want, TypeName(want))
			}
			// Strict type check where the expectation names a type.
			if strings.Contains(tc.want, "$number") && got.Type != want.Type {
				t.Fatalf("got type %s, want %s", TypeName(got), TypeName(want))
			}
		})
	}
}

func TestTruthy(t *testing.T) {
	tests := []struct {
		v    string
		want bool
	}{
		{`false`, false}, {`null`, false}, {`0`, false}, {`0.0`, false},
		{`{"$numberLong": "0"}`, false}, {`{"$numberDecimal": "0"}`, false}, {`{"$undefined": true}`, false},
		{`true`, true}, {`""`, true}, {`[]`, true}, {`{}`, true}, {`-1`, true}, {`"false"`, true},
	}
	for _, tc := range tests {
		if got := Truthy(jv(t, tc.v)); got != tc.want {
			t.Errorf("Truthy(%s) = %v, want %v", tc.v, got, tc.want)
		}
	}
	if Truthy(Missing) {
		t.Error("Truthy(missing) = true")
	}
}

func TestDepthLimit(t *testing.T) {
	deep := func(n int) string {
		return strings.Repeat(`{"$abs": `, n) + "1" + strings.Repeat("}", n)
	}
	if _, err := Parse(jv(t, deep(MaxDepth-1))); err != nil {
		t.Fatalf("depth %d refused: %v", MaxDepth-1, err)
	}
	_, err := Parse(jv(t, deep(MaxDepth+1)))
	if mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Fatalf("want BadValue for a too deep expression, got %v", err)
	}
	// Deep arrays and objects count too.
	arr := strings.Repeat("[", 150) + strings.Repeat("]", 150)
	if _, err := Parse(jv(t, arr)); mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Fatalf("want BadValue for deep arrays, got %v", err)
	}
}

func TestHelpers(t *testing.T) {
	e, err := Parse(String("$a.b"))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := FieldPath(e); !ok || p != "a.b" {
		t.Fatalf("FieldPath = %q, %v", p, ok)
	}
	c, _ := Parse(Int32(3))
	if v, ok := IsConstant(c); !ok || v.Int32() != 3 {
		t.Fatalf("IsConstant = %v, %v", v, ok)
	}
	if got := Avg(Int64(7), 2); got.Double() != 3.5 {
		t.Fatalf("Avg = %v", got)
	}
	if got := Add(Int32(1), String("x")); got.Int32() != 1 {
		t.Fatalf("Add ignores non-numbers: %v", got)
	}
	// A bound variable from the context.
	v, _ := Parse(String("$$x"))
	out, err := v.Eval(&Context{Vars: map[string]bson.RawValue{"x": Int32(9)}})
	if err != nil || out.Int32() != 9 {
		t.Fatalf("var = %v, %v", out, err)
	}
}

func FuzzParseExpr(f *testing.F) {
	seeds := []string{
		`{"v": {"$add": [1, "$a"]}}`,
		`{"v": {"$cond": {"if": true, "then": "$x", "else": {"$literal": 1}}}}`,
		`{"v": {"$map": {"input": "$arr", "in": {"$multiply": ["$$this", 2]}}}}`,
		`{"v": {"$reduce": {"input": [1, 2], "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}}}`,
		`{"v": {"$dateToString": {"date": "$d", "format": "%Y %j %U"}}}`,
		`{"v": {"$switch": {"branches": [{"case": true, "then": 1}]}}}`,
		`{"v": {"$substrCP": ["héllo", 1, 2]}}`,
		`{"v": {"$range": [0, 100, 7]}}`,
		`{"v": {"$round": [{"$numberDecimal": "1.5"}, -3]}}`,
		`{"v": "$$ROOT.a.b"}`,
	}
	for _, s := range seeds {
		var d bson.Raw
		if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(d))
		f.Add([]byte(s))
	}
	doc := jdoc(f, testDoc)
	f.Fuzz(func(t *testing.T, data []byte) {
		raw := bson.Raw(data)
		if raw.Validate() != nil {
			// Not BSON: try it as extended JSON text.
			if bson.UnmarshalExtJSON(data, false, &raw) != nil {
				return
			}
		}
		v, err := raw.LookupErr("v")
		if err != nil {
			return
		}
		e, err := Parse(v)
		if err != nil {
			if mongoerr.CodeOf(err) == mongoerr.InternalError {
				t.Fatalf("parse error without a MongoDB code: %v", err)
			}
			return
		}
		if _, err := Eval(e, doc); err != nil && mongoerr.CodeOf(err) == mongoerr.InternalError {
			t.Fatalf("eval error without a MongoDB code: %v", err)
		}
	})
}

func TestNestedLoopsBounded(t *testing.T) {
	e, err := Parse(jv(t, `{"$map": {"input": {"$range": [0, 1000000]}, "in": {"$size": {"$range": [0, 1000000]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Eval(e, jdoc(t, `{}`)); mongoerr.CodeOf(err) != mongoerr.ExceededMemoryLimit {
		t.Fatalf("want ExceededMemoryLimit, got %v", err)
	}
}

// FuzzEach feeds arbitrary bytes to the raw BSON walker used on every
// document: it must return an error, never panic, on malformed input, and
// evaluating a field path over such a document must not panic either.
func FuzzEach(f *testing.F) {
	f.Add([]byte(jdoc(f, testDoc)))
	f.Add([]byte{5, 0, 0, 0, 0})
	f.Add([]byte{12, 0, 0, 0, 2, 'a', 0, 0xff, 0xff, 0xff, 0x7f, 0})
	path, _ := Parse(String("$docs.x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Each(data, func(string, bson.RawValue) bool { return true })
		_ = Lookup(data, "a")
		_, _ = Eval(path, bson.Raw(data))
	})
}
