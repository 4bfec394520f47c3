package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Rollback of a diverged member (DESIGN §4; docs/design/rollback.md). A
// member whose newest entries are not in its sync source's log returns to
// the source's history exactly:
//
//   - the member sends its newest entries (OplogTail);
//   - the source, on one snapshot at optime P, finds the common point C
//     (the newest of them it holds with the same optime) and answers its
//     entries in (C, P] and its version at P of every document touched by
//     the member's entries after C or by its own entries in (C, P]
//     (Snapshot.PlanRollback);
//   - the member saves its own versions of the documents its divergent
//     entries touched to rollback files, then, in one Pebble batch,
//     replaces its entries after C by the source's (stored, not applied)
//     and sets every touched document, and the retryable-write records
//     of every touched session, to the source's version
//     (Engine.RollbackTo).
//
// Every document (and session) nobody touched after C is the same on both
// sides (both hold C's state for it), so afterwards the member's state is
// the source's at P. Catalog commands after C are not rolled back: the
// member resyncs.

// Bounds of a rollback. A member sends at most RollbackTailEntries entries
// (RollbackTailBytes of encoded entries, the first one always); a source
// answers resync-required rather than more than RollbackMaxEntries entries
// after the common point, RollbackMaxDocs documents, or RollbackMaxBytes of
// entries and documents together (the member holds them all in memory and
// writes them in one batch).
const (
	RollbackTailEntries = 1000
	RollbackTailBytes   = 8 << 20
	RollbackMaxEntries  = 10000
	RollbackMaxDocs     = 10000
	RollbackMaxBytes    = 64 << 20
)

// ErrRollbackImpossible: the rollback cannot be done exactly (no common
// point, a catalog command among the entries to undo or redo, more than a
// rollback carries, a collection missing on one side); the member must
// resync (initial sync) instead. Nothing was written.
var ErrRollbackImpossible = errors.New("rollback impossible: resync required")

// DocRef names a document: its namespace and _id.
type DocRef struct {
	NS string
	ID bson.RawValue
}

func (r DocRef) key() string { return r.NS + "\x00" + string(idKey(r.ID)) }

// TouchedDocs returns the documents the entries write ("i", "u", "d"),
// each once, in order of first appearance, and whether any entry is a
// command ("c").
func TouchedDocs(entries []OplogEntry) (refs []DocRef, command bool) {
	seen := map[string]bool{}
	for _, en := range entries {
		switch en.Op {
		case OpCommand:
			command = true
			continue
		case OpInsert, OpUpdate, OpDelete:
		default:
			continue
		}
		id := en.ID
		if id.Type == 0 && en.Doc != nil {
			id, _ = docID(en.Doc)
		}
		if id.Type == 0 {
			continue
		}
		r := DocRef{NS: en.NS, ID: id}
		if k := r.key(); !seen[k] {
			seen[k] = true
			refs = append(refs, r)
		}
	}
	return refs, command
}

// OplogTail returns the newest durable entries of the local oplog, newest
// first: at most maxEntries, and no more than maxBytes of encoded entries
// (the newest one always). A diverged member sends them to its sync
// source to find the common point.
func (e *Engine) OplogTail(maxEntries, maxBytes int) ([]OplogEntry, error) {
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.end()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixOplog}, UpperBound: successor(oplogKey(e.LastOpTime()))})
	if err != nil {
		return nil, fmt.Errorf("read oplog tail: %w", err)
	}
	var out []OplogEntry
	size := 0
	for ok := it.Last(); ok && (maxEntries <= 0 || len(out) < maxEntries); ok = it.Prev() {
		if len(out) > 0 && maxBytes > 0 && size+len(it.Value()) > maxBytes {
			break
		}
		o, err := decodeOplogEntry(it.Key(), it.Value())
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		size += len(it.Value())
		out = append(out, o)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("read oplog tail: %w", err)
	}
	return out, nil
}

// TouchedAfter returns the documents written by the local entries after
// the given optime (TouchedDocs over them) and whether one of them is a
// command.
func (e *Engine) TouchedAfter(after OpTime) ([]DocRef, bool, error) {
	entries, err := e.ReadOplog(after, 0)
	if err != nil {
		return nil, false, err
	}
	refs, cmd := TouchedDocs(entries)
	return refs, cmd, nil
}

// OpTime returns the optime of the newest oplog entry the snapshot holds
// (the engine's last optime when the snapshot was taken; it may not be
// durable yet: Engine.WaitDurable tells when it is).
func (s *Snapshot) OpTime() (OpTime, error) {
	if err := s.e.begin(); err != nil {
		return OpTime{}, err
	}
	defer s.e.end()
	if s.isClosed() {
		return OpTime{}, ErrClosed
	}
	val, found, err := getCopy(s.snap, metaKey(metaLastOp))
	if err != nil {
		return OpTime{}, fmt.Errorf("snapshot last optime: %w", err)
	}
	if !found {
		return OpTime{}, fmt.Errorf("snapshot has no last optime record: %w", ErrCorrupt)
	}
	return decodeOpTime(val)
}

// HasOplogEntry reports whether the snapshot's oplog holds an entry with
// exactly this optime, as Engine.HasOplogEntry: the zero-index optime is
// always held, and so is the oplog's base (the entry an initial sync
// started after, or the newest one retention removed).
func (s *Snapshot) HasOplogEntry(t OpTime) (bool, error) {
	if t.Index == 0 {
		return true, nil
	}
	if err := s.e.begin(); err != nil {
		return false, err
	}
	defer s.e.end()
	if s.isClosed() {
		return false, ErrClosed
	}
	_, found, err := getCopy(s.snap, oplogKey(t))
	if err != nil {
		return false, fmt.Errorf("read oplog entry %s: %w", t, err)
	}
	if found {
		return true, nil
	}
	val, found, err := getCopy(s.snap, metaKey(metaOplogBase))
	if err != nil || !found {
		return false, err
	}
	base, err := decodeOpTime(val)
	return err == nil && base == t, err
}

// ReadOplog returns the snapshot's entries after `after` up to and
// including upTo, in order. complete is false when maxEntries (> 0) or
// maxBytes (> 0, of encoded entries) stopped it first.
func (s *Snapshot) ReadOplog(after, upTo OpTime, maxEntries, maxBytes int) (entries []OplogEntry, complete bool, err error) {
	if err := s.e.begin(); err != nil {
		return nil, false, err
	}
	defer s.e.end()
	if s.isClosed() {
		return nil, false, ErrClosed
	}
	it, err := s.snap.NewIter(&pebble.IterOptions{LowerBound: successor(oplogKey(after)), UpperBound: successor(oplogKey(upTo))})
	if err != nil {
		return nil, false, fmt.Errorf("read oplog: %w", err)
	}
	complete = true
	size := 0
	for ok := it.First(); ok; ok = it.Next() {
		if (maxEntries > 0 && len(entries) >= maxEntries) || (maxBytes > 0 && size+len(it.Value()) > maxBytes) {
			complete = false
			break
		}
		o, err := decodeOplogEntry(it.Key(), it.Value())
		if err != nil {
			_ = it.Close()
			return nil, false, err
		}
		size += len(it.Value())
		entries = append(entries, o)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, false, fmt.Errorf("read oplog: %w", err)
	}
	return entries, complete, nil
}

// RefetchedDoc is the sync source's version of a document at the
// rollback's snapshot optime; Doc is nil when the source has none.
type RefetchedDoc struct {
	NS  string
	ID  bson.RawValue
	Doc bson.Raw
}

// RollbackPlan is a sync source's answer to a diverged member's tail.
type RollbackPlan struct {
	// Found: the common point is among the member's entries.
	Found bool
	// Resync, when not empty, says why the member must resync instead;
	// Entries and Docs are then empty.
	Resync string
	// Common is the newest entry both logs hold (zero when not Found).
	Common OpTime
	// SnapshotOpTime is the source's last optime in the snapshot (P).
	SnapshotOpTime OpTime
	// Entries are the source's entries in (Common, SnapshotOpTime].
	Entries []OplogEntry
	// Docs are the source's versions at P of the documents touched by
	// the member's entries after Common or by Entries.
	Docs []RefetchedDoc
	// Sessions are the source's retryable-write records at P of every
	// session whose statements those entries carry.
	Sessions []RefetchedSession
}

// SessionRecord is one retryable-write statement record of a session.
type SessionRecord struct {
	TxnNumber int64
	StmtID    int32
	Record    StmtRecord
}

// RefetchedSession is every record the sync source holds for one session
// (LSID as stored) at the rollback's snapshot optime; Records is empty
// when it holds none.
type RefetchedSession struct {
	LSID    []byte
	Records []SessionRecord
}

// TouchedSessions returns the sessions (lsid) whose statements the
// entries carry, each once, in order of first appearance.
func TouchedSessions(entries []OplogEntry) [][]byte {
	seen := map[string]bool{}
	var out [][]byte
	for _, en := range entries {
		if en.Stmt == nil || seen[string(en.Stmt.LSID)] {
			continue
		}
		seen[string(en.Stmt.LSID)] = true
		out = append(out, en.Stmt.LSID)
	}
	return out
}

// SessionRecords returns the snapshot's records of one session, in key
// order (txnNumber, stmtId).
func (s *Snapshot) SessionRecords(lsid []byte) ([]SessionRecord, error) {
	if err := s.e.begin(); err != nil {
		return nil, err
	}
	defer s.e.end()
	if s.isClosed() {
		return nil, ErrClosed
	}
	p := sessionPrefix(lsid)
	it, err := s.snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("read session records: %w", err)
	}
	var out []SessionRecord
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(p)+12 {
			_ = it.Close()
			return nil, fmt.Errorf("statement record key %x: %w", k, ErrCorrupt)
		}
		rec, err := decodeStmtRecord(k, it.Value())
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		out = append(out, SessionRecord{
			TxnNumber: int64(binary.BigEndian.Uint64(k[len(p):])),
			StmtID:    int32(binary.BigEndian.Uint32(k[len(p)+8:])),
			Record:    rec,
		})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("read session records: %w", err)
	}
	return out, nil
}

// PlanRollback answers a diverged member from this snapshot. tail is the
// member's newest entries, newest first (OplogTail). The common point is
// the first of them (the newest) that the snapshot's oplog holds with the
// same optime: by the log matching property (an entry with the same term
// and index is the same entry, with the same predecessors) both logs are
// equal up to it.
func (s *Snapshot) PlanRollback(tail []OplogEntry) (RollbackPlan, error) {
	p, err := s.OpTime()
	if err != nil {
		return RollbackPlan{}, err
	}
	plan := RollbackPlan{SnapshotOpTime: p}
	divergent := -1
	for i, en := range tail {
		if en.Index == 0 {
			return RollbackPlan{}, mongoerr.New(mongoerr.BadValue, "rollback: the member's oplog tail holds an entry at index 0")
		}
		if i > 0 && (en.Index >= tail[i-1].Index || en.Term > tail[i-1].Term) {
			return RollbackPlan{}, mongoerr.New(mongoerr.BadValue, "rollback: the member's oplog tail is not newest first (%s after %s)", en.OpTime(), tail[i-1].OpTime())
		}
	}
	for i, en := range tail {
		held, err := s.HasOplogEntry(en.OpTime())
		if err != nil {
			return RollbackPlan{}, err
		}
		if held {
			plan.Found, plan.Common, divergent = true, en.OpTime(), i
			break
		}
	}
	if !plan.Found {
		plan.Resync = fmt.Sprintf("no common point: none of the member's newest %d entries is in the sync source's oplog", len(tail))
		return plan, nil
	}
	if plan.Common.Compare(p) > 0 {
		return RollbackPlan{}, fmt.Errorf("common point %s after the snapshot's last optime %s", plan.Common, p)
	}
	mine, cmd := TouchedDocs(tail[:divergent])
	if cmd {
		plan.Resync = "a catalog command is among the member's entries after the common point"
		return plan, nil
	}
	entries, complete, err := s.ReadOplog(plan.Common, p, RollbackMaxEntries, RollbackMaxBytes)
	if err != nil {
		return RollbackPlan{}, err
	}
	if !complete {
		plan.Resync = fmt.Sprintf("the sync source has more than %d entries or %d bytes after the common point %s", RollbackMaxEntries, RollbackMaxBytes, plan.Common)
		return plan, nil
	}
	theirs, cmd := TouchedDocs(entries)
	if cmd {
		plan.Resync = "a catalog command is among the sync source's entries after the common point"
		return plan, nil
	}
	size := 0
	for _, en := range entries {
		size += len(encodeOplogEntry(en))
	}
	seen := map[string]bool{}
	var docs []RefetchedDoc
	for _, r := range slices.Concat(mine, theirs) {
		k := r.key()
		if seen[k] {
			continue
		}
		seen[k] = true
		if len(docs) >= RollbackMaxDocs {
			plan.Resync = fmt.Sprintf("more than %d documents to refetch", RollbackMaxDocs)
			return plan, nil
		}
		d, found, err := s.Get(r.NS, r.ID)
		if err != nil {
			return RollbackPlan{}, fmt.Errorf("refetch %s %s: %w", r.NS, r.ID, err)
		}
		if !found {
			d = nil
		}
		size += len(d) + len(r.ID.Value) + len(r.NS)
		if size > RollbackMaxBytes {
			plan.Resync = fmt.Sprintf("more than %d bytes of entries and documents to send", RollbackMaxBytes)
			return plan, nil
		}
		docs = append(docs, RefetchedDoc{NS: r.NS, ID: r.ID, Doc: d})
	}
	var sessions []RefetchedSession
	seenLSID := map[string]bool{}
	for _, lsid := range slices.Concat(TouchedSessions(tail[:divergent]), TouchedSessions(entries)) {
		if seenLSID[string(lsid)] {
			continue
		}
		seenLSID[string(lsid)] = true
		recs, err := s.SessionRecords(lsid)
		if err != nil {
			return RollbackPlan{}, err
		}
		for _, r := range recs {
			size += len(lsid) + 28 + len(r.Record.Result)
		}
		if size > RollbackMaxBytes {
			plan.Resync = fmt.Sprintf("more than %d bytes of entries, documents and session records to send", RollbackMaxBytes)
			return plan, nil
		}
		sessions = append(sessions, RefetchedSession{LSID: lsid, Records: recs})
	}
	plan.Entries, plan.Docs, plan.Sessions = entries, docs, sessions
	return plan, nil
}

// RollbackInput is what a diverged member received from its sync source.
type RollbackInput struct {
	// Common is the common point: the local oplog must hold it.
	Common OpTime
	// SnapshotOpTime is the source's optime P; zero means "the last of
	// Entries, or Common when there are none".
	SnapshotOpTime OpTime
	// Entries are the source's entries in (Common, P], in order.
	Entries []OplogEntry
	// Docs are the source's versions at P of every document touched by
	// the local entries after Common or by Entries (more are harmless).
	Docs []RefetchedDoc
	// Sessions are the source's records at P of every session whose
	// statements the local entries after Common or Entries carry.
	Sessions []RefetchedSession
	// Dir is the directory of the rollback files (<dataDir>/rollback). It
	// is created if needed.
	Dir string
}

// RollbackResult describes a rollback that was done.
type RollbackResult struct {
	// Undone are the local entries after the common point that were
	// removed.
	Undone []OplogEntry
	// Saved counts the local documents written to the rollback files.
	Saved int
	// Files are the rollback files written (one per namespace).
	Files []string
	// Docs counts the documents set to the source's version.
	Docs int
	// Sessions counts the sessions whose records were replaced.
	Sessions int
	// LastOpTime is the new last optime (P).
	LastOpTime OpTime
}

// RollbackTo rolls the store back to the common point and forward to the
// sync source's state at P, in one batch:
//
//  1. Checks (nothing written when one fails): no initial sync is
//     pending; the local oplog holds Common; Entries continue it (index
//     Common+1 onwards, terms not going back, well formed); no local entry
//     after Common and no entry of Entries is a command (else
//     ErrRollbackImpossible); Docs cover every document, and Sessions
//     every session, those entries touched (else an error: the source's
//     answer is incomplete).
//  2. The current local versions of the documents the local entries after
//     Common touched are written to <Dir>/<ns>.<time>.bson (concatenated
//     BSON documents, as MongoDB's rollback files), synced with their
//     directory, before anything changes in the store.
//  3. One Pebble batch: the local entries after Common are deleted,
//     Entries are stored as the local oplog (byte for byte as ApplyOplog
//     stores them, without applying them), every document of Docs is
//     removed (with its index entries and statistics) and the source's
//     version inserted (indexes, multikey flags, statistics), the records
//     of every session of Sessions are replaced by the source's, the last
//     optime becomes P, the term the newest of the current term and the
//     entries' terms.
//
// Documents are all removed before any is inserted, so swapped unique keys
// never conflict in between; a conflict after that means the stores
// differed outside the rolled-back entries, and RollbackTo fails with
// ErrOplogDiverged, writing nothing. The caller must be the member's only
// writer (no Puller running). A crash before the batch leaves the store
// as it was (and a rollback file that a retry writes again under another
// name); the batch itself is atomic.
func (e *Engine) RollbackTo(ctx context.Context, in RollbackInput) (RollbackResult, error) {
	if err := e.begin(); err != nil {
		return RollbackResult{}, err
	}
	defer e.end()
	start := time.Now()
	if in.Dir == "" {
		return RollbackResult{}, errors.New("rollback: no directory for the rollback files")
	}
	entries := slices.Clone(in.Entries)
	p := in.Common
	for i := range entries {
		en := &entries[i]
		cmd, err := checkEntry(en)
		if err != nil {
			return RollbackResult{}, fmt.Errorf("rollback: %w", err)
		}
		if cmd.kind != "" {
			return RollbackResult{}, fmt.Errorf("rollback: sync source entry %s is a command (%s): %w", en.OpTime(), cmd.kind, ErrRollbackImpossible)
		}
		if en.Index != p.Index+1 || en.Term < p.Term {
			return RollbackResult{}, fmt.Errorf("rollback: sync source entry %s does not follow %s", en.OpTime(), p)
		}
		p = en.OpTime()
	}
	if !in.SnapshotOpTime.IsZero() && in.SnapshotOpTime != p {
		return RollbackResult{}, fmt.Errorf("rollback: sync source entries end at %s, its snapshot is at %s", p, in.SnapshotOpTime)
	}
	docs := make(map[string]RefetchedDoc, len(in.Docs))
	order := make([]string, 0, len(in.Docs))
	for _, d := range in.Docs {
		if err := ValidateNamespace(d.NS); err != nil {
			return RollbackResult{}, fmt.Errorf("rollback: refetched document: %w", err)
		}
		if err := checkID(d.ID); err != nil {
			return RollbackResult{}, fmt.Errorf("rollback: refetched document in %s: %w", d.NS, err)
		}
		if d.Doc != nil {
			if err := d.Doc.Validate(); err != nil {
				return RollbackResult{}, fmt.Errorf("rollback: refetched document %s in %s is not valid BSON: %v", d.ID, d.NS, err)
			}
			id, err := docID(d.Doc)
			if err != nil || !bytes.Equal(idKey(id), idKey(d.ID)) {
				return RollbackResult{}, fmt.Errorf("rollback: refetched document %s in %s does not start with its _id", d.ID, d.NS)
			}
		}
		k := (DocRef{NS: d.NS, ID: d.ID}).key()
		if _, dup := docs[k]; !dup {
			order = append(order, k)
		}
		docs[k] = d
	}
	sessions := map[string]RefetchedSession{}
	for _, rs := range in.Sessions {
		for _, r := range rs.Records {
			st := Statement{LSID: rs.LSID, TxnNumber: r.TxnNumber, StmtID: r.StmtID}
			if err := st.check(); err != nil {
				return RollbackResult{}, fmt.Errorf("rollback: refetched session record: %w", err)
			}
			if err := r.Record.Result.Validate(); err != nil {
				return RollbackResult{}, fmt.Errorf("rollback: refetched session record %s: result is not valid BSON: %v", lsidString(rs.LSID), err)
			}
		}
		sessions[string(rs.LSID)] = rs
	}
	if err := e.lockQuiesced(ctx); err != nil {
		return RollbackResult{}, err
	}
	if e.InitialSyncPending() {
		e.unlock()
		return RollbackResult{}, fmt.Errorf("rollback: an initial sync is pending: %w", ErrRollbackImpossible)
	}
	t := e.newTxn("rollback", "", start)
	t.replica = true // inserts below must not add entries of their own
	res, err := t.rollback(in, entries, docs, order, sessions)
	if err != nil {
		t.abort()
		return RollbackResult{}, err
	}
	term := e.term.Load()
	for _, en := range entries {
		term = max(term, en.Term)
	}
	if term > e.term.Load() {
		_ = t.b.Set(metaKey(metaTerm), marshalRecord(termRecord{Term: int64(term)}), nil)
		e.term.Store(term)
	}
	t.last = p
	t.entries = max(1, len(entries)) // commit writes even when only documents change
	// The entries after Common are being replaced: until the batch is
	// durable, nothing after Common may be read as durable (ReadOplog,
	// WaitDurable). commit's markDurable then advances to P.
	e.resetDurable(in.Common)
	if err := e.commit(t); err != nil {
		return RollbackResult{}, fmt.Errorf("rollback: %w", err)
	}
	res.LastOpTime = p
	e.log.Warn().Str("op", "rollback").Stringer("common", in.Common).Stringer("last", p).
		Int("undone", len(res.Undone)).Int("entries", len(entries)).Int("docs", res.Docs).
		Int("saved", res.Saved).Strs("files", res.Files).Dur("dur", time.Since(start)).Msg("rolled back")
	return res, nil
}

// rollback stages RollbackTo's batch (and writes the rollback files).
func (t *txn) rollback(in RollbackInput, entries []OplogEntry, docs map[string]RefetchedDoc, order []string, sessions map[string]RefetchedSession) (RollbackResult, error) {
	var res RollbackResult
	if in.Common.Index > 0 {
		if _, found, err := t.get(oplogKey(in.Common)); err != nil {
			return res, fmt.Errorf("rollback: %w", err)
		} else if !found {
			return res, fmt.Errorf("rollback: the common point %s is not in the local oplog (last %s): %w", in.Common, t.last, ErrRollbackImpossible)
		}
	}
	if in.Common.Compare(t.last) > 0 {
		return res, fmt.Errorf("rollback: the common point %s is after the local last optime %s", in.Common, t.last)
	}
	undone, err := t.oplogAfter(in.Common)
	if err != nil {
		return res, err
	}
	mine, cmd := TouchedDocs(undone)
	if cmd {
		return res, fmt.Errorf("rollback: a local entry after the common point %s is a command: %w", in.Common, ErrRollbackImpossible)
	}
	theirs, _ := TouchedDocs(entries)
	for _, r := range slices.Concat(mine, theirs) {
		if _, ok := docs[r.key()]; !ok {
			return res, fmt.Errorf("rollback: the sync source did not send document %s of %s", r.ID, r.NS)
		}
	}
	for _, lsid := range slices.Concat(TouchedSessions(undone), TouchedSessions(entries)) {
		if _, ok := sessions[string(lsid)]; !ok {
			return res, fmt.Errorf("rollback: the sync source did not send the records of session %s", lsidString(lsid))
		}
	}
	res.Undone = undone
	if res.Files, res.Saved, err = t.writeRollbackFiles(in.Dir, mine); err != nil {
		return res, err
	}

	// The batch. Oplog: entries after Common go, the source's come.
	_ = t.b.DeleteRange(successor(oplogKey(in.Common)), []byte{prefixOplog + 1}, nil)
	for _, en := range entries {
		_ = t.b.Set(oplogKey(en.OpTime()), encodeOplogEntry(en), nil)
	}
	// Sessions: the source's records replace the local ones.
	for _, rs := range sessions {
		p := sessionPrefix(rs.LSID)
		_ = t.b.DeleteRange(p, prefixEnd(p), nil)
		for _, r := range rs.Records {
			st := Statement{LSID: rs.LSID, TxnNumber: r.TxnNumber, StmtID: r.StmtID}
			_ = t.b.Set(stmtKey(st), encodeStmtRecord(r.Record.OpTime, r.Record.Result), nil)
		}
		res.Sessions++
	}
	// Documents: remove every local version, then insert the source's.
	for _, k := range order {
		d := docs[k]
		if c := t.cat.byNS[d.NS]; c != nil {
			if err := t.removeDoc(c, d.ID); err != nil {
				return res, fmt.Errorf("rollback: remove %s from %s: %w", d.ID, d.NS, err)
			}
		}
	}
	for _, k := range order {
		d := docs[k]
		if d.Doc == nil {
			continue
		}
		c := t.cat.byNS[d.NS]
		if c == nil {
			return res, fmt.Errorf("rollback: collection %s of refetched document %s does not exist here: %w", d.NS, d.ID, ErrRollbackImpossible)
		}
		if _, err := t.insertDoc(c, d.Doc, d.ID, idKey(d.ID), nil); err != nil {
			if isClientError(err) {
				return res, fmt.Errorf("rollback: insert %s into %s: %v: %w", d.ID, d.NS, err, ErrOplogDiverged)
			}
			return res, fmt.Errorf("rollback: insert %s into %s: %w", d.ID, d.NS, err)
		}
		res.Docs++
	}
	return res, nil
}

// oplogAfter returns the entries after `after` as this write sees them.
func (t *txn) oplogAfter(after OpTime) ([]OplogEntry, error) {
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: successor(oplogKey(after)), UpperBound: []byte{prefixOplog + 1}})
	if err != nil {
		return nil, fmt.Errorf("rollback: read oplog: %w", err)
	}
	var out []OplogEntry
	for ok := it.First(); ok; ok = it.Next() {
		o, err := decodeOplogEntry(it.Key(), it.Value())
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		out = append(out, o)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("rollback: read oplog: %w", err)
	}
	return out, nil
}

// RollbackFileTimeFormat is the time in rollback file names (UTC; no
// colons, so the names are valid everywhere).
const RollbackFileTimeFormat = "2006-01-02T15-04-05.000Z"

// writeRollbackFiles writes the current versions of refs (those that
// exist) to <dir>/<ns>.<time>.bson, one file per namespace, each synced,
// then syncs dir. It returns the files and the number of documents saved.
func (t *txn) writeRollbackFiles(dir string, refs []DocRef) ([]string, int, error) {
	byNS := map[string][]byte{}
	var nss []string
	saved := 0
	for _, r := range refs {
		c := t.cat.byNS[r.NS]
		if c == nil {
			continue
		}
		doc, found, err := t.get(docKey(c.id, idKey(r.ID)))
		if err != nil {
			return nil, 0, fmt.Errorf("rollback: read %s of %s: %w", r.ID, r.NS, err)
		}
		if !found {
			continue
		}
		if _, ok := byNS[r.NS]; !ok {
			nss = append(nss, r.NS)
		}
		byNS[r.NS] = append(byNS[r.NS], doc...)
		saved++
	}
	if len(nss) == 0 {
		return nil, 0, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, fmt.Errorf("rollback: create %s: %w", dir, err)
	}
	stamp := time.Now().UTC().Format(RollbackFileTimeFormat)
	slices.Sort(nss)
	var files []string
	for _, ns := range nss {
		name, err := writeSynced(dir, ns+"."+stamp, byNS[ns])
		if err != nil {
			return nil, 0, fmt.Errorf("rollback: %w", err)
		}
		files = append(files, name)
	}
	if err := syncDir(dir); err != nil {
		return nil, 0, fmt.Errorf("rollback: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return nil, 0, fmt.Errorf("rollback: %w", err)
	}
	return files, saved, nil
}

// writeSynced creates a new file <dir>/<base>.bson (or, if that exists,
// <base>-<n>.bson) with data, syncs it and returns its name.
func writeSynced(dir, base string, data []byte) (string, error) {
	for n := 0; ; n++ {
		name := filepath.Join(dir, base+".bson")
		if n > 0 {
			name = filepath.Join(dir, fmt.Sprintf("%s-%d.bson", base, n))
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) && n < 1000 {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("create rollback file: %w", err)
		}
		_, werr := f.Write(data)
		serr := f.Sync()
		cerr := f.Close()
		if err := errors.Join(werr, serr, cerr); err != nil {
			_ = os.Remove(name)
			return "", fmt.Errorf("write rollback file %s: %w", name, err)
		}
		return name, nil
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	serr := d.Sync()
	if err := errors.Join(serr, d.Close()); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// lockQuiesced takes the write lock once every earlier write is durable
// (LastOpTime has caught up with the applied last optime), so that no
// earlier writer's markDurable can follow resetDurable.
func (e *Engine) lockQuiesced(ctx context.Context) error {
	for {
		if err := e.lock(ctx); err != nil {
			return err
		}
		last := e.last
		if e.LastOpTime().Compare(last) >= 0 {
			return nil
		}
		e.unlock()
		for e.LastOpTime().Compare(last) < 0 {
			if _, err := e.WaitDurable(ctx, e.LastOpTime()); err != nil {
				return err
			}
		}
	}
}

// resetDurable sets the durable optime to t, even backwards (rollback).
// The write lock must be held and every earlier write be durable.
func (e *Engine) resetDurable(t OpTime) {
	e.durMu.Lock()
	e.durable = t
	e.durMu.Unlock()
}
