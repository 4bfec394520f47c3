package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"strconv"
	"strings"

	"github.com/psdb/psdb/pkg/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// OpMsgFlags are the flagBits of an OP_MSG.
type OpMsgFlags uint32

// The OP_MSG flag bits. Bits 0-15 are required: a receiver that does not
// know one must refuse the message. Bits 16-31 are optional and may be
// ignored.
const (
	// FlagChecksumPresent: the message ends with a CRC-32C of everything
	// before it, header included.
	FlagChecksumPresent OpMsgFlags = 1 << 0
	// FlagMoreToCome: the sender will not wait for a reply (an
	// unacknowledged write) or, from a server, another reply follows.
	FlagMoreToCome OpMsgFlags = 1 << 1
	// FlagExhaustAllowed: the client accepts several replies with
	// FlagMoreToCome to one request.
	FlagExhaustAllowed OpMsgFlags = 1 << 16

	knownFlags    = FlagChecksumPresent | FlagMoreToCome | FlagExhaustAllowed
	requiredFlags = OpMsgFlags(0xffff)
)

// String lists the set flags ("checksumPresent|moreToCome").
func (f OpMsgFlags) String() string {
	var parts []string
	for f != 0 {
		bit := OpMsgFlags(1) << bits.TrailingZeros32(uint32(f))
		f &^= bit
		switch bit {
		case FlagChecksumPresent:
			parts = append(parts, "checksumPresent")
		case FlagMoreToCome:
			parts = append(parts, "moreToCome")
		case FlagExhaustAllowed:
			parts = append(parts, "exhaustAllowed")
		default:
			parts = append(parts, "bit"+strconv.Itoa(bits.TrailingZeros32(uint32(bit))))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// maxDocumentSequences is how many kind-1 sections MongoDB accepts in one
// message.
const maxDocumentSequences = 2

// Section kinds.
const (
	sectionBody     = 0
	sectionSequence = 1
)

// DocumentSequence is a kind-1 section: a named run of documents, sent
// beside the body instead of as an array inside it (the `documents` of an
// insert, the `updates` of an update).
type DocumentSequence struct {
	Identifier string
	Documents  []bson.Raw
}

// OpMsg is an OP_MSG: flags, exactly one body document (the kind-0
// section) and up to two document sequences. A decoded OpMsg's documents
// alias the buffer ReadMessage allocated for it. An OpMsg is not safe for
// concurrent mutation.
//
// The position of the body among the sections is not kept: WriteMessage
// puts the body first. The checksum is not kept either: ReadMessage
// verifies it, WriteMessage computes it when FlagChecksumPresent is set.
type OpMsg struct {
	Flags     OpMsgFlags
	Body      bson.Raw
	Sequences []DocumentSequence
}

// NewOpMsgReply returns an OP_MSG carrying doc as its body, with no flags.
func NewOpMsgReply(doc bson.Raw) *OpMsg { return &OpMsg{Body: doc} }

// OpCode implements Body.
func (m *OpMsg) OpCode() OpCode { return OpCodeMsg }

// MoreToCome reports whether FlagMoreToCome is set: for a request, the
// client expects no reply.
func (m *OpMsg) MoreToCome() bool { return m.Flags&FlagMoreToCome != 0 }

// String implements fmt.Stringer for logs; it shows the command name and
// sizes, never document contents.
func (m *OpMsg) String() string {
	name := ""
	if e, err := m.Body.IndexErr(0); err == nil {
		name = e.Key()
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "OP_MSG flags=%s body=%q (%d bytes)", m.Flags, name, len(m.Body))
	for _, s := range m.Sequences {
		fmt.Fprintf(&sb, " seq %q: %d docs", s.Identifier, len(s.Documents))
	}
	return sb.String()
}

// Command returns the body with each document sequence added as an array
// field named by its identifier, the shape a command handler expects
// ({insert: "c", documents: [...]}). Without sequences it returns the body
// itself. It fails with code 40433, as MongoDB does, if the body already has
// a field of that name, and with ProtocolError for an identifier that is
// empty or dotted (drivers never send those in requests).
func (m *OpMsg) Command() (bson.Raw, error) {
	if len(m.Sequences) == 0 {
		return m.Body, nil
	}
	if !checkDocument(m.Body) {
		return nil, malformed(mongoerr.InvalidBSON, "OP_MSG body is not a BSON document")
	}
	size := len(m.Body)
	for _, s := range m.Sequences {
		if s.Identifier == "" || strings.ContainsAny(s.Identifier, ".\x00") {
			return nil, malformed(mongoerr.ProtocolError, "document sequence identifier %q cannot be merged into a command", s.Identifier)
		}
		if _, err := m.Body.LookupErr(s.Identifier); err == nil {
			return nil, malformed(40433, "Duplicate field between body and document sequence %s", s.Identifier)
		}
		size += 1 + len(s.Identifier) + 1 + 4 + 1
		for i, d := range s.Documents {
			size += 1 + len(strconv.Itoa(i)) + 1 + len(d)
		}
	}
	if int64(size) > 1<<31-1 {
		return nil, malformed(mongoerr.BSONObjectTooLarge, "command with its document sequences is %d bytes", size)
	}
	out := make([]byte, 0, size)
	out = append(out, m.Body[:len(m.Body)-1]...)
	for _, s := range m.Sequences {
		out = append(out, byte(bson.TypeArray))
		out = append(out, s.Identifier...)
		out = append(out, 0)
		start := len(out)
		out = append(out, 0, 0, 0, 0)
		for i, d := range s.Documents {
			out = append(out, byte(bson.TypeEmbeddedDocument))
			out = strconv.AppendInt(out, int64(i), 10)
			out = append(out, 0)
			out = append(out, d...)
		}
		out = append(out, 0)
		binary.LittleEndian.PutUint32(out[start:], uint32(len(out)-start))
	}
	out = append(out, 0)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return bson.Raw(out), nil
}

func (m *OpMsg) encodedSize() (int64, error) {
	if m == nil {
		return 0, fmt.Errorf("%w: nil OP_MSG", ErrInvalidBody)
	}
	if !checkDocument(m.Body) {
		return 0, fmt.Errorf("%w: OP_MSG body is not a BSON document", ErrInvalidBody)
	}
	n := int64(4 + 1 + len(m.Body))
	for _, s := range m.Sequences {
		if strings.IndexByte(s.Identifier, 0) >= 0 {
			return 0, fmt.Errorf("%w: document sequence identifier %q contains a zero byte", ErrInvalidBody, s.Identifier)
		}
		sn := int64(4 + len(s.Identifier) + 1)
		for i, d := range s.Documents {
			if !checkDocument(d) {
				return 0, fmt.Errorf("%w: document %d of sequence %q is not a BSON document", ErrInvalidBody, i, s.Identifier)
			}
			sn += int64(len(d))
		}
		if sn > 1<<31-1 {
			return 0, fmt.Errorf("%w: document sequence %q is too large", ErrInvalidBody, s.Identifier)
		}
		n += 1 + sn
	}
	if m.Flags&FlagChecksumPresent != 0 {
		n += 4
	}
	return n, nil
}

func (m *OpMsg) encode(e *encoder) {
	e.int32(int32(m.Flags))
	e.byte(sectionBody)
	e.bytes(m.Body)
	for _, s := range m.Sequences {
		e.byte(sectionSequence)
		sn := 4 + len(s.Identifier) + 1
		for _, d := range s.Documents {
			sn += len(d)
		}
		e.int32(int32(sn))
		e.cstring(s.Identifier)
		for _, d := range s.Documents {
			e.bytes(d)
		}
	}
	// The checksum itself, if asked for, is appended by WriteMessage.
}

// decodeOpMsg decodes an OP_MSG body b (everything after the header hb),
// following MongoDB's parser: flags first, then the checksum, then the
// sections, then the cross-section rules.
func decodeOpMsg(hb, b []byte) (*OpMsg, error) {
	r := &reader{b: b, what: "OP_MSG"}
	f, err := r.int32("flagBits")
	if err != nil {
		return nil, err
	}
	flags := OpMsgFlags(f)
	if unknown := flags &^ knownFlags & requiredFlags; unknown != 0 {
		return nil, malformed(mongoerr.IllegalOpMsgFlag, "Message contains illegal flags value: 0b%032b", uint32(flags))
	}
	if flags&FlagChecksumPresent != 0 {
		if r.left() <= 4 {
			return nil, malformed(51251, "Invalid message size for an OpMsg containing a checksum")
		}
		end := len(b) - 4
		want := binary.LittleEndian.Uint32(b[end:])
		got := crc32.Update(crc32.Update(0, castagnoli, hb), castagnoli, b[:end])
		if got != want {
			return nil, malformed(mongoerr.ChecksumMismatch, "OP_MSG checksum does not match contents (got 0x%08x, message says 0x%08x)", got, want)
		}
		r.b = b[:end]
	}

	m := &OpMsg{Flags: flags}
	haveBody := false
	for r.left() > 0 {
		kind, _ := r.byte("section kind")
		switch kind {
		case sectionBody:
			if haveBody {
				return nil, malformed(40430, "Multiple body sections in message")
			}
			haveBody = true
			if m.Body, err = r.document("body", -1); err != nil {
				return nil, err
			}
		case sectionSequence:
			if len(m.Sequences) >= maxDocumentSequences {
				return nil, malformed(mongoerr.TooManyDocumentSequences, "Too many document sequences in OP_MSG")
			}
			s, err := readSequence(r)
			if err != nil {
				return nil, err
			}
			for _, prev := range m.Sequences {
				if prev.Identifier == s.Identifier {
					return nil, malformed(40431, "Duplicate document sequence: %s", s.Identifier)
				}
			}
			m.Sequences = append(m.Sequences, s)
		default:
			return nil, malformed(40432, "Unknown section kind %d", kind)
		}
	}
	if !haveBody {
		return nil, malformed(40587, "OP_MSG messages must have a body")
	}
	for _, s := range m.Sequences {
		// MongoDB looks the identifier up as a dotted path.
		if _, err := m.Body.LookupErr(strings.Split(s.Identifier, ".")...); err == nil {
			return nil, malformed(40433, "Duplicate field between body and document sequence %s", s.Identifier)
		}
	}
	return m, nil
}

// readSequence reads a kind-1 section after its kind byte: int32 size
// (counting itself), identifier cstring, documents filling the rest.
func readSequence(r *reader) (DocumentSequence, error) {
	size, err := r.int32("document sequence size")
	if err != nil {
		return DocumentSequence{}, err
	}
	if size < 4 || int64(size)-4 > int64(r.left()) {
		return DocumentSequence{}, malformed(mongoerr.Overflow,
			"OP_MSG: document sequence size %d does not fit in the %d bytes left", size, r.left()+4)
	}
	end := r.off + int(size) - 4
	sr := &reader{b: r.b[:end], off: r.off, what: "OP_MSG document sequence"}
	r.off = end
	name, err := sr.cstring("identifier")
	if err != nil {
		return DocumentSequence{}, err
	}
	sr.sub = name
	s := DocumentSequence{Identifier: name}
	for sr.left() > 0 {
		d, err := sr.document("document", len(s.Documents))
		if err != nil {
			return DocumentSequence{}, err
		}
		s.Documents = append(s.Documents, d)
	}
	return s, nil
}
