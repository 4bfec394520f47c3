package storage

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// maxReportedPerKind caps the messages of one kind in a ValidateResult;
// the counters stay exact.
const maxReportedPerKind = 20

// ValidateResult is the outcome of Validate, shaped like MongoDB's validate
// command reply.
type ValidateResult struct {
	NS           string
	Valid        bool
	Errors       []string
	Warnings     []string
	NRecords     int64
	NIndexes     int              // including _id_
	KeysPerIndex map[string]int64 // entries found in each index
	// Missing counts documents' keys with no index entry; Extra counts
	// entries whose document does not exist; Stale counts entries of an
	// existing document that the document no longer produces.
	Missing, Extra, Stale int64
	BadDocuments          int64 // documents that are not valid BSON or whose _id does not match their key
	StatsMismatch         bool  // the kept statistics differ from the recount
}

type validator struct {
	res    *ValidateResult
	counts map[string]int
}

func (v *validator) fail(kind, format string, args ...any) {
	v.res.Valid = false
	v.counts[kind]++
	if v.counts[kind] <= maxReportedPerKind {
		v.res.Errors = append(v.res.Errors, fmt.Sprintf(format, args...))
	}
}

// Validate checks the collection against itself on a consistent snapshot:
// every document is valid BSON stored under the key of its _id, every index
// holds exactly the keys its documents produce (reporting missing, extra
// and stale entries) and the kept statistics match a recount. It reads the
// whole collection and keeps its index keys in memory; it never blocks
// writers. Cancelling ctx stops it with ctx's error.
// Errors: NamespaceNotFound (26).
func (e *Engine) Validate(ctx context.Context, ns string) (ValidateResult, error) {
	if err := e.begin(); err != nil {
		return ValidateResult{}, err
	}
	defer e.end()
	s := e.snapshot()
	defer func() { _ = s.Close() }()
	c := s.cat.byNS[ns]
	if c == nil {
		return ValidateResult{}, mongoerr.New(mongoerr.NamespaceNotFound, "Collection %s not found", ns)
	}
	res := ValidateResult{NS: ns, Valid: true, NIndexes: 1 + len(c.indexes), KeysPerIndex: map[string]int64{}}
	v := &validator{res: &res, counts: map[string]int{}}

	// Pass 1: the documents, and the entries they should have.
	expected := make([]map[string]struct{}, len(c.indexes))
	for i := range expected {
		expected[i] = map[string]struct{}{}
	}
	docs := map[string]struct{}{}
	recount := newCollStats()
	p := docPrefix(c.id)
	err := scanRange(ctx, s.snap, p, prefixEnd(p), func(k, val []byte) error {
		idk := k[len(p):]
		docs[string(idk)] = struct{}{}
		res.NRecords++
		recount.count++
		recount.size += int64(len(val))
		recount.addKey(idIndexID, len(k), 1)
		doc := bson.Raw(val)
		if err := bsoncore.Document(doc).Validate(); err != nil {
			res.BadDocuments++
			v.fail("doc", "document at key %x is not valid BSON: %v", k, err)
			return nil
		}
		id, err := docID(doc)
		if err != nil || !bytes.Equal(idKey(id), idk) {
			res.BadDocuments++
			v.fail("doc", "document at key %x does not have a matching leading _id", k)
			return nil
		}
		for i, ix := range c.indexes {
			ks, err := ix.keysFor(doc)
			if err != nil {
				v.fail("keys", "document %s cannot be indexed by %s: %v", id, ix.spec.Name, err)
				continue
			}
			for _, key := range ks {
				expected[i][string(indexEntryKey(c.id, ix.id, key.tuple, idk))] = struct{}{}
			}
		}
		return nil
	})
	if err != nil {
		return ValidateResult{}, fmt.Errorf("validate %s: %w", ns, err)
	}
	res.KeysPerIndex[IDIndexName] = res.NRecords

	// Pass 2: each index's entries against the expected ones.
	for i, ix := range c.indexes {
		ip := indexPrefix(c.id, ix.id)
		var n int64
		err := scanRange(ctx, s.snap, ip, prefixEnd(ip), func(k, _ []byte) error {
			n++
			recount.addKey(ix.id, len(k), 1)
			if _, ok := expected[i][string(k)]; ok {
				delete(expected[i], string(k))
				return nil
			}
			_, idk, err := splitIndexEntry(k)
			if err != nil {
				res.Extra++
				v.fail("extra", "index %s: malformed entry %x", ix.spec.Name, k)
				return nil
			}
			if _, ok := docs[string(idk)]; ok {
				res.Stale++
				v.fail("stale", "index %s: stale entry %x: its document no longer has that key", ix.spec.Name, k)
			} else {
				res.Extra++
				v.fail("extra", "index %s: extra entry %x: no document with that _id", ix.spec.Name, k)
			}
			return nil
		})
		if err != nil {
			return ValidateResult{}, fmt.Errorf("validate %s index %s: %w", ns, ix.spec.Name, err)
		}
		res.KeysPerIndex[ix.spec.Name] = n
		if _, ok := recount.idx[ix.id]; !ok {
			recount.idx[ix.id] = idxStats{}
		}
		missing := make([]string, 0, len(expected[i]))
		for k := range expected[i] {
			missing = append(missing, k)
		}
		sort.Strings(missing)
		for _, k := range missing {
			res.Missing++
			v.fail("missing", "index %s: missing entry %x", ix.spec.Name, k)
		}
	}

	// The kept statistics, as of the same snapshot.
	var sr statsRecord
	val, found, err := getCopy(s.snap, metaStatsKey(c.id))
	switch {
	case err != nil:
		return ValidateResult{}, fmt.Errorf("validate %s: %w", ns, err)
	case !found:
		res.StatsMismatch = true
		v.fail("stats", "collection statistics record is missing")
	case bson.Unmarshal(val, &sr) != nil:
		res.StatsMismatch = true
		v.fail("stats", "collection statistics record is unreadable")
	default:
		kept := sr.toStats()
		if kept.count != recount.count || kept.size != recount.size || len(kept.idx) != len(recount.idx) {
			res.StatsMismatch = true
			v.fail("stats", "collection statistics say %d documents / %d bytes / %d indexes, recount finds %d / %d / %d",
				kept.count, kept.size, len(kept.idx), recount.count, recount.size, len(recount.idx))
		} else {
			for id, st := range recount.idx {
				if kept.idx[id] != st {
					res.StatsMismatch = true
					v.fail("stats", "index %d statistics say %d keys / %d bytes, recount finds %d / %d",
						id, kept.idx[id].keys, kept.idx[id].bytes, st.keys, st.bytes)
				}
			}
		}
	}
	for kind, n := range v.counts {
		if n > maxReportedPerKind {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%d more %s errors not listed", n-maxReportedPerKind, kind))
		}
	}
	sort.Strings(res.Warnings)
	return res, nil
}

// scanRange calls fn for each key in [lo, hi) of r, checking ctx every
// 1024 keys. Key and value are valid only during the call.
func scanRange(ctx context.Context, r pebble.Reader, lo, hi []byte, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				_ = it.Close()
				return err
			}
		}
		val, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		if err := fn(it.Key(), val); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return err
	}
	return it.Close()
}
