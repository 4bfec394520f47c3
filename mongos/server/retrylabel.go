package server

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// retryableWriteLabel is the error label that tells a driver it may retry
// a retryable write (the retryable-writes specification): a MongoDB server
// adds it to the reply of a command that carries a txnNumber when the
// command's error, or its writeConcernError, has a retryable code.
const retryableWriteLabel = "RetryableWriteError"

// withRetryLabel adds errorLabels: ["RetryableWriteError"] to reply when
// req is a retryable write (it has a txnNumber) and the reply's error or
// writeConcernError code is retryable. The router retries such failures
// itself for a while (retry.go); the label lets the driver take over when
// that window ends. Replies that already carry errorLabels are left alone.
func withRetryLabel(req *Request, reply bson.Raw) bson.Raw {
	if _, err := req.Doc.LookupErr("txnNumber"); err != nil {
		return reply
	}
	if _, err := reply.LookupErr("errorLabels"); err == nil {
		return reply
	}
	retryable := func(c mongoerr.Code) bool { return c != 0 && (c.Retryable() || c.NotPrimary()) }
	label := false
	if ok, _ := reply.Lookup("ok").AsFloat64OK(); ok == 0 {
		if c, ok := reply.Lookup("code").AsInt64OK(); ok && retryable(mongoerr.Code(c)) {
			label = true
		}
	}
	if wce, ok := reply.Lookup("writeConcernError").DocumentOK(); ok {
		if c, ok := wce.Lookup("code").AsInt64OK(); ok && retryable(mongoerr.Code(c)) {
			label = true
		}
	}
	if !label {
		return reply
	}
	elems, err := reply.Elements()
	if err != nil {
		return reply
	}
	idx, out := bsoncore.AppendDocumentStart(nil)
	for _, e := range elems {
		out = append(out, e...)
	}
	aidx, out := bsoncore.AppendArrayElementStart(out, "errorLabels")
	out = bsoncore.AppendStringElement(out, "0", retryableWriteLabel)
	out, _ = bsoncore.AppendArrayEnd(out, aidx)
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return out
}
