package query

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// doc parses relaxed extended JSON into a document.
func doc(t testing.TB, s string) bson.Raw {
	t.Helper()
	var d bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
		t.Fatalf("bad test document %s: %v", s, err)
	}
	return d
}

// js renders a document as relaxed extended JSON.
func js(d bson.Raw) string {
	b, err := bson.MarshalExtJSON(d, false, false)
	if err != nil {
		return "<invalid: " + err.Error() + ">"
	}
	return string(b)
}

// val parses `{"v": <x>}` and returns x.
func val(t testing.TB, s string) bson.RawValue {
	t.Helper()
	return doc(t, `{"v": `+s+`}`).Lookup("v")
}

// relaxed renders a value as compact relaxed extended JSON.
func relaxed(v bson.RawValue) string {
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false)
	if err != nil {
		return "<invalid: " + err.Error() + ">"
	}
	s := string(b)
	return s[len(`{"v":`) : len(s)-1]
}
