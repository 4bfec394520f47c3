package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// formatMagic and formatVersion identify a PSDB store (m|f). A directory
// whose Pebble database lacks them was not made by this package.
const (
	formatMagic   = "psdb-storage"
	formatVersion = 1
)

type formatRecord struct {
	Magic   string `bson:"magic"`
	Version int32  `bson:"version"`
}

type termRecord struct {
	Term int64 `bson:"term"`
}

// Options configure an Engine. The zero value is usable: synced writes,
// 16 MiB documents, a 64 MiB block cache, logs discarded.
type Options struct {
	// Logger receives the engine's and Pebble's messages; it should carry
	// the node, role and shard fields.
	Logger zerolog.Logger
	// NoSync acknowledges writes before the WAL is synced. Only for tests
	// and benchmarks that measure everything but the disk: with NoSync an
	// acknowledged write can be lost by a machine crash (not by a process
	// crash).
	NoSync bool
	// MaxDocumentSize is the largest document accepted, in bytes
	// (default 16 MiB, MongoDB's limit).
	MaxDocumentSize int
	// CacheSize is Pebble's block cache in bytes (default
	// DefaultCacheSize).
	CacheSize int64
}

// Engine is one shardd's store. It is safe for concurrent use. Writes are
// serialized in a short critical section (see commit) and share WAL syncs;
// reads (Get, snapshots, scans) never wait for writes.
type Engine struct {
	log  zerolog.Logger
	opts Options
	db   *pebble.DB

	// life is held shared by every operation in progress (and by each
	// iterator step) and exclusively by Close, so Close waits for running
	// operations and nothing touches db after it is closed.
	life   sync.RWMutex
	closed bool // guarded by life

	// writeLock is the engine's write lock, a channel so that waiting for
	// it respects the caller's context. Invariant: every check a write
	// depends on (does this _id exist, is this unique key taken), the
	// allocation of its oplog index and its Pebble apply happen while the
	// lock is held, so two writers can never both succeed with the same
	// _id or unique key, and oplog order is commit order. The WAL sync is
	// waited for after the lock is released, which is what lets concurrent
	// writers share one sync.
	writeLock chan struct{}

	// Guarded by writeLock:
	ids   idsRecord
	stats map[uint32]*collStats
	last  OpTime // newest oplog entry applied (visible, maybe not yet synced)
	// term is stamped on new oplog entries; stored only under writeLock.
	term atomic.Uint64
	// voted is the newest term promised in a vote (vote.go); stored only
	// under writeLock, so ApplyOplog's check of it and a vote serialize.
	voted atomic.Uint64
	// syncPending is set while an initial sync is in progress (clone.go);
	// stored only under writeLock.
	syncPending atomic.Bool

	// cat is the published catalog (immutable; copy on write).
	cat atomic.Pointer[catalog]
	// ddl is held exclusively while a batch that changes the catalog is
	// applied and the new catalog published, and shared while a snapshot
	// pairs a catalog with a Pebble snapshot, so a snapshot never sees data
	// and a catalog from different sides of a DDL change.
	ddl sync.RWMutex

	// durable is the newest optime known to be synced: every entry at or
	// before it survives a crash. ReadOplog never reads past it.
	durMu   sync.Mutex
	durable OpTime
	// durCh is closed (and set to nil) when durable advances or the engine
	// closes, waking every WaitDurable; it is made lazily by the first
	// waiter. durClosed is set by Close. Both guarded by durMu.
	durCh     chan struct{}
	durClosed bool

	// reg tracks open snapshots (and through them iterators) so that Close
	// can release them before closing Pebble.
	regMu sync.Mutex
	snaps map[*Snapshot]struct{}
}

// DefaultCacheSize is the block cache of a store opened without
// Options.CacheSize. Pebble allocates the cache block by block as it
// fills, so an idle or small store costs far less. 64 MiB (the former
// default) was smaller than the documents of one shard of the benchmark
// (100,000 x 1 KB over two shards) plus their oplog, and point reads went
// to the disk: 5% of a primary's CPU in pread under a read-only workload.
const DefaultCacheSize = 256 << 20

// Open opens the store in dir, creating it when dir is missing or empty.
// It refuses a directory that holds something else (ErrNotStore) or whose
// store is damaged (ErrCorrupt); both are testable with errors.Is.
func Open(dir string, opts Options) (*Engine, error) {
	if opts.MaxDocumentSize <= 0 {
		opts.MaxDocumentSize = DefaultMaxDocumentSize
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	log := opts.Logger.With().Str("component", "storage").Logger()
	start := time.Now()

	fresh, err := dirIsEmpty(dir)
	if err != nil {
		return nil, fmt.Errorf("open storage %s: %w", dir, err)
	}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref()
	popts := &pebble.Options{
		Cache:              cache,
		Logger:             pebbleLogger{log: log},
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       32 << 20,
		ErrorIfNotExists:   !fresh,
	}
	// Bloom filters on every level make point reads (Get, _id checks on
	// insert) skip tables that cannot hold the key.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		switch {
		case errors.Is(err, pebble.ErrDBDoesNotExist):
			return nil, fmt.Errorf("open storage %s: directory holds files but no database: %w", dir, ErrNotStore)
		case pebble.IsCorruptionError(err):
			return nil, fmt.Errorf("open storage %s: %v: %w", dir, err, ErrCorrupt)
		}
		return nil, fmt.Errorf("open storage %s: %w", dir, err)
	}
	e := &Engine{
		log:       log,
		opts:      opts,
		db:        db,
		writeLock: make(chan struct{}, 1),
		stats:     map[uint32]*collStats{},
		snaps:     map[*Snapshot]struct{}{},
	}
	if err := e.load(fresh); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open storage %s: %w", dir, err)
	}
	e.log.Info().Str("op", "open").Str("dir", dir).Bool("fresh", fresh).
		Int("collections", len(e.cat.Load().byNS)).Uint64("term", e.term.Load()).
		Uint64("lastIndex", e.last.Index).Dur("dur", time.Since(start)).Msg("storage opened")
	return e, nil
}

// dirIsEmpty reports whether dir is missing or empty, creating it if missing.
func dirIsEmpty(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return false, err
	}
	return len(ents) == 0, nil
}

// load reads (or, for a fresh store, writes) the metadata.
func (e *Engine) load(fresh bool) error {
	if !fresh {
		// A Pebble database with no keys at all is a store whose first
		// start died before its initial batch: initialize it now.
		empty, err := e.isEmpty()
		if err != nil {
			return err
		}
		fresh = empty
	}
	if fresh {
		b := e.db.NewBatch()
		_ = b.Set(metaKey(metaFormat), marshalRecord(formatRecord{Magic: formatMagic, Version: formatVersion}), nil)
		_ = b.Set(metaKey(metaIDs), marshalRecord(idsRecord{NextColl: 1, NextIndex: 1}), nil)
		_ = b.Set(metaKey(metaTerm), marshalRecord(termRecord{Term: 1}), nil)
		_ = b.Set(metaKey(metaLastOp), encodeOpTime(OpTime{Term: 1}), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("initialize metadata: %w", err)
		}
		_ = b.Close()
	}
	val, err := e.getMeta(metaKey(metaFormat))
	if err != nil {
		return err
	}
	if val == nil {
		return fmt.Errorf("no PSDB format record in this Pebble database: %w", ErrNotStore)
	}
	var f formatRecord
	if err := bson.Unmarshal(val, &f); err != nil || f.Magic != formatMagic {
		return fmt.Errorf("format record unreadable (%x): %w", val, ErrNotStore)
	}
	if f.Version != formatVersion {
		return fmt.Errorf("store format version %d, this binary reads %d: %w", f.Version, formatVersion, ErrCorrupt)
	}
	if err := e.loadRecord(metaKey(metaIDs), &e.ids); err != nil {
		return err
	}
	if e.ids.NextColl < 1 || e.ids.NextIndex < 1 || e.ids.NextColl > 1<<32 || e.ids.NextIndex > 1<<32 {
		return fmt.Errorf("id allocators %+v out of range: %w", e.ids, ErrCorrupt)
	}
	var tr termRecord
	if err := e.loadRecord(metaKey(metaTerm), &tr); err != nil {
		return err
	}
	if tr.Term < 1 {
		return fmt.Errorf("term %d: %w", tr.Term, ErrCorrupt)
	}
	e.term.Store(uint64(tr.Term))
	if err := e.loadVote(); err != nil {
		return err
	}
	if err := e.loadInitialSync(); err != nil {
		return err
	}
	val, err = e.getMeta(metaKey(metaLastOp))
	if err != nil {
		return err
	}
	if e.last, err = decodeOpTime(val); err != nil {
		return fmt.Errorf("last optime: %w", err)
	}
	e.durable = e.last

	cat := &catalog{byNS: map[string]*collection{}}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixMeta, metaColl}, UpperBound: []byte{prefixMeta, metaColl + 1}})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		c, err := decodeCollRecord(it.Key(), it.Value(), e.ids)
		if err != nil {
			_ = it.Close()
			return err
		}
		if cat.byNS[c.ns] != nil {
			_ = it.Close()
			return fmt.Errorf("two collection records for %s: %w", c.ns, ErrCorrupt)
		}
		cat.byNS[c.ns] = c
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("read catalog: %w", err)
	}
	for _, c := range cat.byNS {
		var sr statsRecord
		if err := e.loadRecord(metaStatsKey(c.id), &sr); err != nil {
			return fmt.Errorf("collection %s: %w", c.ns, err)
		}
		e.stats[c.id] = sr.toStats()
	}
	e.cat.Store(cat)
	return nil
}

func (e *Engine) isEmpty() (bool, error) {
	it, err := e.db.NewIter(nil)
	if err != nil {
		return false, err
	}
	has := it.First()
	return !has, errors.Join(it.Error(), it.Close())
}

// getMeta returns a copy of a metadata value, nil when absent.
func (e *Engine) getMeta(key []byte) ([]byte, error) {
	val, closer, err := e.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metadata %q: %w", key, err)
	}
	out := append([]byte(nil), val...)
	_ = closer.Close()
	return out, nil
}

func (e *Engine) loadRecord(key []byte, into any) error {
	val, err := e.getMeta(key)
	if err != nil {
		return err
	}
	if val == nil {
		return fmt.Errorf("metadata record %q missing: %w", key, ErrCorrupt)
	}
	if err := bson.Unmarshal(val, into); err != nil {
		return fmt.Errorf("metadata record %q unreadable: %v: %w", key, err, ErrCorrupt)
	}
	return nil
}

// Close waits for running operations, closes every open snapshot and
// iterator, and closes Pebble. Calling it again returns ErrClosed.
func (e *Engine) Close() error {
	e.life.Lock()
	defer e.life.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.closed = true
	e.wakeDurableWaiters(true)
	e.regMu.Lock()
	for s := range e.snaps {
		s.closeLocked()
	}
	e.snaps = nil
	e.regMu.Unlock()
	err := e.db.Close()
	e.log.Info().Str("op", "close").Err(err).Msg("storage closed")
	if err != nil {
		return fmt.Errorf("close pebble: %w", err)
	}
	return nil
}

// begin marks an operation in progress; end must follow.
func (e *Engine) begin() error {
	e.life.RLock()
	if e.closed {
		e.life.RUnlock()
		return ErrClosed
	}
	return nil
}

func (e *Engine) end() { e.life.RUnlock() }

// lock takes the write lock, or gives up when ctx ends.
func (e *Engine) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case e.writeLock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) unlock() { <-e.writeLock }

// collection returns the published metadata of ns, nil when it does not exist.
func (e *Engine) collection(ns string) *collection { return e.cat.Load().byNS[ns] }

// pebbleLogger sends Pebble's messages to zerolog.
type pebbleLogger struct{ log zerolog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug().Str("src", "pebble").Msgf(format, args...)
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error().Str("src", "pebble").Msgf(format, args...)
}

// Fatalf is called by Pebble when it cannot continue (for example a failed
// WAL write). Pebble requires that it not return; panicking stops the node,
// and the restart recovers from the WAL.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.WithLevel(zerolog.FatalLevel).Str("src", "pebble").Msg(msg)
	panic("pebble: " + msg)
}
