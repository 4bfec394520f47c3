package update

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func benchApply(b *testing.B, docJSON string, updJSON string) {
	doc := mustDoc(b, docJSON)
	u, err := Parse(mustDoc(b, updJSON), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := u.Apply(doc, ApplyContext{MatchPos: -1}); err != nil {
			b.Fatal(err)
		}
	}
}

const smallDoc = `{"_id": 1, "name": "alice", "age": 30, "email": "alice@example.com",
	"address": {"city": "Paris", "zip": "75001"}, "tags": ["a", "b", "c"], "score": 12.5}`

func BenchmarkApplySetSmall(b *testing.B) {
	benchApply(b, smallDoc, `{"$set": {"age": 31, "address.city": "Lyon"}}`)
}

func BenchmarkApplyInc(b *testing.B) {
	benchApply(b, smallDoc, `{"$inc": {"age": 1, "score": 0.5}}`)
}

func BenchmarkParseSet(b *testing.B) {
	upd := mustDoc(b, `{"$set": {"age": 31, "address.city": "Lyon"}, "$inc": {"n": 1}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(upd, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyPushEachSort1000(b *testing.B) {
	vals := make(bson.A, 1000)
	for i := range vals {
		vals[i] = bson.D{{Key: "k", Value: int32((i * 7919) % 1000)}, {Key: "v", Value: "x"}}
	}
	doc, err := bson.Marshal(bson.D{{Key: "_id", Value: 1}, {Key: "arr", Value: vals}})
	if err != nil {
		b.Fatal(err)
	}
	u, err := Parse(mustDoc(b, `{"$push": {"arr": {"$each": [{"k": 5}, {"k": 500}], "$sort": {"k": 1}, "$slice": 1000}}}`), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := u.Apply(doc, ApplyContext{MatchPos: -1}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyPushEachSortScalars1000(b *testing.B) {
	vals := make(bson.A, 1000)
	for i := range vals {
		vals[i] = int32((i * 7919) % 1000)
	}
	doc, err := bson.Marshal(bson.D{{Key: "_id", Value: 1}, {Key: "arr", Value: vals}})
	if err != nil {
		b.Fatal(err)
	}
	u, err := Parse(mustDoc(b, `{"$push": {"arr": {"$each": [5, 500], "$sort": 1}}}`), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := u.Apply(doc, ApplyContext{MatchPos: -1}); err != nil {
			b.Fatal(err)
		}
	}
}
