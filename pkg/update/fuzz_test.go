package update

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// FuzzParseUpdate feeds arbitrary bytes to Parse (with an optional array
// filter) and applies what parses to a few documents: nothing may panic or
// hang, every error must carry a MongoDB code, and every result must be
// valid BSON.
func FuzzParseUpdate(f *testing.F) {
	seeds := []struct{ update, filter string }{
		{`{"$set": {"a": 1, "b.c": [1, 2]}}`, ``},
		{`{"$unset": {"a": 1}, "$inc": {"n": 2147483647}}`, ``},
		{`{"$mul": {"d": {"$numberDecimal": "1.5"}}, "$min": {"x": null}, "$max": {"y": "s"}}`, ``},
		{`{"$rename": {"a": "z.q"}, "$currentDate": {"t": {"$type": "timestamp"}}}`, ``},
		{`{"$push": {"arr": {"$each": [3, 1, {"k": 2}], "$sort": {"k": -1}, "$slice": -2, "$position": -1}}}`, ``},
		{`{"$addToSet": {"arr": {"$each": [1, 1, 2]}}, "$pop": {"p": -1}}`, ``},
		{`{"$pull": {"arr": {"$gte": 2}}, "$pullAll": {"q": [1, "x"]}}`, ``},
		{`{"$set": {"arr.$": 9, "sub.$[].v": 1}}`, ``},
		{`{"$set": {"arr.$[e]": 0}}`, `{"e": {"$gt": 1}}`},
		{`{"$set": {"arr.5": 1, "arr.10": 2}}`, ``},
		{`{"$setOnInsert": {"_id": 7}}`, ``},
		{`{"a": 1, "_id": 1}`, ``},
		{`{}`, ``},
		{`{"$set": {"a": 1, "a.b": 1}}`, ``},
	}
	for _, s := range seeds {
		var af []byte
		if s.filter != "" {
			af = mustDoc(f, s.filter)
		}
		f.Add([]byte(mustDoc(f, s.update)), af)
	}
	// A $rename target holding a NUL (found by fuzzing: it produced a
	// field name BSON cannot hold).
	nul, err := bson.Marshal(bson.D{{Key: "$rename", Value: bson.D{{Key: "a", Value: "0\x000"}}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(nul, []byte(nil))
	docs := []bson.Raw{
		mustDoc(f, `{"_id": 1}`),
		mustDoc(f, `{"_id": 2, "a": 5, "n": 1, "arr": [1, 2, 3], "sub": [{"v": 1}, {"w": 2}], "p": [1], "q": ["x"]}`),
		mustDoc(f, `{"_id": {"x": 1}, "arr": [[1, 2], {"k": 1}], "b": {"c": null}, "d": {"$numberDecimal": "2"}}`),
	}
	f.Fuzz(func(t *testing.T, upd, af []byte) {
		if bson.Raw(upd).Validate() != nil {
			return
		}
		var opts Options
		if len(af) > 0 {
			opts.ArrayFilters = []bson.Raw{af}
		}
		u, err := Parse(upd, opts)
		if err != nil {
			if _, ok := mongoerr.As(err); !ok {
				t.Fatalf("Parse error without a MongoDB code: %v", err)
			}
			return
		}
		for _, d := range docs {
			for _, pos := range []int{-1, 0, 2} {
				for _, ins := range []bool{false, true} {
					out, _, err := u.Apply(d, ApplyContext{MatchPos: pos, Inserting: ins})
					if err != nil {
						if _, ok := mongoerr.As(err); !ok {
							t.Fatalf("Apply error without a MongoDB code: %v", err)
						}
						continue
					}
					if err := out.Validate(); err != nil {
						t.Fatalf("Apply produced invalid BSON: %v", err)
					}
				}
			}
			out, err := UpsertDocument(d, u, ApplyContext{MatchPos: -1})
			if err == nil {
				if err := out.Validate(); err != nil {
					t.Fatalf("UpsertDocument produced invalid BSON: %v", err)
				}
			} else if _, ok := mongoerr.As(err); !ok {
				t.Fatalf("UpsertDocument error without a MongoDB code: %v", err)
			}
		}
	})
}
