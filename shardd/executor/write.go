package executor

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
	"github.com/psdb/psdb/pkg/update"
)

// UpdateSpec is one statement of an update command.
type UpdateSpec struct {
	Filter, Update bson.Raw
	ArrayFilters   []bson.Raw
	Multi, Upsert  bool
}

// UpdateResult is what one update statement did.
type UpdateResult struct {
	Matched, Modified int64
	// UpsertedID is the _id of the inserted document (Type 0: none).
	UpsertedID bson.RawValue
}

// DeleteSpec is one statement of a delete command.
type DeleteSpec struct {
	Filter bson.Raw
	Limit  int64 // 0: every match; 1: the first one
}

// docLocks serialises read-modify-write cycles on one document: an update
// reads the latest version, applies the update and replaces it while
// holding the lock of the document's _id, so two concurrent $inc never
// lose one another. Locks are striped by a hash of (ns, _id); two
// documents sharing a stripe only wait for each other.
type docLocks struct {
	seed    maphash.Seed
	stripes [256]sync.Mutex
}

func (l *docLocks) lock(ns string, id bson.RawValue) func() {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(ns)
	h.Write(keys.Encode(id))
	m := &l.stripes[h.Sum64()%uint64(len(l.stripes))]
	m.Lock()
	return m.Unlock
}

// Update runs one update statement. Documents are chosen from a snapshot,
// then each is re-read under its lock and re-checked against the filter
// before the update applies, so a document changed in between is updated
// from its latest version (or skipped when it no longer matches).
func (x *Executor) Update(ctx context.Context, ns string, spec UpdateSpec) (UpdateResult, error) {
	return x.update(ctx, ns, spec, nil)
}

// update is Update, as a retryable statement when r is set (session.go).
func (x *Executor) update(ctx context.Context, ns string, spec UpdateSpec, r *retry) (UpdateResult, error) {
	var res UpdateResult
	flt, err := query.ParseFilter(spec.Filter)
	if err != nil {
		return res, err
	}
	u, err := update.Parse(spec.Update, update.Options{ArrayFilters: spec.ArrayFilters})
	if err != nil {
		return res, err
	}
	if spec.Multi && u.IsReplacement() {
		return res, mongoerr.New(mongoerr.FailedToParse, "multi update is not supported for replacement-style update")
	}
	ids, err := x.matchingIDs(ctx, ns, spec.Filter, !spec.Multi)
	if err != nil {
		return res, err
	}
	now := time.Now()
	for _, id := range ids {
		matched, modified, err := x.updateOne(ctx, ns, id, flt, u, now, r)
		if err != nil {
			return res, err
		}
		if matched {
			res.Matched++
		}
		if modified {
			res.Modified++
		}
	}
	if res.Matched == 0 && spec.Upsert {
		doc, err := update.UpsertDocument(spec.Filter, u, update.ApplyContext{Now: now, MatchPos: -1})
		if err != nil {
			return res, err
		}
		doc = r.withID(doc)
		id, err := x.insertOne(ctx, ns, doc, r, UpdateResult{UpsertedID: doc.Lookup("_id")})
		if err != nil {
			return res, err
		}
		res.UpsertedID = id
	}
	return res, nil
}

// updateOne applies u to the document with the given _id if it still
// matches flt.
func (x *Executor) updateOne(ctx context.Context, ns string, id bson.RawValue, flt *query.Filter, u *update.Update, now time.Time, r *retry) (matched, modified bool, err error) {
	unlock := x.locks.lock(ns, id)
	defer unlock()
	doc, ok, err := x.eng.Get(ns, id)
	if err != nil || !ok || !owned(ctx, doc) {
		return false, false, err
	}
	ok, pos, err := flt.Evaluate(doc)
	if err != nil || !ok {
		return false, false, err
	}
	out, changed, err := u.Apply(doc, update.ApplyContext{Now: now, MatchPos: pos})
	if err != nil {
		return true, false, err
	}
	if !changed {
		return true, false, nil
	}
	if err := checkUpdate(ctx, doc, out); err != nil {
		return true, false, err
	}
	if err := x.replace(ctx, ns, id, out, r, UpdateResult{Matched: 1, Modified: 1}); err != nil {
		return true, false, err
	}
	return true, true, nil
}

// insertOne inserts doc; with r, as r's statement with the given result.
func (x *Executor) insertOne(ctx context.Context, ns string, doc bson.Raw, r *retry, result any) (bson.RawValue, error) {
	res, err := x.eng.Insert(ctx, ns, []bson.Raw{doc}, r.insertOptions(result))
	if err != nil {
		return bson.RawValue{}, err
	}
	if res[0].Err != nil {
		return bson.RawValue{}, res[0].Err
	}
	r.noteInsert(res[0])
	return res[0].ID, nil
}

// matchingIDs returns the _ids of the documents matching filter in a fresh
// snapshot (only the first when one is set).
//
// A filter that is one equality on _id ({_id: v}, v a plain value) names
// its only candidate: it is returned without a scan, and the caller's
// re-read under the document's lock decides (the document may not exist,
// and the filter and the ownership test are applied there as always).
func (x *Executor) matchingIDs(ctx context.Context, ns string, filter bson.Raw, one bool) ([]bson.RawValue, error) {
	if id, ok := idEquality(filter); ok {
		return []bson.RawValue{id}, nil
	}
	spec := FindSpec{Filter: filter, Projection: idOnly}
	if one {
		spec.Limit = 1
	}
	c, err := x.Find(ctx, ns, spec)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var ids []bson.RawValue
	for {
		d, ok := c.Next()
		if !ok {
			break
		}
		id, err := d.LookupErr("_id")
		if err != nil {
			return nil, mongoerr.New(mongoerr.InternalError, "document without _id in %s", ns)
		}
		ids = append(ids, id)
	}
	return ids, c.Err()
}

// idEquality returns v when filter is exactly {_id: v} with v a value
// whose equality is its stored key's (a string, number other than NaN and
// decimal, ObjectId, boolean, date, timestamp or binary): no operator,
// document, array, regular expression or null, whose matching differs.
func idEquality(filter bson.Raw) (bson.RawValue, bool) {
	elems, err := filter.Elements()
	if err != nil || len(elems) != 1 || elems[0].Key() != "_id" {
		return bson.RawValue{}, false
	}
	v := elems[0].Value()
	switch v.Type {
	case bson.TypeString, bson.TypeInt32, bson.TypeInt64, bson.TypeObjectID, bson.TypeBoolean,
		bson.TypeDateTime, bson.TypeTimestamp, bson.TypeBinary:
		return v, true
	case bson.TypeDouble:
		f, ok := v.DoubleOK()
		return v, ok && f == f // NaN is not one key
	}
	return bson.RawValue{}, false
}

// owned applies the ownership test of ctx (ownership.go) to doc: a write
// never touches an orphan, as a read never returns one.
func owned(ctx context.Context, doc bson.Raw) bool {
	owns := ownershipOf(ctx)
	return owns == nil || owns(doc)
}

// Delete runs one delete statement and returns how many documents it
// removed.
func (x *Executor) Delete(ctx context.Context, ns string, spec DeleteSpec) (int64, error) {
	return x.delete(ctx, ns, spec, nil)
}

// delete is Delete, as a retryable statement when r is set (session.go).
func (x *Executor) delete(ctx context.Context, ns string, spec DeleteSpec, r *retry) (int64, error) {
	if spec.Limit != 0 && spec.Limit != 1 {
		return 0, mongoerr.New(mongoerr.FailedToParse, "The limit field in delete objects must be 0 or 1. Got %d", spec.Limit)
	}
	flt, err := query.ParseFilter(spec.Filter)
	if err != nil {
		return 0, err
	}
	ids, err := x.matchingIDs(ctx, ns, spec.Filter, spec.Limit == 1)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, id := range ids {
		ok, err := x.deleteOne(ctx, ns, id, flt, r)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

func (x *Executor) deleteOne(ctx context.Context, ns string, id bson.RawValue, flt *query.Filter, r *retry) (bool, error) {
	unlock := x.locks.lock(ns, id)
	defer unlock()
	doc, ok, err := x.eng.Get(ns, id)
	if err != nil || !ok || !owned(ctx, doc) {
		return false, err
	}
	if ok, _, err := flt.Evaluate(doc); err != nil || !ok {
		return false, err
	}
	return x.deleteDoc(ctx, ns, id, r, int64(1))
}

// FindAndModifySpec is a findAndModify command.
type FindAndModifySpec struct {
	Filter, Sort, Update, Fields bson.Raw
	ArrayFilters                 []bson.Raw
	Remove, New, Upsert          bool
}

// FindAndModifyResult is its answer: the document before (or after, with
// New) the change, nil when none matched.
type FindAndModifyResult struct {
	Value      bson.Raw
	Matched    bool
	Updated    bool
	UpsertedID bson.RawValue
}

// FindAndModify changes or removes the first document matching the filter
// in sort order and returns it, atomically with respect to other writers
// of that document.
func (x *Executor) FindAndModify(ctx context.Context, ns string, spec FindAndModifySpec) (FindAndModifyResult, error) {
	return x.findAndModify(ctx, ns, spec, nil)
}

// findAndModify is FindAndModify, as a retryable statement when r is set
// (session.go).
func (x *Executor) findAndModify(ctx context.Context, ns string, spec FindAndModifySpec, r *retry) (FindAndModifyResult, error) {
	var res FindAndModifyResult
	if spec.Remove == (len(spec.Update) > 0) {
		return res, mongoerr.New(mongoerr.FailedToParse, "Either an update or remove=true must be specified")
	}
	if spec.Remove && (spec.Upsert || spec.New) {
		return res, mongoerr.New(mongoerr.FailedToParse, "Cannot specify both an update and remove=true")
	}
	flt, err := query.ParseFilter(spec.Filter)
	if err != nil {
		return res, err
	}
	proj, err := query.ParseProjection(spec.Fields)
	if err != nil {
		return res, err
	}
	var u *update.Update
	if !spec.Remove {
		if u, err = update.Parse(spec.Update, update.Options{ArrayFilters: spec.ArrayFilters}); err != nil {
			return res, err
		}
	}
	now := time.Now()
	// A concurrent writer may change the chosen document before it is
	// locked; then the next candidate is tried, a bounded number of times.
	for attempt := 0; attempt < 10; attempt++ {
		c, err := x.Find(ctx, ns, FindSpec{Filter: spec.Filter, Sort: spec.Sort, Limit: 1, Projection: idOnly})
		if err != nil {
			return res, err
		}
		d, ok := c.Next()
		cerr := c.Err()
		c.Close()
		if cerr != nil {
			return res, cerr
		}
		if !ok {
			break
		}
		id := d.Lookup("_id")
		done, err := x.modifyLocked(ctx, ns, id, flt, u, proj, spec, now, &res, r)
		if err != nil || done {
			return res, err
		}
	}
	if res.Matched || !spec.Upsert || spec.Remove {
		return res, nil
	}
	doc, err := update.UpsertDocument(spec.Filter, u, update.ApplyContext{Now: now, MatchPos: -1})
	if err != nil {
		return res, err
	}
	doc = r.withID(doc)
	if spec.New {
		if res.Value, err = proj.Apply(doc, -1); err != nil {
			return res, err
		}
	}
	id, err := x.insertOne(ctx, ns, doc, r, FindAndModifyResult{Value: res.Value, UpsertedID: doc.Lookup("_id")})
	if err != nil {
		return res, err
	}
	res.UpsertedID = id
	return res, nil
}

// modifyLocked does findAndModify's change on one document under its lock;
// false when the document no longer matches and another must be chosen.
func (x *Executor) modifyLocked(ctx context.Context, ns string, id bson.RawValue, flt *query.Filter, u *update.Update,
	proj *query.Projection, spec FindAndModifySpec, now time.Time, res *FindAndModifyResult, r *retry) (bool, error) {
	unlock := x.locks.lock(ns, id)
	defer unlock()
	doc, ok, err := x.eng.Get(ns, id)
	if err != nil || !ok {
		return false, err
	}
	ok, pos, err := flt.Evaluate(doc)
	if err != nil || !ok {
		return false, err
	}
	res.Matched = true
	// The answer is computed before the write: a retryable statement
	// records it in the write's batch.
	shown, out, changed := doc, bson.Raw(nil), false
	if !spec.Remove {
		if out, changed, err = u.Apply(doc, update.ApplyContext{Now: now, MatchPos: pos}); err != nil {
			return true, err
		}
		if changed {
			if err := checkUpdate(ctx, doc, out); err != nil {
				return true, err
			}
		}
		if spec.New {
			shown = out
		}
	}
	if res.Value, err = proj.Apply(shown, pos); err != nil {
		return true, err
	}
	switch {
	case spec.Remove:
		_, err = x.deleteDoc(ctx, ns, id, r, *res)
	case changed:
		res.Updated = true
		err = x.replace(ctx, ns, id, out, r, *res)
		if err != nil {
			res.Updated = false
		}
	}
	return true, err
}
