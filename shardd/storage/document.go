package storage

import (
	"encoding/binary"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// DefaultMaxDocumentSize is MongoDB's BSON document limit (16 MiB).
const DefaultMaxDocumentSize = 16 * 1024 * 1024

// idKey is key(_id): the encoding of an _id in document keys and at the end
// of index entries. It equals the one-component tuple of the _id_ index, so
// ScanIndex over "_id_" takes the same bounds as any other index.
func idKey(id bson.RawValue) []byte { return keys.Encode(id) }

// checkID rejects _id values MongoDB refuses to store.
func checkID(id bson.RawValue) error {
	switch id.Type {
	case 0:
		return mongoerr.New(mongoerr.InvalidIdField, "_id value is missing")
	case bson.TypeArray:
		return mongoerr.New(mongoerr.InvalidIdField, "The '_id' value cannot be of type array")
	case bson.TypeRegex:
		return mongoerr.New(mongoerr.InvalidIdField, "can't use a regex for _id")
	case bson.TypeUndefined:
		return mongoerr.New(mongoerr.InvalidIdField, "can't use a undefined for _id")
	case bson.TypeEmbeddedDocument:
		elems, err := bsoncore.Document(id.Value).Elements()
		if err != nil {
			return mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in _id: %v", err)
		}
		for _, el := range elems {
			if strings.HasPrefix(el.Key(), "$") {
				return mongoerr.New(mongoerr.DollarPrefixedFieldName, "_id fields may not contain '$'-prefixed fields: %s is not valid for storage.", el.Key())
			}
		}
	}
	if err := (bsoncore.Value{Type: bsoncore.Type(id.Type), Data: id.Value}).Validate(); err != nil {
		return mongoerr.New(mongoerr.InvalidBSON, "invalid _id value: %v", err)
	}
	return nil
}

// prepareDoc checks a document a client wants stored and returns the bytes
// to store, with _id as the first field (MongoDB moves it there) and a fresh
// ObjectId when it has none. forceID, when set, is the _id the document must
// have (replacement): a document without _id gets it, one with a different
// _id is refused. The input is never modified.
//
// Errors: BSONObjectTooLarge (10334), InvalidBSON (22),
// DollarPrefixedFieldName (52), InvalidIdField (53), ImmutableField (66).
func prepareDoc(doc bson.Raw, maxSize int, forceID *bson.RawValue) (bson.Raw, bson.RawValue, error) {
	if len(doc) > maxSize {
		return nil, bson.RawValue{}, mongoerr.New(mongoerr.BSONObjectTooLarge,
			"object to insert too large. size in bytes: %d, max size: %d", len(doc), maxSize)
	}
	if len(doc) < 5 || int(binary.LittleEndian.Uint32(doc)) != len(doc) {
		return nil, bson.RawValue{}, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON document: length header does not match %d bytes", len(doc))
	}
	if err := bsoncore.Document(doc).Validate(); err != nil {
		return nil, bson.RawValue{}, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON document: %v", err)
	}
	var (
		idElem  bsoncore.Element
		idFirst bool
		rest    = doc[4 : len(doc)-1]
		pos     int
	)
	for len(rest) > 0 {
		el, r, ok := bsoncore.ReadElement(rest)
		if !ok {
			return nil, bson.RawValue{}, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON document: truncated element")
		}
		key := el.Key()
		switch {
		case key == "_id" && idElem == nil:
			idElem, idFirst = el, pos == 0
		case key == "_id":
			return nil, bson.RawValue{}, mongoerr.New(mongoerr.BadValue, "document has more than one _id field")
		case strings.HasPrefix(key, "$"):
			return nil, bson.RawValue{}, mongoerr.New(mongoerr.DollarPrefixedFieldName,
				"Document can't have $ prefixed field names: %s", key)
		}
		rest, pos = r, pos+1
	}
	var id bson.RawValue
	if idElem != nil {
		v := idElem.Value()
		id = bson.RawValue{Type: bson.Type(v.Type), Value: v.Data}
		if err := checkID(id); err != nil {
			return nil, bson.RawValue{}, err
		}
		if forceID != nil && keys.Compare(id, *forceID) != 0 {
			return nil, bson.RawValue{}, mongoerr.New(mongoerr.ImmutableField,
				"After applying the update, the (immutable) field '_id' was found to have been altered to _id: %s", id.String())
		}
	}
	if idElem != nil && idFirst {
		return doc, id, nil
	}
	if idElem == nil {
		if forceID != nil {
			id = *forceID
		} else {
			oid := bson.NewObjectID()
			id = bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]}
		}
		idElem = bsoncore.AppendValueElement(nil, "_id", bsoncore.Value{Type: bsoncore.Type(id.Type), Data: id.Value})
	}
	out := make([]byte, 4, len(doc)+len(idElem))
	out = append(out, idElem...)
	rest = doc[4 : len(doc)-1]
	for len(rest) > 0 {
		el, r, _ := bsoncore.ReadElement(rest)
		if el.Key() != "_id" {
			out = append(out, el...)
		}
		rest = r
	}
	out = append(out, 0)
	if len(out) > maxSize {
		return nil, bson.RawValue{}, mongoerr.New(mongoerr.BSONObjectTooLarge,
			"object to insert too large. size in bytes: %d, max size: %d", len(out), maxSize)
	}
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out, id, nil
}

// docID returns the _id of a stored document (always its first field).
func docID(doc []byte) (bson.RawValue, error) {
	if len(doc) < 5 {
		return bson.RawValue{}, ErrCorrupt
	}
	el, _, ok := bsoncore.ReadElement(doc[4:])
	if !ok || el.Key() != "_id" {
		return bson.RawValue{}, ErrCorrupt
	}
	v, err := el.ValueErr()
	if err != nil {
		return bson.RawValue{}, ErrCorrupt
	}
	return bson.RawValue{Type: bson.Type(v.Type), Value: v.Data}, nil
}
