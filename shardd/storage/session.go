package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Retryable writes (DESIGN §4, docs/design/retryable-writes.md). A
// statement of a retryable write is identified by (lsid, txnNumber,
// stmtId); its result, opaque BSON given by the caller, is recorded under
// prefixSession IN THE SAME BATCH as the statement's write and carried by
// the statement's oplog entry, so a secondary applying the entry records
// it too and answers a retry after a failover. A statement that writes
// nothing records its result through a no-op entry.
//
// Invariants:
//   - The record of a statement exists iff its write committed: both are
//     in one Pebble batch.
//   - The lookup that decides whether a statement runs happens under the
//     engine's write lock (txn.lookupStmt), so of two concurrent executions
//     of one statement exactly one writes; the other gets the record.
//   - Per lsid only the newest txnNumber's records are kept: the first
//     record of a newer txnNumber drops the older ones in its batch, and a
//     statement of an older txnNumber is refused with TransactionTooOld
//     (225). Nothing else removes records (not drops of collections, not
//     oplog retention).

// maxLSIDLen bounds the logical session id (the BSON of {id: UUID, …}).
const maxLSIDLen = 1024

// Statement identifies one statement of a retryable write.
type Statement struct {
	LSID      []byte // the logical session id, as the client sent it (BSON)
	TxnNumber int64  // > 0
	StmtID    int32  // >= 0
}

// StmtWrite is a statement with the result to record for it when its write
// commits. A nil Result records an empty document.
type StmtWrite struct {
	Statement
	Result bson.Raw
}

// StmtRecord is a recorded result: what the first execution answered, and
// the optime of the oplog entry that carried the record.
type StmtRecord struct {
	Result bson.Raw
	OpTime OpTime
}

// StmtOutcome is what a retryable Replace or Delete did.
type StmtOutcome struct {
	// Retried: the statement had been recorded already; nothing was
	// written and Record is the first execution's.
	Retried bool
	// Written: the write was applied and Record recorded with it.
	Written bool
	// Record is the statement's record (zero when neither flag is set:
	// the document did not exist, nothing was written or recorded).
	Record StmtRecord
}

func (s Statement) check() error {
	switch {
	case len(s.LSID) == 0 || len(s.LSID) > maxLSIDLen:
		return mongoerr.New(mongoerr.BadValue, "logical session id of %d bytes (1 to %d)", len(s.LSID), maxLSIDLen)
	case s.TxnNumber <= 0:
		return mongoerr.New(mongoerr.BadValue, "txnNumber %d of a retryable write must be positive", s.TxnNumber)
	case s.StmtID < 0:
		return mongoerr.New(mongoerr.BadValue, "statement id %d of a retryable write must not be negative", s.StmtID)
	}
	return nil
}

func (w *StmtWrite) check() error {
	if err := w.Statement.check(); err != nil {
		return err
	}
	if w.Result != nil {
		if err := bsoncore.Document(w.Result).Validate(); err != nil {
			return mongoerr.New(mongoerr.BadValue, "statement result is not a BSON document: %v", err)
		}
	}
	return nil
}

// emptyDoc is the result recorded for a nil StmtWrite.Result.
var emptyDoc = bson.Raw{5, 0, 0, 0, 0}

func (w *StmtWrite) result() bson.Raw {
	if w.Result == nil {
		return emptyDoc
	}
	return w.Result
}

// sessionPrefix returns s | len(lsid) | lsid: every record of one session.
func sessionPrefix(lsid []byte) []byte {
	k := make([]byte, 0, 3+len(lsid)+12)
	k = append(k, prefixSession)
	k = binary.BigEndian.AppendUint16(k, uint16(len(lsid)))
	return append(k, lsid...)
}

// txnPrefix returns sessionPrefix | txnNumber.
func txnPrefix(lsid []byte, txn int64) []byte {
	return binary.BigEndian.AppendUint64(sessionPrefix(lsid), uint64(txn))
}

func stmtKey(s Statement) []byte {
	return binary.BigEndian.AppendUint32(txnPrefix(s.LSID, s.TxnNumber), uint32(s.StmtID))
}

func encodeStmtRecord(at OpTime, res bson.Raw) []byte {
	return append(encodeOpTime(at), res...)
}

func decodeStmtRecord(key, val []byte) (StmtRecord, error) {
	if len(val) < 16 {
		return StmtRecord{}, fmt.Errorf("statement record %x: %d bytes: %w", key, len(val), ErrCorrupt)
	}
	at, _ := decodeOpTime(val[:16])
	res := bson.Raw(bytes.Clone(val[16:]))
	if err := bsoncore.Document(res).Validate(); err != nil {
		return StmtRecord{}, fmt.Errorf("statement record %x: %v: %w", key, err, ErrCorrupt)
	}
	return StmtRecord{Result: res, OpTime: at}, nil
}

// newestTxn returns the newest txnNumber recorded for lsid in r (0: none).
func newestTxn(r pebble.Reader, lsid []byte) (int64, error) {
	p := sessionPrefix(lsid)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, fmt.Errorf("read session records: %w", err)
	}
	var txn int64
	if it.Last() {
		k := it.Key()
		if len(k) != len(p)+12 {
			_ = it.Close()
			return 0, fmt.Errorf("statement record key %x: %w", k, ErrCorrupt)
		}
		txn = int64(binary.BigEndian.Uint64(k[len(p):]))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("read session records: %w", err)
	}
	return txn, nil
}

// lookupStmt returns s's record in r (nil if none), or TransactionTooOld
// when the session has records of a newer txnNumber.
func lookupStmt(r pebble.Reader, s Statement) (*StmtRecord, int64, error) {
	if err := s.check(); err != nil {
		return nil, 0, err
	}
	newest, err := newestTxn(r, s.LSID)
	if err != nil {
		return nil, 0, err
	}
	if newest > s.TxnNumber {
		return nil, newest, mongoerr.New(mongoerr.TransactionTooOld,
			"Cannot start transaction %d on session %s because a newer transaction %d has already started",
			s.TxnNumber, lsidString(s.LSID), newest)
	}
	if newest < s.TxnNumber {
		return nil, newest, nil
	}
	k := stmtKey(s)
	val, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, newest, nil
	}
	if err != nil {
		return nil, newest, fmt.Errorf("read statement record: %w", err)
	}
	rec, err := decodeStmtRecord(k, val)
	_ = closer.Close()
	if err != nil {
		return nil, newest, err
	}
	return &rec, newest, nil
}

// lsidString shows a session id in messages: its BSON as JSON when it is
// a document, else hex.
func lsidString(lsid []byte) string {
	if bsoncore.Document(lsid).Validate() == nil {
		return bson.Raw(lsid).String()
	}
	return fmt.Sprintf("%x", lsid)
}

// LookupStatement returns the recorded result of s, if any. It reads
// without the write lock (a fast path for retries): a statement it does
// not find may still be recorded by the time it is executed, which the
// retryable write calls check again under the lock.
// Errors: TransactionTooOld (225) when the session has recorded a newer
// txnNumber; BadValue (2) for a malformed statement.
func (e *Engine) LookupStatement(s Statement) (StmtRecord, bool, error) {
	if err := e.begin(); err != nil {
		return StmtRecord{}, false, err
	}
	defer e.end()
	rec, _, err := lookupStmt(e.db, s)
	if err != nil || rec == nil {
		return StmtRecord{}, false, err
	}
	return *rec, true, nil
}

// lookupStmt is lookupStmt under the write lock, on what this write sees.
// When s starts a newer txnNumber of its session, the records of the older
// ones are dropped in this batch.
func (t *txn) lookupStmt(s Statement) (*StmtRecord, error) {
	rec, newest, err := lookupStmt(t.b, s)
	if err != nil || rec != nil {
		return rec, err
	}
	if newest != 0 && newest < s.TxnNumber {
		// newest was just read from this batch: drop its records without
		// reading it again (dropTxnsBefore would).
		if err := t.dropTxn(s.LSID, newest); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// dropTxnsBefore stages the removal of lsid's records older than txn.
// Only one txnNumber of a session has records at a time (each newer one
// drops the older in its batch), so it deletes the records of the newest
// older txnNumber, found from the end of the session's keys: a scan from
// the start would walk the tombstones of every txnNumber the session ever
// used (the profile of a retryable-write load showed that walk at 5% of a
// shard's time), and it is skipped when the session's newest txnNumber is
// txn itself (the other statements of a batch).
func (t *txn) dropTxnsBefore(lsid []byte, txn int64) error {
	newest, err := newestTxn(t.b, lsid)
	if err != nil {
		return err
	}
	if newest == 0 || newest >= txn {
		return nil
	}
	return t.dropTxn(lsid, newest)
}

// dropTxn stages the removal of the records of lsid's txnNumber txn.
func (t *txn) dropTxn(lsid []byte, txn int64) error {
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: txnPrefix(lsid, txn), UpperBound: txnPrefix(lsid, txn+1)})
	if err != nil {
		return fmt.Errorf("drop old session records: %w", err)
	}
	var keys [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("drop old session records: %w", err)
	}
	for _, k := range keys {
		_ = t.b.Delete(k, nil)
	}
	return nil
}

// putStmt stages w's record, carried by the entry at optime at.
func (t *txn) putStmt(w StmtWrite, at OpTime) {
	_ = t.b.Set(stmtKey(w.Statement), encodeStmtRecord(at, w.result()), nil)
}

// applyStmt records the statement of a primary's entry (ApplyOplog): the
// same record, and the same removal of older txnNumbers, as the primary's
// batch made.
func (t *txn) applyStmt(w StmtWrite, at OpTime) error {
	if err := t.dropTxnsBefore(w.LSID, w.TxnNumber); err != nil {
		return err
	}
	t.putStmt(w, at)
	return nil
}

// checkStmtEntry checks an entry's statement fields before ApplyOplog
// takes the lock.
func checkStmtEntry(en *OplogEntry) error {
	if en.Stmt == nil {
		return nil
	}
	if en.Op == OpCommand {
		return errors.New("a command entry cannot complete a statement")
	}
	return en.Stmt.check()
}

// appendStmtFields appends the oplog record's statement fields, as
// bson.Marshal(oplogRecord) writes them.
func appendStmtFields(b []byte, s *StmtWrite) []byte {
	b = bsoncore.AppendBinaryElement(b, "lsid", 0, s.LSID)
	b = bsoncore.AppendInt64Element(b, "txn", s.TxnNumber)
	b = bsoncore.AppendInt32Element(b, "stmt", s.StmtID)
	return bsoncore.AppendDocumentElement(b, "res", s.result())
}

// stmtFromRecord reads the statement fields of a decoded oplog record:
// all four or none.
func stmtFromRecord(r *oplogRecord) (*StmtWrite, error) {
	if r.LSID == nil && r.Txn == 0 && r.Stmt == nil && r.Res == nil {
		return nil, nil
	}
	if r.LSID == nil || r.Txn == 0 || r.Stmt == nil || r.Res == nil {
		return nil, errors.New("partial statement fields (lsid, txn, stmt, res)")
	}
	return &StmtWrite{
		Statement: Statement{LSID: bytes.Clone(r.LSID), TxnNumber: r.Txn, StmtID: *r.Stmt},
		Result:    bytes.Clone(r.Res),
	}, nil
}

// RecordStatement records w's result with a no-op entry, for a statement
// that wrote nothing (an update that matched but changed nothing, a delete
// that found nothing). If the statement is recorded already, it writes
// nothing and returns the first record with retried true. The record is
// durable when RecordStatement returns.
// Errors: TransactionTooOld (225), BadValue (2).
func (e *Engine) RecordStatement(ctx context.Context, w StmtWrite) (rec StmtRecord, retried bool, err error) {
	if err := w.check(); err != nil {
		return StmtRecord{}, false, err
	}
	if err := e.begin(); err != nil {
		return StmtRecord{}, false, err
	}
	defer e.end()
	start := time.Now()
	if err := e.lock(ctx); err != nil {
		return StmtRecord{}, false, err
	}
	t := e.newTxn("recordStatement", "", start)
	prior, err := t.lookupStmt(w.Statement)
	if err != nil || prior != nil {
		t.abort()
		if prior != nil {
			return *prior, true, nil
		}
		return StmtRecord{}, false, err
	}
	t.stmt = &w
	at := t.oplog(OpNoop, "", bson.RawValue{}, stmtNoopMsg)
	if err := e.commit(t); err != nil {
		return StmtRecord{}, false, fmt.Errorf("record statement: %w", err)
	}
	return StmtRecord{Result: w.result(), OpTime: at}, false, nil
}

// stmtNoopMsg is the message of the no-op entry that records a statement
// which wrote nothing.
var stmtNoopMsg = bson.Raw(bsoncore.NewDocumentBuilder().AppendString("msg", "retryable write").Build())

// ReplaceStatement is Replace as a retryable statement: under the write
// lock it first looks the statement up (a recorded one writes nothing and
// returns the record, Retried), then replaces the document and records w
// in the same batch and oplog entry (Written). A missing document writes
// and records nothing. Errors: those of Replace, TransactionTooOld (225).
func (e *Engine) ReplaceStatement(ctx context.Context, ns string, id bson.RawValue, doc bson.Raw, w StmtWrite) (StmtOutcome, error) {
	if err := w.check(); err != nil {
		return StmtOutcome{}, err
	}
	return e.replace(ctx, ns, id, doc, &w)
}

// DeleteStatement is Delete as a retryable statement, as ReplaceStatement
// is for Replace. Errors: those of Delete, TransactionTooOld (225).
func (e *Engine) DeleteStatement(ctx context.Context, ns string, id bson.RawValue, w StmtWrite) (StmtOutcome, error) {
	if err := w.check(); err != nil {
		return StmtOutcome{}, err
	}
	return e.delete(ctx, ns, id, &w)
}

// beginStmt is the start of a retryable Replace or Delete under the write
// lock: a recorded statement ends the write (done), else w is attached to
// the write's entry. w nil: an ordinary write.
func (t *txn) beginStmt(w *StmtWrite) (out StmtOutcome, done bool, err error) {
	if w == nil {
		return StmtOutcome{}, false, nil
	}
	prior, err := t.lookupStmt(w.Statement)
	if err != nil {
		return StmtOutcome{}, true, err
	}
	if prior != nil {
		return StmtOutcome{Retried: true, Record: *prior}, true, nil
	}
	t.stmt = w
	return StmtOutcome{}, false, nil
}

// stmtWritten is the outcome of a retryable write whose entry is at at.
func stmtWritten(w *StmtWrite, at OpTime) StmtOutcome {
	if w == nil {
		return StmtOutcome{Written: true}
	}
	return StmtOutcome{Written: true, Record: StmtRecord{Result: w.result(), OpTime: at}}
}

// insertStmt is the per-document start of a retryable Insert (WriteOptions
// .Stmts): the recorded result when the statement ran already, else w is
// attached to the document's entry. A zero w (no LSID) is an ordinary
// document.
func (t *txn) insertStmt(w *StmtWrite) (*StmtRecord, error) {
	t.stmt = nil
	if w == nil || w.LSID == nil {
		return nil, nil
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	prior, err := t.lookupStmt(w.Statement)
	if err != nil || prior != nil {
		return prior, err
	}
	t.stmt = w
	return nil, nil
}

// stmtMigratedMsg is the message of the no-op entry that records a
// statement migrated from another shard.
var stmtMigratedMsg = bson.Raw(bsoncore.NewDocumentBuilder().AppendString("msg", "migrated retryable write").Build())

// ImportStatements records statements migrated from a chunk's donor with
// the results the donor recorded, one no-op entry carrying each (so the
// member's secondaries record them too), all in one batch. A statement
// recorded here already, or older than its session's newest txnNumber
// here (a retry of it is refused with TransactionTooOld anyway), is
// skipped. It returns how many were recorded and the last entry's optime
// (zero when none).
func (e *Engine) ImportStatements(ctx context.Context, ws []StmtWrite) (int, OpTime, error) {
	for i := range ws {
		if err := ws[i].check(); err != nil {
			return 0, OpTime{}, fmt.Errorf("migrated statement %d: %w", i, err)
		}
	}
	if len(ws) == 0 {
		return 0, OpTime{}, nil
	}
	if err := e.begin(); err != nil {
		return 0, OpTime{}, err
	}
	defer e.end()
	start := time.Now()
	if err := e.lock(ctx); err != nil {
		return 0, OpTime{}, err
	}
	t := e.newTxn("importStatements", "", start)
	n := 0
	var last OpTime
	for i := range ws {
		prior, err := t.lookupStmt(ws[i].Statement)
		if mongoerr.CodeOf(err) == mongoerr.TransactionTooOld || prior != nil {
			continue
		}
		if err != nil {
			t.abort()
			return 0, OpTime{}, err
		}
		t.stmt = &ws[i]
		last = t.oplog(OpNoop, "", bson.RawValue{}, stmtMigratedMsg)
		n++
	}
	if n == 0 {
		t.abort()
		return 0, OpTime{}, nil
	}
	if err := e.commit(t); err != nil {
		return 0, OpTime{}, fmt.Errorf("import migrated statements: %w", err)
	}
	return n, last, nil
}
