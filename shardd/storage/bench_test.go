package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
)

// Benchmarks of the storage engine. Reproduce with
//
//	go test -run '^$' -bench . -benchtime 2s ./shardd/storage/
//
// Inserts are synced (the default Options); ns/op is per document.

func benchDoc(i int64) bson.Raw {
	return mustMarshal(bson.D{
		{Key: "_id", Value: i},
		{Key: "v", Value: i},
		{Key: "name", Value: fmt.Sprintf("user-%08d", i)},
		{Key: "score", Value: float64(i%1000) / 10},
	})
}

func benchEngine(b *testing.B, opts Options) *Engine {
	e := openTest(b, opts)
	if _, err := e.CreateIndex(context.Background(), testNS, IndexSpec{Key: []IndexKeyPart{{Field: "v"}}}); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkInsertSync measures synced single-document inserts (each Insert
// call is one document and waits for its WAL sync) by 1 and by 64
// concurrent writers. With group commit the 64 writers share syncs, so the
// cost per document falls by about the concurrency the disk sync allows.
func BenchmarkInsertSync(b *testing.B) {
	for _, conc := range []int{1, 64} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			e := benchEngine(b, Options{})
			ctx := context.Background()
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			if conc == 1 {
				for range b.N {
					insertBench(b, e, ctx, next.Add(1))
				}
			} else {
				b.SetParallelism((conc + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						insertBench(b, e, ctx, next.Add(1))
					}
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
		})
	}
}

func insertBench(b *testing.B, e *Engine, ctx context.Context, i int64) {
	res, err := e.Insert(ctx, testNS, []bson.Raw{benchDoc(i)}, WriteOptions{Ordered: true})
	if err != nil || res[0].Err != nil {
		b.Fatalf("insert: %v %v", err, res)
	}
}

// loadBench fills the collection with n documents in batches.
func loadBench(b *testing.B, e *Engine, n int) {
	for lo := 0; lo < n; lo += 1000 {
		docs := make([]bson.Raw, 0, 1000)
		for i := lo; i < lo+1000 && i < n; i++ {
			docs = append(docs, benchDoc(int64(i)))
		}
		if _, err := e.Insert(context.Background(), testNS, docs, WriteOptions{Ordered: true}); err != nil {
			b.Fatal(err)
		}
	}
}

const benchDocs = 100_000

// BenchmarkGetByID measures point reads by _id over 100k documents.
func BenchmarkGetByID(b *testing.B) {
	e := benchEngine(b, Options{})
	loadBench(b, e, benchDocs)
	ids := make([]bson.RawValue, 1024)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range ids {
		ids[i] = bson.RawValue{Type: bson.TypeInt64, Value: bson.Raw(mustMarshal(bson.D{{Key: "x", Value: rng.Int64N(benchDocs)}})).Lookup("x").Value}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_, found, err := e.Get(testNS, ids[i%len(ids)])
		if err != nil || !found {
			b.Fatalf("get: %v %v", found, err)
		}
	}
}

// BenchmarkIndexScan measures a range scan of 1000 consecutive keys of a
// secondary index (entries plus their documents) over 100k documents, on a
// snapshot. ns/op is per 1000-key scan.
func BenchmarkIndexScan(b *testing.B) {
	e := benchEngine(b, Options{})
	loadBench(b, e, benchDocs)
	s, err := e.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	rng := rand.New(rand.NewPCG(3, 4))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		lo := rng.Int64N(benchDocs - 1000)
		it, err := s.ScanIndex(testNS, "v_1",
			keys.Encode(rv(b, lo)), keys.Encode(rv(b, lo+1000)), false)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for it.Next() {
			n++
		}
		if it.Err() != nil || n != 1000 {
			b.Fatalf("scan: %d entries, %v", n, it.Err())
		}
		_ = it.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/key")
}
