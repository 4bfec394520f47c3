package catalog

import (
	"bytes"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func boundSeeds() []bson.D {
	return []bson.D{
		{{Key: "k", Value: bson.MinKey{}}},
		{{Key: "k", Value: bson.MaxKey{}}},
		{{Key: "k", Value: int64(-9223372036854775808)}, {Key: "x", Value: bson.MinKey{}}},
		{{Key: "a", Value: int32(5)}, {Key: "b.c", Value: "str"}, {Key: "n", Value: nil}},
		{{Key: "a", Value: 2.5}},
		{{Key: "a", Value: "quote\"d\\"}},
		{{Key: "a", Value: bson.NewObjectID()}},
		{{Key: "a", Value: bson.D{{Key: "x", Value: 1}}}},
		{{Key: "a", Value: true}},
		{},
	}
}

// The fast path must agree with the general Extended JSON decoder
// whenever it accepts an input.
func TestBoundJSONRoundTrip(t *testing.T) {
	for _, d := range boundSeeds() {
		raw := doc(t, d)
		j := boundToJSON(raw)
		back, err := boundFromJSON(j)
		mustOK(t, err)
		if !bytes.Equal(back, raw) {
			t.Fatalf("%s -> %s -> %s", raw, j, back)
		}
	}
}

func FuzzFastBoundFromJSON(f *testing.F) {
	for _, d := range boundSeeds() {
		b, _ := bson.Marshal(d)
		f.Add([]byte(boundToJSON(b)))
	}
	f.Add([]byte(`{"k":{"$numberLong":"99999999999999999999"}}`))
	f.Add([]byte(`{"k":{"$numberInt":"2147483648"}}`))
	f.Add([]byte(`{"k":1}`))
	f.Fuzz(func(t *testing.T, j []byte) {
		fast, ok := fastBoundFromJSON(j)
		if !ok {
			return
		}
		var slow bson.Raw
		if err := bson.UnmarshalExtJSON(j, true, &slow); err != nil {
			t.Fatalf("fast path accepted %q, general decoder says %v", j, err)
		}
		if !bytes.Equal(fast, slow) {
			t.Fatalf("%q: fast %s, general %s", j, fast, slow)
		}
	})
}
