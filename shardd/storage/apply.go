package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Replication on the storage side: a secondary applies its primary's oplog
// (ApplyOplog), and a primary waits for new durable entries to stream
// (WaitDurable). Roles, terms of elections and rollback belong to the
// replication layer (shardd/repl); this file only keeps the store's half of
// the contract: the secondary's oplog is a prefix of the primary's, entry
// for entry, with the primary's own optimes.

// Apply errors, testable with errors.Is. The caller decides what to do:
// the replication layer refetches from the right position (gap) or rolls
// back to the common point (diverged).
var (
	// ErrOplogGap: the first new entry does not follow the local last
	// optime (its index is more than one past it); entries are missing.
	ErrOplogGap = errors.New("oplog gap")
	// ErrOplogDiverged: the entries do not continue the local log: an
	// entry at an index the store already has differs from the local one,
	// the term goes back, or applying an entry the primary accepted fails
	// (a unique index conflict, a DDL conflict), which can only happen if
	// the local data differs from the primary's.
	ErrOplogDiverged = errors.New("oplog diverged")
)

// ApplyOplog applies a batch of a primary's oplog entries, in order, in one
// Pebble batch (one synced, group-committed write, like every write), and
// stores the entries as received, with their own optimes: afterwards the
// local oplog and LastOpTime equal the primary's up to the last entry.
//
// Entries at or before the local last optime that the local oplog holds
// with the same optime are skipped (re-applying a batch is a no-op); the
// first other entry must have index last+1 and a term no older than the
// last one's (else ErrOplogGap / ErrOplogDiverged, and nothing is written).
//
// Each operation is applied idempotently, maintaining indexes and
// statistics exactly as the primary's writes do: an insert of an existing
// _id replaces the document, an update stores the full post-image
// (inserting it if the document is missing), a delete of a missing
// document or collection does nothing; inserts and updates create a
// missing collection (without an oplog entry of their own, so that the
// logs stay equal). Commands (create, drop, createIndexes, dropIndexes)
// run through the engine's DDL code; one that is already in effect
// (collection exists, index exists, nothing to drop) does nothing.
//
// Unique index conflicts: MongoDB tolerates them transiently while it
// applies out of order; PSDB applies strictly in order onto a state equal
// to the primary's before the entry, so an entry the primary accepted
// always applies. A conflict (or any MongoDB error from applying an
// entry) therefore means the local data diverged: ApplyOplog returns an
// error wrapping ErrOplogDiverged and writes nothing.
//
// A newer term seen in the entries is recorded as the engine's term (terms
// never go back). ApplyOplog does not check roles: the caller must be the
// member's only writer while it is a secondary.
func (e *Engine) ApplyOplog(ctx context.Context, entries []OplogEntry) error {
	return e.ApplyOplogFrom(ctx, 0, entries)
}

// ApplyOplogFrom is ApplyOplog for entries sent by a sync source in
// sourceTerm: it refuses them with StaleTerm, writing nothing, when this
// member promised a newer term in a vote (vote.go). That is the fencing
// promise: an old primary's batches are refused, while the entries of
// older terms that a newer primary holds are not. The check is made under
// the write lock, which Vote holds too. sourceTerm 0 checks nothing.
func (e *Engine) ApplyOplogFrom(ctx context.Context, sourceTerm uint64, entries []OplogEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := e.begin(); err != nil {
		return err
	}
	defer e.end()
	start := time.Now()
	entries = slices.Clone(entries) // checkEntry normalizes ID; the caller's slice stays as it was
	cmds := make([]applyCommand, len(entries))
	for i := range entries {
		var err error
		if cmds[i], err = checkEntry(&entries[i]); err != nil {
			return err
		}
	}
	if err := e.lock(ctx); err != nil {
		return err
	}
	if e.syncPending.Load() {
		e.unlock()
		return fmt.Errorf("apply oplog: %w", ErrInitialSyncPending)
	}
	if v := e.voted.Load(); sourceTerm > 0 && sourceTerm < v {
		e.unlock()
		return mongoerr.New(mongoerr.StaleTerm, "the sync source is in term %d, older than term %d, which this member promised in a vote", sourceTerm, v)
	}
	t := e.newTxn("applyOplog", "", start)
	t.replica = true
	term := e.term.Load()
	for i := range entries {
		en := &entries[i]
		at := en.OpTime()
		if en.Index <= t.last.Index {
			// Already applied if the local log holds the same optime.
			_, found, err := t.get(oplogKey(at))
			if err != nil {
				t.abort()
				return fmt.Errorf("apply oplog: %w", err)
			}
			if !found {
				t.abort()
				return fmt.Errorf("entry %s is not in the local oplog, whose last entry is %s: %w", at, t.last, ErrOplogDiverged)
			}
			continue
		}
		if en.Index != t.last.Index+1 {
			t.abort()
			return fmt.Errorf("entry %s does not follow the local last entry %s: %w", at, t.last, ErrOplogGap)
		}
		if en.Term < t.last.Term {
			t.abort()
			return fmt.Errorf("entry %s has an older term than the local last entry %s: %w", at, t.last, ErrOplogDiverged)
		}
		err := t.applyEntry(en, cmds[i])
		if err == nil && en.Stmt != nil {
			err = t.applyStmt(*en.Stmt, at) // the statement record of the primary's batch (session.go)
		}
		if err != nil {
			t.abort()
			if isClientError(err) {
				return fmt.Errorf("apply entry %s (%s %s): %v: %w", at, en.Op, en.NS, err, ErrOplogDiverged)
			}
			return fmt.Errorf("apply entry %s (%s %s): %w", at, en.Op, en.NS, err)
		}
		_ = t.b.Set(oplogKey(at), encodeOplogEntry(*en), nil)
		t.last = at
		t.entries++
		term = max(term, en.Term)
	}
	if term > e.term.Load() {
		// Stored in the same batch; published under the write lock (the
		// term's invariant) before the batch is, so no later local entry
		// can carry an older term than one already applied.
		_ = t.b.Set(metaKey(metaTerm), marshalRecord(termRecord{Term: int64(term)}), nil)
		e.term.Store(term)
	}
	n := t.entries
	if err := e.commit(t); err != nil {
		return fmt.Errorf("apply oplog: %w", err)
	}
	if d := time.Since(start); d >= slowWrite {
		e.log.Info().Str("op", "applyOplog").Int("entries", n).Dur("dur", d).Msg("slow oplog apply")
	}
	return nil
}

// applyCommand is a parsed "c" entry.
type applyCommand struct {
	kind string // "create", "drop", "createIndexes", "dropIndexes"
	ns   string
	spec IndexSpec // createIndexes
	name string    // dropIndexes
}

// checkEntry checks what can be checked of an entry before the write lock
// is taken, and parses a command.
func checkEntry(en *OplogEntry) (applyCommand, error) {
	bad := func(format string, args ...any) (applyCommand, error) {
		return applyCommand{}, mongoerr.New(mongoerr.BadValue, "oplog entry %s: %s", en.OpTime(), fmt.Sprintf(format, args...))
	}
	if en.Index == 0 {
		return bad("index 0 is before every entry")
	}
	switch en.Op {
	case OpInsert, OpUpdate:
		if err := ValidateNamespace(en.NS); err != nil {
			return bad("%v", err)
		}
		if err := en.Doc.Validate(); err != nil {
			return bad("document is not valid BSON: %v", err)
		}
		id, err := docID(en.Doc)
		if err != nil {
			return bad("document does not start with its _id")
		}
		if en.ID.Type != 0 && !bytes.Equal(idKey(id), idKey(en.ID)) {
			return bad("document _id %s differs from the entry's %s", id, en.ID)
		}
		en.ID = id
		if err := checkID(id); err != nil {
			return bad("%v", err)
		}
	case OpDelete:
		if err := ValidateNamespace(en.NS); err != nil {
			return bad("%v", err)
		}
		if en.ID.Type == 0 {
			return bad("delete without an _id")
		}
	case OpCommand:
		if en.Stmt != nil {
			return bad("a command cannot complete a retryable statement")
		}
		return parseCommand(en, bad)
	case OpNoop:
		if err := checkNoopEntry(en); err != nil {
			return bad("%v", err)
		}
	default:
		return bad("unknown op %q", en.Op)
	}
	if err := checkStmtEntry(en); err != nil {
		return bad("%v", err)
	}
	return applyCommand{}, nil
}

func parseCommand(en *OplogEntry, bad func(string, ...any) (applyCommand, error)) (applyCommand, error) {
	db, rest, ok := strings.Cut(en.NS, ".")
	if !ok || rest != "$cmd" || db == "" {
		return bad("command namespace %q is not <db>.$cmd", en.NS)
	}
	if err := en.Doc.Validate(); err != nil {
		return bad("command is not valid BSON: %v", err)
	}
	elems, err := en.Doc.Elements()
	if err != nil || len(elems) == 0 {
		return bad("empty command")
	}
	cmd := applyCommand{kind: elems[0].Key()}
	coll, ok := elems[0].Value().StringValueOK()
	if !ok || coll == "" {
		return bad("command %s does not name a collection", cmd.kind)
	}
	cmd.ns = db + "." + coll
	if err := ValidateNamespace(cmd.ns); err != nil {
		return bad("%v", err)
	}
	switch cmd.kind {
	case "create", "drop":
	case "createIndexes":
		spec, err := parseSpecDoc(en.Doc.Lookup("spec"))
		if err != nil {
			return bad("createIndexes: %v", err)
		}
		cmd.spec = spec
	case "dropIndexes":
		name, ok := en.Doc.Lookup("index").StringValueOK()
		if !ok {
			return bad("dropIndexes without an index name")
		}
		cmd.name = name
	default:
		return bad("unknown command %q", cmd.kind)
	}
	return cmd, nil
}

// parseSpecDoc reads the index spec of a createIndexes entry, as specDoc
// writes it: {key: {a: 1, b: -1}, name, unique?, sparse?}.
func parseSpecDoc(v bson.RawValue) (IndexSpec, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return IndexSpec{}, errors.New("spec is not a document")
	}
	var s IndexSpec
	s.Name, _ = d.Lookup("name").StringValueOK()
	s.Unique, _ = d.Lookup("unique").BooleanOK()
	s.Sparse, _ = d.Lookup("sparse").BooleanOK()
	key, ok := d.Lookup("key").DocumentOK()
	if !ok {
		return IndexSpec{}, errors.New("spec has no key document")
	}
	parts, err := key.Elements()
	if err != nil || len(parts) == 0 {
		return IndexSpec{}, errors.New("spec key is empty")
	}
	for _, p := range parts {
		var dir float64
		switch v := p.Value(); v.Type {
		case bson.TypeInt32:
			dir = float64(v.Int32())
		case bson.TypeInt64:
			dir = float64(v.Int64())
		case bson.TypeDouble:
			dir = v.Double()
		default:
			return IndexSpec{}, fmt.Errorf("key field %q has direction of type %s", p.Key(), v.Type)
		}
		s.Key = append(s.Key, IndexKeyPart{Field: p.Key(), Desc: dir < 0})
	}
	return s, nil
}

// applyEntry stages one entry's effect (not the entry itself).
func (t *txn) applyEntry(en *OplogEntry, cmd applyCommand) error {
	switch en.Op {
	case OpInsert, OpUpdate:
		c, err := t.ensureCollection(en.NS)
		if err != nil {
			return err
		}
		return t.putDoc(c, en.Doc, en.ID)
	case OpDelete:
		c := t.cat.byNS[en.NS]
		if c == nil {
			return nil
		}
		return t.removeDoc(c, en.ID)
	case OpNoop:
		return nil // stored as is; its statement record, if any, by ApplyOplog
	}
	var err error
	switch cmd.kind {
	case "create":
		if err = t.createCollection(cmd.ns); mongoerr.CodeOf(err) == mongoerr.NamespaceExists {
			err = nil
		}
	case "drop":
		if err = t.dropCollection(cmd.ns); mongoerr.CodeOf(err) == mongoerr.NamespaceNotFound {
			err = nil
		}
	case "createIndexes":
		_, err = t.createIndex(cmd.ns, cmd.spec) // an identical index is not an error
	case "dropIndexes":
		switch err = t.dropIndex(cmd.ns, cmd.name); mongoerr.CodeOf(err) {
		case mongoerr.NamespaceNotFound, mongoerr.IndexNotFound:
			err = nil
		}
	}
	return err
}

// putDoc stores doc (whose first field is id) in c, inserting it or
// replacing the stored version, and rewrites the index entries that
// changed. It keeps the same invariants as Insert and Replace.
func (t *txn) putDoc(c *collection, doc bson.Raw, id bson.RawValue) error {
	idk := idKey(id)
	dk := docKey(c.id, idk)
	old, found, err := t.get(dk)
	if err != nil {
		return err
	}
	if !found {
		_, err := t.insertDoc(c, doc, id, idk, nil)
		return err
	}
	oldKeys, err := allIndexKeys(c, old)
	if err != nil {
		return fmt.Errorf("index keys of stored document %s in %s: %v: %w", id, c.ns, err, ErrCorrupt)
	}
	newKeys, err := allIndexKeys(c, doc)
	if err != nil {
		return err
	}
	removed := make([][]indexKey, len(c.indexes))
	added := make([][]indexKey, len(c.indexes))
	for i, ix := range c.indexes {
		t.noteMultikey(c, i, len(newKeys[i]))
		removed[i], added[i] = diffKeys(oldKeys[i], newKeys[i])
		if !ix.spec.Unique {
			continue
		}
		for _, k := range added[i] {
			taken, err := t.uniqueConflict(c, ix, k.tuple, idk)
			if err != nil {
				return err
			}
			if taken {
				return newDuplicateKeyError(c.ns, ix.spec, k.vals)
			}
		}
	}
	st := t.statsFor(c)
	_ = t.b.Set(dk, doc, nil)
	st.size += int64(len(doc)) - int64(len(old))
	for i, ix := range c.indexes {
		for _, k := range removed[i] {
			ek := indexEntryKey(c.id, ix.id, k.tuple, idk)
			_ = t.b.Delete(ek, nil)
			st.addKey(ix.id, len(ek), -1)
		}
		for _, k := range added[i] {
			ek := indexEntryKey(c.id, ix.id, k.tuple, idk)
			_ = t.b.Set(ek, nil, nil)
			st.addKey(ix.id, len(ek), 1)
		}
	}
	return nil
}

// removeDoc deletes the document with this _id from c, with its index
// entries; a missing document is not an error.
func (t *txn) removeDoc(c *collection, id bson.RawValue) error {
	idk := idKey(id)
	old, oldKeys, found, err := t.loadDoc(c, idk)
	if err != nil || !found {
		return err
	}
	t.dropDoc(c, idk, old, oldKeys)
	return nil
}

// HasOplogEntry reports whether the local oplog holds an entry with exactly
// this optime (term and index). The zero-index optime is before every log
// and is always held, and so is the oplog's base (clone.go: the newest
// entry removed by retention, or an initial sync's snapshot), which was in
// this log. A primary uses it to check that a puller's last entry is in
// its own log.
func (e *Engine) HasOplogEntry(t OpTime) (bool, error) {
	if t.Index == 0 {
		return true, nil
	}
	if err := e.begin(); err != nil {
		return false, err
	}
	defer e.end()
	_, closer, err := e.db.Get(oplogKey(t))
	if errors.Is(err, pebble.ErrNotFound) {
		base, err := e.oplogBase()
		return err == nil && base == t, err
	}
	if err != nil {
		return false, fmt.Errorf("read oplog entry %s: %w", t, err)
	}
	_ = closer.Close()
	return true, nil
}

// FirstOpTime returns the optime of the oldest entry the oplog still holds
// (retention may have removed older ones); ok is false for an empty oplog.
// An oplog emptied by an initial sync at snapshot S (clone.go) answers
// {S.Term, S.Index+1}, the position of the first entry it will hold, so
// that a puller before S is told it is stale.
func (e *Engine) FirstOpTime() (t OpTime, ok bool, err error) {
	if err := e.begin(); err != nil {
		return OpTime{}, false, err
	}
	defer e.end()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixOplog}, UpperBound: []byte{prefixOplog + 1}})
	if err != nil {
		return OpTime{}, false, fmt.Errorf("read oplog: %w", err)
	}
	if it.First() {
		var o OplogEntry
		if o, err = decodeOplogEntry(it.Key(), it.Value()); err == nil {
			t, ok = o.OpTime(), true
		}
	} else if base, berr := e.oplogBase(); berr != nil {
		err = berr
	} else if base.Index > 0 {
		t, ok = OpTime{Term: base.Term, Index: base.Index + 1}, true
	}
	if cerr := errors.Join(it.Error(), it.Close()); cerr != nil {
		return OpTime{}, false, fmt.Errorf("read oplog: %w", cerr)
	}
	return t, ok, err
}

// WaitDurable blocks until the durable optime (LastOpTime) is after the
// given one and returns it; it returns at once if it already is. It ends
// with ctx's error when ctx ends and with ErrClosed when the engine closes.
// No polling: markDurable closes a broadcast channel on every advance.
func (e *Engine) WaitDurable(ctx context.Context, after OpTime) (OpTime, error) {
	for {
		e.durMu.Lock()
		if e.durClosed {
			e.durMu.Unlock()
			return OpTime{}, ErrClosed
		}
		if cur := e.durable; cur.Compare(after) > 0 {
			e.durMu.Unlock()
			return cur, nil
		}
		if e.durCh == nil {
			e.durCh = make(chan struct{})
		}
		ch := e.durCh
		e.durMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return OpTime{}, ctx.Err()
		}
	}
}

// wakeDurableWaiters wakes every WaitDurable; closing marks the engine
// closed for them. Called by Close.
func (e *Engine) wakeDurableWaiters(closing bool) {
	e.durMu.Lock()
	defer e.durMu.Unlock()
	if closing {
		e.durClosed = true
	}
	if e.durCh != nil {
		close(e.durCh)
		e.durCh = nil
	}
}

// EncodeOplogEntry returns the BSON form of o, the same bytes the oplog
// stores; replication sends entries in this form.
func EncodeOplogEntry(o OplogEntry) []byte { return encodeOplogEntry(o) }

// DecodeOplogEntry parses an entry encoded by EncodeOplogEntry. A
// malformed one is refused with BadValue (2).
func DecodeOplogEntry(b []byte) (OplogEntry, error) {
	var r oplogRecord
	if err := bson.Unmarshal(b, &r); err != nil {
		return OplogEntry{}, mongoerr.New(mongoerr.BadValue, "oplog entry is not valid BSON: %v", err)
	}
	if r.Term < 0 || r.Index < 0 {
		return OplogEntry{}, mongoerr.New(mongoerr.BadValue, "oplog entry has a negative optime (%d, %d)", r.Term, r.Index)
	}
	o, err := decodeOplogEntry(oplogKey(OpTime{Term: uint64(r.Term), Index: uint64(r.Index)}), b)
	if err != nil {
		return OplogEntry{}, mongoerr.Wrap(err, mongoerr.BadValue, "oplog entry: %v", err)
	}
	return o, nil
}
