package aggregate

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// FuzzParsePipeline feeds arbitrary bytes (BSON, or extended JSON text) as a
// pipeline ({"p": [stages]})
// and runs what parses over a few documents: nothing may panic or hang,
// and every error must carry a MongoDB code.
func FuzzParsePipeline(f *testing.F) {
	seeds := []string{
		`{"p": [{"$match": {"a": {"$gt": 1}}}, {"$group": {"_id": "$b", "n": {"$sum": 1}, "v": {"$avg": "$a"}}}]}`,
		`{"p": [{"$project": {"a.b": 1, "c": {"$concat": ["$s", "x"]}}}, {"$sort": {"c": -1}}, {"$limit": 2}]}`,
		`{"p": [{"$unwind": {"path": "$arr", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": true}}, {"$count": "n"}]}`,
		`{"p": [{"$addFields": {"x": {"$map": {"input": "$arr", "in": {"$multiply": ["$$this", 2]}}}}}, {"$unset": ["s"]}]}`,
		`{"p": [{"$replaceRoot": {"newRoot": {"$mergeObjects": [{"z": 1}, "$$ROOT"]}}}, {"$sortByCount": "$z"}]}`,
		`{"p": [{"$skip": 1}, {"$set": {"d": {"$dateToString": {"date": "$$NOW"}}}}]}`,
	}
	for _, s := range seeds {
		var d bson.Raw
		if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(d))
		f.Add([]byte(s)) // the JSON text too: mutations of it stay closer to valid pipelines
	}
	docs := jdocs(f, `[{"_id": 1, "a": 2, "b": "x", "s": "str", "arr": [1, 2, 3]}, {"_id": 2, "a": 5.5, "b": null, "arr": []}, {"_id": 3}]`)
	f.Fuzz(func(t *testing.T, data []byte) {
		raw := bson.Raw(data)
		if raw.Validate() != nil {
			if bson.UnmarshalExtJSON(data, false, &raw) != nil {
				return
			}
		}
		v, err := raw.LookupErr("p")
		if err != nil || v.Type != bson.TypeArray {
			return
		}
		vals, err := bson.RawArray(v.Value).Values()
		if err != nil {
			return
		}
		var stages []bson.Raw
		for _, s := range vals {
			d, ok := s.DocumentOK()
			if !ok {
				return
			}
			stages = append(stages, d)
		}
		p, err := Parse(stages)
		if err != nil {
			if mongoerr.CodeOf(err) == mongoerr.InternalError {
				t.Fatalf("parse error without a MongoDB code: %v", err)
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := p.Run(ctx, docs); err != nil && mongoerr.CodeOf(err) == mongoerr.InternalError {
			t.Fatalf("run error without a MongoDB code: %v", err)
		}
		shard, merge := p.Split()
		out, err := shard.Run(ctx, docs)
		if err == nil {
			_, _ = merge.Run(ctx, merge.MergeSorted([][]bson.Raw{out}))
		}
	})
}
