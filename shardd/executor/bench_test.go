package executor

import (
	"context"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/plan"
	"github.com/psdb/psdb/shardd/storage"
)

// benchDocs is the collection size of the query benchmarks.
const benchDocs = 100_000

func benchStore(b *testing.B, indexed bool) (*Executor, string) {
	b.Helper()
	eng := openStore(b)
	ctx := context.Background()
	const ns = "bench.c"
	batch := make([]bson.Raw, 0, 1000)
	for i := 0; i < benchDocs; i++ {
		batch = append(batch, doc(b, bson.D{{Key: "_id", Value: i}, {Key: "k", Value: i % 1000}, {Key: "s", Value: fmt.Sprintf("v%06d", i)}}))
		if len(batch) == cap(batch) {
			if _, err := eng.Insert(ctx, ns, batch, storage.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if indexed {
		if _, err := eng.CreateIndex(ctx, ns, storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "k"}}}); err != nil {
			b.Fatal(err)
		}
	}
	return New(eng), ns
}

// BenchmarkFindEquality compares one query ({k: 7}, 100 of 100k documents
// match) answered by an index scan and by a collection scan.
func BenchmarkFindEquality(b *testing.B) {
	for _, indexed := range []bool{true, false} {
		name := "collscan"
		if indexed {
			name = "ixscan"
		}
		b.Run(name, func(b *testing.B) {
			x, ns := benchStore(b, indexed)
			spec := FindSpec{Filter: doc(b, bson.D{{Key: "k", Value: 7}})}
			p, err := x.Plan(ns, spec)
			if err != nil {
				b.Fatal(err)
			}
			if (p.Kind == plan.IndexScan) != indexed {
				b.Fatalf("plan kind %v", p.Kind)
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				docs, err := x.FindAll(ctx, ns, spec)
				if err != nil || len(docs) != benchDocs/1000 {
					b.Fatalf("%d docs, %v", len(docs), err)
				}
			}
		})
	}
}

// BenchmarkFindPointID is a point read by _id through the planner.
func BenchmarkFindPointID(b *testing.B) {
	x, ns := benchStore(b, false)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		docs, err := x.FindAll(ctx, ns, FindSpec{Filter: doc(b, bson.D{{Key: "_id", Value: i % benchDocs}})})
		if err != nil || len(docs) != 1 {
			b.Fatalf("%d docs, %v", len(docs), err)
		}
	}
}
