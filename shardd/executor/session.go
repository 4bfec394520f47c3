package executor

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/storage"
)

// Retryable writes (docs/design/retryable-writes.md). A retryable
// statement is a single-document update, delete or findAndModify (inserts
// are retryable through storage.WriteOptions.Stmts). It runs as the
// ordinary statement does, except that:
//   - a statement recorded already answers its recorded result and writes
//     nothing (looked up first without the lock, then again by storage
//     under the write lock, so two concurrent retries never both write);
//   - its one write (replace, delete or upsert insert) records the
//     statement's result in the same batch and oplog entry;
//   - a statement that wrote nothing records its result with a no-op
//     entry, so a retry answers the same even if the data changed since;
//   - an error is not recorded: a retry executes again, as in MongoDB.
//
// The answer of a first execution is decoded from the bytes it recorded,
// as a retry's is, so both are identical.

// retry carries one retryable statement through a write; nil for an
// ordinary write (every method accepts a nil receiver).
type retry struct {
	st storage.Statement
	// rec is the statement's record once known: the one its write made,
	// or the first execution's when storage found it already recorded.
	rec *storage.StmtRecord
	// insert is the statement of a pending single-document insert.
	insert storage.StmtWrite
}

// write returns the statement with the result to record.
func (r *retry) write(result any) storage.StmtWrite {
	return storage.StmtWrite{Statement: r.st, Result: encodeResult(result)}
}

// note takes the record of a retryable Replace or Delete.
func (r *retry) note(out storage.StmtOutcome) {
	if out.Retried || out.Written {
		rec := out.Record
		r.rec = &rec
	}
}

// insertOptions are the storage options of a single-document insert whose
// success means result.
func (r *retry) insertOptions(result any) storage.WriteOptions {
	if r == nil {
		return storageOrdered
	}
	r.insert = r.write(result)
	return storage.WriteOptions{Ordered: true, Stmts: []storage.StmtWrite{r.insert}}
}

// noteInsert takes the record of a retryable single-document insert.
func (r *retry) noteInsert(res storage.WriteResult) {
	switch {
	case r == nil || res.Err != nil:
	case res.Retried != nil:
		r.rec = res.Retried
	default:
		rec := storage.StmtRecord{Result: r.insert.Result, OpTime: res.OpTime}
		r.rec = &rec
	}
}

// withID returns doc with an _id (a new ObjectId first when it has none),
// so that a retryable upsert's recorded result can name it. An ordinary
// write leaves that to storage.
func (r *retry) withID(doc bson.Raw) bson.Raw {
	if r == nil {
		return doc
	}
	if _, err := doc.LookupErr("_id"); err == nil {
		return doc
	}
	elems, err := bsoncore.Document(doc).Elements()
	if err != nil {
		return doc // storage refuses it with its own error
	}
	idx, b := bsoncore.AppendDocumentStart(nil)
	b = bsoncore.AppendObjectIDElement(b, "_id", bson.NewObjectID())
	for _, el := range elems {
		b = append(b, el...)
	}
	b, _ = bsoncore.AppendDocumentEnd(b, idx)
	return b
}

// replace replaces the document, recording r's statement with result.
func (x *Executor) replace(ctx context.Context, ns string, id bson.RawValue, doc bson.Raw, r *retry, result any) error {
	if r == nil {
		_, err := x.eng.Replace(ctx, ns, id, doc)
		return err
	}
	out, err := x.eng.ReplaceStatement(ctx, ns, id, doc, r.write(result))
	r.note(out)
	return err
}

// deleteDoc deletes the document, recording r's statement with result.
func (x *Executor) deleteDoc(ctx context.Context, ns string, id bson.RawValue, r *retry, result any) (bool, error) {
	if r == nil {
		return x.eng.Delete(ctx, ns, id)
	}
	out, err := x.eng.DeleteStatement(ctx, ns, id, r.write(result))
	r.note(out)
	return out.Written, err
}

// settle ends a retryable statement that ran: its record is the one its
// write made or found; a statement that wrote nothing records result with
// a no-op entry now. An error is returned as is (not recorded).
func (x *Executor) settle(ctx context.Context, r *retry, result any, err error) (storage.StmtRecord, error) {
	if r.rec != nil {
		return *r.rec, nil // a concurrent retry's record wins over this run's error
	}
	if err != nil {
		return storage.StmtRecord{}, err
	}
	rec, _, err := x.eng.RecordStatement(ctx, r.write(result))
	return rec, err
}

// lookup returns the statement's record if it ran already.
func (x *Executor) lookup(st storage.Statement) (*storage.StmtRecord, error) {
	rec, ok, err := x.eng.LookupStatement(st)
	if err != nil || !ok {
		return nil, err
	}
	return &rec, nil
}

// RetryableUpdate runs a single-document update (multi: false) as the
// retryable statement st and returns its result (the recorded one for a
// retry) and the optime of the entry that recorded it.
// Errors: those of Update; InvalidOptions (72) for multi: true;
// TransactionTooOld (225).
func (x *Executor) RetryableUpdate(ctx context.Context, ns string, spec UpdateSpec, st storage.Statement) (UpdateResult, storage.OpTime, error) {
	if spec.Multi {
		return UpdateResult{}, storage.OpTime{}, mongoerr.New(mongoerr.InvalidOptions, "Cannot use (or request) retryable writes with multi=true")
	}
	rec, err := x.lookup(st)
	if err != nil {
		return UpdateResult{}, storage.OpTime{}, err
	}
	if rec == nil {
		r := &retry{st: st}
		res, err := x.update(ctx, ns, spec, r)
		got, err := x.settle(ctx, r, res, err)
		if err != nil {
			return UpdateResult{}, storage.OpTime{}, err
		}
		rec = &got
	}
	res, err := decodeResult(rec.Result)
	return UpdateResult{Matched: res.n, Modified: res.modified, UpsertedID: res.upserted}, rec.OpTime, err
}

// RetryableDelete runs a single-document delete (limit 1) as the
// retryable statement st and returns how many documents it removed (the
// recorded count for a retry) and the optime of the recording entry.
// Errors: those of Delete; InvalidOptions (72) for limit 0;
// TransactionTooOld (225).
func (x *Executor) RetryableDelete(ctx context.Context, ns string, spec DeleteSpec, st storage.Statement) (int64, storage.OpTime, error) {
	if spec.Limit == 0 {
		return 0, storage.OpTime{}, mongoerr.New(mongoerr.InvalidOptions, "Cannot use (or request) retryable writes with limit=0")
	}
	rec, err := x.lookup(st)
	if err != nil {
		return 0, storage.OpTime{}, err
	}
	if rec == nil {
		r := &retry{st: st}
		n, err := x.delete(ctx, ns, spec, r)
		got, err := x.settle(ctx, r, n, err)
		if err != nil {
			return 0, storage.OpTime{}, err
		}
		rec = &got
	}
	res, err := decodeResult(rec.Result)
	return res.n, rec.OpTime, err
}

// RetryableFindAndModify runs findAndModify as the retryable statement st
// and returns its answer (the recorded one for a retry: the same document
// value and lastErrorObject) and the optime of the recording entry.
// Errors: those of FindAndModify; TransactionTooOld (225).
func (x *Executor) RetryableFindAndModify(ctx context.Context, ns string, spec FindAndModifySpec, st storage.Statement) (FindAndModifyResult, storage.OpTime, error) {
	rec, err := x.lookup(st)
	if err != nil {
		return FindAndModifyResult{}, storage.OpTime{}, err
	}
	if rec == nil {
		r := &retry{st: st}
		res, err := x.findAndModify(ctx, ns, spec, r)
		got, err := x.settle(ctx, r, res, err)
		if err != nil {
			return FindAndModifyResult{}, storage.OpTime{}, err
		}
		rec = &got
	}
	res, err := decodeResult(rec.Result)
	return FindAndModifyResult{Value: res.value, Matched: res.n > 0, Updated: res.updated, UpsertedID: res.upserted}, rec.OpTime, err
}

// recorded is the stored form of a statement's result:
// {n, nModified, updatedExisting, upserted?, value?}. n counts matched
// (update), removed (delete) or matched documents (findAndModify).
type recorded struct {
	n, modified int64
	updated     bool
	upserted    bson.RawValue
	value       bson.Raw
}

func encodeResult(result any) bson.Raw {
	var r recorded
	switch v := result.(type) {
	case nil:
	case UpdateResult:
		r = recorded{n: v.Matched, modified: v.Modified, upserted: v.UpsertedID}
	case int64:
		r.n = v
	case FindAndModifyResult:
		r = recorded{updated: v.Updated, upserted: v.UpsertedID, value: v.Value}
		if v.Matched {
			r.n = 1
		}
	default:
		panic(fmt.Sprintf("executor: no recorded form for %T", result)) // a programming error
	}
	idx, b := bsoncore.AppendDocumentStart(nil)
	b = bsoncore.AppendInt64Element(b, "n", r.n)
	b = bsoncore.AppendInt64Element(b, "nModified", r.modified)
	b = bsoncore.AppendBooleanElement(b, "updatedExisting", r.updated)
	if r.upserted.Type != 0 {
		b = bsoncore.AppendValueElement(b, "upserted", bsoncore.Value{Type: bsoncore.Type(r.upserted.Type), Data: r.upserted.Value})
	}
	if r.value != nil {
		b = bsoncore.AppendDocumentElement(b, "value", r.value)
	}
	b, _ = bsoncore.AppendDocumentEnd(b, idx)
	return b
}

func decodeResult(b bson.Raw) (recorded, error) {
	var r recorded
	bad := func(field string) (recorded, error) {
		return recorded{}, mongoerr.New(mongoerr.InternalError, "recorded statement result %s: bad %s", b, field)
	}
	var ok bool
	if r.n, ok = b.Lookup("n").Int64OK(); !ok {
		return bad("n")
	}
	if r.modified, ok = b.Lookup("nModified").Int64OK(); !ok {
		return bad("nModified")
	}
	if r.updated, ok = b.Lookup("updatedExisting").BooleanOK(); !ok {
		return bad("updatedExisting")
	}
	if v, err := b.LookupErr("upserted"); err == nil {
		r.upserted = bson.RawValue{Type: v.Type, Value: append([]byte(nil), v.Value...)}
	}
	if v, err := b.LookupErr("value"); err == nil {
		d, ok := v.DocumentOK()
		if !ok {
			return bad("value")
		}
		r.value = append(bson.Raw(nil), d...)
	}
	return r, nil
}
