package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Storage primitives of chunk migrations (docs/design/migrations.md). A
// migration's recipient writes the documents it receives with PutDocuments
// and the deletes with DeleteDocuments; a donor's range deletion deletes
// with DeleteDocuments too. Both are ordinary local writes: one Pebble
// batch with one oplog entry per document changed, so the member's
// secondaries receive them through their pullers like any client write.

// PutDocuments stores every document of docs in ns, inserting it when its
// _id is absent and replacing the stored version otherwise, in one batch
// with one oplog entry per document ("i" for an insert, "u" with the full
// document for a replacement); the collection is created if needed. It is
// idempotent: putting the same documents again replaces them with
// themselves. Every document must have an _id (a migrated document always
// has one). It returns the optime of the batch's last entry (zero when
// docs is empty).
//
// Errors: the document checks of Insert (size, BSON, $-prefixed fields,
// _id type: the call fails as a whole and writes nothing), BadValue for a
// document without _id, DuplicateKey (11000) when a unique secondary index
// refuses a document (nothing written).
func (e *Engine) PutDocuments(ctx context.Context, ns string, docs []bson.Raw) (OpTime, error) {
	if err := e.begin(); err != nil {
		return OpTime{}, err
	}
	defer e.end()
	start := time.Now()
	if err := ValidateNamespace(ns); err != nil {
		return OpTime{}, err
	}
	type prepared struct {
		doc bson.Raw
		id  bson.RawValue
	}
	preps := make([]prepared, len(docs))
	for i, d := range docs {
		if _, err := d.LookupErr("_id"); err != nil {
			return OpTime{}, mongoerr.New(mongoerr.BadValue, "migrated document %d of %s has no _id", i, ns)
		}
		doc, id, err := prepareDoc(d, e.opts.MaxDocumentSize, nil)
		if err != nil {
			return OpTime{}, fmt.Errorf("migrated document %d of %s: %w", i, ns, err)
		}
		preps[i] = prepared{doc: doc, id: id}
	}
	if len(preps) == 0 {
		return OpTime{}, nil
	}
	if err := e.lock(ctx); err != nil {
		return OpTime{}, err
	}
	t := e.newTxn("putDocuments", ns, start)
	c, err := t.ensureCollection(ns)
	if err != nil {
		t.abort()
		return OpTime{}, err
	}
	for _, p := range preps {
		_, exists, err := t.get(docKey(c.id, idKey(p.id)))
		if err != nil {
			t.abort()
			return OpTime{}, err
		}
		// putDoc inserts (with its "i" entry) or replaces (no entry: it is
		// shared with oplog application, which stores the entry itself).
		if err := t.putDoc(c, p.doc, p.id); err != nil {
			t.abort()
			return OpTime{}, err
		}
		if exists {
			t.oplog(OpUpdate, ns, p.id, p.doc)
		}
		// The catalog may have changed (multikey flags): later documents
		// must see the current collection record.
		c = t.cat.byNS[ns]
	}
	last := t.last
	if err := e.commit(t); err != nil {
		return OpTime{}, fmt.Errorf("put documents into %s: %w", ns, err)
	}
	return last, nil
}

// DeleteDocuments deletes the documents of ns with the given _ids in one
// batch, one "d" oplog entry per document deleted. When match is not nil,
// a document is deleted only if match returns true for its current
// version, decided under the write lock (a range deletion re-checks that
// the document still belongs to the range). Missing documents are skipped.
// It returns how many documents were deleted and the optime of the last
// entry (zero when none).
func (e *Engine) DeleteDocuments(ctx context.Context, ns string, ids []bson.RawValue, match func(doc bson.Raw) bool) (int, OpTime, error) {
	if err := e.begin(); err != nil {
		return 0, OpTime{}, err
	}
	defer e.end()
	start := time.Now()
	for _, id := range ids {
		if id.Type == 0 {
			return 0, OpTime{}, mongoerr.New(mongoerr.BadValue, "delete needs an _id")
		}
	}
	if err := e.lock(ctx); err != nil {
		return 0, OpTime{}, err
	}
	t := e.newTxn("deleteDocuments", ns, start)
	c := t.cat.byNS[ns]
	if c == nil {
		t.abort()
		return 0, OpTime{}, nil
	}
	n := 0
	for _, id := range ids {
		idk := idKey(id)
		old, oldKeys, found, err := t.loadDoc(c, idk)
		if err != nil {
			t.abort()
			return 0, OpTime{}, err
		}
		if !found || (match != nil && !match(old)) {
			continue
		}
		storedID, err := docID(old)
		if err != nil {
			t.abort()
			return 0, OpTime{}, fmt.Errorf("stored document %x: %w", docKey(c.id, idk), err)
		}
		t.dropDoc(c, idk, old, oldKeys)
		t.oplog(OpDelete, ns, storedID, nil)
		n++
	}
	last := t.last
	if n == 0 {
		t.abort()
		return 0, OpTime{}, nil
	}
	if err := e.commit(t); err != nil {
		return 0, OpTime{}, fmt.Errorf("delete documents from %s: %w", ns, err)
	}
	return n, last, nil
}

// OplogEntryAt returns the oplog entry at t; ok is false when the oplog
// does not hold it (never written, truncated or rolled back). A chunk
// migration's donor uses it to tell which statement records belong to
// the migrated range.
func (e *Engine) OplogEntryAt(t OpTime) (en OplogEntry, ok bool, err error) {
	if err := e.begin(); err != nil {
		return OplogEntry{}, false, err
	}
	defer e.end()
	k := oplogKey(t)
	val, closer, err := e.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return OplogEntry{}, false, nil
	}
	if err != nil {
		return OplogEntry{}, false, fmt.Errorf("read oplog entry %s: %w", t, err)
	}
	defer closer.Close()
	en, err = decodeOplogEntry(k, val)
	if err != nil {
		return OplogEntry{}, false, err
	}
	return en, true, nil
}
