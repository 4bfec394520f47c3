package storage

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

const testNS = "db.coll"

func openTest(t testing.TB, opts Options) *Engine {
	t.Helper()
	return openDir(t, t.TempDir(), opts)
}

func openDir(t testing.TB, dir string, opts Options) *Engine {
	t.Helper()
	e, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil && err != ErrClosed {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func mustDoc(t testing.TB, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatalf("marshal %v: %v", d, err)
	}
	return b
}

// rv returns x as a bson.RawValue.
func rv(t testing.TB, x any) bson.RawValue {
	t.Helper()
	b, err := bson.Marshal(bson.D{{Key: "v", Value: x}})
	if err != nil {
		t.Fatalf("marshal %v: %v", x, err)
	}
	return bson.Raw(b).Lookup("v")
}

func insertOK(t testing.TB, e *Engine, ns string, docs ...bson.D) []WriteResult {
	t.Helper()
	raws := make([]bson.Raw, len(docs))
	for i, d := range docs {
		raws[i] = mustDoc(t, d)
	}
	res, err := e.Insert(context.Background(), ns, raws, WriteOptions{Ordered: true})
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("Insert doc %d (%v): %v", i, docs[i], r.Err)
		}
	}
	if len(res) != len(docs) {
		t.Fatalf("Insert: %d results for %d docs", len(res), len(docs))
	}
	return res
}

func wantCode(t testing.TB, err error, code mongoerr.Code) {
	t.Helper()
	if got := mongoerr.CodeOf(err); got != code {
		t.Fatalf("error %v: code %v, want %v", err, got, code)
	}
}

// scanIDs returns the _ids an iterator yields, as strings, and closes it.
func scanIDs(t testing.TB, it *Iter, err error) []string {
	t.Helper()
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	defer func() { _ = it.Close() }()
	var out []string
	for it.Next() {
		out = append(out, shell(it.ID()))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

// countKeys counts the Pebble keys with the given prefix.
func countKeys(t testing.TB, e *Engine, prefix []byte) int {
	t.Helper()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

// rawState returns every key and value of the store except the ones that a
// refused write may legitimately leave different (none: any difference is a
// half-written write).
func rawState(t testing.TB, e *Engine) []byte {
	t.Helper()
	it, err := e.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for ok := it.First(); ok; ok = it.Next() {
		buf.Write(it.Key())
		buf.WriteByte(0xff)
		buf.Write(it.Value())
		buf.WriteByte(0xfe)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustValid(t testing.TB, e *Engine, ns string) ValidateResult {
	t.Helper()
	res, err := e.Validate(context.Background(), ns)
	if err != nil {
		t.Fatalf("Validate(%s): %v", ns, err)
	}
	if !res.Valid {
		t.Fatalf("Validate(%s) not valid: %v %v", ns, res.Errors, res.Warnings)
	}
	return res
}

// shell formats v as mongod prints it in messages (1, 2.0, "s").
func shell(v bson.RawValue) string {
	var b strings.Builder
	writeShellValue(&b, v)
	return b.String()
}
