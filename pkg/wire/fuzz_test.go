package wire

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/psdb/psdb/pkg/mongoerr"
)

var writeCorpus = flag.Bool("wire.write-corpus", false, "rewrite testdata/fuzz/FuzzReadMessage from the table tests")

// fuzzSeeds are the encodings of every round-trip case and every malformed
// case.
func fuzzSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for _, tc := range roundTripCases(t) {
		seeds["ok "+tc.name] = encode(t, tc.h, tc.body)
	}
	for _, tc := range malformedCases(t) {
		if tc.maxSize == 0 { // the fuzz target uses the default limit
			seeds["bad "+tc.name] = tc.in
		}
	}
	return seeds
}

// TestWriteFuzzCorpus regenerates the checked-in seed corpus when run with
// -wire.write-corpus; otherwise it checks that the corpus exists.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReadMessage")
	if !*writeCorpus {
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) == 0 {
			t.Fatalf("seed corpus %s missing (run go test -run TestWriteFuzzCorpus -wire.write-corpus): %v", dir, err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range fuzzSeeds(t) {
		file := filepath.Join(dir, "seed-"+sanitize(name))
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sanitize(s string) string {
	out := []byte(s)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			out[i] = '_'
		}
	}
	return string(out)
}

// FuzzReadMessage: arbitrary bytes never panic, every error is one of the
// package's kinds with a MongoDB code where one is due, and whatever
// decodes re-encodes to a message that decodes to the same thing.
func FuzzReadMessage(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, body, err := decode(in, 0)
		if err != nil {
			switch {
			case errors.Is(err, ErrClientGone):
			case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnsupported):
				if _, ok := mongoerr.As(err); !ok {
					t.Fatalf("error without a MongoDB code: %v", err)
				}
			default:
				t.Fatalf("unclassified error: %v", err)
			}
			if body != nil {
				t.Fatalf("body returned with error %v", err)
			}
			return
		}
		if m, ok := body.(*OpMsg); ok {
			if cmd, err := m.Command(); err == nil {
				if err := validateDocument(cmd); err != nil {
					t.Fatalf("Command() built an invalid document: %v", err)
				}
			}
		}
		out := encode(t, *h, body)
		if len(out) != int(h.MessageLength) {
			t.Fatalf("re-encoded %d bytes, original message %d", len(out), h.MessageLength)
		}
		h2, body2, err := decode(out, 0)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if *h2 != *h {
			t.Fatalf("header %+v, then %+v", *h, *h2)
		}
		if !reflect.DeepEqual(body, body2) {
			t.Fatalf("body %s, then %s", body, body2)
		}
		if out2 := encode(t, *h2, body2); !bytes.Equal(out, out2) {
			t.Fatal("encoding is not stable")
		}
	})
}
