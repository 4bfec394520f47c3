// Package wire owns the MongoDB wire protocol codec: framing of messages
// (the 16-byte header), OP_MSG with its body and document-sequence sections
// and CRC-32C checksum, the legacy OP_QUERY/OP_REPLY pair that drivers still
// use for the first handshake, and the rejection of everything else
// (OP_COMPRESSED and the removed legacy opcodes) with a clear error.
//
// The package turns bytes into messages and messages into bytes, nothing
// more. It must never interpret commands, hold connection state, start
// goroutines, log, or read beyond the length a header declares. Malformed
// input of any kind returns an error carrying a MongoDB code (see
// package mongoerr); it never panics, never over-reads and never blocks
// longer than the underlying reader does.
//
// Errors come in three kinds, told apart with errors.Is:
//   - ErrClientGone: the peer closed the connection (cleanly between
//     messages, or in the middle of one); nothing to answer.
//   - ErrMalformed: the bytes break the protocol; the error is also a
//     *mongoerr.Error with MongoDB's code (ProtocolError, InvalidBSON,
//     IllegalOpMsgFlag, ChecksumMismatch, ...).
//   - ErrUnsupported: a well-framed message this server does not speak
//     (OP_COMPRESSED, OP_INSERT, ...); also a *mongoerr.Error.
//
// Any other error is an I/O error from the reader or writer (a deadline,
// for instance), wrapped with context.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net"
	"strconv"
	"syscall"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Limits announced to and expected from clients, as MongoDB reports them
// in its hello reply.
const (
	// MaxMessageSizeBytes is the largest message, header included, that
	// ReadMessage accepts by default and WriteMessage ever writes.
	MaxMessageSizeBytes = 48_000_000
	// MaxBSONObjectSize is the largest user document (16 MiB).
	MaxBSONObjectSize = 16 * 1024 * 1024
	// HeaderSize is the size of the standard message header.
	HeaderSize = 16
)

// castagnoli is the CRC-32C table used by OP_MSG checksums. It is read-only
// after package initialisation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// OpCode is the kind of a wire message.
type OpCode int32

// The opcodes of the MongoDB wire protocol. Only OpReply, OpQuery and OpMsg
// are decoded; OpCodeCompressed and the removed legacy opcodes are recognised
// and rejected with ErrUnsupported.
const (
	OpCodeReply       OpCode = 1
	OpCodeUpdate      OpCode = 2001
	OpCodeInsert      OpCode = 2002
	OpCodeQuery       OpCode = 2004
	OpCodeGetMore     OpCode = 2005
	OpCodeDelete      OpCode = 2006
	OpCodeKillCursors OpCode = 2007
	OpCodeCompressed  OpCode = 2012
	OpCodeMsg         OpCode = 2013
)

// String returns the opcode's name as MongoDB's documentation spells it
// ("OP_MSG"), or "OP_UNKNOWN(<n>)".
func (c OpCode) String() string {
	switch c {
	case OpCodeReply:
		return "OP_REPLY"
	case OpCodeUpdate:
		return "OP_UPDATE"
	case OpCodeInsert:
		return "OP_INSERT"
	case OpCodeQuery:
		return "OP_QUERY"
	case OpCodeGetMore:
		return "OP_GET_MORE"
	case OpCodeDelete:
		return "OP_DELETE"
	case OpCodeKillCursors:
		return "OP_KILL_CURSORS"
	case OpCodeCompressed:
		return "OP_COMPRESSED"
	case OpCodeMsg:
		return "OP_MSG"
	default:
		return "OP_UNKNOWN(" + strconv.Itoa(int(c)) + ")"
	}
}

// MsgHeader is the standard header that starts every message. Values are
// plain data; a MsgHeader is not safe for concurrent mutation.
type MsgHeader struct {
	// MessageLength is the total length of the message, header included.
	MessageLength int32
	// RequestID identifies the message; replies name it in ResponseTo.
	RequestID  int32
	ResponseTo int32
	OpCode     OpCode
}

// String implements fmt.Stringer for logs.
func (h *MsgHeader) String() string {
	if h == nil {
		return "<nil header>"
	}
	return fmt.Sprintf("%s length=%d id=%d responseTo=%d", h.OpCode, h.MessageLength, h.RequestID, h.ResponseTo)
}

// Body is the decoded content of a message after its header: *OpMsg,
// *OpQuery or *OpReply. The set is closed; other packages cannot add to it.
type Body interface {
	// OpCode returns the opcode this body is sent with.
	OpCode() OpCode
	// encodedSize is the number of bytes the body takes on the wire.
	encodedSize() (int64, error)
	// encode writes exactly encodedSize bytes.
	encode(e *encoder)
	fmt.Stringer
}

// Sentinel errors; see the package comment.
var (
	// ErrClientGone means the peer went away. Errors that wrap it also wrap
	// the underlying io.EOF, io.ErrUnexpectedEOF, net.ErrClosed or
	// connection-reset error.
	ErrClientGone = errors.New("wire: client went away")
	// ErrMalformed means the bytes received break the wire protocol.
	ErrMalformed = errors.New("wire: malformed message")
	// ErrUnsupported means a well-framed message of a kind this server
	// does not speak.
	ErrUnsupported = errors.New("wire: unsupported message")
	// ErrInvalidBody is returned by WriteMessage for a body that cannot be
	// encoded (a missing or broken document, an oversized message).
	ErrInvalidBody = errors.New("wire: invalid message body")
)

// malformed returns an error that is both ErrMalformed and a *mongoerr.Error
// with the given code.
func malformed(code mongoerr.Code, format string, args ...any) error {
	return mongoerr.Wrap(ErrMalformed, code, format, args...)
}

// unsupported returns an error that is both ErrUnsupported and a
// *mongoerr.Error with code ProtocolError.
func unsupported(format string, args ...any) error {
	return mongoerr.Wrap(ErrUnsupported, mongoerr.ProtocolError, format, args...)
}

// ioError classifies a read error: the peer going away becomes
// ErrClientGone (still wrapping the cause), anything else is wrapped with
// what was being read.
func ioError(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %s: %w", ErrClientGone, what, err)
	}
	return fmt.Errorf("wire: %s: %w", what, err)
}

// ReadMessage reads one message from r and decodes it. maxSize bounds the
// declared message length (header included); maxSize <= 0 means
// MaxMessageSizeBytes. The length is checked before anything is
// allocated, and the body buffer grows only as bytes actually arrive, so a
// client cannot make the server reserve memory it never sends.
//
// The returned Body owns a fresh buffer: its documents stay valid after the
// next call. On error the body is nil; the header is non-nil whenever it was
// read, so the caller can log it or name it in a reply. After ErrMalformed
// with an invalid length the stream is out of step and the connection must
// be closed; after other ErrMalformed and ErrUnsupported errors the whole
// message has been consumed.
//
// ReadMessage is safe for concurrent use only with distinct readers.
func ReadMessage(r *bufio.Reader, maxSize int32) (*MsgHeader, Body, error) {
	if maxSize <= 0 {
		maxSize = MaxMessageSizeBytes
	}
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return nil, nil, ioError("read message header", err)
	}
	h := &MsgHeader{
		MessageLength: int32(binary.LittleEndian.Uint32(hb[0:])),
		RequestID:     int32(binary.LittleEndian.Uint32(hb[4:])),
		ResponseTo:    int32(binary.LittleEndian.Uint32(hb[8:])),
		OpCode:        OpCode(binary.LittleEndian.Uint32(hb[12:])),
	}
	// Invariant: from here on 16 <= MessageLength <= maxSize, so every
	// allocation below is bounded by what the header declared.
	if h.MessageLength < HeaderSize || h.MessageLength > maxSize {
		return h, nil, malformed(mongoerr.ProtocolError,
			"recv(): message msgLen %d is invalid. Min %d Max: %d", h.MessageLength, HeaderSize, maxSize)
	}
	n := int(h.MessageLength) - HeaderSize

	switch h.OpCode {
	case OpCodeMsg, OpCodeQuery, OpCodeReply:
	case OpCodeCompressed:
		return h, nil, readCompressed(r, n)
	case OpCodeUpdate, OpCodeInsert, OpCodeGetMore, OpCodeDelete, OpCodeKillCursors:
		if err := discard(r, n); err != nil {
			return h, nil, err
		}
		return h, nil, unsupported("legacy opcode %s is not supported; drivers use OP_MSG", h.OpCode)
	default:
		if err := discard(r, n); err != nil {
			return h, nil, err
		}
		return h, nil, unsupported("unknown opcode %d", int32(h.OpCode))
	}

	b, err := readBody(r, n)
	if err != nil {
		return h, nil, err
	}
	var body Body
	switch h.OpCode {
	case OpCodeMsg:
		body, err = decodeOpMsg(hb[:], b)
	case OpCodeQuery:
		body, err = decodeOpQuery(b)
	case OpCodeReply:
		body, err = decodeOpReply(b)
	}
	if err != nil {
		return h, nil, err
	}
	return h, body, nil
}

// readBody reads exactly n bytes. Bodies up to 64 KiB get one allocation;
// larger ones start at 64 KiB and double as data arrives, never past n, so
// what a client makes the server allocate is bounded by about twice what it
// actually sent.
func readBody(r *bufio.Reader, n int) ([]byte, error) {
	const chunk = 64 << 10
	if n <= chunk {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, ioError("read message body", err)
		}
		return b, nil
	}
	b := make([]byte, 0, chunk)
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(2*cap(b), n))
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(r, b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			return nil, ioError("read message body", err)
		}
	}
	return b, nil
}

// discard skips n bytes of a message that will not be decoded.
func discard(r *bufio.Reader, n int) error {
	if _, err := r.Discard(n); err != nil {
		return ioError("skip message body", err)
	}
	return nil
}

// compressorName maps MongoDB's compressor ids to names for error text.
func compressorName(id byte) string {
	switch id {
	case 0:
		return "noop"
	case 1:
		return "snappy"
	case 2:
		return "zlib"
	case 3:
		return "zstd"
	default:
		return "unknown compressor " + strconv.Itoa(int(id))
	}
}

// readCompressed reads an OP_COMPRESSED message's own header
// (originalOpcode int32, uncompressedSize int32, compressorId uint8), skips
// the payload and reports that compression is not supported. The server
// never advertises compression, so a conforming driver never sends it.
func readCompressed(r *bufio.Reader, n int) error {
	const prefix = 9
	if n < prefix {
		if err := discard(r, n); err != nil {
			return err
		}
		return malformed(mongoerr.Overflow, "OP_COMPRESSED message of %d bytes is shorter than its %d-byte header", n, prefix)
	}
	var p [prefix]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return ioError("read OP_COMPRESSED header", err)
	}
	if err := discard(r, n-prefix); err != nil {
		return err
	}
	orig := OpCode(binary.LittleEndian.Uint32(p[0:]))
	size := int32(binary.LittleEndian.Uint32(p[4:]))
	return unsupported("compression not supported: OP_COMPRESSED (%s, original %s, %d bytes uncompressed); this server does not advertise compression",
		compressorName(p[8]), orig, size)
}

// WriteMessage encodes body after header and flushes w. It sets
// header.MessageLength and header.OpCode from the body; RequestID and
// ResponseTo are the caller's. A body that cannot be encoded, or a message
// larger than MaxMessageSizeBytes, returns ErrInvalidBody and writes
// nothing. For an *OpMsg with FlagChecksumPresent the CRC-32C is computed
// and appended.
//
// WriteMessage is safe for concurrent use only with distinct writers.
func WriteMessage(w *bufio.Writer, header *MsgHeader, body Body) error {
	if header == nil || body == nil {
		return fmt.Errorf("%w: nil header or body", ErrInvalidBody)
	}
	size, err := body.encodedSize()
	if err != nil {
		return fmt.Errorf("encode %s: %w", body.OpCode(), err)
	}
	total := size + HeaderSize
	if total > MaxMessageSizeBytes || total > math.MaxInt32 {
		return fmt.Errorf("%w: %s of %d bytes exceeds the maximum message size %d",
			ErrInvalidBody, body.OpCode(), total, MaxMessageSizeBytes)
	}
	header.MessageLength = int32(total)
	header.OpCode = body.OpCode()

	e := &encoder{w: w}
	if m, ok := body.(*OpMsg); ok && m.Flags&FlagChecksumPresent != 0 {
		e.crc = true
	}
	e.int32(header.MessageLength)
	e.int32(header.RequestID)
	e.int32(header.ResponseTo)
	e.int32(int32(header.OpCode))
	body.encode(e)
	if e.crc {
		var c [4]byte
		binary.LittleEndian.PutUint32(c[:], e.sum)
		_, _ = w.Write(c[:])
	}
	if err := w.Flush(); err != nil {
		return ioError("write "+body.OpCode().String(), err)
	}
	return nil
}

// encoder writes little-endian values to a bufio.Writer, keeping a running
// CRC-32C when asked. Write errors are sticky in bufio.Writer and surface
// at Flush.
type encoder struct {
	w   *bufio.Writer
	crc bool
	sum uint32
}

func (e *encoder) bytes(b []byte) {
	if e.crc {
		e.sum = crc32.Update(e.sum, castagnoli, b)
	}
	_, _ = e.w.Write(b)
}

// small writes go through the writer's free buffer so that they do not
// allocate.
func (e *encoder) int32(v int32) {
	e.bytes(binary.LittleEndian.AppendUint32(e.w.AvailableBuffer(), uint32(v)))
}

func (e *encoder) int64(v int64) {
	e.bytes(binary.LittleEndian.AppendUint64(e.w.AvailableBuffer(), uint64(v)))
}

func (e *encoder) byte(v byte) { e.bytes(append(e.w.AvailableBuffer(), v)) }

func (e *encoder) cstring(s string) {
	if len(s) < e.w.Available() {
		b := append(e.w.AvailableBuffer(), s...)
		e.bytes(append(b, 0))
		return
	}
	e.bytes([]byte(s))
	e.byte(0)
}
