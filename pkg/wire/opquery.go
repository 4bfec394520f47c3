package wire

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/psdb/psdb/pkg/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// OpQueryFlags are the flags of a legacy OP_QUERY.
type OpQueryFlags uint32

// The OP_QUERY flag bits (bit 0 is reserved).
const (
	QueryTailableCursor  OpQueryFlags = 1 << 1
	QuerySecondaryOK     OpQueryFlags = 1 << 2
	QueryOplogReplay     OpQueryFlags = 1 << 3
	QueryNoCursorTimeout OpQueryFlags = 1 << 4
	QueryAwaitData       OpQueryFlags = 1 << 5
	QueryExhaust         OpQueryFlags = 1 << 6
	QueryPartial         OpQueryFlags = 1 << 7
)

var queryFlagNames = [...]string{"reserved", "tailableCursor", "secondaryOk", "oplogReplay",
	"noCursorTimeout", "awaitData", "exhaust", "partial"}

// String lists the set flags.
func (f OpQueryFlags) String() string {
	return flagString(uint32(f), queryFlagNames[:])
}

// OpReplyFlags are the responseFlags of a legacy OP_REPLY.
type OpReplyFlags uint32

// The OP_REPLY flag bits.
const (
	ReplyCursorNotFound   OpReplyFlags = 1 << 0
	ReplyQueryFailure     OpReplyFlags = 1 << 1
	ReplyShardConfigStale OpReplyFlags = 1 << 2
	ReplyAwaitCapable     OpReplyFlags = 1 << 3
)

var replyFlagNames = [...]string{"cursorNotFound", "queryFailure", "shardConfigStale", "awaitCapable"}

// String lists the set flags.
func (f OpReplyFlags) String() string {
	return flagString(uint32(f), replyFlagNames[:])
}

func flagString(f uint32, names []string) string {
	var parts []string
	for f != 0 {
		i := bits.TrailingZeros32(f)
		f &^= 1 << i
		if i < len(names) {
			parts = append(parts, names[i])
		} else {
			parts = append(parts, "bit"+strconv.Itoa(i))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// OpQuery is a legacy OP_QUERY. Drivers still send one: the first
// handshake, an `isMaster` on `admin.$cmd`. A decoded OpQuery's documents
// alias the buffer ReadMessage allocated. Not safe for concurrent mutation.
type OpQuery struct {
	Flags              OpQueryFlags
	FullCollectionName string
	NumberToSkip       int32
	NumberToReturn     int32
	Query              bson.Raw
	// ReturnFieldsSelector is nil when the message has none.
	ReturnFieldsSelector bson.Raw
}

// OpCode implements Body.
func (q *OpQuery) OpCode() OpCode { return OpCodeQuery }

// String implements fmt.Stringer for logs (no document contents).
func (q *OpQuery) String() string {
	name := ""
	if e, err := q.Query.IndexErr(0); err == nil {
		name = e.Key()
	}
	return fmt.Sprintf("OP_QUERY flags=%s ns=%q skip=%d return=%d query=%q (%d bytes)",
		q.Flags, q.FullCollectionName, q.NumberToSkip, q.NumberToReturn, name, len(q.Query))
}

// Command returns the database and command document of an OP_QUERY sent
// to "<db>.$cmd", the only OP_QUERY drivers still send. A query wrapped as
// {$query: {...}, $readPreference: ...} (or {query: {...}}), the form
// drivers use towards a mongos, is unwrapped to its inner document. Any
// other namespace is refused with InvalidNamespace.
func (q *OpQuery) Command() (db string, cmd bson.Raw, err error) {
	db, ok := strings.CutSuffix(q.FullCollectionName, ".$cmd")
	if !ok || db == "" {
		return "", nil, mongoerr.New(mongoerr.InvalidNamespace,
			"OP_QUERY is only supported for commands on <db>.$cmd, not %q", q.FullCollectionName)
	}
	cmd = q.Query
	if e, err := cmd.IndexErr(0); err == nil && (e.Key() == "$query" || e.Key() == "query") {
		inner, ok := e.Value().DocumentOK()
		if !ok {
			return "", nil, mongoerr.New(mongoerr.BadValue, "OP_QUERY %s must be a document", e.Key())
		}
		cmd = inner
	}
	return db, cmd, nil
}

func (q *OpQuery) encodedSize() (int64, error) {
	if q == nil {
		return 0, fmt.Errorf("%w: nil OP_QUERY", ErrInvalidBody)
	}
	if strings.IndexByte(q.FullCollectionName, 0) >= 0 {
		return 0, fmt.Errorf("%w: OP_QUERY fullCollectionName contains a zero byte", ErrInvalidBody)
	}
	if !checkDocument(q.Query) {
		return 0, fmt.Errorf("%w: OP_QUERY query is not a BSON document", ErrInvalidBody)
	}
	n := int64(4 + len(q.FullCollectionName) + 1 + 4 + 4 + len(q.Query))
	if q.ReturnFieldsSelector != nil {
		if !checkDocument(q.ReturnFieldsSelector) {
			return 0, fmt.Errorf("%w: OP_QUERY returnFieldsSelector is not a BSON document", ErrInvalidBody)
		}
		n += int64(len(q.ReturnFieldsSelector))
	}
	return n, nil
}

func (q *OpQuery) encode(e *encoder) {
	e.int32(int32(q.Flags))
	e.cstring(q.FullCollectionName)
	e.int32(q.NumberToSkip)
	e.int32(q.NumberToReturn)
	e.bytes(q.Query)
	if q.ReturnFieldsSelector != nil {
		e.bytes(q.ReturnFieldsSelector)
	}
}

func decodeOpQuery(b []byte) (*OpQuery, error) {
	r := &reader{b: b, what: "OP_QUERY"}
	f, err := r.int32("flags")
	if err != nil {
		return nil, err
	}
	q := &OpQuery{Flags: OpQueryFlags(f)}
	if q.FullCollectionName, err = r.cstring("fullCollectionName"); err != nil {
		return nil, err
	}
	if q.NumberToSkip, err = r.int32("numberToSkip"); err != nil {
		return nil, err
	}
	if q.NumberToReturn, err = r.int32("numberToReturn"); err != nil {
		return nil, err
	}
	if q.Query, err = r.document("query", -1); err != nil {
		return nil, err
	}
	if r.left() > 0 {
		if q.ReturnFieldsSelector, err = r.document("returnFieldsSelector", -1); err != nil {
			return nil, err
		}
	}
	if r.left() > 0 {
		return nil, malformed(mongoerr.ProtocolError, "OP_QUERY has %d bytes after its returnFieldsSelector", r.left())
	}
	return q, nil
}

// OpReply is a legacy OP_REPLY, the answer to an OP_QUERY. NumberReturned
// on the wire is len(Documents). Not safe for concurrent mutation.
type OpReply struct {
	ResponseFlags OpReplyFlags
	CursorID      int64
	StartingFrom  int32
	Documents     []bson.Raw
}

// NewOpReply returns an OP_REPLY carrying docs, with no cursor and no
// flags: the answer to a legacy handshake command.
func NewOpReply(docs ...bson.Raw) *OpReply { return &OpReply{Documents: docs} }

// OpCode implements Body.
func (p *OpReply) OpCode() OpCode { return OpCodeReply }

// String implements fmt.Stringer for logs.
func (p *OpReply) String() string {
	return fmt.Sprintf("OP_REPLY flags=%s cursorID=%d startingFrom=%d numberReturned=%d",
		p.ResponseFlags, p.CursorID, p.StartingFrom, len(p.Documents))
}

func (p *OpReply) encodedSize() (int64, error) {
	if p == nil {
		return 0, fmt.Errorf("%w: nil OP_REPLY", ErrInvalidBody)
	}
	n := int64(4 + 8 + 4 + 4)
	for i, d := range p.Documents {
		if !checkDocument(d) {
			return 0, fmt.Errorf("%w: OP_REPLY document %d is not a BSON document", ErrInvalidBody, i)
		}
		n += int64(len(d))
	}
	if len(p.Documents) > 1<<31-1 {
		return 0, fmt.Errorf("%w: too many OP_REPLY documents", ErrInvalidBody)
	}
	return n, nil
}

func (p *OpReply) encode(e *encoder) {
	e.int32(int32(p.ResponseFlags))
	e.int64(p.CursorID)
	e.int32(p.StartingFrom)
	e.int32(int32(len(p.Documents)))
	for _, d := range p.Documents {
		e.bytes(d)
	}
}

func decodeOpReply(b []byte) (*OpReply, error) {
	r := &reader{b: b, what: "OP_REPLY"}
	f, err := r.int32("responseFlags")
	if err != nil {
		return nil, err
	}
	p := &OpReply{ResponseFlags: OpReplyFlags(f)}
	if p.CursorID, err = r.int64("cursorID"); err != nil {
		return nil, err
	}
	if p.StartingFrom, err = r.int32("startingFrom"); err != nil {
		return nil, err
	}
	n, err := r.int32("numberReturned")
	if err != nil {
		return nil, err
	}
	// Every document takes at least 5 bytes, so a count that cannot fit is
	// refused before anything is allocated for it.
	if n < 0 || int64(n) > int64(r.left()/5) {
		return nil, malformed(mongoerr.ProtocolError, "OP_REPLY numberReturned %d does not fit in %d bytes", n, r.left())
	}
	if n > 0 {
		p.Documents = make([]bson.Raw, 0, n)
	}
	for i := 0; i < int(n); i++ {
		d, err := r.document("document", i)
		if err != nil {
			return nil, err
		}
		p.Documents = append(p.Documents, d)
	}
	if r.left() > 0 {
		return nil, malformed(mongoerr.ProtocolError, "OP_REPLY has %d bytes after its %d documents", r.left(), n)
	}
	return p, nil
}
