package migrate

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/storage"
)

// Defaults of a Source's batches.
const (
	DefaultCloneBatchDocs  = 1000
	DefaultCloneBatchBytes = 4 << 20
	DefaultModsEntries     = 1000
)

// Mod is one change of the range to apply on the recipient: Put (the
// whole document, inserted or replacing the recipient's) or, when Put is
// nil, the delete of DeleteID.
type Mod struct {
	Put      bson.Raw
	DeleteID bson.RawValue
	// Stmt is the retryable-write statement the mod's oplog entry
	// completed (nil: none); it moves with the document.
	Stmt *storage.StmtWrite
}

// Source is the donor's side of one migration of a range: a snapshot of
// the store to clone the range from (its optime S), and a cursor over the
// donor's oplog after S that turns the entries of the range into Mods.
//
// Deletes carry only an _id, so the Source keeps the set of _ids of the
// range that the recipient may hold (MongoDB's "transfer mods" by _id):
// every document the clone sent and every document a later entry put in
// the range. A delete (or an update that moves a document out of the
// range) of an _id in the set becomes a delete mod; one of an _id outside
// it is another range's and is skipped. Entries are read in oplog order,
// so mods applied in the order returned make the recipient's copy of the
// range equal to the donor's at ReadThrough.
//
// A Source is safe for concurrent use; Clone runs once.
type Source struct {
	eng *storage.Engine
	r   Range
	at  storage.OpTime
	// term is the donor's term at the start: entries of another term may
	// replace the history after S (a rollback), so the session ends.
	term uint64

	mu          sync.Mutex
	snap        *storage.Snapshot   // until the clone ends
	cloned      bool                // Clone has started
	cloneOK     bool                // Clone has finished without error
	ids         map[string]struct{} // keys.Encode(_id) of the range's documents the recipient may hold
	cloneStmts  []storage.StmtWrite // the snapshot's statement records of the range (Clone)
	readThrough storage.OpTime
	closed      bool
}

// NewSource opens a snapshot of eng for r. Close it when done (it pins
// the snapshot until the clone has run).
func NewSource(eng *storage.Engine, r Range) (*Source, error) {
	snap, err := eng.Snapshot()
	if err != nil {
		return nil, err
	}
	at, err := snap.OpTime()
	if err != nil {
		_ = snap.Close()
		return nil, err
	}
	return &Source{eng: eng, r: r, at: at, term: eng.Term(), snap: snap, ids: map[string]struct{}{}, readThrough: at}, nil
}

// Range returns the migrated range.
func (s *Source) Range() Range { return s.r }

// SnapshotOpTime returns S, the optime of the clone's snapshot.
func (s *Source) SnapshotOpTime() storage.OpTime { return s.at }

// IndexSpecs returns the collection's indexes as of the snapshot (empty
// when it does not exist).
func (s *Source) IndexSpecs() ([]storage.IndexSpec, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap == nil {
		return nil, mongoerr.New(mongoerr.IllegalOperation, "the migration of %s has cloned already", s.r)
	}
	specs, err := s.snap.ListIndexes(s.r.NS)
	if mongoerr.CodeOf(err) == mongoerr.NamespaceNotFound {
		return nil, nil
	}
	return specs, err
}

// Clone scans the range in the snapshot and calls send with batches of at
// most maxDocs documents and maxBytes bytes (a batch holds at least one
// document). Before returning it waits until S is durable on the donor, so
// the clone is never ahead of what survives the donor's crash. It runs
// once per Source and closes the snapshot. It returns the documents and
// bytes sent.
func (s *Source) Clone(ctx context.Context, maxDocs, maxBytes int, send func([]bson.Raw) error) (docs, bytes int64, err error) {
	if maxDocs <= 0 {
		maxDocs = DefaultCloneBatchDocs
	}
	if maxBytes <= 0 {
		maxBytes = DefaultCloneBatchBytes
	}
	s.mu.Lock()
	snap := s.snap
	if s.cloned || snap == nil || s.closed {
		s.mu.Unlock()
		return 0, 0, mongoerr.New(mongoerr.IllegalOperation, "the migration of %s has cloned already or is closed", s.r)
	}
	s.cloned = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.snap = nil
		s.mu.Unlock()
		_ = snap.Close()
	}()
	var batch []bson.Raw
	var ids []string
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		// The ids are tracked before the documents leave: a recipient
		// may hold a document from the moment it is sent.
		s.mu.Lock()
		for _, id := range ids {
			s.ids[id] = struct{}{}
		}
		s.mu.Unlock()
		if err := send(batch); err != nil {
			return err
		}
		batch, ids, size = nil, nil, 0
		return nil
	}
	_, err = s.r.Scan(ctx, snap, func(doc bson.Raw) error {
		if len(batch) > 0 && (len(batch) >= maxDocs || size+len(doc) > maxBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		id, err := doc.LookupErr("_id")
		if err != nil {
			return fmt.Errorf("document of %s without _id: %w", s.r, storage.ErrCorrupt)
		}
		batch = append(batch, doc)
		ids = append(ids, string(keys.Encode(id)))
		size += len(doc)
		docs++
		bytes += int64(len(doc))
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return docs, bytes, err
	}
	stmts, err := s.rangeStatements(ctx, snap)
	if err != nil {
		return docs, bytes, err
	}
	for {
		cur := s.eng.LastOpTime()
		if cur.Compare(s.at) >= 0 {
			break
		}
		if _, err := s.eng.WaitDurable(ctx, cur); err != nil {
			return docs, bytes, err
		}
	}
	s.mu.Lock()
	s.cloneOK = true
	s.cloneStmts = stmts
	s.mu.Unlock()
	return docs, bytes, nil
}

// Cloning reports whether Clone is running.
func (s *Source) Cloning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cloned && !s.cloneOK && s.snap != nil
}

// ClonedStatements returns the retryable-write statement records of the
// snapshot whose oplog entries wrote documents of the range (set by a
// successful Clone): the recipient records them, so a retry that reaches
// it after the commit answers the donor's first result instead of running
// again. A record whose entry the oplog no longer holds (retention) cannot
// be attributed and is not carried; MongoDB loses such history too.
func (s *Source) ClonedStatements() []storage.StmtWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cloneStmts
}

// rangeStatements scans the snapshot's statement records and keeps those
// whose entries wrote a document of the range.
func (s *Source) rangeStatements(ctx context.Context, snap *storage.Snapshot) ([]storage.StmtWrite, error) {
	var out []storage.StmtWrite
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		page, next, err := snap.ScanSessions(after, 1000, 4<<20)
		if err != nil {
			return nil, fmt.Errorf("statement records of %s: %w", s.r, err)
		}
		for _, rs := range page {
			for _, r := range rs.Records {
				en, ok, err := s.eng.OplogEntryAt(r.Record.OpTime)
				if err != nil {
					return nil, fmt.Errorf("statement records of %s: %w", s.r, err)
				}
				if !ok || !s.entryInRange(en) {
					continue
				}
				out = append(out, storage.StmtWrite{
					Statement: storage.Statement{LSID: rs.LSID, TxnNumber: r.TxnNumber, StmtID: r.StmtID},
					Result:    r.Record.Result,
				})
			}
		}
		if next == nil {
			return out, nil
		}
		after = next
	}
}

// entryInRange reports whether an oplog entry wrote a document of the
// range: an insert or update whose document is in it, or a delete of an
// _id the range holds (decidable only when the key is _id alone, or when
// the Source tracks the _id).
func (s *Source) entryInRange(en storage.OplogEntry) bool {
	if en.NS != s.r.NS {
		return false
	}
	switch en.Op {
	case storage.OpInsert, storage.OpUpdate:
		return s.r.Contains(en.Doc)
	case storage.OpDelete:
		if len(s.r.Key) == 1 && s.r.Key[0].Field == "_id" {
			d, err := bson.Marshal(bson.D{{Key: "_id", Value: en.ID}})
			return err == nil && s.r.Contains(d)
		}
		_, tracked := s.ids[string(keys.Encode(en.ID))]
		return tracked
	}
	return false
}

// NextMods reads up to maxEntries donor oplog entries after the last call
// (after S at first) and returns the mods of the range among them, the
// optime they cover (readThrough) and how many durable entries of the
// donor's oplog remain after it. The clone must have run. Errors:
// IllegalOperation before the clone; OplogStartMissing when the donor's
// oplog no longer holds the entry after readThrough (retention); the
// migration must restart); InterruptedDueToReplStateChange when the
// donor's term changed since the start; OperationFailed (96) when the
// collection was dropped or renamed.
func (s *Source) NextMods(maxEntries int) (mods []Mod, readThrough storage.OpTime, remaining int64, err error) {
	if maxEntries <= 0 {
		maxEntries = DefaultModsEntries
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.cloneOK {
		return nil, s.readThrough, 0, mongoerr.New(mongoerr.IllegalOperation, "the migration of %s has not cloned yet", s.r)
	}
	if s.closed {
		return nil, s.readThrough, 0, mongoerr.New(mongoerr.IllegalOperation, "the migration of %s is closed", s.r)
	}
	if t := s.eng.Term(); t != s.term {
		return nil, s.readThrough, 0, mongoerr.New(mongoerr.InterruptedDueToReplStateChange,
			"the donor's term changed from %d to %d during the migration of %s", s.term, t, s.r)
	}
	entries, err := s.eng.ReadOplog(s.readThrough, maxEntries)
	if err != nil {
		return nil, s.readThrough, 0, err
	}
	if len(entries) > 0 && entries[0].Index != s.readThrough.Index+1 {
		return nil, s.readThrough, 0, mongoerr.New(mongoerr.OplogStartMissing,
			"the donor's oplog no longer holds the entry after %s (first held %s): the migration of %s must restart",
			s.readThrough, entries[0].OpTime(), s.r)
	}
	db, coll, _ := strings.Cut(s.r.NS, ".")
	for _, en := range entries {
		switch {
		case en.NS == s.r.NS && (en.Op == storage.OpInsert || en.Op == storage.OpUpdate):
			k := string(keys.Encode(en.ID))
			if s.r.Contains(en.Doc) {
				s.ids[k] = struct{}{}
				mods = append(mods, Mod{Put: en.Doc, Stmt: en.Stmt})
			} else if _, ok := s.ids[k]; ok {
				// Its shard key moved it out of the range.
				delete(s.ids, k)
				mods = append(mods, Mod{DeleteID: en.ID})
			}
		case en.NS == s.r.NS && en.Op == storage.OpDelete:
			k := string(keys.Encode(en.ID))
			if _, ok := s.ids[k]; ok {
				delete(s.ids, k)
				mods = append(mods, Mod{DeleteID: en.ID, Stmt: en.Stmt})
			}
		case en.Op == storage.OpCommand && en.NS == db+".$cmd":
			if v, err := en.Doc.LookupErr("drop"); err == nil {
				if name, ok := v.StringValueOK(); !ok || name != coll {
					continue
				}
				return nil, s.readThrough, 0, mongoerr.New(mongoerr.OperationFailed, "%s was dropped during its migration", s.r.NS)
			}
		}
	}
	if n := len(entries); n > 0 {
		s.readThrough = entries[n-1].OpTime()
	}
	last := s.eng.LastOpTime()
	if last.Index > s.readThrough.Index {
		remaining = int64(last.Index - s.readThrough.Index)
	}
	return mods, s.readThrough, remaining, nil
}

// TrackedIDs returns how many _ids of the range the Source tracks.
func (s *Source) TrackedIDs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// Close releases the snapshot if the clone has not run. It is idempotent.
func (s *Source) Close() error {
	s.mu.Lock()
	snap := s.snap
	s.snap, s.closed = nil, true
	s.mu.Unlock()
	if snap != nil && !s.cloned {
		return snap.Close()
	}
	return nil
}
