package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/psdb/psdb/pkg/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// doc marshals v into a bson.Raw.
func doc(t testing.TB, v any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %v: %v", v, err)
	}
	return bson.Raw(b)
}

// encode runs WriteMessage into a byte slice.
func encode(t testing.TB, h MsgHeader, body Body) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := WriteMessage(w, &h, body); err != nil {
		t.Fatalf("WriteMessage(%s): %v", body, err)
	}
	if int(h.MessageLength) != buf.Len() {
		t.Fatalf("header says %d bytes, wrote %d", h.MessageLength, buf.Len())
	}
	return buf.Bytes()
}

// decode runs ReadMessage over b.
func decode(b []byte, maxSize int32) (*MsgHeader, Body, error) {
	return ReadMessage(bufio.NewReader(bytes.NewReader(b)), maxSize)
}

// frame builds a message by hand: header with the real length, then parts.
func frame(op OpCode, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	b := make([]byte, 16, 16+len(body))
	binary.LittleEndian.PutUint32(b[0:], uint32(16+len(body)))
	binary.LittleEndian.PutUint32(b[4:], 7)
	binary.LittleEndian.PutUint32(b[12:], uint32(op))
	return append(b, body...)
}

func i32(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

func cstr(s string) []byte { return append([]byte(s), 0) }

// seq builds a kind-1 section (kind byte included) with a correct size.
func seq(name string, docs ...bson.Raw) []byte {
	var inner []byte
	inner = append(inner, cstr(name)...)
	for _, d := range docs {
		inner = append(inner, d...)
	}
	out := []byte{sectionSequence}
	out = append(out, i32(int32(4+len(inner)))...)
	return append(out, inner...)
}

func body0(d bson.Raw) []byte { return append([]byte{sectionBody}, d...) }

// withChecksum sets the checksum flag is assumed already set in b; it appends
// the CRC-32C of b (fixing the length first).
func withChecksum(b []byte) []byte {
	b = append(b, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32cReference(b[:len(b)-4]))
	return b
}

// crc32cReference is a bit-at-a-time CRC-32C (reflected polynomial
// 0x82F63B78), written independently of hash/crc32 to check the codec.
func crc32cReference(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x82F63B78
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

func TestCRC32CReference(t *testing.T) {
	// The standard check value of CRC-32C.
	if got := crc32cReference([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("reference CRC-32C = %#x, want 0xe3069283", got)
	}
}

func TestOpCodeString(t *testing.T) {
	for _, tc := range []struct {
		op   OpCode
		want string
	}{
		{OpCodeReply, "OP_REPLY"}, {OpCodeUpdate, "OP_UPDATE"}, {OpCodeInsert, "OP_INSERT"},
		{OpCodeQuery, "OP_QUERY"}, {OpCodeGetMore, "OP_GET_MORE"}, {OpCodeDelete, "OP_DELETE"},
		{OpCodeKillCursors, "OP_KILL_CURSORS"}, {OpCodeCompressed, "OP_COMPRESSED"},
		{OpCodeMsg, "OP_MSG"}, {OpCode(42), "OP_UNKNOWN(42)"},
	} {
		if got := tc.op.String(); got != tc.want {
			t.Errorf("OpCode(%d).String() = %q, want %q", int32(tc.op), got, tc.want)
		}
	}
	if got := (FlagChecksumPresent | FlagMoreToCome | FlagExhaustAllowed | 1<<20).String(); got != "checksumPresent|moreToCome|exhaustAllowed|bit20" {
		t.Errorf("flags string = %q", got)
	}
	if got := (QueryExhaust | QuerySecondaryOK).String(); got != "secondaryOk|exhaust" {
		t.Errorf("query flags string = %q", got)
	}
}

// roundTripCases are the messages every round-trip test uses; the fuzz
// seed corpus is built from them too.
func roundTripCases(t testing.TB) []struct {
	name string
	h    MsgHeader
	body Body
} {
	ping := doc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	insert := doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "ordered", Value: true}, {Key: "$db", Value: "test"}})
	var docs []bson.Raw
	for i := range 3 {
		docs = append(docs, doc(t, bson.D{{Key: "_id", Value: i}, {Key: "s", Value: strings.Repeat("x", i*10)},
			{Key: "nested", Value: bson.D{{Key: "a", Value: bson.A{1, "two", bson.D{{Key: "three", Value: 3.0}}}}}}}))
	}
	return []struct {
		name string
		h    MsgHeader
		body Body
	}{
		{"msg body only", MsgHeader{RequestID: 1}, &OpMsg{Body: ping}},
		{"msg reply", MsgHeader{RequestID: 2, ResponseTo: 1}, NewOpMsgReply(doc(t, bson.D{{Key: "ok", Value: 1.0}}))},
		{"msg one sequence", MsgHeader{RequestID: 3}, &OpMsg{Body: insert,
			Sequences: []DocumentSequence{{Identifier: "documents", Documents: docs}}}},
		{"msg two sequences one empty", MsgHeader{RequestID: 4}, &OpMsg{Body: insert,
			Sequences: []DocumentSequence{{Identifier: "documents", Documents: docs[:1]}, {Identifier: "empty"}}}},
		{"msg checksum", MsgHeader{RequestID: 5}, &OpMsg{Flags: FlagChecksumPresent, Body: ping}},
		{"msg checksum sequences", MsgHeader{RequestID: 6}, &OpMsg{Flags: FlagChecksumPresent, Body: insert,
			Sequences: []DocumentSequence{{Identifier: "documents", Documents: docs}}}},
		{"msg moreToCome", MsgHeader{RequestID: 7}, &OpMsg{Flags: FlagMoreToCome, Body: insert,
			Sequences: []DocumentSequence{{Identifier: "documents", Documents: docs[1:]}}}},
		{"msg exhaust and optional bit", MsgHeader{RequestID: 8}, &OpMsg{Flags: FlagExhaustAllowed | 1<<20, Body: ping}},
		{"msg all known flags", MsgHeader{RequestID: 9}, &OpMsg{Flags: FlagChecksumPresent | FlagMoreToCome | FlagExhaustAllowed, Body: ping}},
		{"query isMaster", MsgHeader{RequestID: 10}, &OpQuery{FullCollectionName: "admin.$cmd", NumberToReturn: -1,
			Query: doc(t, bson.D{{Key: "isMaster", Value: 1}, {Key: "helloOk", Value: true}})}},
		{"query with selector", MsgHeader{RequestID: 11}, &OpQuery{Flags: QuerySecondaryOK | QueryExhaust,
			FullCollectionName: "db.coll", NumberToSkip: 3, NumberToReturn: 10,
			Query: doc(t, bson.D{{Key: "a", Value: 1}}), ReturnFieldsSelector: doc(t, bson.D{{Key: "b", Value: 1}})}},
		{"reply empty", MsgHeader{RequestID: 12, ResponseTo: 10}, &OpReply{}},
		{"reply docs", MsgHeader{RequestID: 13, ResponseTo: 10}, &OpReply{ResponseFlags: ReplyAwaitCapable,
			CursorID: 1 << 40, StartingFrom: 5, Documents: docs}},
		{"reply handshake", MsgHeader{RequestID: 14, ResponseTo: 10}, NewOpReply(doc(t, bson.D{{Key: "ismaster", Value: true}, {Key: "ok", Value: 1.0}}))},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTripCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			b := encode(t, tc.h, tc.body)
			h, body, err := decode(b, 0)
			if err != nil {
				t.Fatalf("ReadMessage: %v\n%s", err, hex.Dump(b))
			}
			want := tc.h
			want.MessageLength = int32(len(b))
			want.OpCode = tc.body.OpCode()
			if *h != want {
				t.Errorf("header = %+v, want %+v", *h, want)
			}
			if !reflect.DeepEqual(body, tc.body) {
				t.Errorf("body = %s, want %s", body, tc.body)
			}
			// Encoding the decoded body again gives the same bytes.
			if b2 := encode(t, *h, body); !bytes.Equal(b, b2) {
				t.Errorf("re-encoding differs:\n%s\n%s", hex.Dump(b), hex.Dump(b2))
			}
			if m, ok := body.(*OpMsg); ok && m.Flags&FlagChecksumPresent != 0 {
				if got, want := binary.LittleEndian.Uint32(b[len(b)-4:]), crc32cReference(b[:len(b)-4]); got != want {
					t.Errorf("checksum %#x, reference CRC-32C %#x", got, want)
				}
			}
		})
	}
}

// TestSectionOrder: sections may come in any order; the body is found
// wherever it is, sequences keep their order.
func TestSectionOrder(t *testing.T) {
	a, b := doc(t, bson.D{{Key: "a", Value: 1}}), doc(t, bson.D{{Key: "b", Value: 2}})
	ping := doc(t, bson.D{{Key: "ping", Value: 1}})
	msg := frame(OpCodeMsg, i32(0), seq("x", a), body0(ping), seq("y", b, a))
	_, body, err := decode(msg, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := &OpMsg{Body: ping, Sequences: []DocumentSequence{
		{Identifier: "x", Documents: []bson.Raw{a}}, {Identifier: "y", Documents: []bson.Raw{b, a}}}}
	if !reflect.DeepEqual(body, want) {
		t.Fatalf("got %s, want %s", body, want)
	}
}

// TestGoldenOpMsg checks the encoder against bytes written by hand from the
// OP_MSG specification: {ping: 1, $db: "admin"} as a kind-0 section.
func TestGoldenOpMsg(t *testing.T) {
	golden := []byte{
		0x33, 0x00, 0x00, 0x00, // messageLength 51
		0x01, 0x00, 0x00, 0x00, // requestID 1
		0x00, 0x00, 0x00, 0x00, // responseTo 0
		0xdd, 0x07, 0x00, 0x00, // opCode 2013 OP_MSG
		0x00, 0x00, 0x00, 0x00, // flagBits
		0x00,                   // section kind 0: body
		0x1e, 0x00, 0x00, 0x00, // document length 30
		0x10, 'p', 'i', 'n', 'g', 0x00, 0x01, 0x00, 0x00, 0x00, // int32 ping: 1
		0x02, '$', 'd', 'b', 0x00, 0x06, 0x00, 0x00, 0x00, 'a', 'd', 'm', 'i', 'n', 0x00, // string $db: "admin"
		0x00, // end of document
	}
	m := &OpMsg{Body: doc(t, bson.D{{Key: "ping", Value: int32(1)}, {Key: "$db", Value: "admin"}})}
	if got := encode(t, MsgHeader{RequestID: 1}, m); !bytes.Equal(got, golden) {
		t.Fatalf("encoded:\n%s\nwant:\n%s", hex.Dump(got), hex.Dump(golden))
	}
	h, body, err := decode(golden, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.OpCode != OpCodeMsg || h.RequestID != 1 || h.MessageLength != 51 || !reflect.DeepEqual(body, m) {
		t.Fatalf("decoded %v %s", h, body)
	}

	// The same message with the checksum flag: the CRC-32C (checked with an
	// independent implementation) covers the header and everything after it.
	withCRC := append([]byte(nil), golden...)
	withCRC[16] = 0x01
	withCRC = withChecksum(withCRC)
	m.Flags = FlagChecksumPresent
	if got := encode(t, MsgHeader{RequestID: 1}, m); !bytes.Equal(got, withCRC) {
		t.Fatalf("encoded with checksum:\n%s\nwant:\n%s", hex.Dump(got), hex.Dump(withCRC))
	}
	if _, _, err := decode(withCRC, 0); err != nil {
		t.Fatal(err)
	}
}

// TestGoldenOpQuery checks the legacy handshake as drivers send it:
// OP_QUERY {isMaster: 1} on admin.$cmd, numberToReturn -1.
func TestGoldenOpQuery(t *testing.T) {
	golden := []byte{
		0x3a, 0x00, 0x00, 0x00, // messageLength 58
		0x02, 0x00, 0x00, 0x00, // requestID 2
		0x00, 0x00, 0x00, 0x00, // responseTo 0
		0xd4, 0x07, 0x00, 0x00, // opCode 2004 OP_QUERY
		0x00, 0x00, 0x00, 0x00, // flags
		'a', 'd', 'm', 'i', 'n', '.', '$', 'c', 'm', 'd', 0x00, // fullCollectionName
		0x00, 0x00, 0x00, 0x00, // numberToSkip 0
		0xff, 0xff, 0xff, 0xff, // numberToReturn -1
		0x13, 0x00, 0x00, 0x00, // document length 19
		0x10, 'i', 's', 'M', 'a', 's', 't', 'e', 'r', 0x00, 0x01, 0x00, 0x00, 0x00, // int32 isMaster: 1
		0x00, // end of document
	}
	q := &OpQuery{FullCollectionName: "admin.$cmd", NumberToReturn: -1, Query: doc(t, bson.D{{Key: "isMaster", Value: int32(1)}})}
	if got := encode(t, MsgHeader{RequestID: 2}, q); !bytes.Equal(got, golden) {
		t.Fatalf("encoded:\n%s\nwant:\n%s", hex.Dump(got), hex.Dump(golden))
	}
	h, body, err := decode(golden, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.OpCode != OpCodeQuery || !reflect.DeepEqual(body, q) {
		t.Fatalf("decoded %v %s", h, body)
	}
}

// malformedCases are hand-built bad messages with the error each must give.
type malformedCase struct {
	name     string
	in       []byte
	maxSize  int32
	sentinel error
	code     mongoerr.Code // 0: no MongoDB code expected (client gone)
}

func malformedCases(t testing.TB) []malformedCase {
	ping := doc(t, bson.D{{Key: "ping", Value: 1}})
	insert := doc(t, bson.D{{Key: "insert", Value: "c"}})
	a := doc(t, bson.D{{Key: "a", Value: 1}})
	withLen := func(b []byte, n int32) []byte {
		b = append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(b, uint32(n))
		return b
	}
	good := frame(OpCodeMsg, i32(0), body0(ping))

	// A document whose embedded document lies about its length.
	badNested := doc(t, bson.D{{Key: "x", Value: bson.D{{Key: "y", Value: 1}}}})
	badNested = append(bson.Raw(nil), badNested...)
	binary.LittleEndian.PutUint32(badNested[7:], 200) // inner length far too large
	// A string that is not zero-terminated.
	badString := doc(t, bson.D{{Key: "s", Value: "abc"}})
	badString = append(bson.Raw(nil), badString...)
	badString[len(badString)-2] = 'z'
	// An unknown element type.
	badType := doc(t, bson.D{{Key: "s", Value: int32(1)}})
	badType = append(bson.Raw(nil), badType...)
	badType[4] = 0x42
	// Nesting deeper than the limit.
	var deep any = bson.D{{Key: "leaf", Value: 1}}
	for range maxBSONDepth {
		deep = bson.D{{Key: "d", Value: deep}}
	}
	deepDoc := doc(t, deep)
	// A boolean that is neither 0 nor 1.
	badBool := doc(t, bson.D{{Key: "b", Value: true}})
	badBool = append(bson.Raw(nil), badBool...)
	badBool[len(badBool)-2] = 7

	badCRC := withChecksum(frame(OpCodeMsg, i32(int32(FlagChecksumPresent)), body0(ping)))
	badCRC[len(badCRC)-1] ^= 0xff
	corrupted := withChecksum(frame(OpCodeMsg, i32(int32(FlagChecksumPresent)), body0(ping)))
	corrupted[25] ^= 0x01 // flip a bit in the body; the CRC no longer matches

	overrunSeq := seq("documents", a)
	binary.LittleEndian.PutUint32(overrunSeq[1:], 1000)
	shortSeq := seq("documents", a)
	binary.LittleEndian.PutUint32(shortSeq[1:], uint32(4+len("documents")+1+len(a)-1)) // cuts the document

	return []malformedCase{
		{"empty stream", nil, 0, ErrClientGone, 0},
		{"short header", good[:10], 0, ErrClientGone, 0},
		{"negative length", withLen(good, -5), 0, ErrMalformed, mongoerr.ProtocolError},
		{"length below header size", withLen(good, 15), 0, ErrMalformed, mongoerr.ProtocolError},
		{"length zero", withLen(good, 0), 0, ErrMalformed, mongoerr.ProtocolError},
		{"huge length", withLen(good, MaxMessageSizeBytes+1), 0, ErrMalformed, mongoerr.ProtocolError},
		{"max int length", withLen(good, 1<<31-1), 0, ErrMalformed, mongoerr.ProtocolError},
		{"length over caller limit", good, 30, ErrMalformed, mongoerr.ProtocolError},
		{"length larger than bytes that follow", withLen(good, int32(len(good)+100)), 0, ErrClientGone, 0},
		{"body cut short", good[:len(good)-3], 0, ErrClientGone, 0},
		{"no flags", frame(OpCodeMsg, []byte{0, 0}), 0, ErrMalformed, mongoerr.Overflow},
		{"empty op_msg", frame(OpCodeMsg), 0, ErrMalformed, mongoerr.Overflow},
		{"no body section", frame(OpCodeMsg, i32(0)), 0, ErrMalformed, 40587},
		{"only a sequence", frame(OpCodeMsg, i32(0), seq("documents", a)), 0, ErrMalformed, 40587},
		{"two body sections", frame(OpCodeMsg, i32(0), body0(ping), body0(ping)), 0, ErrMalformed, 40430},
		{"unknown section kind", frame(OpCodeMsg, i32(0), body0(ping), []byte{9}, i32(4)), 0, ErrMalformed, 40432},
		{"security token section", frame(OpCodeMsg, i32(0), body0(ping), []byte{2}, cstr("token")), 0, ErrMalformed, 40432},
		{"unknown required flag bit 2", frame(OpCodeMsg, i32(1<<2), body0(ping)), 0, ErrMalformed, mongoerr.IllegalOpMsgFlag},
		{"unknown required flag bit 15", frame(OpCodeMsg, i32(1<<15), body0(ping)), 0, ErrMalformed, mongoerr.IllegalOpMsgFlag},
		{"bad checksum", badCRC, 0, ErrMalformed, mongoerr.ChecksumMismatch},
		{"corrupted body under checksum", corrupted, 0, ErrMalformed, mongoerr.ChecksumMismatch},
		{"checksum flag without room", frame(OpCodeMsg, i32(int32(FlagChecksumPresent)), i32(0)), 0, ErrMalformed, 51251},
		{"body length overruns message", frame(OpCodeMsg, i32(0), body0(ping)[:len(ping)-2]), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"body length below minimum", frame(OpCodeMsg, i32(0), []byte{0}, i32(3)), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"body truncated length", frame(OpCodeMsg, i32(0), []byte{0, 5, 0}), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"invalid nested document", frame(OpCodeMsg, i32(0), body0(badNested)), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"unterminated string", frame(OpCodeMsg, i32(0), body0(badString)), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"unknown bson type", frame(OpCodeMsg, i32(0), body0(badType)), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"too deep", frame(OpCodeMsg, i32(0), body0(deepDoc)), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"bad boolean", frame(OpCodeMsg, i32(0), body0(badBool)), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"sequence size overruns message", frame(OpCodeMsg, i32(0), body0(insert), overrunSeq), 0, ErrMalformed, mongoerr.Overflow},
		{"sequence size negative", frame(OpCodeMsg, i32(0), body0(insert), []byte{1}, i32(-1)), 0, ErrMalformed, mongoerr.Overflow},
		{"sequence size truncated", frame(OpCodeMsg, i32(0), body0(insert), []byte{1, 9}), 0, ErrMalformed, mongoerr.Overflow},
		{"document overruns sequence", frame(OpCodeMsg, i32(0), body0(insert), shortSeq[:len(shortSeq)-1]), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"sequence identifier without terminator", frame(OpCodeMsg, i32(0), body0(insert), []byte{1}, i32(7), []byte("abc")), 0, ErrMalformed, mongoerr.Overflow},
		{"duplicate sequence", frame(OpCodeMsg, i32(0), body0(insert), seq("d", a), seq("d", a)), 0, ErrMalformed, 40431},
		{"too many sequences", frame(OpCodeMsg, i32(0), body0(insert), seq("a"), seq("b"), seq("c")), 0, ErrMalformed, mongoerr.TooManyDocumentSequences},
		{"sequence duplicates body field", frame(OpCodeMsg, i32(0), body0(insert), seq("insert", a)), 0, ErrMalformed, 40433},
		{"dotted sequence duplicates body path", frame(OpCodeMsg, i32(0),
			body0(doc(t, bson.D{{Key: "cursor", Value: bson.D{{Key: "firstBatch", Value: bson.A{}}}}})), seq("cursor.firstBatch", a)), 0, ErrMalformed, 40433},
		{"query name without terminator", frame(OpCodeQuery, i32(0), []byte("admin.$cmd")), 0, ErrMalformed, mongoerr.Overflow},
		{"query missing numbers", frame(OpCodeQuery, i32(0), cstr("admin.$cmd"), i32(0)), 0, ErrMalformed, mongoerr.Overflow},
		{"query missing document", frame(OpCodeQuery, i32(0), cstr("admin.$cmd"), i32(0), i32(-1)), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"query invalid document", frame(OpCodeQuery, i32(0), cstr("admin.$cmd"), i32(0), i32(-1), badString), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"query trailing bytes", frame(OpCodeQuery, i32(0), cstr("admin.$cmd"), i32(0), i32(-1), ping, ping, []byte{1}), 0, ErrMalformed, mongoerr.ProtocolError},
		{"reply count too large", frame(OpCodeReply, i32(0), make([]byte, 8), i32(0), i32(50), ping), 0, ErrMalformed, mongoerr.ProtocolError},
		{"reply count negative", frame(OpCodeReply, i32(0), make([]byte, 8), i32(0), i32(-1)), 0, ErrMalformed, mongoerr.ProtocolError},
		{"reply fewer documents than numberReturned", frame(OpCodeReply, i32(0), make([]byte, 8), i32(0), i32(2), ping), 0, ErrMalformed, mongoerr.InvalidBSON},
		{"reply trailing document", frame(OpCodeReply, i32(0), make([]byte, 8), i32(0), i32(1), ping, ping), 0, ErrMalformed, mongoerr.ProtocolError},
		{"reply truncated", frame(OpCodeReply, i32(0), make([]byte, 3)), 0, ErrMalformed, mongoerr.Overflow},
		{"compressed", frame(OpCodeCompressed, i32(int32(OpCodeMsg)), i32(100), []byte{1}, make([]byte, 20)), 0, ErrUnsupported, mongoerr.ProtocolError},
		{"compressed without its header", frame(OpCodeCompressed, i32(int32(OpCodeMsg))), 0, ErrMalformed, mongoerr.Overflow},
		{"legacy insert", frame(OpCodeInsert, i32(0), cstr("db.c"), ping), 0, ErrUnsupported, mongoerr.ProtocolError},
		{"legacy kill cursors", frame(OpCodeKillCursors, i32(0), i32(1), make([]byte, 8)), 0, ErrUnsupported, mongoerr.ProtocolError},
		{"unknown opcode", frame(OpCode(9999), []byte("whatever")), 0, ErrUnsupported, mongoerr.ProtocolError},
	}
}

func TestMalformed(t *testing.T) {
	for _, tc := range malformedCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			h, body, err := decode(tc.in, tc.maxSize)
			if err == nil {
				t.Fatalf("no error; decoded %v %s", h, body)
			}
			if body != nil {
				t.Errorf("body %s returned with error", body)
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v is not %v", err, tc.sentinel)
			}
			for _, other := range []error{ErrClientGone, ErrMalformed, ErrUnsupported} {
				if other != tc.sentinel && errors.Is(err, other) {
					t.Errorf("error %v is also %v", err, other)
				}
			}
			if tc.code == 0 {
				if _, ok := mongoerr.As(err); ok {
					t.Errorf("client-gone error %v carries a MongoDB code", err)
				}
				return
			}
			if got := mongoerr.CodeOf(err); got != tc.code {
				t.Errorf("code = %d (%s), want %d (%s): %v", got, got, tc.code, tc.code, err)
			}
			if len(tc.in) >= HeaderSize && h == nil {
				t.Errorf("header not returned with error %v", err)
			}
		})
	}
}

// TestClientGone: EOF at a message boundary and mid-message both say the
// client went away, keeping the cause.
func TestClientGone(t *testing.T) {
	_, _, err := decode(nil, 0)
	if !errors.Is(err, ErrClientGone) || !errors.Is(err, io.EOF) {
		t.Errorf("empty stream: %v", err)
	}
	_, _, err = decode([]byte{1, 2, 3}, 0)
	if !errors.Is(err, ErrClientGone) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("partial header: %v", err)
	}

	// A real socket closed under a blocked reader gives net.ErrClosed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		_, _, err = ReadMessage(bufio.NewReader(c), 0)
		done <- err
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte{100, 0, 0, 0}) // part of a header, then hang up
	c.Close()
	if err := <-done; !errors.Is(err, ErrClientGone) {
		t.Errorf("peer closed mid-header: %v", err)
	}

	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		r := bufio.NewReader(c)
		c.Close() // our own side closed: the read fails with net.ErrClosed
		_, _, err = ReadMessage(r, 0)
		done <- err
	}()
	if err := <-done; !errors.Is(err, ErrClientGone) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("closed connection: %v", err)
	}
}

// TestStreamStaysInStep: after an unsupported or malformed (but framed)
// message, the next message in the stream still decodes.
func TestStreamStaysInStep(t *testing.T) {
	ping := doc(t, bson.D{{Key: "ping", Value: 1}})
	good := frame(OpCodeMsg, i32(0), body0(ping))
	for _, bad := range [][]byte{
		frame(OpCodeCompressed, i32(int32(OpCodeMsg)), i32(100), []byte{2}, make([]byte, 50)),
		frame(OpCodeInsert, i32(0), cstr("db.c"), ping),
		frame(OpCode(77), make([]byte, 3000)),
		frame(OpCodeMsg, i32(0), body0(ping), body0(ping)),
	} {
		r := bufio.NewReader(bytes.NewReader(append(append([]byte(nil), bad...), good...)))
		if _, _, err := ReadMessage(r, 0); err == nil {
			t.Fatal("bad message accepted")
		}
		_, body, err := ReadMessage(r, 0)
		if err != nil {
			t.Fatalf("message after a rejected one: %v", err)
		}
		if m := body.(*OpMsg); !bytes.Equal(m.Body, ping) {
			t.Fatalf("got %s", m)
		}
	}
}

// TestNoEagerAllocation: a header that declares a large message followed by
// a few bytes must not make the reader allocate the declared size.
func TestNoEagerAllocation(t *testing.T) {
	msg := frame(OpCodeMsg, make([]byte, 100))
	binary.LittleEndian.PutUint32(msg, 40_000_000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, _, err := decode(msg, 0); !errors.Is(err, ErrClientGone) {
			t.Fatalf("got %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 10<<20 {
		t.Fatalf("10 truncated 40 MB messages allocated %d bytes", got)
	}
}

func TestLargeMessage(t *testing.T) {
	// A message close to the 48 MB limit, in document sequences, decodes.
	big := doc(t, bson.D{{Key: "s", Value: strings.Repeat("x", 4<<20)}})
	var docs []bson.Raw
	for range 11 {
		docs = append(docs, big)
	}
	m := &OpMsg{Body: doc(t, bson.D{{Key: "insert", Value: "c"}}),
		Sequences: []DocumentSequence{{Identifier: "documents", Documents: docs}}}
	b := encode(t, MsgHeader{}, m)
	if len(b) < 44_000_000 {
		t.Fatalf("message only %d bytes", len(b))
	}
	_, body, err := decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(body, m) {
		t.Fatal("large message differs after round trip")
	}
	// One more document passes the limit: WriteMessage refuses it.
	m.Sequences[0].Documents = append(docs, big)
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := WriteMessage(w, &MsgHeader{}, m); !errors.Is(err, ErrInvalidBody) {
		t.Fatalf("oversized message: %v", err)
	}
	if buf.Len() != 0 || w.Buffered() != 0 {
		t.Fatal("oversized message partly written")
	}
}

func TestWriteInvalidBody(t *testing.T) {
	ok := doc(t, bson.D{{Key: "ok", Value: 1}})
	broken := append(bson.Raw(nil), ok...)
	broken[0]++
	for _, tc := range []struct {
		name string
		body Body
	}{
		{"nil body doc", &OpMsg{}},
		{"broken body", &OpMsg{Body: broken}},
		{"broken sequence doc", &OpMsg{Body: ok, Sequences: []DocumentSequence{{Identifier: "d", Documents: []bson.Raw{broken}}}}},
		{"identifier with zero byte", &OpMsg{Body: ok, Sequences: []DocumentSequence{{Identifier: "a\x00b"}}}},
		{"query without document", &OpQuery{FullCollectionName: "a.b"}},
		{"query broken selector", &OpQuery{FullCollectionName: "a.b", Query: ok, ReturnFieldsSelector: broken}},
		{"query name with zero byte", &OpQuery{FullCollectionName: "a\x00b", Query: ok}},
		{"reply broken doc", &OpReply{Documents: []bson.Raw{ok, broken}}},
		{"nil body", nil},
		{"nil OpMsg", (*OpMsg)(nil)},
		{"nil OpQuery", (*OpQuery)(nil)},
		{"nil OpReply", (*OpReply)(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := bufio.NewWriter(&buf)
			if err := WriteMessage(w, &MsgHeader{}, tc.body); !errors.Is(err, ErrInvalidBody) {
				t.Fatalf("got %v", err)
			}
			if w.Buffered() != 0 || buf.Len() != 0 {
				t.Fatal("bytes written for an invalid body")
			}
		})
	}
}

func TestCommand(t *testing.T) {
	insert := doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	a, b := doc(t, bson.D{{Key: "_id", Value: 1}}), doc(t, bson.D{{Key: "_id", Value: 2}})
	got, err := (&OpMsg{Body: insert, Sequences: []DocumentSequence{
		{Identifier: "documents", Documents: []bson.Raw{a, b}}, {Identifier: "empty"}}}).Command()
	if err != nil {
		t.Fatal(err)
	}
	want := doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"},
		{Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}}},
		{Key: "empty", Value: bson.A{}}})
	if !bytes.Equal(got, want) {
		t.Fatalf("Command() = %s, want %s", got, want)
	}
	if err := validateDocument(got); err != nil {
		t.Fatal(err)
	}

	// Without sequences the body itself comes back.
	if got, err := (&OpMsg{Body: insert}).Command(); err != nil || !bytes.Equal(got, insert) {
		t.Fatalf("no sequences: %s %v", got, err)
	}

	// Twelve documents: array keys of two digits.
	var many []bson.Raw
	var manyA bson.A
	for i := range 12 {
		many = append(many, doc(t, bson.D{{Key: "i", Value: i}}))
		manyA = append(manyA, bson.D{{Key: "i", Value: i}})
	}
	got, err = (&OpMsg{Body: insert, Sequences: []DocumentSequence{{Identifier: "documents", Documents: many}}}).Command()
	if err != nil {
		t.Fatal(err)
	}
	if want := doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}, {Key: "documents", Value: manyA}}); !bytes.Equal(got, want) {
		t.Fatalf("Command() = %s, want %s", got, want)
	}

	for _, tc := range []struct {
		name string
		m    *OpMsg
		code mongoerr.Code
	}{
		{"duplicate field", &OpMsg{Body: insert, Sequences: []DocumentSequence{{Identifier: "insert"}}}, 40433},
		{"dotted identifier", &OpMsg{Body: insert, Sequences: []DocumentSequence{{Identifier: "a.b"}}}, mongoerr.ProtocolError},
		{"empty identifier", &OpMsg{Body: insert, Sequences: []DocumentSequence{{Identifier: ""}}}, mongoerr.ProtocolError},
		{"broken body", &OpMsg{Body: insert[:5], Sequences: []DocumentSequence{{Identifier: "d"}}}, mongoerr.InvalidBSON},
	} {
		if _, err := tc.m.Command(); mongoerr.CodeOf(err) != tc.code {
			t.Errorf("%s: got %v, want code %d", tc.name, err, tc.code)
		}
	}
}

func TestValidateDocumentAccepts(t *testing.T) {
	// Every BSON type the driver can produce passes validation.
	d := doc(t, bson.D{
		{Key: "double", Value: 1.5}, {Key: "string", Value: "s"}, {Key: "doc", Value: bson.D{{Key: "a", Value: 1}}},
		{Key: "array", Value: bson.A{1, "x"}}, {Key: "binary", Value: bson.Binary{Subtype: 0, Data: []byte{1, 2}}},
		{Key: "oldbinary", Value: bson.Binary{Subtype: 2, Data: []byte{1, 2, 3}}},
		{Key: "undefined", Value: bson.Undefined{}}, {Key: "oid", Value: bson.NewObjectID()}, {Key: "bool", Value: false},
		{Key: "date", Value: bson.DateTime(5)}, {Key: "null", Value: nil}, {Key: "regex", Value: bson.Regex{Pattern: "a", Options: "i"}},
		{Key: "dbptr", Value: bson.DBPointer{DB: "db", Pointer: bson.NewObjectID()}}, {Key: "js", Value: bson.JavaScript("f()")},
		{Key: "symbol", Value: bson.Symbol("sym")}, {Key: "jsscope", Value: bson.CodeWithScope{Code: "g()", Scope: bson.D{{Key: "x", Value: 1}}}},
		{Key: "int32", Value: int32(3)}, {Key: "ts", Value: bson.Timestamp{T: 1, I: 2}}, {Key: "int64", Value: int64(4)},
		{Key: "dec", Value: bson.NewDecimal128(1, 2)}, {Key: "min", Value: bson.MinKey{}}, {Key: "max", Value: bson.MaxKey{}},
	})
	if err := validateDocument(d); err != nil {
		t.Fatal(err)
	}
}

func TestOpQueryCommand(t *testing.T) {
	isMaster := doc(t, bson.D{{Key: "isMaster", Value: 1}})
	for _, tc := range []struct {
		name string
		q    *OpQuery
		db   string
		cmd  bson.Raw
		code mongoerr.Code
	}{
		{"plain", &OpQuery{FullCollectionName: "admin.$cmd", Query: isMaster}, "admin", isMaster, 0},
		{"wrapped $query", &OpQuery{FullCollectionName: "test.$cmd", Query: doc(t, bson.D{{Key: "$query", Value: isMaster},
			{Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "secondaryPreferred"}}}})}, "test", isMaster, 0},
		{"wrapped query", &OpQuery{FullCollectionName: "admin.$cmd", Query: doc(t, bson.D{{Key: "query", Value: isMaster}})}, "admin", isMaster, 0},
		{"not a command namespace", &OpQuery{FullCollectionName: "test.users", Query: isMaster}, "", nil, mongoerr.InvalidNamespace},
		{"no database", &OpQuery{FullCollectionName: ".$cmd", Query: isMaster}, "", nil, mongoerr.InvalidNamespace},
		{"$query not a document", &OpQuery{FullCollectionName: "admin.$cmd", Query: doc(t, bson.D{{Key: "$query", Value: 1}})}, "", nil, mongoerr.BadValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, cmd, err := tc.q.Command()
			if got := mongoerr.CodeOf(err); got != tc.code {
				t.Fatalf("code %d, want %d: %v", got, tc.code, err)
			}
			if db != tc.db || !bytes.Equal(cmd, tc.cmd) {
				t.Fatalf("got %q %s, want %q %s", db, cmd, tc.db, tc.cmd)
			}
		})
	}
}
