package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// CreateCollection creates an empty collection. Errors: InvalidNamespace
// (73), NamespaceExists (48).
func (e *Engine) CreateCollection(ctx context.Context, ns string) error {
	return e.ddlOp(ctx, "createCollection", ns, func(t *txn) error { return t.createCollection(ns) })
}

// The DDL bodies below are txn methods (not closures) so that ApplyOplog
// replays a primary's catalog commands through the same code as the
// primary ran them (see apply.go).

func (t *txn) createCollection(ns string) error {
	if err := ValidateNamespace(ns); err != nil {
		return err
	}
	if t.cat.byNS[ns] != nil {
		return mongoerr.New(mongoerr.NamespaceExists, "Collection %s already exists.", ns)
	}
	_, err := t.ensureCollection(ns)
	return err
}

// DropCollection removes a collection with its documents, index entries
// and statistics, in one batch with a "c" oplog entry. Its IDs are never
// reused. Errors: NamespaceNotFound (26).
func (e *Engine) DropCollection(ctx context.Context, ns string) error {
	return e.ddlOp(ctx, "dropCollection", ns, func(t *txn) error { return t.dropCollection(ns) })
}

func (t *txn) dropCollection(ns string) error {
	c := t.cat.byNS[ns]
	if c == nil {
		return mongoerr.New(mongoerr.NamespaceNotFound, "ns not found: %s", ns)
	}
	dp, ip := docPrefix(c.id), collIndexPrefix(c.id)
	_ = t.b.DeleteRange(dp, prefixEnd(dp), nil)
	_ = t.b.DeleteRange(ip, prefixEnd(ip), nil)
	_ = t.b.Delete(metaCollKey(c.id), nil)
	t.stats[c.id] = nil
	t.cat, t.catChanged = t.cat.without(ns), true
	_, coll, _ := strings.Cut(ns, ".")
	t.command(ns, bson.D{{Key: "drop", Value: coll}})
	return nil
}

// CreateIndex builds an index over the collection's documents (creating the
// collection if needed) and reports whether it created one: an identical
// index that already exists is not an error (created == false), as in
// MongoDB. The build runs under the write lock in one batch together with
// the metadata change and a "c" oplog entry, so the index appears complete
// or not at all; writes to the whole engine wait for it (the batch, and
// the memory it takes, grow with the collection).
//
// Errors: CannotCreateIndex (67) for a bad key pattern or too many indexes,
// IndexOptionsConflict (85) / IndexKeySpecsConflict (86) when an index with
// the same key or name differs, DuplicateKey (11000) when existing
// documents violate a unique index, CannotIndexParallelArrays (171).
func (e *Engine) CreateIndex(ctx context.Context, ns string, spec IndexSpec) (created bool, err error) {
	err = e.ddlOp(ctx, "createIndex", ns, func(t *txn) error {
		var err error
		created, err = t.createIndex(ns, spec)
		return err
	})
	return created, err
}

func (t *txn) createIndex(ns string, spec IndexSpec) (bool, error) {
	spec.Key = slices.Clone(spec.Key)
	spec.Multikey = false // the engine's to set
	if spec.Name == "" && sameKey(spec.Key, idIndexSpec().Key) {
		spec.Name = IDIndexName
	}
	if spec.Name == "" {
		spec.Name = DefaultIndexName(spec.Key)
	}
	if err := ValidateNamespace(ns); err != nil {
		return false, err
	}
	if err := validateIndexKey(spec.Key); err != nil {
		return false, err
	}
	if sameKey(spec.Key, idIndexSpec().Key) {
		if spec.Name != IDIndexName {
			return false, mongoerr.New(mongoerr.IndexOptionsConflict, "Index already exists with a different name: %s", IDIndexName)
		}
		return false, nil
	}
	if spec.Name == IDIndexName {
		return false, mongoerr.New(mongoerr.CannotCreateIndex, "the index name %s is reserved for the _id index", IDIndexName)
	}
	if strings.ContainsRune(spec.Name, 0) {
		return false, mongoerr.New(mongoerr.CannotCreateIndex, "index name contains a null byte")
	}
	c, err := t.ensureCollection(ns)
	if err != nil {
		return false, err
	}
	for _, ix := range c.indexes {
		switch {
		case ix.spec.Name == spec.Name && sameKey(ix.spec.Key, spec.Key) &&
			ix.spec.Unique == spec.Unique && ix.spec.Sparse == spec.Sparse:
			return false, nil // already exists
		case ix.spec.Name == spec.Name && sameKey(ix.spec.Key, spec.Key):
			return false, mongoerr.New(mongoerr.IndexOptionsConflict,
				"An existing index has the same name as the requested index but different options. Requested index: %s, existing index: %s",
				describeSpec(spec), describeSpec(ix.spec))
		case ix.spec.Name == spec.Name:
			return false, mongoerr.New(mongoerr.IndexKeySpecsConflict,
				"An existing index has the same name as the requested index. Requested index: %s, existing index: %s",
				describeSpec(spec), describeSpec(ix.spec))
		case sameKey(ix.spec.Key, spec.Key):
			return false, mongoerr.New(mongoerr.IndexOptionsConflict, "Index already exists with a different name: %s", ix.spec.Name)
		}
	}
	if len(c.indexes)+1 >= maxIndexesPerCollection {
		return false, mongoerr.New(mongoerr.CannotCreateIndex, "add index fails, too many indexes for %s key:%s", ns, describeSpec(spec))
	}
	if t.ids.NextIndex >= 1<<32 {
		return false, mongoerr.New(mongoerr.InternalError, "index ids exhausted")
	}
	ix := newIndex(uint32(t.ids.NextIndex), spec)
	t.ids.NextIndex++
	t.idsChanged = true
	if err := t.buildIndex(c, ix); err != nil {
		return false, err
	}
	t.putCollection(c.withIndexes(append(slices.Clone(c.indexes), ix)))
	_, coll, _ := strings.Cut(ns, ".")
	t.command(ns, bson.D{{Key: "createIndexes", Value: coll}, {Key: "spec", Value: specDoc(spec)}})
	return true, nil
}

// buildIndex stages the entries of ix for every document of c.
func (t *txn) buildIndex(c *collection, ix *index) error {
	p := docPrefix(c.id)
	it, err := t.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("build index %s: %w", ix.spec.Name, err)
	}
	defer func() { _ = it.Close() }()
	// owner maps each tuple of a unique index to the key(_id) that has it.
	var owner map[string]string
	if ix.spec.Unique {
		owner = map[string]string{}
	}
	st := t.statsFor(c)
	for ok := it.First(); ok; ok = it.Next() {
		idk := it.Key()[len(p):]
		ks, err := ix.keysFor(it.Value())
		if err != nil {
			return err
		}
		if len(ks) > 1 {
			ix.spec.Multikey = true // ix is not published yet
		}
		for _, k := range ks {
			if owner != nil {
				if other, ok := owner[string(k.tuple)]; ok && other != string(idk) {
					return newDuplicateKeyError(c.ns, ix.spec, k.vals)
				}
				owner[string(k.tuple)] = string(idk)
			}
			ek := indexEntryKey(c.id, ix.id, k.tuple, idk)
			_ = t.b.Set(ek, nil, nil)
			st.addKey(ix.id, len(ek), 1)
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("build index %s: %w", ix.spec.Name, err)
	}
	if _, ok := st.idx[ix.id]; !ok {
		st.idx[ix.id] = idxStats{}
	}
	return nil
}

func specDoc(s IndexSpec) bson.D {
	d := bson.D{{Key: "key", Value: s.KeyPattern()}, {Key: "name", Value: s.Name}}
	if s.Unique {
		d = append(d, bson.E{Key: "unique", Value: true})
	}
	if s.Sparse {
		d = append(d, bson.E{Key: "sparse", Value: true})
	}
	return d
}

// DropIndex removes an index and its entries. Errors: NamespaceNotFound
// (26), IndexNotFound (27), InvalidOptions (72) for _id_.
func (e *Engine) DropIndex(ctx context.Context, ns, name string) error {
	return e.ddlOp(ctx, "dropIndex", ns, func(t *txn) error { return t.dropIndex(ns, name) })
}

func (t *txn) dropIndex(ns, name string) error {
	c := t.cat.byNS[ns]
	if c == nil {
		return mongoerr.New(mongoerr.NamespaceNotFound, "ns not found: %s", ns)
	}
	if name == IDIndexName {
		return mongoerr.New(mongoerr.InvalidOptions, "cannot drop _id index")
	}
	ix := c.indexByName(name)
	if ix == nil {
		return mongoerr.New(mongoerr.IndexNotFound, "index not found with name [%s]", name)
	}
	p := indexPrefix(c.id, ix.id)
	_ = t.b.DeleteRange(p, prefixEnd(p), nil)
	st := t.statsFor(c)
	delete(st.idx, ix.id)
	t.putCollection(c.withIndexes(slices.DeleteFunc(slices.Clone(c.indexes), func(x *index) bool { return x == ix })))
	_, coll, _ := strings.Cut(ns, ".")
	t.command(ns, bson.D{{Key: "dropIndexes", Value: coll}, {Key: "index", Value: name}})
	return nil
}

// ddlOp runs a catalog change under the write lock and commits it.
func (e *Engine) ddlOp(ctx context.Context, op, ns string, fn func(t *txn) error) error {
	if err := e.begin(); err != nil {
		return err
	}
	defer e.end()
	start := time.Now()
	if err := e.lock(ctx); err != nil {
		return err
	}
	t := e.newTxn(op, ns, start)
	if err := fn(t); err != nil {
		t.abort()
		return err
	}
	if err := e.commit(t); err != nil {
		return fmt.Errorf("%s %s: %w", op, ns, err)
	}
	if t.entries > 0 {
		e.log.Info().Str("op", op).Str("ns", ns).Dur("dur", time.Since(start)).Msg("catalog changed")
	}
	return nil
}

// ListCollections returns the collections, sorted by namespace.
func (e *Engine) ListCollections() []CollectionInfo { return e.cat.Load().list() }

// ListIndexes returns the collection's indexes, _id_ first, then in
// creation order. Errors: NamespaceNotFound (26).
func (e *Engine) ListIndexes(ns string) ([]IndexSpec, error) {
	return listIndexes(e.collection(ns), ns)
}

// ListIndexes returns the indexes of ns as of the snapshot (with the
// Multikey flags that hold for the documents it sees).
func (s *Snapshot) ListIndexes(ns string) ([]IndexSpec, error) {
	return listIndexes(s.cat.byNS[ns], ns)
}

func listIndexes(c *collection, ns string) ([]IndexSpec, error) {
	if c == nil {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "ns does not exist: %s", ns)
	}
	out := []IndexSpec{idIndexSpec()}
	for _, ix := range c.indexes {
		s := ix.spec
		s.Key = slices.Clone(s.Key)
		out = append(out, s)
	}
	return out, nil
}
