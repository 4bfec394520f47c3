package aggregate

import (
	"context"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func benchDocs(b *testing.B, n int) []bson.Raw {
	b.Helper()
	docs := make([]bson.Raw, n)
	for i := range docs {
		d, err := bson.Marshal(bson.D{
			{Key: "_id", Value: i},
			{Key: "cat", Value: fmt.Sprintf("c%03d", i%100)},
			{Key: "qty", Value: int32(i % 50)},
			{Key: "price", Value: float64(i%1000) / 10},
			{Key: "name", Value: fmt.Sprintf("item-%d", i)},
			{Key: "tags", Value: bson.A{"a", "b", "c"}},
		})
		if err != nil {
			b.Fatal(err)
		}
		docs[i] = d
	}
	return docs
}

func runBench(b *testing.B, pipeline string, wantOut int) {
	docs := benchDocs(b, 100_000)
	p := mustParse(b, pipeline)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		out, err := p.Run(context.Background(), docs)
		if err != nil {
			b.Fatal(err)
		}
		if len(out) != wantOut {
			b.Fatalf("%d results, want %d", len(out), wantOut)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/doc")
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/100_000, "cpu-ns/doc")
	}
}

// BenchmarkGroup100k groups 100,000 documents into 100 groups with $sum
// and $avg.
func BenchmarkGroup100k(b *testing.B) {
	runBench(b, `[{"$group": {"_id": "$cat", "total": {"$sum": "$qty"}, "avgPrice": {"$avg": "$price"}, "n": {"$sum": 1}}}]`, 100)
}

// BenchmarkMatchProject100k filters 100,000 documents (about 40% pass) and
// projects two fields plus a computed one.
func BenchmarkMatchProject100k(b *testing.B) {
	runBench(b, `[{"$match": {"qty": {"$gte": 30}}}, {"$project": {"name": 1, "price": 1, "total": {"$multiply": ["$price", "$qty"]}}}]`, 40_000)
}

// BenchmarkSortLimit100k is a top-10 $sort over 100,000 documents.
func BenchmarkSortLimit100k(b *testing.B) {
	runBench(b, `[{"$sort": {"price": -1, "_id": 1}}, {"$limit": 10}]`, 10)
}
