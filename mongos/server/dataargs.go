package server

import (
	"errors"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// collectionNS returns "db.coll" from the command's first field (a
// collection name), or an InvalidNamespace/TypeMismatch error.
func collectionNS(req *Request) (string, error) {
	v := req.Doc.Index(0).Value()
	coll, ok := v.StringValueOK()
	if !ok {
		return "", mongoerr.New(mongoerr.InvalidNamespace, "collection name has invalid type %s", typeName(v.Type))
	}
	ns := req.DB + "." + coll
	if _, _, err := catalog.SplitNS(ns); err != nil || coll == "" {
		return "", mongoerr.New(mongoerr.InvalidNamespace, "Invalid namespace specified '%s'", ns)
	}
	req.NS = ns
	return ns, nil
}

// docArg returns an optional document field (nil when absent).
func docArg(doc bson.Raw, name string) (bson.Raw, error) {
	v, err := doc.LookupErr(name)
	if err != nil || v.Type == bson.TypeNull {
		return nil, nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected type 'object'", name, typeName(v.Type))
	}
	return d, nil
}

// intArg returns an optional integral number field (def when absent).
func intArg(doc bson.Raw, name string, def int64) (int64, error) {
	v, err := doc.LookupErr(name)
	if err != nil || v.Type == bson.TypeNull {
		return def, nil
	}
	var f float64
	switch v.Type {
	case bson.TypeInt32:
		return int64(v.Int32()), nil
	case bson.TypeInt64:
		return v.Int64(), nil
	case bson.TypeDouble:
		f = v.Double()
	default:
		return 0, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected types '[long, int, decimal, double]'", name, typeName(v.Type))
	}
	if math.IsNaN(f) || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
		return 0, mongoerr.New(mongoerr.BadValue, "BSON field '%s' has a non-integral value", name)
	}
	return int64(f), nil
}

// boolArg returns an optional boolean field (numbers count, as in MongoDB).
func boolArg(doc bson.Raw, name string, def bool) (bool, error) {
	v, err := doc.LookupErr(name)
	if err != nil || v.Type == bson.TypeNull {
		return def, nil
	}
	switch v.Type {
	case bson.TypeBoolean:
		return v.Boolean(), nil
	case bson.TypeInt32:
		return v.Int32() != 0, nil
	case bson.TypeInt64:
		return v.Int64() != 0, nil
	case bson.TypeDouble:
		return v.Double() != 0, nil
	}
	return false, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected type 'bool'", name, typeName(v.Type))
}

// docsArg returns an array-of-documents field (required).
func docsArg(doc bson.Raw, name string) ([]bson.Raw, error) {
	v, err := doc.LookupErr(name)
	if err != nil {
		return nil, mongoerr.New(40414, "BSON field '%s' is missing but a required field", name)
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected type 'array'", name, typeName(v.Type))
	}
	vals, err := arr.Values()
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "BSON field '%s': %v", name, err)
	}
	out := make([]bson.Raw, len(vals))
	for i, e := range vals {
		d, ok := e.DocumentOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%d' is the wrong type '%s', expected type 'object'", name, i, typeName(e.Type))
		}
		out[i] = d
	}
	if len(out) > MaxWriteBatchSize {
		return nil, mongoerr.New(mongoerr.InvalidLength, "Write batch sizes must be between 1 and %d. Got %d operations.", MaxWriteBatchSize, len(out))
	}
	return out, nil
}

// unknownDB reports whether err says the namespace's database does not
// exist (then reads find nothing and writes without upsert change nothing).
func unknownDB(err error) bool { return errors.Is(err, targeting.ErrUnknownDatabase) }
