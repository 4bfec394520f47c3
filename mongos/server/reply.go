package server

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// maxReplyBytes is the largest reply document MongoDB sends: a 16 MiB
// document plus 16 KiB of room for the command's own fields
// (BSONObjMaxInternalSize).
const maxReplyBytes = 16<<20 + 16<<10

// ErrorReply returns MongoDB's error document for err:
// {ok: 0, errmsg, code, codeName}. An error without a MongoDB code (see
// package mongoerr) becomes InternalError with err's text.
func ErrorReply(err error) bson.Raw {
	code := mongoerr.CodeOf(err)
	msg := "unknown error"
	if e, ok := mongoerr.As(err); ok {
		msg = e.Msg
	} else if err != nil {
		msg = err.Error()
	}
	if code == 0 {
		code = mongoerr.InternalError
	}
	raw, mErr := bson.Marshal(bson.D{
		{Key: "ok", Value: 0.0},
		{Key: "errmsg", Value: msg},
		{Key: "code", Value: int32(code)},
		{Key: "codeName", Value: code.Name()},
	})
	if mErr != nil {
		// Only an invalid UTF-8-free string could fail here, which bson
		// does not check; keep a fixed document as the last resort.
		raw, _ = bson.Marshal(bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "cannot encode error"}, {Key: "code", Value: int32(mongoerr.InternalError)}, {Key: "codeName", Value: mongoerr.InternalError.Name()}})
	}
	return raw
}

// okReply marshals fields followed by ok: 1 into a reply, with the
// (reply, nil error) shape handlers return. A field that cannot be encoded
// is a bug in the handler; it becomes an InternalError reply rather than a
// closed connection.
func okReply(fields ...bson.E) (bson.Raw, error) {
	d := make(bson.D, 0, len(fields)+1)
	d = append(d, fields...)
	d = append(d, bson.E{Key: "ok", Value: 1.0})
	raw, err := bson.Marshal(d)
	if err != nil {
		return ErrorReply(mongoerr.Wrap(err, mongoerr.InternalError, "cannot encode reply: %v", err)), nil
	}
	return raw, nil
}

// errReply is ErrorReply with the handler's return shape.
func errReply(code mongoerr.Code, format string, args ...any) (bson.Raw, error) {
	return ErrorReply(mongoerr.New(code, format, args...)), nil
}

// number returns n as an int32 when it fits and an int64 otherwise, as
// MongoDB's appendNumber does.
func number(n int64) any {
	if n >= -1<<31 && n < 1<<31 {
		return int32(n)
	}
	return n
}
