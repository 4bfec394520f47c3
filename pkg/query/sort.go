package query

import (
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// SortField is one component of a sort: a dotted path and its direction.
// It is a plain value, read-only once part of a Sort.
type SortField struct {
	Path string
	// Desc is true for -1.
	Desc  bool
	parts []string
}

// Sort is a parsed sort specification. It is immutable and safe for
// concurrent use.
type Sort struct {
	Fields []SortField
	// Natural is 1 or -1 for {$natural: 1|-1} (storage order, or its
	// reverse), 0 otherwise; it excludes Fields.
	Natural int
}

// ParseSort parses {a: 1, b: -1}. Directions must be 1 or -1 (any numeric
// type), else Location15975; {$meta: ...} sorts (text score, search score)
// are refused with BadValue because PSDB has no text search; invalid paths
// get FieldPath's codes (40352 empty, 15998 empty component, 16410 "$"
// prefix); {$natural: 1|-1} is accepted alone. An empty or nil spec
// gives a Sort with no fields (documents keep their order).
func ParseSort(spec bson.Raw) (*Sort, error) {
	s := &Sort{}
	if len(spec) == 0 {
		return s, nil
	}
	if err := spec.Validate(); err != nil {
		return nil, mongoerr.Wrap(err, mongoerr.InvalidBSON, "sort is not a valid BSON document: %v", err)
	}
	it := newElemIter(spec)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		path := string(k)
		if path == "$natural" {
			f, ok := numberAsFloat(v)
			if !ok || (f != 1 && f != -1) {
				return nil, mongoerr.New(mongoerr.BadValue, "$natural sort must be 1 or -1")
			}
			s.Natural = int(f)
			continue
		}
		if err := validateProjPath(path); err != nil {
			return nil, err
		}
		if v.Type == bson.TypeEmbeddedDocument {
			if _, ok := lookupField(v.Value, "$meta"); ok {
				return nil, mongoerr.New(mongoerr.BadValue, "$meta sort on %q is not supported by PSDB (no text or search scores)", path)
			}
			return nil, mongoerr.New(15974, "Illegal key in $sort specification: %s: %s", path, v.String())
		}
		f, ok := numberAsFloat(v)
		if !ok || (f != 1 && f != -1) {
			return nil, mongoerr.New(15975, "$sort key ordering must be 1 (for ascending) or -1 (for descending)")
		}
		s.Fields = append(s.Fields, SortField{Path: path, Desc: f < 0, parts: splitPath(path)})
	}
	if s.Natural != 0 && len(s.Fields) > 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "$natural sort cannot be combined with other sort fields")
	}
	return s, nil
}

// sortKey is the value a document sorts by on one field. empty marks an
// empty array, which sorts below null (and above MinKey) in both
// directions' comparisons, as in MongoDB.
type sortKey struct {
	v     bson.RawValue
	empty bool
}

// keyFor computes a document's sort key for one field: the smallest value
// the path reaches for an ascending sort, the largest for a descending one.
// Arrays at the end of the path contribute their elements (one level); a
// missing field, or a document in a traversed array that lacks the rest of
// the path, contributes null; an empty array contributes the "empty" key.
func keyFor(doc bson.Raw, f *SortField) sortKey {
	var best sortKey
	have := false
	consider := func(k sortKey) {
		if !have {
			best, have = k, true
			return
		}
		c := compareKeys(k, best)
		if (!f.Desc && c < 0) || (f.Desc && c > 0) {
			best = k
		}
	}
	parts := f.parts
	if parts == nil {
		// A SortField built by hand rather than by ParseSort.
		parts = splitPath(f.Path)
	}
	walkDoc(doc, parts, false, -1, func(v bson.RawValue, _ int) bool {
		switch v.Type {
		case 0:
			consider(sortKey{v: nullValue})
		case bson.TypeArray:
			it := newElemIter(v.Value)
			n := 0
			for {
				_, e, ok := it.next()
				if !ok {
					break
				}
				n++
				consider(sortKey{v: e})
			}
			if n == 0 {
				consider(sortKey{empty: true})
			}
		default:
			consider(sortKey{v: v})
		}
		return false
	})
	if !have {
		return sortKey{v: nullValue}
	}
	return best
}

func compareKeys(a, b sortKey) int {
	switch {
	case a.empty && b.empty:
		return 0
	case a.empty:
		if b.v.Type == bson.TypeMinKey {
			return 1
		}
		return -1
	case b.empty:
		if a.v.Type == bson.TypeMinKey {
			return -1
		}
		return 1
	}
	return keys.Compare(a.v, b.v)
}

// Compare orders two documents by the sort: <0 when a sorts first. Values
// compare in MongoDB's type order (pkg/keys); arrays sort by their smallest
// element ascending and their largest descending; missing sorts as null.
func (s *Sort) Compare(a, b bson.Raw) int {
	for i := range s.Fields {
		f := &s.Fields[i]
		c := compareKeys(keyFor(a, f), keyFor(b, f))
		if f.Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// SortKeys returns the sort key values of doc, one per field (an empty
// array is reported as an empty array value), for callers that merge
// sorted streams and need to carry keys along.
func (s *Sort) SortKeys(doc bson.Raw) []bson.RawValue {
	out := make([]bson.RawValue, len(s.Fields))
	for i := range s.Fields {
		k := keyFor(doc, &s.Fields[i])
		if k.empty {
			out[i] = bson.RawValue{Type: bson.TypeArray, Value: []byte{5, 0, 0, 0, 0}}
			continue
		}
		out[i] = k.v
	}
	return out
}

// SortDocs sorts docs in place by s; the sort is stable (equal documents
// keep their order). Each document's key is computed once. {$natural: -1}
// reverses docs. Documents with parallel arrays on two sort paths (which
// Find refuses) are sorted by their min/max keys anyway.
func SortDocs(docs []bson.Raw, s *Sort) {
	if s == nil || len(docs) < 2 {
		return
	}
	if s.Natural < 0 {
		slices.Reverse(docs)
	}
	if len(s.Fields) == 0 {
		return
	}
	idx, _ := sortIndex(len(docs), s, func(i int) bson.Raw { return docs[i] })
	sorted := make([]bson.Raw, len(docs))
	for i, j := range idx {
		sorted[i] = docs[j]
	}
	copy(docs, sorted)
}

// SortDocsChecked sorts like SortDocs and returns BadValue when a document
// has parallel arrays on two sort paths, as a find's SORT stage does.
func SortDocsChecked(docs []bson.Raw, s *Sort) error {
	if s == nil || len(s.Fields) < 2 {
		SortDocs(docs, s)
		return nil
	}
	if s.Natural < 0 {
		slices.Reverse(docs)
	}
	idx, err := sortIndex(len(docs), s, func(i int) bson.Raw { return docs[i] })
	if err != nil {
		return err
	}
	sorted := make([]bson.Raw, len(docs))
	for i, j := range idx {
		sorted[i] = docs[j]
	}
	copy(docs, sorted)
	return nil
}

// sortIndex returns the permutation that sorts n documents stably, and
// BadValue if a document has parallel arrays on two sort paths (MongoDB
// cannot build its sort key; the permutation is still complete).
func sortIndex(n int, s *Sort, doc func(int) bson.Raw) ([]int, error) {
	nf := len(s.Fields)
	ks := make([]sortKey, n*nf)
	var err error
	for i := 0; i < n; i++ {
		d := doc(i)
		for j := range s.Fields {
			ks[i*nf+j] = keyFor(d, &s.Fields[j])
		}
		if nf > 1 && err == nil && hasParallelArrays(d, s.Fields) {
			err = mongoerr.New(mongoerr.BadValue, "cannot sort with keys that are parallel arrays")
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(x, y int) int {
		for j := range s.Fields {
			c := compareKeys(ks[x*nf+j], ks[y*nf+j])
			if s.Fields[j].Desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	return idx, err
}

// hasParallelArrays reports whether two sort paths reach arrays of which
// neither contains the other (e.g. {a: [1], b: [2]} sorted by a and b).
func hasParallelArrays(doc bson.Raw, fields []SortField) bool {
	var per [][]string
	for i := range fields {
		var paths []string
		parts := fields[i].parts
		if parts == nil {
			parts = splitPath(fields[i].Path)
		}
		collectArrayPaths(doc, parts, "", &paths)
		if len(paths) > 0 {
			per = append(per, paths)
		}
	}
	for i := 0; i < len(per); i++ {
		for j := i + 1; j < len(per); j++ {
			for _, p := range per[i] {
				for _, q := range per[j] {
					if !pathPrefix(p, q) && !pathPrefix(q, p) {
						return true
					}
				}
			}
		}
	}
	return false
}

func pathPrefix(p, q string) bool {
	return p == q || (strings.HasPrefix(q, p) && q[len(p)] == '.')
}

// collectArrayPaths records the (index-free) paths of the arrays that
// parts traverses or ends on in doc.
func collectArrayPaths(doc []byte, parts []string, prefix string, out *[]string) {
	v, ok := lookupField(doc, parts[0])
	if !ok {
		return
	}
	path := parts[0]
	if prefix != "" {
		path = prefix + "." + parts[0]
	}
	switch v.Type {
	case bson.TypeArray:
		if !slices.Contains(*out, path) {
			*out = append(*out, path)
		}
		if len(parts) == 1 {
			return
		}
		it := newElemIter(v.Value)
		for {
			_, e, ok := it.next()
			if !ok {
				return
			}
			if e.Type == bson.TypeEmbeddedDocument {
				collectArrayPaths(e.Value, parts[1:], path, out)
			}
		}
	case bson.TypeEmbeddedDocument:
		if len(parts) > 1 {
			collectArrayPaths(v.Value, parts[1:], path, out)
		}
	}
}
