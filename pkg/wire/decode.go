package wire

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/psdb/psdb/pkg/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// reader walks a message body. Every read is bounds-checked against b; a
// read that does not fit fails with Overflow, the code MongoDB uses when a
// structure runs past the end of its buffer. It never reads outside b.
type reader struct {
	b   []byte
	off int
	// what names the structure being read and sub, if set, the part of it
	// (a document sequence's identifier), for error messages only.
	what, sub string
}

func (r *reader) where() string {
	if r.sub == "" {
		return r.what
	}
	return r.what + " " + strconv.Quote(r.sub)
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) int32(field string) (int32, error) {
	if r.left() < 4 {
		return 0, malformed(mongoerr.Overflow, "%s: %s needs 4 bytes, %d left", r.where(), field, r.left())
	}
	v := int32(binary.LittleEndian.Uint32(r.b[r.off:]))
	r.off += 4
	return v, nil
}

func (r *reader) int64(field string) (int64, error) {
	if r.left() < 8 {
		return 0, malformed(mongoerr.Overflow, "%s: %s needs 8 bytes, %d left", r.where(), field, r.left())
	}
	v := int64(binary.LittleEndian.Uint64(r.b[r.off:]))
	r.off += 8
	return v, nil
}

func (r *reader) byte(field string) (byte, error) {
	if r.left() < 1 {
		return 0, malformed(mongoerr.Overflow, "%s: %s needs 1 byte, none left", r.where(), field)
	}
	v := r.b[r.off]
	r.off++
	return v, nil
}

// cstring reads a zero-terminated string that must end inside b.
func (r *reader) cstring(field string) (string, error) {
	i := bytes.IndexByte(r.b[r.off:], 0)
	if i < 0 {
		return "", malformed(mongoerr.Overflow, "%s: %s is not zero-terminated within %d bytes", r.where(), field, r.left())
	}
	s := string(r.b[r.off : r.off+i])
	r.off += i + 1
	return s, nil
}

// document reads one BSON document that must fit in what is left, and
// validates it fully. The result aliases b. idx >= 0 numbers the document
// in error messages (an int, so that the happy path builds no strings).
func (r *reader) document(field string, idx int) (bson.Raw, error) {
	name := func() string {
		if idx >= 0 {
			return field + " " + strconv.Itoa(idx)
		}
		return field
	}
	if r.left() < 4 {
		return nil, malformed(mongoerr.InvalidBSON, "%s: %s: document length needs 4 bytes, %d left", r.where(), name(), r.left())
	}
	n := int64(int32(binary.LittleEndian.Uint32(r.b[r.off:])))
	if n < 5 || n > int64(r.left()) {
		return nil, malformed(mongoerr.InvalidBSON, "%s: %s: document length %d is not between 5 and the %d bytes left",
			r.where(), name(), n, r.left())
	}
	doc := r.b[r.off : r.off+int(n) : r.off+int(n)]
	if err := validateDocument(doc); err != nil {
		return nil, mongoerr.Wrap(ErrMalformed, mongoerr.InvalidBSON, "%s: %s: invalid BSON: %v", r.where(), name(), err)
	}
	r.off += int(n)
	return bson.Raw(doc), nil
}

// checkDocument is the encoder's cheap sanity check: the bytes frame one
// document (length prefix equals the slice length, trailing zero byte), so
// that a broken document can never desynchronise the stream.
func checkDocument(doc []byte) bool {
	return len(doc) >= 5 &&
		int64(int32(binary.LittleEndian.Uint32(doc))) == int64(len(doc)) &&
		doc[len(doc)-1] == 0
}
