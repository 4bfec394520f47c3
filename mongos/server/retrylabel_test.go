package server

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestWithRetryLabel(t *testing.T) {
	withTxn := doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "txnNumber", Value: int64(1)}})
	noTxn := doc(t, bson.D{{Key: "insert", Value: "c"}})
	notPrimary := doc(t, bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "x"}, {Key: "code", Value: int32(10107)}, {Key: "codeName", Value: "NotWritablePrimary"}})
	badValue := doc(t, bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "x"}, {Key: "code", Value: int32(2)}, {Key: "codeName", Value: "BadValue"}})
	wce := doc(t, bson.D{{Key: "n", Value: int32(1)}, {Key: "writeConcernError", Value: bson.D{{Key: "code", Value: int32(189)}, {Key: "errmsg", Value: "stepped down"}}}, {Key: "ok", Value: 1.0}})
	okReply := doc(t, bson.D{{Key: "n", Value: int32(1)}, {Key: "ok", Value: 1.0}})
	cases := []struct {
		name  string
		req   bson.Raw
		reply bson.Raw
		want  bool
	}{
		{"not primary, retryable write", withTxn, notPrimary, true},
		{"not primary, plain write", noTxn, notPrimary, false},
		{"bad value", withTxn, badValue, false},
		{"stepped down in writeConcernError", withTxn, wce, true},
		{"success", withTxn, okReply, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := withRetryLabel(&Request{Doc: c.req}, c.reply)
			labels, err := got.LookupErr("errorLabels")
			if has := err == nil; has != c.want {
				t.Fatalf("label: %v, want %v (%s)", has, c.want, got)
			}
			if c.want && labels.Array().Index(0).StringValue() != retryableWriteLabel {
				t.Fatalf("labels %s", labels)
			}
			if err := bson.Raw(got).Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
