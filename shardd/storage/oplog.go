package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// OpTime is the position of an oplog entry: the term it was written in and
// its index. Indexes grow by one per entry across terms, so the oplog's key
// order (term, index) is also index order. The zero OpTime is before every
// entry.
type OpTime struct {
	Term  uint64
	Index uint64
}

// Compare orders optimes by term, then index.
func (t OpTime) Compare(o OpTime) int {
	switch {
	case t.Term != o.Term:
		if t.Term < o.Term {
			return -1
		}
		return 1
	case t.Index < o.Index:
		return -1
	case t.Index > o.Index:
		return 1
	}
	return 0
}

// IsZero reports whether t is the zero OpTime.
func (t OpTime) IsZero() bool { return t == OpTime{} }

func (t OpTime) String() string { return fmt.Sprintf("(%d, %d)", t.Term, t.Index) }

// Oplog operation kinds.
const (
	OpInsert  = "i" // Doc is the inserted document
	OpUpdate  = "u" // Doc is the full post-image
	OpDelete  = "d" // ID is the deleted _id
	OpCommand = "c" // NS is "<db>.$cmd", Doc the command ({create: …}, {drop: …}, {createIndexes: …}, {dropIndexes: …})
	OpNoop    = "n" // Doc is a message; changes no data (noop.go), may carry a statement record (session.go)
)

// OplogEntry is one record of the oplog. Applying entries in order to a
// store that holds their predecessors reproduces the primary's state; each
// is idempotent (inserts and updates carry the whole document, deletes the
// _id). The replication issue may extend the format; the stored form is
// BSON with the field names of oplogRecord.
type OplogEntry struct {
	Term, Index uint64
	Op          string
	NS          string
	ID          bson.RawValue // _id of the document ("i", "u", "d")
	Doc         bson.Raw      // document ("i", "u"), command ("c") or message ("n")
	Wall        time.Time
	// Stmt, when set, is the retryable-write statement this entry
	// completes and its result; applying the entry records it (session.go).
	Stmt *StmtWrite
}

// OpTime returns the entry's position.
func (o OplogEntry) OpTime() OpTime { return OpTime{Term: o.Term, Index: o.Index} }

type oplogRecord struct {
	Term  int64         `bson:"t"`
	Index int64         `bson:"i"`
	Op    string        `bson:"op"`
	NS    string        `bson:"ns"`
	ID    bson.RawValue `bson:"id,omitempty"`
	Doc   bson.Raw      `bson:"o,omitempty"`
	Wall  time.Time     `bson:"wall"`
	// Retryable-write statement (session.go), all four or none.
	LSID []byte   `bson:"lsid,omitempty"`
	Txn  int64    `bson:"txn,omitempty"`
	Stmt *int32   `bson:"stmt,omitempty"`
	Res  bson.Raw `bson:"res,omitempty"`
}

// encodeOplogEntry builds the stored form of o by hand (it is on every
// write's critical path; bson.Marshal's reflection costs several times
// more). It produces exactly what bson.Marshal(oplogRecord{…}) would.
func encodeOplogEntry(o OplogEntry) []byte {
	n := 64 + len(o.Op) + len(o.NS) + len(o.ID.Value) + len(o.Doc)
	idx, b := bsoncore.ReserveLength(make([]byte, 0, n))
	b = bsoncore.AppendInt64Element(b, "t", int64(o.Term))
	b = bsoncore.AppendInt64Element(b, "i", int64(o.Index))
	b = bsoncore.AppendStringElement(b, "op", o.Op)
	b = bsoncore.AppendStringElement(b, "ns", o.NS)
	if o.ID.Type != 0 {
		b = bsoncore.AppendValueElement(b, "id", bsoncore.Value{Type: bsoncore.Type(o.ID.Type), Data: o.ID.Value})
	}
	if o.Doc != nil {
		b = bsoncore.AppendDocumentElement(b, "o", o.Doc)
	}
	b = bsoncore.AppendDateTimeElement(b, "wall", o.Wall.UnixMilli())
	if o.Stmt != nil {
		b = appendStmtFields(b, o.Stmt)
	}
	b, _ = bsoncore.AppendDocumentEnd(b, idx)
	return b
}

func decodeOplogEntry(key, val []byte) (o OplogEntry, err error) {
	var r oplogRecord
	if err := bson.Unmarshal(val, &r); err != nil {
		return OplogEntry{}, fmt.Errorf("oplog entry %x: %v: %w", key, err, ErrCorrupt)
	}
	o = OplogEntry{Term: uint64(r.Term), Index: uint64(r.Index), Op: r.Op, NS: r.NS, Wall: r.Wall.UTC()}
	if r.ID.Type != 0 {
		o.ID = bson.RawValue{Type: r.ID.Type, Value: append([]byte(nil), r.ID.Value...)}
	}
	if r.Doc != nil {
		o.Doc = append(bson.Raw(nil), r.Doc...)
	}
	if o.Stmt, err = stmtFromRecord(&r); err != nil {
		return OplogEntry{}, fmt.Errorf("oplog entry %x: %v: %w", key, err, ErrCorrupt)
	}
	if string(oplogKey(o.OpTime())) != string(key) {
		return OplogEntry{}, fmt.Errorf("oplog entry %x holds optime %s: %w", key, o.OpTime(), ErrCorrupt)
	}
	return o, nil
}

// LastOpTime returns the optime of the newest durable (synced, hence
// acknowledged) oplog entry. After Open it is the newest entry on disk.
func (e *Engine) LastOpTime() OpTime {
	e.durMu.Lock()
	defer e.durMu.Unlock()
	return e.durable
}

func (e *Engine) markDurable(t OpTime) {
	e.durMu.Lock()
	if t.Compare(e.durable) > 0 {
		e.durable = t
		if e.durCh != nil {
			close(e.durCh) // wake WaitDurable (see apply.go)
			e.durCh = nil
		}
	}
	e.durMu.Unlock()
}

// Term returns the term stamped on new oplog entries.
func (e *Engine) Term() uint64 { return e.term.Load() }

// SetTerm sets the term of new oplog entries and records it durably.
// Terms never go back: a smaller term is refused with StaleTerm (135).
func (e *Engine) SetTerm(ctx context.Context, term uint64) error {
	if err := e.begin(); err != nil {
		return err
	}
	defer e.end()
	if err := e.lock(ctx); err != nil {
		return err
	}
	defer e.unlock()
	cur := e.term.Load()
	if term < cur {
		return mongoerr.New(mongoerr.StaleTerm, "term %d is older than the current term %d", term, cur)
	}
	if term == cur {
		return nil
	}
	if err := e.db.Set(metaKey(metaTerm), marshalRecord(termRecord{Term: int64(term)}), e.writeOptions()); err != nil {
		return fmt.Errorf("set term %d: %w", term, err)
	}
	e.term.Store(term)
	return nil
}

// ReadOplog returns up to limit entries (all when limit <= 0) that come
// after from, in order, never past LastOpTime: an entry is readable only
// once it and everything before it are durable.
func (e *Engine) ReadOplog(from OpTime, limit int) ([]OplogEntry, error) {
	raw, err := e.ReadOplogRaw(from, limit, 0)
	if err != nil {
		return nil, err
	}
	out := make([]OplogEntry, len(raw))
	for i, r := range raw {
		if out[i], err = decodeOplogEntry(oplogKey(r.OpTime), r.Data); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RawOplogEntry is an oplog entry as stored: Data is the form
// EncodeOplogEntry makes and DecodeOplogEntry reads.
type RawOplogEntry struct {
	OpTime OpTime
	Data   []byte
}

// ReadOplogRaw is ReadOplog without decoding (ReadOplog reads through
// it), for a sync source that passes entries on as they are: every stored
// entry is encodeOplogEntry's bytes, and the receiver decodes and checks
// them. It returns at most limit entries (0: no limit) and stops before
// the one that would take the total past maxBytes, except the first (0:
// no byte bound).
func (e *Engine) ReadOplogRaw(from OpTime, limit, maxBytes int) ([]RawOplogEntry, error) {
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.end()
	upper := successor(oplogKey(e.LastOpTime()))
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: successor(oplogKey(from)), UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("read oplog: %w", err)
	}
	var out []RawOplogEntry
	size := 0
	for ok := it.First(); ok && (limit <= 0 || len(out) < limit); ok = it.Next() {
		k := it.Key()
		if len(k) != 17 || k[0] != prefixOplog {
			_ = it.Close()
			return nil, fmt.Errorf("oplog key %x: %w", k, ErrCorrupt)
		}
		t, _ := decodeOpTime(k[1:])
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("read oplog entry %s: %w", t, err)
		}
		if len(out) > 0 && maxBytes > 0 && size+len(v) > maxBytes {
			break
		}
		out = append(out, RawOplogEntry{OpTime: t, Data: bytes.Clone(v)})
		size += len(v)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("read oplog: %w", err)
	}
	return out, nil
}

// TruncateOplogBefore deletes the oplog entries older than t (retention),
// never the newest one; see TruncateOplog (retention.go).
// LastOpTime is unaffected: it is kept in the metadata.
func (e *Engine) TruncateOplogBefore(t OpTime) error {
	_, err := e.TruncateOplog(context.Background(), t)
	return err
}

func (e *Engine) writeOptions() *pebble.WriteOptions {
	if e.opts.NoSync {
		return pebble.NoSync
	}
	return pebble.Sync
}

// wallNow is the wall-clock time recorded in oplog entries (millisecond
// precision, as a BSON date holds).
func wallNow() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }
