package query

import (
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func benchDoc(b *testing.B, i int) bson.Raw {
	items := bson.A{}
	for j := 0; j < 10; j++ {
		items = append(items, bson.D{{Key: "sku", Value: fmt.Sprintf("s%d", j)}, {Key: "qty", Value: int32((i + j) % 11)},
			{Key: "tags", Value: bson.A{"a", "b", fmt.Sprintf("t%d", j)}}})
	}
	d, err := bson.Marshal(bson.D{
		{Key: "_id", Value: int32(i)}, {Key: "name", Value: fmt.Sprintf("user%d", i)}, {Key: "age", Value: int32(i % 90)},
		{Key: "city", Value: "Lyon"}, {Key: "score", Value: float64(i%1000) / 7}, {Key: "active", Value: i%2 == 0},
		{Key: "address", Value: bson.D{{Key: "zip", Value: "69001"}, {Key: "street", Value: "rue X"}}},
		{Key: "k", Value: int32((i * 7919) % 10007)}, {Key: "items", Value: items},
	})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func benchFilter(b *testing.B, filter bson.D) {
	raw, err := bson.Marshal(filter)
	if err != nil {
		b.Fatal(err)
	}
	f, err := ParseFilter(raw)
	if err != nil {
		b.Fatal(err)
	}
	docs := make([]bson.Raw, 64)
	for i := range docs {
		docs[i] = benchDoc(b, i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		if f.Match(docs[i%len(docs)]) {
			n++
		}
	}
	_ = n
}

func BenchmarkFilterEquality(b *testing.B) {
	benchFilter(b, bson.D{{Key: "city", Value: "Lyon"}})
}

func BenchmarkFilterDottedRange(b *testing.B) {
	benchFilter(b, bson.D{{Key: "items.qty", Value: bson.D{{Key: "$gt", Value: 9}}}})
}

func BenchmarkFilterIn100(b *testing.B) {
	vals := bson.A{}
	for i := 0; i < 100; i++ {
		vals = append(vals, int32(i*3))
	}
	benchFilter(b, bson.D{{Key: "age", Value: bson.D{{Key: "$in", Value: vals}}}})
}

func BenchmarkFilterNestedElemMatch(b *testing.B) {
	benchFilter(b, bson.D{{Key: "items", Value: bson.D{{Key: "$elemMatch", Value: bson.D{
		{Key: "qty", Value: bson.D{{Key: "$gte", Value: 10}}},
		{Key: "tags", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "$eq", Value: "t9"}}}}},
	}}}}})
}

func BenchmarkFilterRegex(b *testing.B) {
	benchFilter(b, bson.D{{Key: "name", Value: bson.Regex{Pattern: "^user1", Options: "i"}}})
}

func BenchmarkFindSort10k(b *testing.B) {
	docs := make([]bson.Raw, 10000)
	for i := range docs {
		docs[i] = benchDoc(b, i)
	}
	sortSpec, _ := bson.Marshal(bson.D{{Key: "k", Value: 1}, {Key: "_id", Value: -1}})
	filter, _ := bson.Marshal(bson.D{{Key: "active", Value: true}})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := Find(docs, FindSpec{Filter: filter, Sort: sortSpec, Limit: 100})
		if err != nil || len(out) != 100 {
			b.Fatalf("Find: %d docs, %v", len(out), err)
		}
	}
}

func BenchmarkProjectionInclusion(b *testing.B) {
	d := benchDoc(b, 1)
	spec, _ := bson.Marshal(bson.D{{Key: "name", Value: 1}, {Key: "address.zip", Value: 1}, {Key: "items.sku", Value: 1}})
	p, err := ParseProjection(spec)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Apply(d, -1); err != nil {
			b.Fatal(err)
		}
	}
}
