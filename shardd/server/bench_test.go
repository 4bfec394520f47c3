package server

import (
	"context"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/shardclient"
)

// BenchmarkInsertOne: one synced single-document insert per call over a
// real gRPC connection (loopback), at the benchmark's parallelism.
func BenchmarkInsertOne(b *testing.B) {
	f := startB(b)
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			doc := raw(b, bson.D{{Key: "_id", Value: next.Add(1)}, {Key: "x", Value: "payload"}})
			if _, err := f.cli.Insert(context.Background(), ns, []bson.Raw{doc}, shardclient.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFindAll10k: a full scan of 10,000 small documents through a
// cursor (101-document first batch, then 16 MiB getMores).
func BenchmarkFindAll10k(b *testing.B) {
	f := startB(b)
	docs := make([]bson.Raw, 0, 1000)
	for i := 0; i < 10000; i++ {
		docs = append(docs, raw(b, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: i % 100}}))
		if len(docs) == cap(docs) {
			if _, err := f.cli.Insert(context.Background(), ns, docs, shardclient.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
			docs = docs[:0]
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := f.cli.FindAll(context.Background(), ns, shardclient.Find{})
		if err != nil || len(out) != 10000 {
			b.Fatal(len(out), err)
		}
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "docs/s")
}

// BenchmarkUpdateByID: one synced $set of one document found by _id per
// call (YCSB's update), over 10,000 documents of ~1 KB, at the benchmark's
// parallelism.
func BenchmarkUpdateByID(b *testing.B) {
	f := startB(b)
	ctx := context.Background()
	const n = 10000
	pad := make([]byte, 1000)
	for i := range pad {
		pad[i] = 'x'
	}
	var docs []bson.Raw
	for i := range n {
		docs = append(docs, raw(b, bson.D{{Key: "_id", Value: int64(i)}, {Key: "f", Value: string(pad)}}))
		if len(docs) == 1000 {
			if _, err := f.cli.Insert(ctx, ns, docs, shardclient.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
			docs = nil
		}
	}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := next.Add(7919) % n
			st := shardclient.UpdateStatement{Filter: raw(b, bson.D{{Key: "_id", Value: id}}),
				Update: raw(b, bson.D{{Key: "$set", Value: bson.D{{Key: "f", Value: "y"}}}})}
			if _, err := f.cli.Update(ctx, ns, []shardclient.UpdateStatement{st}, shardclient.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
