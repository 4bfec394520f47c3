package server

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// FuzzParseIndexSpec feeds arbitrary bytes to the createIndexes spec
// parser: it must return a spec or an error, never panic.
func FuzzParseIndexSpec(f *testing.F) {
	for _, d := range []bson.D{
		{{Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "name", Value: "a_1"}},
		{{Key: "key", Value: bson.D{{Key: "a", Value: -1.0}, {Key: "b.c", Value: int64(1)}}}, {Key: "name", Value: "x"}, {Key: "unique", Value: true}, {Key: "sparse", Value: 1}},
		{{Key: "key", Value: bson.D{{Key: "a", Value: "hashed"}}}, {Key: "name", Value: "a_hashed"}},
		{{Key: "key", Value: bson.D{}}, {Key: "name", Value: ""}},
		{{Key: "key", Value: 5}},
		{{Key: "key", Value: bson.D{{Key: "a", Value: bson.NewDecimal128(0, 0)}}}, {Key: "name", Value: "z"}},
		{{Key: "v", Value: 2}, {Key: "background", Value: "yes"}},
	} {
		b, err := bson.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{5, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := doc("spec", b)
		if err != nil || d == nil {
			return
		}
		spec, err := parseIndexSpec(d)
		if err == nil && (spec.Name == "" || len(spec.Key) == 0) {
			t.Fatalf("accepted a spec without name or key: %+v", spec)
		}
	})
}

// FuzzRequests sends arbitrary bytes as the filter, projection, sort,
// update and pipeline of requests, straight to the handlers (no recovery
// interceptor in between): each must answer or fail with a MongoDB code,
// never panic.
func FuzzRequests(f *testing.F) {
	eng, err := storage.Open(f.TempDir(), storage.Options{Logger: logging.Nop(), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { eng.Close() })
	s, err := New(Options{Engine: eng})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	ctx := context.Background()
	var seedDocs [][]byte
	for i := 0; i < 20; i++ {
		seedDocs = append(seedDocs, raw(f, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: bson.A{i, "x", bson.D{{Key: "b", Value: i}}}}}))
	}
	if _, err := s.Insert(ctx, &shardpb.InsertRequest{Ns: ns, Documents: seedDocs}); err != nil {
		f.Fatal(err)
	}
	for _, d := range []any{
		bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 3}}}},
		bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "a.b", Value: 2}}, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{1, 2}}}}}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "c", Value: 1}}}},
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$a"}}}},
		bson.D{{Key: "a.$", Value: 1}},
		bson.D{{Key: "a", Value: -1}},
	} {
		f.Add([]byte(raw(f, d)), uint8(0))
	}
	f.Add([]byte{5, 0, 0, 0, 0}, uint8(3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		var err error
		switch which % 6 {
		case 0:
			_, err = s.Find(ctx, &shardpb.FindRequest{Ns: ns, Filter: b})
		case 1:
			_, err = s.Find(ctx, &shardpb.FindRequest{Ns: ns, Projection: b, Sort: b})
		case 2:
			_, err = s.Update(ctx, &shardpb.UpdateRequest{Ns: ns, Updates: []*shardpb.UpdateStatement{{Filter: b, Update: b}}})
		case 3:
			_, err = s.Aggregate(ctx, &shardpb.AggregateRequest{Ns: ns, Pipeline: [][]byte{b}})
		case 4:
			_, err = s.Count(ctx, &shardpb.CountRequest{Ns: ns, Filter: b})
		case 5:
			_, err = s.Insert(ctx, &shardpb.InsertRequest{Ns: "test.fuzz", Documents: [][]byte{b}})
		}
		if err != nil {
			if _, ok := mongoerr.As(err); !ok {
				t.Fatalf("error without a MongoDB code: %v", err)
			}
		}
	})
}
