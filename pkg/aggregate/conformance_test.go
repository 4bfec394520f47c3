package aggregate

import (
	"bytes"
	"context"
	"path/filepath"
	"sort"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/conformance"
	"github.com/psdb/psdb/pkg/expr"
	"github.com/psdb/psdb/pkg/keys"
)

// nodeTarget runs aggregate cases on one node: Parse, then Run.
type nodeTarget struct{ docs []bson.Raw }

func (t *nodeTarget) Reset(docs []bson.Raw) error { t.docs = docs; return nil }

func (t *nodeTarget) Run(c conformance.Case) ([]bson.Raw, error) {
	p, err := Parse(c.Pipeline)
	if err != nil {
		return nil, err
	}
	return p.Run(context.Background(), t.docs)
}

// splitTarget runs the shard part of Split over shards partitions of the
// documents (placed by the hash of _id, as a hashed shard key would) and the
// router part over their merged outputs.
type splitTarget struct {
	docs   []bson.Raw
	shards int
}

func (t *splitTarget) Reset(docs []bson.Raw) error { t.docs = docs; return nil }

func (t *splitTarget) Run(c conformance.Case) ([]bson.Raw, error) {
	p, err := Parse(c.Pipeline)
	if err != nil {
		return nil, err
	}
	shardPart, mergePart := p.Split()
	parts := make([][]bson.Raw, t.shards)
	for _, d := range t.docs {
		h := uint64(keys.Hash(d.Lookup("_id")))
		parts[h%uint64(t.shards)] = append(parts[h%uint64(t.shards)], d)
	}
	outs := make([][]bson.Raw, t.shards)
	for i, part := range parts {
		if outs[i], err = shardPart.Run(context.Background(), part); err != nil {
			return nil, err
		}
	}
	merged := mergePart.MergeSorted(outs)
	got, err := mergePart.Run(context.Background(), merged)
	if err != nil {
		return nil, err
	}
	if arraysUnordered(c.Pipeline) {
		for i, d := range got {
			got[i] = sortArrays(d)
		}
	}
	return got, nil
}

// arraysUnordered reports whether a pipeline builds arrays whose order
// depends on how documents are spread over shards ($push or $addToSet not
// preceded by a $sort): MongoDB does not promise an order then either.
func arraysUnordered(pipeline []bson.Raw) bool {
	for _, st := range pipeline {
		if bytes.Contains(st, []byte("$sort")) {
			return false
		}
		if bytes.Contains(st, []byte("$push")) || bytes.Contains(st, []byte("$addToSet")) {
			return true
		}
	}
	return false
}

// sortArrays sorts every array inside a document (for comparisons where the
// order of array elements is not specified).
func sortArrays(d bson.Raw) bson.Raw {
	var b expr.DocBuilder
	_ = expr.Each(d, func(k string, v bson.RawValue) bool {
		b.Append(k, sortArrayValue(v))
		return true
	})
	return b.Doc()
}

func sortArrayValue(v bson.RawValue) bson.RawValue {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		return expr.Doc(sortArrays(v.Value))
	case bson.TypeArray:
		elems, _ := expr.Elems(v.Value)
		vals := make([]bson.RawValue, len(elems))
		for i, e := range elems {
			vals[i] = sortArrayValue(e.Value)
		}
		sort.SliceStable(vals, func(i, j int) bool { return expr.Compare(vals[i], vals[j]) < 0 })
		return expr.Array(vals)
	}
	return v
}

func loadCases(t *testing.T) []conformance.Case {
	t.Helper()
	cases, err := conformance.LoadFile(filepath.Join("..", "conformance", "testdata", "aggregate.json"))
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

func TestConformance(t *testing.T) {
	conformance.RunAll(t, loadCases(t), &nodeTarget{}, "aggregate")
}

// TestConformanceSplit proves Split correct: every case gives the same
// answer when its shard part runs on 2 or 3 partitions and its router part
// over the merged outputs. Cases whose arrays' order depends on the
// distribution are compared with their arrays sorted.
func TestConformanceSplit(t *testing.T) {
	for _, n := range []int{2, 3} {
		cases := loadCases(t)
		for i := range cases {
			if arraysUnordered(cases[i].Pipeline) {
				for j, d := range cases[i].Expected {
					cases[i].Expected[j] = sortArrays(d)
				}
			}
		}
		conformance.RunAll(t, cases, &splitTarget{shards: n}, "aggregate")
	}
}

func compareDocs(a, b bson.Raw) int {
	return expr.Compare(expr.Doc(a), expr.Doc(b))
}
