// Package executor runs queries against one shardd's storage engine: it
// asks pkg/plan for a plan, walks the plan over a storage snapshot (index
// ranges or a collection scan), applies the filter, sort, skip, limit and
// projection of pkg/query, and applies updates, deletes and aggregation
// pipelines on top of that.
//
// Reads see one consistent snapshot from start to end, so a cursor that
// lives across getMore calls never sees a half-applied write. The executor
// never decides what to write on its own: every change goes through the
// engine's write methods (one Pebble batch each, with its oplog record).
// It must never talk to other nodes; routing and replication live above it.
package executor

import (
	"context"
	"fmt"
	"hash/maphash"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/plan"
	"github.com/psdb/psdb/pkg/query"
	"github.com/psdb/psdb/shardd/storage"
)

// MaxSortBytes is the most a blocking SORT stage may hold, MongoDB's
// default of 100 MiB (internalQueryMaxBlockingSortMemoryUsageBytes).
const MaxSortBytes = 100 << 20

// Executor runs queries on one engine. It is safe for concurrent use.
type Executor struct {
	eng   *storage.Engine
	locks docLocks
}

// New returns an executor over eng.
func New(eng *storage.Engine) *Executor {
	x := &Executor{eng: eng}
	x.locks.seed = maphash.MakeSeed()
	return x
}

// storageOrdered is the write option of single-document inserts.
var storageOrdered = storage.WriteOptions{Ordered: true}

// FindSpec is a find command's query part.
type FindSpec struct {
	Filter, Projection, Sort bson.Raw
	Skip, Limit              int64
}

// parsed is a FindSpec after parsing.
type parsed struct {
	filter *query.Filter
	sort   *query.Sort
	proj   *query.Projection
	spec   FindSpec
}

func parseFind(spec FindSpec) (*parsed, error) {
	if err := query.CheckSkipLimit(spec.Skip, spec.Limit); err != nil {
		return nil, err
	}
	f, err := query.ParseFilter(spec.Filter)
	if err != nil {
		return nil, err
	}
	s, err := query.ParseSort(spec.Sort)
	if err != nil {
		return nil, err
	}
	p, err := query.ParseProjection(spec.Projection)
	if err != nil {
		return nil, err
	}
	return &parsed{filter: f, sort: s, proj: p, spec: spec}, nil
}

// Plan returns the plan a find would use, for explain.
func (x *Executor) Plan(ns string, spec FindSpec) (*plan.Plan, error) {
	snap, err := x.eng.Snapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	p, err := parseFind(spec)
	if err != nil {
		return nil, err
	}
	return x.choose(snap, ns, p)
}

func (x *Executor) choose(snap *storage.Snapshot, ns string, p *parsed) (*plan.Plan, error) {
	specs, err := snap.ListIndexes(ns)
	if err != nil && !mongoerr.HasCode(err, mongoerr.NamespaceNotFound) {
		return nil, err
	}
	return plan.Choose(plan.Query{
		Filter: p.filter, Sort: p.sort, Skip: p.spec.Skip, Limit: p.spec.Limit, Projection: p.spec.Projection,
	}, planIndexes(specs)), nil
}

// planIndexes describes the store's indexes to the planner.
func planIndexes(specs []storage.IndexSpec) []plan.Index {
	out := make([]plan.Index, len(specs))
	for i, s := range specs {
		kp := make([]plan.KeyPart, len(s.Key))
		for j, k := range s.Key {
			kp[j] = plan.KeyPart{Field: k.Field, Desc: k.Desc}
		}
		out[i] = plan.Index{Name: s.Name, Key: kp, Unique: s.Unique, Sparse: s.Sparse, Multikey: s.Multikey}
	}
	return out
}

// Find runs a query and returns a cursor over its results. The cursor
// reads one snapshot; Close releases it.
func (x *Executor) Find(ctx context.Context, ns string, spec FindSpec) (*Cursor, error) {
	p, err := parseFind(spec)
	if err != nil {
		return nil, err
	}
	snap, err := x.eng.Snapshot()
	if err != nil {
		return nil, err
	}
	if err := waitSnapshot(ctx, snap); err != nil {
		snap.Close()
		return nil, err
	}
	pl, err := x.choose(snap, ns, p)
	if err != nil {
		snap.Close()
		return nil, err
	}
	c := &Cursor{snap: snap, plan: pl, p: p, ns: ns, ctx: ctx, owns: ownershipOf(ctx)}
	if pl.NeedsSort() {
		if err := c.sortAll(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// FindAll runs a query and returns every result.
func (x *Executor) FindAll(ctx context.Context, ns string, spec FindSpec) ([]bson.Raw, error) {
	c, err := x.Find(ctx, ns, spec)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.All()
}

// Cursor yields a query's results in order. It is not safe for concurrent
// use; it may be kept across calls until Close.
type Cursor struct {
	ctx  context.Context
	snap *storage.Snapshot
	plan *plan.Plan
	p    *parsed
	ns   string
	owns func(bson.Raw) bool // ownership filter (ownership.go); nil: every document

	ranges   []plan.Range // index ranges still to scan
	it       *storage.Iter
	seen     map[string]struct{} // _ids already returned by a multikey scan
	sorted   []bson.Raw          // results of a blocking sort, when one ran
	sortAt   int
	usedSort bool

	skipped  int64
	returned int64
	started  bool
	done     bool
	err      error
	scanned  int64 // documents examined, for explain
}

// Examined returns how many documents the cursor has examined so far.
func (c *Cursor) Examined() int64 { return c.scanned }

// Next returns the next result, or false at the end or on an error (see Err).
func (c *Cursor) Next() (bson.Raw, bool) {
	if c.done || c.err != nil {
		return nil, false
	}
	if c.p.spec.Limit > 0 && c.returned >= c.p.spec.Limit {
		c.finish()
		return nil, false
	}
	for {
		doc, pos, ok := c.nextMatch()
		if !ok {
			c.finish()
			return nil, false
		}
		if !c.usedSort && c.skipped < c.p.spec.Skip {
			c.skipped++
			continue
		}
		out, err := c.p.proj.Apply(doc, pos)
		if err != nil {
			c.err = err
			return nil, false
		}
		c.returned++
		return out, true
	}
}

// Err returns the error that stopped the cursor.
func (c *Cursor) Err() error { return c.err }

// All drains the cursor.
func (c *Cursor) All() ([]bson.Raw, error) {
	var out []bson.Raw
	for {
		d, ok := c.Next()
		if !ok {
			break
		}
		out = append(out, d)
	}
	return out, c.Err()
}

// Close releases the cursor's snapshot. It is idempotent.
func (c *Cursor) Close() error {
	c.finish()
	if c.snap == nil {
		return nil
	}
	err := c.snap.Close()
	c.snap = nil
	return err
}

func (c *Cursor) finish() {
	c.done = true
	if c.it != nil {
		c.it.Close()
		c.it = nil
	}
}

// nextMatch returns the next document that passes the filter, with the
// array position the positional projection needs.
func (c *Cursor) nextMatch() (bson.Raw, int, bool) {
	if c.usedSort {
		if c.sortAt >= len(c.sorted) {
			return nil, -1, false
		}
		d := c.sorted[c.sortAt]
		c.sorted[c.sortAt] = nil
		c.sortAt++
		_, pos := c.p.filter.MatchDetails(d)
		return d, pos, true
	}
	for {
		doc, ok := c.scanNext()
		if !ok {
			return nil, -1, false
		}
		ok, pos, err := c.p.filter.Evaluate(doc)
		if err != nil {
			c.err = err
			return nil, -1, false
		}
		if ok {
			return doc, pos, true
		}
	}
}

// scanNext returns the next document of the plan's scan.
func (c *Cursor) scanNext() (bson.Raw, bool) {
	for {
		if c.scanned&255 == 0 && c.ctx.Err() != nil {
			c.err = mongoerr.Wrap(c.ctx.Err(), mongoerr.Interrupted, "operation was interrupted")
			return nil, false
		}
		if c.it == nil {
			if !c.openNext() {
				return nil, false
			}
		}
		if c.it.Next() {
			c.scanned++
			if c.seen != nil {
				id := string(keys.Encode(c.it.ID()))
				if _, dup := c.seen[id]; dup {
					continue
				}
				c.seen[id] = struct{}{}
			}
			if c.owns != nil && !c.owns(c.it.Doc()) {
				continue // an orphan: a chunk this shard does not own
			}
			return c.it.Doc(), true
		}
		if err := c.it.Err(); err != nil {
			c.err = fmt.Errorf("scan %s: %w", c.ns, err)
			return nil, false
		}
		c.it.Close()
		c.it = nil
		if c.plan.Kind == plan.CollScan || len(c.ranges) == 0 {
			return nil, false
		}
	}
}

// openNext opens the iterator of the next range; false when none is left.
func (c *Cursor) openNext() bool {
	var err error
	if c.plan.Kind == plan.CollScan {
		if c.started {
			return false
		}
		c.started = true
		c.it, err = c.snap.ScanIDRange(c.ns, storage.IDRange{}, false)
	} else {
		if !c.started {
			c.started = true
			c.ranges = c.plan.Ranges()
			if c.plan.Index.Multikey {
				c.seen = make(map[string]struct{})
			}
		}
		if len(c.ranges) == 0 {
			return false
		}
		var r plan.Range
		if c.plan.Reverse {
			r, c.ranges = c.ranges[len(c.ranges)-1], c.ranges[:len(c.ranges)-1]
		} else {
			r, c.ranges = c.ranges[0], c.ranges[1:]
		}
		c.it, err = c.snap.ScanIndex(c.ns, c.plan.Index.Name, r.Lo, r.Hi, c.plan.Reverse)
	}
	if err != nil {
		c.err = fmt.Errorf("open scan of %s: %w", c.ns, err)
		return false
	}
	return true
}

// sortAll runs the blocking SORT stage: it collects matching documents,
// keeping at most skip+limit of them when there is a limit, and sorts them.
func (c *Cursor) sortAll() error {
	keep := int64(-1)
	if c.p.spec.Limit > 0 {
		keep = c.p.spec.Skip + c.p.spec.Limit
	}
	var docs []bson.Raw
	size := 0
	for {
		doc, ok := c.scanNext()
		if !ok {
			break
		}
		ok, _, err := c.p.filter.Evaluate(doc)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		docs = append(docs, doc)
		size += len(doc)
		if keep > 0 && int64(len(docs)) >= 2*keep+64 {
			// Top-k: sort and cut so memory stays bounded by the limit.
			query.SortDocs(docs, c.p.sort)
			for i := keep; i < int64(len(docs)); i++ {
				size -= len(docs[i])
				docs[i] = nil
			}
			docs = docs[:keep]
		}
		if size > MaxSortBytes {
			return mongoerr.New(292, "Executor error during find command :: caused by :: Sort exceeded memory limit of %d bytes, but did not opt in to external sorting.", MaxSortBytes)
		}
	}
	if c.err != nil {
		return c.err
	}
	if err := query.SortDocsChecked(docs, c.p.sort); err != nil {
		return err
	}
	skip := c.p.spec.Skip
	if skip > int64(len(docs)) {
		skip = int64(len(docs))
	}
	if keep > 0 && keep < int64(len(docs)) {
		docs = docs[:keep]
	}
	c.sorted = docs[skip:]
	c.usedSort = true
	if c.it != nil {
		c.it.Close()
		c.it = nil
	}
	return nil
}
