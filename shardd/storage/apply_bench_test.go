package storage

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkApplyOplog applies batches of 100 insert entries (one synced
// Pebble batch each), as a secondary does; compare with BenchmarkInsert*.
func BenchmarkApplyOplog(b *testing.B) {
	ctx := context.Background()
	p := openTest(b, Options{NoSync: true})
	const batch = 100
	n := b.N * batch
	for i := 0; i < n; i += 1000 {
		docs := make([]bson.Raw, 0, 1000)
		for j := i; j < min(i+1000, n); j++ {
			docs = append(docs, mustDoc(b, bson.D{{Key: "_id", Value: j}, {Key: "x", Value: j % 100}, {Key: "s", Value: "some payload of a typical size"}}))
		}
		if _, err := p.Insert(ctx, testNS, docs, WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	log, err := p.ReadOplog(OpTime{}, 0)
	if err != nil {
		b.Fatal(err)
	}
	s := openTest(b, Options{})
	b.ResetTimer()
	for i := 0; i < len(log); i += batch {
		if err := s.ApplyOplog(ctx, log[i:min(i+batch, len(log))]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(log))/b.Elapsed().Seconds(), "entries/s")
}
