package storage

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// WriteOptions control a multi-document Insert.
type WriteOptions struct {
	// Ordered stops at the first document that fails, as MongoDB's ordered
	// insert does: the documents before it are written, the ones after it
	// are not attempted. Unordered attempts every document.
	Ordered bool
	// Stmts, when set, makes the documents retryable statements
	// (session.go): Stmts[i] is docs[i]'s statement (a zero StmtWrite: an
	// ordinary document). A recorded statement is not written again.
	Stmts []StmtWrite
}

// WriteResult is the outcome for one document of an Insert.
type WriteResult struct {
	ID     bson.RawValue // the document's _id (the generated one if it had none)
	OpTime OpTime        // its oplog entry; zero when Err is set
	Err    error         // why this document was not written; nil when it was
	// Retried (WriteOptions.Stmts) is the first execution's record of a
	// statement recorded already: nothing was written, OpTime is the
	// record's.
	Retried *StmtRecord
}

// Insert writes documents to ns, creating the collection if needed.
//
// Every document is checked on its own (size, BSON validity, $-prefixed
// top-level fields, _id type, duplicate _id, unique indexes, parallel
// arrays); a document that fails is not written at all and gets its error
// in its WriteResult. The documents that pass are written in one Pebble
// batch with one oplog entry each, so the call costs one WAL sync, and are
// durable when Insert returns. results[i] belongs to docs[i]; with Ordered
// the slice ends at the first failed document.
//
// A document without _id gets a fresh ObjectId, stored as its first field
// (as is an _id that was not first).
//
// The returned error is for the call as a whole (closed engine, bad
// namespace, cancelled context before anything was written, a storage
// failure); then nothing may be assumed written.
func (e *Engine) Insert(ctx context.Context, ns string, docs []bson.Raw, opts WriteOptions) ([]WriteResult, error) {
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.end()
	start := time.Now()
	if err := ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if opts.Stmts != nil && len(opts.Stmts) != len(docs) {
		return nil, mongoerr.New(mongoerr.BadValue, "%d statements for %d documents", len(opts.Stmts), len(docs))
	}
	type prepared struct {
		doc   bson.Raw
		id    bson.RawValue
		idk   []byte
		ikeys [][]indexKey // keys for the indexes of coll, computed before taking the lock
		err   error
	}
	// Everything that does not depend on the store's state is done before
	// taking the write lock, to keep the critical section short. Index keys
	// depend on the collection's index list: they are reused under the lock
	// only if the collection metadata is still the same object.
	coll := e.collection(ns)
	preps := make([]prepared, len(docs))
	for i, d := range docs {
		p := &preps[i]
		p.doc, p.id, p.err = prepareDoc(d, e.opts.MaxDocumentSize, nil)
		if p.err == nil {
			p.id.Value = slices.Clone(p.id.Value) // results must not alias the caller's buffer
			p.idk = idKey(p.id)
			if coll != nil {
				p.ikeys, p.err = allIndexKeys(coll, p.doc)
			}
		}
	}
	if err := e.lock(ctx); err != nil {
		return nil, err
	}
	t := e.newTxn("insert", ns, start)
	results := make([]WriteResult, 0, len(docs))
	for i := range preps {
		p := &preps[i]
		r := WriteResult{ID: p.id, Err: p.err}
		if r.Err == nil && opts.Stmts != nil {
			if r.Retried, r.Err = t.insertStmt(&opts.Stmts[i]); r.Retried != nil {
				r.OpTime = r.Retried.OpTime
			}
			if r.Err != nil && !isClientError(r.Err) {
				t.abort()
				return nil, r.Err
			}
		}
		if r.Err == nil && r.Retried == nil {
			c, err := t.ensureCollection(ns)
			if err != nil {
				t.abort()
				return nil, err
			}
			ikeys := p.ikeys
			if c != coll {
				ikeys = nil // the index list changed since; insertDoc recomputes
			}
			r.OpTime, r.Err = t.insertDoc(c, p.doc, p.id, p.idk, ikeys)
			t.stmt = nil // consumed by the entry, or not recorded: the document failed
			if r.Err != nil && !isClientError(r.Err) {
				t.abort()
				return nil, r.Err
			}
		}
		results = append(results, r)
		if r.Err != nil && opts.Ordered {
			break
		}
	}
	if err := e.commit(t); err != nil {
		return nil, fmt.Errorf("insert into %s: %w", ns, err)
	}
	return results, nil
}

// isClientError reports whether err is a per-document error for the client
// (it carries a MongoDB code) rather than a storage failure.
func isClientError(err error) bool {
	_, ok := mongoerr.As(err)
	return ok
}

// insertDoc checks and stages one document. Nothing is staged unless every
// check passes.
// ikeys, when not nil, are doc's keys for c's indexes.
func (t *txn) insertDoc(c *collection, doc bson.Raw, id bson.RawValue, idk []byte, ikeys [][]indexKey) (OpTime, error) {
	dk := docKey(c.id, idk)
	if _, exists, err := t.get(dk); err != nil {
		return OpTime{}, err
	} else if exists {
		return OpTime{}, newDuplicateKeyError(c.ns, idIndexSpec(), []bson.RawValue{id})
	}
	if ikeys == nil {
		var err error
		if ikeys, err = allIndexKeys(c, doc); err != nil {
			return OpTime{}, err
		}
	}
	for i := range c.indexes {
		t.noteMultikey(c, i, len(ikeys[i]))
	}
	for i, ix := range c.indexes {
		if !ix.spec.Unique {
			continue
		}
		for _, k := range ikeys[i] {
			taken, err := t.uniqueConflict(c, ix, k.tuple, idk)
			if err != nil {
				return OpTime{}, err
			}
			if taken {
				return OpTime{}, newDuplicateKeyError(c.ns, ix.spec, k.vals)
			}
		}
	}
	st := t.statsFor(c)
	_ = t.b.Set(dk, doc, nil)
	st.count++
	st.size += int64(len(doc))
	st.addKey(idIndexID, len(dk), 1)
	for i, ix := range c.indexes {
		for _, k := range ikeys[i] {
			ek := indexEntryKey(c.id, ix.id, k.tuple, idk)
			_ = t.b.Set(ek, nil, nil)
			st.addKey(ix.id, len(ek), 1)
		}
	}
	return t.oplog(OpInsert, c.ns, id, doc), nil
}

// Replace replaces the document with the given _id by doc and reports
// whether there was one (false, nil when the collection or the document
// does not exist; Replace never inserts). doc may omit _id; if it has one
// it must equal id (ImmutableField, 66). Index entries that changed are
// rewritten, all in one batch with an "u" oplog entry holding the full new
// document; the write is durable when Replace returns.
// Errors: those of Insert's document checks, DuplicateKey (11000) for a
// unique index, CannotIndexParallelArrays (171).
func (e *Engine) Replace(ctx context.Context, ns string, id bson.RawValue, doc bson.Raw) (bool, error) {
	out, err := e.replace(ctx, ns, id, doc, nil)
	return out.Written, err
}

// replace is Replace, as a retryable statement when w is set (session.go).
func (e *Engine) replace(ctx context.Context, ns string, id bson.RawValue, doc bson.Raw, w *StmtWrite) (StmtOutcome, error) {
	var none StmtOutcome
	if err := e.begin(); err != nil {
		return none, err
	}
	defer e.end()
	start := time.Now()
	if err := checkID(id); err != nil {
		return none, err
	}
	newDoc, _, err := prepareDoc(doc, e.opts.MaxDocumentSize, &id)
	if err != nil {
		return none, err
	}
	idk := idKey(id)
	if err := e.lock(ctx); err != nil {
		return none, err
	}
	t := e.newTxn("replace", ns, start)
	if out, done, err := t.beginStmt(w); done {
		t.abort()
		return out, err
	}
	c := t.cat.byNS[ns]
	if c == nil {
		t.abort()
		return none, nil
	}
	dk := docKey(c.id, idk)
	old, oldKeys, found, err := t.loadDoc(c, idk)
	if err != nil || !found {
		t.abort()
		return none, err
	}
	newKeys, err := allIndexKeys(c, newDoc)
	if err != nil {
		t.abort()
		return none, err
	}
	type change struct{ removed, added []indexKey }
	changes := make([]change, len(c.indexes))
	for i, ix := range c.indexes {
		t.noteMultikey(c, i, len(newKeys[i]))
		changes[i].removed, changes[i].added = diffKeys(oldKeys[i], newKeys[i])
		if !ix.spec.Unique {
			continue
		}
		for _, k := range changes[i].added {
			taken, err := t.uniqueConflict(c, ix, k.tuple, idk)
			if err != nil {
				t.abort()
				return none, err
			}
			if taken {
				t.abort()
				return none, newDuplicateKeyError(ns, ix.spec, k.vals)
			}
		}
	}
	st := t.statsFor(c)
	_ = t.b.Set(dk, newDoc, nil)
	st.size += int64(len(newDoc)) - int64(len(old))
	for i, ix := range c.indexes {
		for _, k := range changes[i].removed {
			ek := indexEntryKey(c.id, ix.id, k.tuple, idk)
			_ = t.b.Delete(ek, nil)
			st.addKey(ix.id, len(ek), -1)
		}
		for _, k := range changes[i].added {
			ek := indexEntryKey(c.id, ix.id, k.tuple, idk)
			_ = t.b.Set(ek, nil, nil)
			st.addKey(ix.id, len(ek), 1)
		}
	}
	storedID, err := docID(newDoc)
	if err != nil {
		t.abort()
		return none, err
	}
	at := t.oplog(OpUpdate, ns, storedID, newDoc)
	if err := e.commit(t); err != nil {
		return none, fmt.Errorf("replace in %s: %w", ns, err)
	}
	return stmtWritten(w, at), nil
}

// diffKeys returns the keys only in old and the keys only in new; both
// inputs are sorted by tuple.
func diffKeys(old, new []indexKey) (removed, added []indexKey) {
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new):
			removed = append(removed, old[i])
			i++
		case i == len(old):
			added = append(added, new[j])
			j++
		default:
			switch c := bytes.Compare(old[i].tuple, new[j].tuple); {
			case c < 0:
				removed = append(removed, old[i])
				i++
			case c > 0:
				added = append(added, new[j])
				j++
			default:
				i++
				j++
			}
		}
	}
	return removed, added
}

// Delete removes the document with the given _id and its index entries,
// with a "d" oplog entry, and reports whether there was one. The delete is
// durable when Delete returns.
func (e *Engine) Delete(ctx context.Context, ns string, id bson.RawValue) (bool, error) {
	out, err := e.delete(ctx, ns, id, nil)
	return out.Written, err
}

// delete is Delete, as a retryable statement when w is set (session.go).
func (e *Engine) delete(ctx context.Context, ns string, id bson.RawValue, w *StmtWrite) (StmtOutcome, error) {
	var none StmtOutcome
	if err := e.begin(); err != nil {
		return none, err
	}
	defer e.end()
	start := time.Now()
	if id.Type == 0 {
		return none, mongoerr.New(mongoerr.BadValue, "delete needs an _id")
	}
	idk := idKey(id)
	if err := e.lock(ctx); err != nil {
		return none, err
	}
	t := e.newTxn("delete", ns, start)
	if out, done, err := t.beginStmt(w); done {
		t.abort()
		return out, err
	}
	c := t.cat.byNS[ns]
	if c == nil {
		t.abort()
		return none, nil
	}
	old, oldKeys, found, err := t.loadDoc(c, idk)
	if err != nil || !found {
		t.abort()
		return none, err
	}
	storedID, err := docID(old)
	if err != nil {
		t.abort()
		return none, fmt.Errorf("stored document %x: %w", docKey(c.id, idk), err)
	}
	t.dropDoc(c, idk, old, oldKeys)
	at := t.oplog(OpDelete, ns, storedID, nil)
	if err := e.commit(t); err != nil {
		return none, fmt.Errorf("delete from %s: %w", ns, err)
	}
	return stmtWritten(w, at), nil
}

// loadDoc reads the stored document of c with key(_id) idk, as this write
// sees it, and its keys in c's indexes; found is false when there is none.
func (t *txn) loadDoc(c *collection, idk []byte) (doc bson.Raw, keys [][]indexKey, found bool, err error) {
	dk := docKey(c.id, idk)
	doc, found, err = t.get(dk)
	if err != nil || !found {
		return nil, nil, false, err
	}
	keys, err = allIndexKeys(c, doc)
	if err != nil {
		return nil, nil, false, fmt.Errorf("index keys of stored document %x in %s: %v: %w", dk, c.ns, err, ErrCorrupt)
	}
	return doc, keys, true, nil
}

// dropDoc stages the removal of a document loaded with loadDoc: the
// document, its index entries and its share of the statistics.
func (t *txn) dropDoc(c *collection, idk []byte, doc bson.Raw, keys [][]indexKey) {
	dk := docKey(c.id, idk)
	st := t.statsFor(c)
	_ = t.b.Delete(dk, nil)
	st.count--
	st.size -= int64(len(doc))
	st.addKey(idIndexID, len(dk), -1)
	for i, ix := range c.indexes {
		for _, k := range keys[i] {
			ek := indexEntryKey(c.id, ix.id, k.tuple, idk)
			_ = t.b.Delete(ek, nil)
			st.addKey(ix.id, len(ek), -1)
		}
	}
}
