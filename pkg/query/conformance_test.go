package query

import (
	"fmt"
	"path/filepath"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/conformance"
)

// sliceTarget runs conformance cases with Find/Count/Distinct over an
// in-memory slice: the one-node reference the router later must agree with.
type sliceTarget struct {
	docs []bson.Raw
}

func (s *sliceTarget) Reset(docs []bson.Raw) error {
	s.docs = append([]bson.Raw(nil), docs...)
	return nil
}

func (s *sliceTarget) Run(c conformance.Case) ([]bson.Raw, error) {
	switch c.Op {
	case "find":
		return Find(s.docs, FindSpec{Filter: c.Filter, Projection: c.Projection, Sort: c.Sort, Skip: c.Skip, Limit: c.Limit})
	case "count":
		n, err := Count(s.docs, c.Filter, c.Skip, c.Limit)
		if err != nil {
			return nil, err
		}
		d, err := bson.Marshal(bson.D{{Key: "n", Value: n}})
		return []bson.Raw{d}, err
	case "distinct":
		vals, err := Distinct(s.docs, c.Key, c.Filter)
		if err != nil {
			return nil, err
		}
		arr := bson.A{}
		for _, v := range vals {
			arr = append(arr, v)
		}
		d, err := bson.Marshal(bson.D{{Key: "values", Value: arr}})
		return []bson.Raw{d}, err
	}
	return nil, fmt.Errorf("sliceTarget: unsupported op %q", c.Op)
}

func TestConformanceFind(t *testing.T) {
	cases, err := conformance.LoadFile(filepath.Join("..", "conformance", "testdata", "find.json"))
	if err != nil {
		t.Fatal(err)
	}
	conformance.RunAll(t, cases, &sliceTarget{}, "find", "count", "distinct")
}
