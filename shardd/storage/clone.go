package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Initial sync on the storage side (DESIGN §4; docs/design/initial-sync.md).
// A member that must resync (empty, or fallen off its source's oplog):
//
//  1. ResetForInitialSync: in one synced batch, marks "initial sync in
//     progress" and deletes every key but resetKeepKeys (documents, index
//     entries, catalog, statistics, oplog, any future data prefix);
//  2. InstallCollection / InstallDocuments for each collection of the
//     source's snapshot: the engine's own DDL and write code (indexes,
//     multikey flags, statistics), without oplog entries, and
//     InstallSessions for the source's retryable-write statement records
//     (Snapshot.ScanSessions), byte for byte;
//  3. FinishInitialSync(snapshot optime): in one synced batch, sets the
//     last optime to the snapshot's, records it as the oplog's base (the
//     oplog is empty but "starts after" it) and clears the mark.
//
// Crash safety: the mark is written in the same batch as the deletions and
// removed in the same batch that makes the store usable, so a store whose
// mark is set after Open (InitialSyncPending) holds a partial clone and
// must be resynced from step 1; while it is set ApplyOplog refuses to run.

// ErrInitialSyncPending: the store holds an incomplete initial sync (after
// ResetForInitialSync and before FinishInitialSync, possibly across a
// crash); it must not be replicated to or served until it is redone.
var ErrInitialSyncPending = errors.New("initial sync in progress")

// ErrNoInitialSync: an install call without ResetForInitialSync first.
var ErrNoInitialSync = errors.New("no initial sync in progress")

type syncMarkRecord struct {
	Started time.Time `bson:"started"`
}

// loadInitialSync reads the mark at Open.
func (e *Engine) loadInitialSync() error {
	val, err := e.getMeta(metaKey(metaInitialSync))
	if err != nil {
		return err
	}
	e.syncPending.Store(val != nil)
	if val != nil {
		e.log.Warn().Str("op", "open").Msg("an initial sync was interrupted: the store must be resynced")
	}
	return nil
}

// InitialSyncPending reports whether an initial sync was started and not
// finished (also across a crash: then the caller must redo it, starting
// with ResetForInitialSync).
func (e *Engine) InitialSyncPending() bool { return e.syncPending.Load() }

// ResetForInitialSync empties the store for an initial sync: in one synced
// batch it marks the initial sync in progress and deletes every document,
// index entry, collection, statistics record, oplog entry and any other
// data, keeping only the keys of resetKeepKeys (format, ID allocators,
// term, vote). Afterwards the catalog is empty and LastOpTime is the zero
// OpTime. Open snapshots keep their view. The caller must be the store's
// only writer until FinishInitialSync (no Puller, no client writes).
func (e *Engine) ResetForInitialSync(ctx context.Context) error {
	if err := e.begin(); err != nil {
		return err
	}
	defer e.end()
	if err := e.lock(ctx); err != nil {
		return err
	}
	defer e.unlock()
	keep := slices.Clone(resetKeepKeys)
	slices.SortFunc(keep, bytes.Compare)
	b := e.db.NewBatch()
	defer func() { _ = b.Close() }()
	lo := []byte{}
	for _, k := range keep {
		if bytes.Compare(lo, k) < 0 {
			_ = b.DeleteRange(lo, k, nil)
		}
		lo = successor(k)
	}
	_ = b.DeleteRange(lo, []byte{0xff}, nil)
	_ = b.Set(metaKey(metaInitialSync), marshalRecord(syncMarkRecord{Started: time.Now().UTC()}), nil)
	_ = b.Set(metaKey(metaLastOp), encodeOpTime(OpTime{}), nil)
	e.ddl.Lock()
	err := b.Commit(pebble.Sync)
	if err == nil {
		e.cat.Store(&catalog{byNS: map[string]*collection{}})
		e.stats = map[uint32]*collStats{}
		e.last = OpTime{}
		e.syncPending.Store(true)
	}
	e.ddl.Unlock()
	if err != nil {
		return fmt.Errorf("reset for initial sync: %w", err)
	}
	e.durMu.Lock()
	e.durable = OpTime{}
	e.durMu.Unlock()
	e.log.Info().Str("op", "initialSyncReset").Msg("store emptied for an initial sync")
	return nil
}

// InstallCollection creates ns with the given indexes during an initial
// sync (the _id_ index is implicit and skipped), through the engine's DDL
// code but without oplog entries. A Multikey flag set in a spec is kept
// (the flag never goes back on the source either). Installing a collection
// that exists adds the missing indexes.
// Errors: ErrNoInitialSync, those of CreateCollection and CreateIndex.
func (e *Engine) InstallCollection(ctx context.Context, ns string, indexes []IndexSpec) error {
	return e.installOp(ctx, "installCollection", ns, func(t *txn) error {
		if err := t.createCollection(ns); err != nil && mongoerr.CodeOf(err) != mongoerr.NamespaceExists {
			return err
		}
		for _, spec := range indexes {
			if spec.Name == IDIndexName {
				continue
			}
			if _, err := t.createIndex(ns, spec); err != nil {
				return fmt.Errorf("index %s: %w", spec.Name, err)
			}
			if spec.Multikey {
				t.setMultikey(ns, spec.Name)
			}
		}
		return nil
	})
}

// setMultikey sets the Multikey flag of the named index of ns.
func (t *txn) setMultikey(ns, name string) {
	c := t.cat.byNS[ns]
	if c == nil {
		return
	}
	for i, ix := range c.indexes {
		if ix.spec.Name != name || ix.spec.Multikey {
			continue
		}
		idx := slices.Clone(c.indexes)
		spec := ix.spec
		spec.Multikey = true
		idx[i] = newIndex(ix.id, spec)
		t.putCollection(c.withIndexes(idx))
		return
	}
}

// InstallDocuments stores documents of ns during an initial sync, in one
// synced batch without oplog entries, maintaining indexes, multikey flags
// and statistics as writes do. A document whose _id is already stored
// replaces it (re-installing a batch is harmless); a missing collection is
// created. Each document must be valid BSON starting with its _id.
// Errors: ErrNoInitialSync, BadValue for a malformed document,
// DuplicateKey (11000) if documents conflict on a unique index (the
// source's snapshot was not consistent).
func (e *Engine) InstallDocuments(ctx context.Context, ns string, docs []bson.Raw) error {
	for i, d := range docs {
		if err := d.Validate(); err != nil {
			return mongoerr.New(mongoerr.BadValue, "install into %s: document %d is not valid BSON: %v", ns, i, err)
		}
		if len(d) > e.opts.MaxDocumentSize {
			return mongoerr.New(mongoerr.BadValue, "install into %s: document %d has %d bytes, more than the maximum %d", ns, i, len(d), e.opts.MaxDocumentSize)
		}
		if _, err := docID(d); err != nil {
			return mongoerr.New(mongoerr.BadValue, "install into %s: document %d does not start with its _id", ns, i)
		}
	}
	return e.installOp(ctx, "installDocuments", ns, func(t *txn) error {
		c, err := t.ensureCollection(ns)
		if err != nil {
			return err
		}
		for _, d := range docs {
			id, _ := docID(d)
			if err := t.putDoc(c, d, id); err != nil {
				return err
			}
			if cur := t.cat.byNS[ns]; cur != nil {
				c = cur // putDoc may have published a multikey flag
			}
		}
		return nil
	})
}

// installOp runs an install step as a replica write (no oplog entries).
// ns is empty for a step that touches no collection (InstallSessions).
func (e *Engine) installOp(ctx context.Context, op, ns string, fn func(t *txn) error) error {
	if ns != "" {
		if err := ValidateNamespace(ns); err != nil {
			return err
		}
		op += " " + ns
	}
	if err := e.begin(); err != nil {
		return err
	}
	defer e.end()
	start := time.Now()
	if err := e.lock(ctx); err != nil {
		return err
	}
	if !e.syncPending.Load() {
		e.unlock()
		return fmt.Errorf("%s: %w", op, ErrNoInitialSync)
	}
	t := e.newTxn(op, ns, start)
	t.replica = true // shared code paths add no oplog entries
	if err := fn(t); err != nil {
		t.abort()
		return fmt.Errorf("%s: %w", op, err)
	}
	// commit skips writes without entries; an install has none but must
	// be applied. entries only counts staged work from here on.
	t.entries = 1
	if err := e.commit(t); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// FinishInitialSync ends an initial sync whose clone reflects the source's
// state at snapshot (the optime of the last oplog entry the source's
// snapshot contained). In one synced batch it sets the last optime to
// snapshot, records snapshot as the oplog's base (the oplog is empty and
// starts after it: HasOplogEntry(snapshot) is true, FirstOpTime is the
// position after it, so a Puller resumes with after=snapshot and a puller
// chained on this member does too), raises the term to snapshot's if it is
// newer, and clears the in-progress mark.
// Errors: ErrNoInitialSync.
func (e *Engine) FinishInitialSync(ctx context.Context, snapshot OpTime) error {
	if err := e.begin(); err != nil {
		return err
	}
	defer e.end()
	if err := e.lock(ctx); err != nil {
		return err
	}
	defer e.unlock()
	if !e.syncPending.Load() {
		return fmt.Errorf("finish initial sync: %w", ErrNoInitialSync)
	}
	b := e.db.NewBatch()
	defer func() { _ = b.Close() }()
	_ = b.Delete(metaKey(metaInitialSync), nil)
	_ = b.Set(metaKey(metaLastOp), encodeOpTime(snapshot), nil)
	if snapshot.Index > 0 {
		_ = b.Set(metaKey(metaOplogBase), encodeOpTime(snapshot), nil)
	} else {
		_ = b.Delete(metaKey(metaOplogBase), nil)
	}
	term := e.term.Load()
	if snapshot.Term > term {
		term = snapshot.Term
		_ = b.Set(metaKey(metaTerm), marshalRecord(termRecord{Term: int64(term)}), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("finish initial sync: %w", err)
	}
	e.term.Store(term)
	e.last = snapshot
	e.syncPending.Store(false)
	e.durMu.Lock()
	e.durable = snapshot
	e.durMu.Unlock()
	e.wakeDurableWaiters(false)
	e.log.Info().Str("op", "initialSyncFinish").Stringer("snapshot", snapshot).
		Int("collections", len(e.cat.Load().byNS)).Msg("initial sync installed")
	return nil
}

// Snapshot.OpTime (rollback.go) gives a snapshot's optime: the clone's.

// oplogBase returns the optime recorded as the oplog's base (zero if none).
func (e *Engine) oplogBase() (OpTime, error) {
	val, err := e.getMeta(metaKey(metaOplogBase))
	if err != nil || val == nil {
		return OpTime{}, err
	}
	return decodeOpTime(val)
}

// EncodeIndexSpec returns the BSON form of an index spec that initial sync
// sends: {key: {a: 1, b: -1}, name, unique?, sparse?, multikey?}.
func EncodeIndexSpec(s IndexSpec) []byte {
	d := specDoc(s)
	if s.Multikey {
		d = append(d, bson.E{Key: "multikey", Value: true})
	}
	return marshalRecord(d)
}

// DecodeIndexSpec parses EncodeIndexSpec's form. Errors: BadValue.
func DecodeIndexSpec(b []byte) (IndexSpec, error) {
	if err := bson.Raw(b).Validate(); err != nil {
		return IndexSpec{}, mongoerr.New(mongoerr.BadValue, "index spec is not valid BSON: %v", err)
	}
	s, err := parseSpecDoc(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: b})
	if err != nil {
		return IndexSpec{}, mongoerr.New(mongoerr.BadValue, "index spec: %v", err)
	}
	s.Multikey, _ = bson.Raw(b).Lookup("multikey").BooleanOK()
	if s.Name == "" {
		return IndexSpec{}, mongoerr.New(mongoerr.BadValue, "index spec without a name")
	}
	return s, nil
}

// Retryable-write statement records (session.go) travel with the clone:
// without them a member that joined by initial sync and later became
// primary would run again a retried statement the source had executed
// before the snapshot. The source pages through its snapshot's records
// with Snapshot.ScanSessions; the member installs each page with
// InstallSessions. A record is installed with the key and value the
// source holds (same lsid bytes, txnNumber, stmtId, optime and result),
// so a retry on the member answers the first execution's result.

// ScanSessions returns the snapshot's statement records in key order
// (lsid bytes, txnNumber, stmtId), grouped by session, starting after the
// cursor after (nil: from the first record): at most maxRecords records
// and, past the first record, at most maxBytes bytes counted as the
// RollbackChunk senders do (the lsid once per session, 32 bytes plus the
// result per record). A session with more records than a page continues
// in the next one. next is the cursor of the following page (an opaque
// key), nil when this page ends the records.
// Errors: ErrClosed, ErrCorrupt for a malformed record.
func (s *Snapshot) ScanSessions(after []byte, maxRecords, maxBytes int) (page []RefetchedSession, next []byte, err error) {
	if err := s.e.begin(); err != nil {
		return nil, nil, err
	}
	defer s.e.end()
	if s.isClosed() {
		return nil, nil, ErrClosed
	}
	lo := []byte{prefixSession}
	if after != nil {
		if len(after) == 0 || after[0] != prefixSession {
			return nil, nil, fmt.Errorf("session scan cursor %x is not a statement record key", after)
		}
		lo = successor(after)
	}
	it, err := s.snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{prefixSession + 1}})
	if err != nil {
		return nil, nil, fmt.Errorf("read session records: %w", err)
	}
	defer func() { _ = it.Close() }()
	var (
		n, size int
		last    []byte
	)
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		st, err := parseStmtKey(k)
		if err != nil {
			return nil, nil, err
		}
		rec, err := decodeStmtRecord(k, it.Value())
		if err != nil {
			return nil, nil, err
		}
		newSession := len(page) == 0 || !bytes.Equal(page[len(page)-1].LSID, st.LSID)
		cost := 32 + len(rec.Result)
		if newSession {
			cost += len(st.LSID)
		}
		if n > 0 && (n >= maxRecords || size+cost > maxBytes) {
			return page, last, nil
		}
		if newSession {
			page = append(page, RefetchedSession{LSID: st.LSID})
		}
		rs := &page[len(page)-1]
		rs.Records = append(rs.Records, SessionRecord{TxnNumber: st.TxnNumber, StmtID: st.StmtID, Record: rec})
		n, size = n+1, size+cost
		last = bytes.Clone(k)
	}
	if err := it.Error(); err != nil {
		return nil, nil, fmt.Errorf("read session records: %w", err)
	}
	return page, nil, nil
}

// parseStmtKey is stmtKey's inverse: s | len(lsid) | lsid | txnNumber |
// stmtId. The LSID is a copy.
func parseStmtKey(k []byte) (Statement, error) {
	if len(k) < 3 || k[0] != prefixSession {
		return Statement{}, fmt.Errorf("statement record key %x: %w", k, ErrCorrupt)
	}
	l := int(binary.BigEndian.Uint16(k[1:3]))
	if len(k) != 3+l+12 {
		return Statement{}, fmt.Errorf("statement record key %x: %w", k, ErrCorrupt)
	}
	return Statement{
		LSID:      bytes.Clone(k[3 : 3+l]),
		TxnNumber: int64(binary.BigEndian.Uint64(k[3+l:])),
		StmtID:    int32(binary.BigEndian.Uint32(k[3+l+8:])),
	}, nil
}

// InstallSessions stores statement records during an initial sync, in one
// synced batch without oplog entries, each under the key and with the
// value the source holds (ScanSessions' pages, in any order). A record
// already installed is overwritten with the same bytes (re-installing a
// page is harmless). Nothing else is checked against the store: after the
// reset it holds no records but the ones the clone installs, and the
// source holds one txnNumber per session.
// Errors: ErrNoInitialSync, BadValue for a malformed session id,
// txnNumber, statement id or result.
func (e *Engine) InstallSessions(ctx context.Context, sessions []RefetchedSession) error {
	for _, rs := range sessions {
		for _, r := range rs.Records {
			st := Statement{LSID: rs.LSID, TxnNumber: r.TxnNumber, StmtID: r.StmtID}
			if err := st.check(); err != nil {
				return fmt.Errorf("install sessions: %w", err)
			}
			if err := bsoncore.Document(r.Record.Result).Validate(); err != nil {
				return mongoerr.New(mongoerr.BadValue, "install sessions: record (%s, %d, %d): result is not a BSON document: %v",
					lsidString(rs.LSID), r.TxnNumber, r.StmtID, err)
			}
		}
	}
	return e.installOp(ctx, "installSessions", "", func(t *txn) error {
		for _, rs := range sessions {
			for _, r := range rs.Records {
				st := Statement{LSID: rs.LSID, TxnNumber: r.TxnNumber, StmtID: r.StmtID}
				_ = t.b.Set(stmtKey(st), encodeStmtRecord(r.Record.OpTime, r.Record.Result), nil)
			}
		}
		return nil
	})
}
