package admin

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func mustRaw(t *testing.T, v any) bson.Raw {
	t.Helper()
	raw, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestParseDoc(t *testing.T) {
	cases := []struct {
		in   string
		want bson.D
	}{
		{`{"x": 1}`, bson.D{{Key: "x", Value: int32(1)}}},
		{`{x: 1}`, bson.D{{Key: "x", Value: int32(1)}}},
		{`{ x : 1, y: "a b" }`, bson.D{{Key: "x", Value: int32(1)}, {Key: "y", Value: "a b"}}},
		{`{x: 'it''s'}`, nil}, // two strings in a row: invalid JSON
		{`{x: 'q'}`, bson.D{{Key: "x", Value: "q"}}},
		{`{a.b: 2.5}`, bson.D{{Key: "a.b", Value: 2.5}}},
		{`{x: 5000000000}`, bson.D{{Key: "x", Value: int64(5000000000)}}},
		{`{x: MinKey, y: MaxKey}`, bson.D{{Key: "x", Value: bson.MinKey{}}, {Key: "y", Value: bson.MaxKey{}}}},
		{`{x: {"$minKey": 1}}`, bson.D{{Key: "x", Value: bson.MinKey{}}}},
		{`{x: {$oid: "5f0c1d2e3a4b5c6d7e8f9012"}}`, bson.D{{Key: "x", Value: mustOID(t, "5f0c1d2e3a4b5c6d7e8f9012")}}},
		{`{x: true, y: null, z: [1, "a:b"]}`, bson.D{{Key: "x", Value: true}, {Key: "y", Value: nil}, {Key: "z", Value: bson.A{int32(1), "a:b"}}}},
		{`{"k:1": 1}`, bson.D{{Key: "k:1", Value: int32(1)}}},
		{`{x: 1e3}`, bson.D{{Key: "x", Value: 1000.0}}},
		{``, nil},
		{`{x: }`, nil},
		{`{x: "open}`, nil},
		{`[1]`, nil},
	}
	for _, c := range cases {
		got, err := ParseDoc(c.in)
		if c.want == nil {
			if err == nil {
				t.Errorf("ParseDoc(%q) = %s, want an error", c.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseDoc(%q): %v", c.in, err)
			continue
		}
		if want := mustRaw(t, c.want); !bytes.Equal(want, got) {
			t.Errorf("ParseDoc(%q) = %s, want %s", c.in, got, bson.Raw(want))
		}
	}
}

func mustOID(t *testing.T, h string) bson.ObjectID {
	t.Helper()
	id, err := bson.ObjectIDFromHex(h)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestFormat(t *testing.T) {
	doc := mustRaw(t, bson.D{
		{Key: "x", Value: bson.MinKey{}}, {Key: "y", Value: bson.MaxKey{}}, {Key: "s", Value: "a\"b"},
		{Key: "n", Value: int64(7)}, {Key: "f", Value: 1.5}, {Key: "b", Value: false}, {Key: "z", Value: nil},
		{Key: "a", Value: bson.A{int32(1), bson.D{}}}, {Key: "a-b", Value: int32(2)},
		{Key: "d", Value: bson.DateTime(0)}, {Key: "ts", Value: bson.Timestamp{T: 3, I: 4}},
		{Key: "o", Value: mustOID(t, "5f0c1d2e3a4b5c6d7e8f9012")},
	})
	want := `{ x: MinKey, y: MaxKey, s: "a\"b", n: 7, f: 1.5, b: false, z: null, a: [1, {}], "a-b": 2, ` +
		`d: 1970-01-01T00:00:00Z, ts: Timestamp(3, 4), o: ObjectId("5f0c1d2e3a4b5c6d7e8f9012") }`
	if got := Doc(doc).String(); got != want {
		t.Errorf("Format:\n got %s\nwant %s", got, want)
	}
	if got := Doc(nil).String(); got != "" {
		t.Errorf("empty Doc = %q", got)
	}
	js, err := Doc(mustRaw(t, bson.D{{Key: "x", Value: bson.MinKey{}}, {Key: "n", Value: int32(1)}})).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != `{"x":{"$minKey":1},"n":1}` {
		t.Errorf("Doc JSON = %s", js)
	}
}

func TestServerError(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", mongo.CommandError{Code: 70, Name: "ShardNotFound", Message: `shard "x" not found`})
	se := serverError(err)
	if se == nil || se.Error() != `ShardNotFound (70): shard "x" not found` {
		t.Fatalf("serverError = %v", se)
	}
	// A reply without a code name gets pkg/mongoerr's.
	if se := serverError(mongo.CommandError{Code: 70, Message: "m"}); se == nil || se.Name != "ShardNotFound" {
		t.Fatalf("serverError without a name = %+v", se)
	}
	if se := serverError(errors.New("dial tcp: refused")); se != nil {
		t.Fatalf("serverError of a network error = %v", se)
	}
	c := &Client{uri: "mongodb://u:pw@h:1"}
	w := c.wrap("listShards", mongo.CommandError{Code: 13, Name: "Unauthorized", Message: "no"})
	if got, ok := AsServerError(w); !ok || got.Name != "Unauthorized" {
		t.Fatalf("wrap lost the server error: %v", w)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"mongodb://h:1":             "mongodb://h:1",
		"mongodb://u:secret@h:1/db": "mongodb://u:***@h:1/db",
		"mongodb://u@h:1":           "mongodb://u@h:1",
		"garbage":                   "garbage",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
