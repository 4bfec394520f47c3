package wire

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// benchInsert1KB is an insert of one ~1 KB document sent as a document
// sequence, the shape drivers use.
func benchInsert1KB(b *testing.B) *OpMsg {
	d := doc(b, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "name", Value: "user"},
		{Key: "payload", Value: strings.Repeat("p", 950)}})
	return &OpMsg{
		Body:      doc(b, bson.D{{Key: "insert", Value: "c"}, {Key: "ordered", Value: true}, {Key: "$db", Value: "test"}}),
		Sequences: []DocumentSequence{{Identifier: "documents", Documents: []bson.Raw{d}}},
	}
}

// benchSequence16MB is an insert of 16 MB in 1 KB documents.
func benchSequence16MB(b *testing.B) *OpMsg {
	m := benchInsert1KB(b)
	d := m.Sequences[0].Documents[0]
	n := (16 << 20) / len(d)
	docs := make([]bson.Raw, n)
	for i := range docs {
		docs[i] = d
	}
	m.Sequences[0].Documents = docs
	return m
}

func benchDecode(b *testing.B, m *OpMsg) {
	msg := encode(b, MsgHeader{RequestID: 1}, m)
	rd := bytes.NewReader(msg)
	br := bufio.NewReaderSize(rd, 64<<10)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rd.Reset(msg)
		br.Reset(rd)
		if _, _, err := ReadMessage(br, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEncode(b *testing.B, m *OpMsg) {
	w := bufio.NewWriterSize(io.Discard, 64<<10)
	size, err := m.encodedSize()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size + HeaderSize)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := WriteMessage(w, &MsgHeader{RequestID: 1}, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeInsert1KB(b *testing.B) { benchDecode(b, benchInsert1KB(b)) }
func BenchmarkEncodeInsert1KB(b *testing.B) { benchEncode(b, benchInsert1KB(b)) }
func BenchmarkEncodeInsert1KBChecksum(b *testing.B) {
	m := benchInsert1KB(b)
	m.Flags = FlagChecksumPresent
	benchEncode(b, m)
}
func BenchmarkDecodeInsert1KBChecksum(b *testing.B) {
	m := benchInsert1KB(b)
	m.Flags = FlagChecksumPresent
	benchDecode(b, m)
}
func BenchmarkDecodeSequence16MB(b *testing.B) { benchDecode(b, benchSequence16MB(b)) }
func BenchmarkEncodeSequence16MB(b *testing.B) { benchEncode(b, benchSequence16MB(b)) }

// BenchmarkCommandInsert1KB measures merging the sequence into the body.
func BenchmarkCommandInsert1KB(b *testing.B) {
	m := benchInsert1KB(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Command(); err != nil {
			b.Fatal(err)
		}
	}
}
