package storage

import (
	"bytes"
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// FuzzInsert feeds arbitrary bytes to Insert as a document. Whatever the
// input, Insert must not panic, must answer either success or a MongoDB
// code, a refused document must leave the store unchanged, and an accepted
// one must read back with the same fields and keep the indexes valid.
func FuzzInsert(f *testing.F) {
	seeds := []bson.D{
		{{Key: "_id", Value: 1}, {Key: "a", Value: "x"}},
		{{Key: "a", Value: bson.A{1, 2, bson.D{{Key: "c", Value: 3}}}}, {Key: "b", Value: bson.A{bson.D{{Key: "c", Value: 1}}, bson.D{}}}},
		{{Key: "u", Value: "same"}},
		{{Key: "$bad", Value: 1}},
		{{Key: "_id", Value: bson.A{1}}},
		{{Key: "a", Value: bson.A{}}, {Key: "b", Value: bson.D{{Key: "c", Value: bson.A{}}}}},
		{{Key: "a", Value: bson.A{1}}, {Key: "b", Value: bson.A{bson.D{{Key: "c", Value: 2}}}}},
	}
	for _, d := range seeds {
		f.Add([]byte(mustMarshal(d)))
	}
	f.Add([]byte{5, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0})
	f.Add([]byte("garbage"))

	e := openTest(f, Options{NoSync: true, MaxDocumentSize: 64 << 10})
	ctx := context.Background()
	for _, spec := range []IndexSpec{
		{Key: []IndexKeyPart{{Field: "a"}, {Field: "b.c", Desc: true}}},
		{Key: []IndexKeyPart{{Field: "u"}}, Unique: true, Sparse: true},
	} {
		if _, err := e.CreateIndex(ctx, testNS, spec); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := e.LastOpTime()
		res, err := e.Insert(ctx, testNS, []bson.Raw{data}, WriteOptions{Ordered: true})
		if err != nil {
			t.Fatalf("Insert call error: %v", err)
		}
		if len(res) != 1 {
			t.Fatalf("%d results", len(res))
		}
		if res[0].Err != nil {
			if _, ok := mongoerr.As(res[0].Err); !ok {
				t.Fatalf("error without a MongoDB code: %v", res[0].Err)
			}
			if e.LastOpTime() != before {
				t.Fatal("refused document wrote an oplog entry")
			}
			return
		}
		got, found, err := e.Get(testNS, res[0].ID)
		if err != nil || !found {
			t.Fatalf("accepted document not found: %v", err)
		}
		in, out := elementSet(t, data), elementSet(t, got)
		if _, hasID := in["_id"]; !hasID {
			delete(out, "_id")
		}
		if len(in) != len(out) {
			t.Fatalf("stored %x for input %x", got, data)
		}
		for k, v := range in {
			if !bytes.Equal(out[k], v) {
				t.Fatalf("field %q stored as %x, input %x", k, out[k], v)
			}
		}
		if _, err := e.Delete(ctx, testNS, res[0].ID); err != nil {
			t.Fatal(err)
		}
		if r, err := e.Validate(ctx, testNS); err != nil || !r.Valid {
			t.Fatalf("Validate after insert+delete of %x: %v %+v", data, err, r)
		}
	})
}

// elementSet returns a document's elements by field name.
func elementSet(t *testing.T, doc []byte) map[string][]byte {
	elems, err := bson.Raw(doc).Elements()
	if err != nil {
		t.Fatalf("elements of %x: %v", doc, err)
	}
	out := map[string][]byte{}
	for _, el := range elems {
		out[el.Key()] = el
	}
	return out
}
