package update

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/conformance"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
)

// memTarget is a collection held in memory: the query library on one
// node, with no storage, so the corpus checks the update semantics alone.
type memTarget struct {
	docs []bson.Raw
	now  time.Time
}

func (m *memTarget) Reset(docs []bson.Raw) error {
	m.docs = append([]bson.Raw(nil), docs...)
	return nil
}

func (m *memTarget) Run(c conformance.Case) ([]bson.Raw, error) {
	f, err := query.ParseFilter(c.Filter)
	if err != nil {
		return nil, err
	}
	switch c.Op {
	case "update":
		if err := m.update(c, f); err != nil {
			return nil, err
		}
	case "delete":
		kept := m.docs[:0:0]
		deleted := false
		for _, d := range m.docs {
			ok, _, err := f.Evaluate(d)
			if err != nil {
				return nil, err
			}
			if ok && (c.Multi || !deleted) {
				deleted = true
				continue
			}
			kept = append(kept, d)
		}
		m.docs = kept
	default:
		return nil, mongoerr.New(mongoerr.CommandNotSupported, "op %s", c.Op)
	}
	out := append([]bson.Raw(nil), m.docs...)
	sort.SliceStable(out, func(i, j int) bool {
		return keys.Compare(out[i].Lookup("_id"), out[j].Lookup("_id")) < 0
	})
	return out, nil
}

func (m *memTarget) update(c conformance.Case, f *query.Filter) error {
	u, err := Parse(c.Update, Options{ArrayFilters: c.ArrayFilters})
	if err != nil {
		return err
	}
	if c.Multi && u.IsReplacement() {
		return mongoerr.New(mongoerr.FailedToParse, "multi update is not supported for replacement-style update")
	}
	matched := false
	for i, d := range m.docs {
		ok, pos, err := f.Evaluate(d)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		matched = true
		out, _, err := u.Apply(d, ApplyContext{Now: m.now, MatchPos: pos})
		if err != nil {
			return err
		}
		m.docs[i] = out
		if !c.Multi {
			break
		}
	}
	if !matched && c.Upsert {
		nd, err := UpsertDocument(c.Filter, u, ApplyContext{Now: m.now, MatchPos: -1})
		if err != nil {
			return err
		}
		// The store refuses top-level $-prefixed field names in every
		// document it keeps (shardd/storage); mirror that rule here.
		if elems, err := nd.Elements(); err == nil {
			for _, e := range elems {
				if strings.HasPrefix(e.Key(), "$") {
					return mongoerr.New(mongoerr.DollarPrefixedFieldName, "Document can't have $ prefixed field names: %s", e.Key())
				}
			}
		}
		m.docs = append(m.docs, nd)
	}
	return nil
}

func TestConformance(t *testing.T) {
	cases, err := conformance.LoadFile(filepath.Join("..", "conformance", "testdata", "update.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 100 {
		t.Fatalf("update corpus has %d cases, want at least 100", len(cases))
	}
	conformance.RunAll(t, cases, &memTarget{now: fixedNow}, "update", "delete")
}
