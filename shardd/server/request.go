package server

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/storage"
)

// doc checks that b, a request field named field, is a valid BSON document
// and returns it; an empty b is an absent field (nil). Every BSON byte
// string of a request goes through doc (or docs) before anything reads it,
// so malformed input is an InvalidBSON error and never reaches a parser.
func doc(field string, b []byte) (bson.Raw, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if err := bson.Raw(b).Validate(); err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "%s is not a valid BSON document: %v", field, err)
	}
	return bson.Raw(b), nil
}

// docs is doc for a repeated field.
func docs(field string, bs [][]byte) ([]bson.Raw, error) {
	if len(bs) == 0 {
		return nil, nil
	}
	out := make([]bson.Raw, len(bs))
	for i, b := range bs {
		if len(b) == 0 {
			return nil, mongoerr.New(mongoerr.InvalidBSON, "%s[%d] is empty, not a BSON document", field, i)
		}
		d, err := doc(field, b)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

// checkNS validates a namespace ("db.collection").
func checkNS(ns string) error { return storage.ValidateNamespace(ns) }

// valueDoc wraps one BSON value as {v: value}, the wire form of a single
// value (proto/shard.proto).
func valueDoc(v bson.RawValue) []byte {
	if v.Type == 0 {
		return nil
	}
	b, err := bson.Marshal(bson.D{{Key: "v", Value: v}})
	if err != nil {
		return nil // a value read from a valid document always marshals
	}
	return b
}
