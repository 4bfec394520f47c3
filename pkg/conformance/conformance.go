// Package conformance owns PSDB's query conformance corpus: cases written as
// data (documents, an operation, MongoDB's documented answer) in
// testdata/*.json, and a runner that plays them against any Target.
//
// The same corpus runs against the query library on one node and, in later
// integration tests, through a router against a sharded collection, so the
// cases must not depend on how a target stores or distributes documents.
// Each case states MongoDB's documented behaviour; a known difference from
// MongoDB is written in the case's "notes" with the reason, never hidden by
// changing the expected answer. This package must never import a package
// that executes queries: targets are given to it.
package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// Case is one conformance case. Files hold {"cases": [Case, ...]} in
// MongoDB extended JSON (relaxed or canonical).
type Case struct {
	Name string `bson:"name"`
	// Docs is the collection's content before the operation.
	Docs []bson.Raw `bson:"docs"`
	// Op is "find", "update", "delete", "aggregate", "count" or "distinct".
	Op         string   `bson:"op"`
	Filter     bson.Raw `bson:"filter,omitempty"`
	Projection bson.Raw `bson:"projection,omitempty"`
	Sort       bson.Raw `bson:"sort,omitempty"`
	Skip       int64    `bson:"skip,omitempty"`
	Limit      int64    `bson:"limit,omitempty"`
	// Update is an update document (operators or a replacement).
	Update       bson.Raw   `bson:"update,omitempty"`
	ArrayFilters []bson.Raw `bson:"arrayFilters,omitempty"`
	Upsert       bool       `bson:"upsert,omitempty"`
	Multi        bool       `bson:"multi,omitempty"`
	Pipeline     []bson.Raw `bson:"pipeline,omitempty"`
	// Key is the field of a distinct.
	Key string `bson:"key,omitempty"`
	// Expected is the answer: find and aggregate return documents; update
	// and delete return the collection's content afterwards (compared in
	// _id order); count returns [{n: N}]; distinct returns [{values: [...]}].
	Expected []bson.Raw `bson:"expected,omitempty"`
	// Ordered says the order of Expected matters (a sort is part of the case).
	Ordered bool `bson:"ordered,omitempty"`
	// ExpectedError, when not 0, is the MongoDB error code the operation
	// must fail with; Expected is then ignored.
	ExpectedError int32 `bson:"expectedError,omitempty"`
	// Notes explains the case or a known difference from MongoDB.
	Notes string `bson:"notes,omitempty"`
	// File is the file the case came from (set by Load).
	File string `bson:"-"`
}

type file struct {
	Cases []Case `bson:"cases"`
}

// LoadFile reads the cases of one file.
func LoadFile(path string) ([]Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read conformance file: %w", err)
	}
	var f file
	if err := bson.UnmarshalExtJSON(data, false, &f); err != nil {
		return nil, fmt.Errorf("parse conformance file %s: %w", path, err)
	}
	seen := make(map[string]bool, len(f.Cases))
	for i := range f.Cases {
		c := &f.Cases[i]
		c.File = filepath.Base(path)
		if c.Name == "" || c.Op == "" {
			return nil, fmt.Errorf("%s: case %d needs a name and an op", path, i)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%s: duplicate case name %q", path, c.Name)
		}
		seen[c.Name] = true
	}
	return f.Cases, nil
}

// Load reads every *.json file of dir, in name order.
func Load(dir string) ([]Case, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var all []Case
	for _, p := range paths {
		cs, err := LoadFile(p)
		if err != nil {
			return nil, err
		}
		all = append(all, cs...)
	}
	return all, nil
}

// Target executes cases. Reset replaces the collection's content; Run
// executes the case's operation and returns its answer in the shape
// described on Case.Expected, or an error carrying a MongoDB code.
type Target interface {
	Reset(docs []bson.Raw) error
	Run(c Case) ([]bson.Raw, error)
}

// RunAll runs every case whose op the target supports (ops nil = all) as a
// subtest.
func RunAll(t *testing.T, cases []Case, target Target, ops ...string) {
	t.Helper()
	want := make(map[string]bool)
	for _, op := range ops {
		want[op] = true
	}
	ran := 0
	for _, c := range cases {
		if len(want) > 0 && !want[c.Op] {
			continue
		}
		ran++
		c := c
		t.Run(c.File+"/"+c.Name, func(t *testing.T) {
			if err := target.Reset(c.Docs); err != nil {
				t.Fatalf("reset: %v", err)
			}
			got, err := target.Run(c)
			if msg := Check(c, got, err); msg != "" {
				t.Errorf("%s", msg)
			}
		})
	}
	if ran == 0 {
		t.Fatalf("no conformance case ran for ops %v", ops)
	}
}

// Check compares an answer with the case's expectation and returns a
// description of the difference, or "" when they agree.
func Check(c Case, got []bson.Raw, err error) string {
	if c.ExpectedError != 0 {
		if err == nil {
			return fmt.Sprintf("want error code %d, got result %s", c.ExpectedError, Format(got))
		}
		if code := mongoerr.CodeOf(err); int32(code) != c.ExpectedError {
			return fmt.Sprintf("want error code %d, got %d (%v)", c.ExpectedError, code, err)
		}
		return ""
	}
	if err != nil {
		return fmt.Sprintf("unexpected error: %v", err)
	}
	if !c.Ordered {
		got, want := sortedCopy(got), sortedCopy(c.Expected)
		if !Equal(got, want) {
			return fmt.Sprintf("results differ (order ignored)\n got: %s\nwant: %s", Format(got), Format(want))
		}
		return ""
	}
	if !Equal(got, c.Expected) {
		return fmt.Sprintf("results differ\n got: %s\nwant: %s", Format(got), Format(c.Expected))
	}
	return ""
}

// Equal reports whether two document lists are equal element by element.
// Documents compare as MongoDB compares them: field order matters, numbers
// compare by value whatever their BSON type.
func Equal(a, b []bson.Raw) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if keys.Compare(docValue(a[i]), docValue(b[i])) != 0 {
			return false
		}
	}
	return true
}

func docValue(d bson.Raw) bson.RawValue {
	return bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: d}
}

func sortedCopy(docs []bson.Raw) []bson.Raw {
	out := append([]bson.Raw(nil), docs...)
	sort.SliceStable(out, func(i, j int) bool {
		return keys.Compare(docValue(out[i]), docValue(out[j])) < 0
	})
	return out
}

// Format renders documents as relaxed extended JSON for messages.
func Format(docs []bson.Raw) string {
	parts := make([]string, len(docs))
	for i, d := range docs {
		b, err := bson.MarshalExtJSON(d, false, false)
		if err != nil {
			parts[i] = fmt.Sprintf("<invalid: %v>", err)
			continue
		}
		parts[i] = string(b)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
