package executor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/conformance"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/plan"
	"github.com/psdb/psdb/pkg/query"
	"github.com/psdb/psdb/shardd/storage"
)

const corpusDir = "../../pkg/conformance/testdata"

// storeTarget plays conformance cases against a real Pebble store through
// the executor. With indexed set, every path the case's filter (or sort)
// names gets an index first, so the same answers must come out of index
// scans as out of collection scans.
type storeTarget struct {
	t       *testing.T
	eng     *storage.Engine
	x       *Executor
	indexed bool
	n       int
	ns      string
	ixscans int // finds that ran on an index scan
}

func (s *storeTarget) Reset(docs []bson.Raw) error {
	s.n++
	s.ns = fmt.Sprintf("test.c%d", s.n)
	ctx := context.Background()
	if err := s.eng.CreateCollection(ctx, s.ns); err != nil {
		return err
	}
	if len(docs) > 0 {
		res, err := s.eng.Insert(ctx, s.ns, docs, storage.WriteOptions{Ordered: true})
		if err != nil {
			return err
		}
		for _, r := range res {
			if r.Err != nil {
				return r.Err
			}
		}
	}
	return nil
}

func (s *storeTarget) addIndexes(c conformance.Case) {
	if !s.indexed {
		return
	}
	paths := map[string]bool{}
	if f, err := query.ParseFilter(c.Filter); err == nil {
		for _, p := range f.Predicates() {
			paths[p.Path] = true
		}
	}
	if srt, err := query.ParseSort(c.Sort); err == nil {
		for _, f := range srt.Fields {
			paths[f.Path] = true
		}
	}
	var list []string
	for p := range paths {
		if p != "_id" {
			list = append(list, p)
		}
	}
	sort.Strings(list)
	ctx := context.Background()
	for _, p := range list {
		// Parallel arrays or other data an index refuses are fine: the
		// case then runs with the indexes that could be built.
		_, _ = s.eng.CreateIndex(ctx, s.ns, storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: p}}})
		_, _ = s.eng.CreateIndex(ctx, s.ns, storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: p, Desc: true}}, Name: p + "_desc"})
	}
	if len(list) >= 2 {
		_, _ = s.eng.CreateIndex(ctx, s.ns, storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: list[0]}, {Field: list[1]}}})
	}
}

func (s *storeTarget) Run(c conformance.Case) ([]bson.Raw, error) {
	s.addIndexes(c)
	ctx := context.Background()
	switch c.Op {
	case "find":
		spec := FindSpec{Filter: c.Filter, Projection: c.Projection, Sort: c.Sort, Skip: c.Skip, Limit: c.Limit}
		if p, err := s.x.Plan(s.ns, spec); err == nil && p.Kind == plan.IndexScan {
			s.ixscans++
		}
		return s.x.FindAll(ctx, s.ns, FindSpec{Filter: c.Filter, Projection: c.Projection, Sort: c.Sort, Skip: c.Skip, Limit: c.Limit})
	case "count":
		n, err := s.x.Count(ctx, s.ns, c.Filter, c.Skip, c.Limit)
		if err != nil {
			return nil, err
		}
		return []bson.Raw{mustMarshal(bson.D{{Key: "n", Value: n}})}, nil
	case "distinct":
		vals, err := s.x.Distinct(ctx, s.ns, c.Key, c.Filter)
		if err != nil {
			return nil, err
		}
		arr := bson.A{}
		for _, v := range vals {
			arr = append(arr, v)
		}
		return []bson.Raw{mustMarshal(bson.D{{Key: "values", Value: arr}})}, nil
	case "update":
		if _, err := s.x.Update(ctx, s.ns, UpdateSpec{Filter: c.Filter, Update: c.Update, ArrayFilters: c.ArrayFilters, Multi: c.Multi, Upsert: c.Upsert}); err != nil {
			return nil, err
		}
		return s.all()
	case "delete":
		limit := int64(1)
		if c.Multi {
			limit = 0
		}
		if _, err := s.x.Delete(ctx, s.ns, DeleteSpec{Filter: c.Filter, Limit: limit}); err != nil {
			return nil, err
		}
		return s.all()
	case "aggregate":
		return s.x.Aggregate(ctx, s.ns, c.Pipeline)
	}
	return nil, fmt.Errorf("unknown op %q", c.Op)
}

// all returns the collection in _id order.
func (s *storeTarget) all() ([]bson.Raw, error) {
	docs, err := s.x.FindAll(context.Background(), s.ns, FindSpec{})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(docs, func(i, j int) bool {
		return keys.Compare(docs[i].Lookup("_id"), docs[j].Lookup("_id")) < 0
	})
	return docs, nil
}

func openStore(t testing.TB) *storage.Engine {
	t.Helper()
	eng, err := storage.Open(t.TempDir(), storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng
}

// TestConformance runs the whole query corpus (find, count, distinct,
// update, delete, aggregate) through the planner, the executor and a real
// Pebble store, once with only the _id index and once with indexes on
// every filtered and sorted path.
func TestConformance(t *testing.T) {
	cases, err := conformance.Load(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, indexed := range []bool{false, true} {
		t.Run(fmt.Sprintf("indexed=%v", indexed), func(t *testing.T) {
			eng := openStore(t)
			target := &storeTarget{t: t, eng: eng, x: New(eng), indexed: indexed}
			conformance.RunAll(t, cases, target)
			t.Logf("%d finds used an index scan", target.ixscans)
			if indexed && target.ixscans < 50 {
				t.Errorf("only %d finds used an index: the indexed run does not exercise the planner", target.ixscans)
			}
		})
	}
}

// Upsert cases may depend on a generated _id; they are compared by the
// corpus itself. This checks the error type contract the router relies on.
func TestErrorsCarryCodes(t *testing.T) {
	eng := openStore(t)
	x := New(eng)
	_, err := x.FindAll(context.Background(), "db.c", FindSpec{Filter: mustMarshal(bson.D{{Key: "a", Value: bson.D{{Key: "$foo", Value: 1}}}})})
	var me *mongoerr.Error
	if !errors.As(err, &me) || me.Code != mongoerr.BadValue {
		t.Fatalf("want BadValue, got %v", err)
	}
}
