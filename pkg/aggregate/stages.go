package aggregate

import (
	"context"
	"errors"
	"io"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/expr"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
)

// mapSource applies fn to each input document; fn returns nil to drop it.
type mapSource struct {
	in Source
	fn func(doc bson.Raw) (bson.Raw, error)
}

func (m *mapSource) Next(ctx context.Context) (bson.Raw, error) {
	for {
		d, err := m.in.Next(ctx)
		if err != nil {
			return nil, err
		}
		out, err := m.fn(d)
		if err != nil {
			return nil, err
		}
		if out != nil {
			return out, nil
		}
	}
}

// ---- $match ----

type matchStage struct{ filter *query.Filter }

func parseMatch(arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(15959, "the match filter must be an expression in an object")
	}
	f, err := query.ParseFilter(bson.Raw(arg.Value))
	if err != nil {
		return nil, err
	}
	return &matchStage{filter: f}, nil
}

func (*matchStage) kind() string { return "$match" }

func (s *matchStage) open(in Source, _ *runtime) Source {
	return &mapSource{in: in, fn: func(d bson.Raw) (bson.Raw, error) {
		ok, _, err := s.filter.Evaluate(d)
		if err != nil || !ok {
			return nil, err
		}
		return d, nil
	}}
}

// ---- $skip and $limit ----

type skipStage struct{ n int64 }

type limitStage struct{ n int64 }

// integralArg returns a stage argument as an int64 when it is a number
// with an integral value.
func integralArg(v bson.RawValue) (int64, bool, bool) {
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
	default:
		return 0, false, false
	}
	f, ok := v.AsFloat64OK()
	if v.Type == bson.TypeInt64 {
		i, _ := v.Int64OK()
		return i, true, true
	}
	if v.Type == bson.TypeInt32 {
		i, _ := v.Int32OK()
		return int64(i), true, true
	}
	if !ok {
		d, _ := v.Decimal128OK()
		bi, exp, err := d.BigInt()
		if err != nil || exp != 0 || !bi.IsInt64() {
			return 0, true, false
		}
		return bi.Int64(), true, true
	}
	if f != float64(int64(f)) || f >= 9.2e18 || f <= -9.2e18 {
		return 0, true, false
	}
	return int64(f), true, true
}

func parseSkip(arg bson.RawValue) (stage, error) {
	n, isNum, ok := integralArg(arg)
	if !isNum || !ok {
		return nil, mongoerr.New(15972, "Argument to $skip must be a number")
	}
	if n < 0 {
		return nil, mongoerr.New(15956, "Argument to $skip cannot be negative")
	}
	return &skipStage{n: n}, nil
}

func (*skipStage) kind() string { return "$skip" }

func (s *skipStage) open(in Source, _ *runtime) Source {
	left := s.n
	return &mapSource{in: in, fn: func(d bson.Raw) (bson.Raw, error) {
		if left > 0 {
			left--
			return nil, nil
		}
		return d, nil
	}}
}

func parseLimit(arg bson.RawValue) (stage, error) {
	n, isNum, ok := integralArg(arg)
	if !isNum || !ok {
		return nil, mongoerr.New(15957, "the limit must be specified as a number")
	}
	if n <= 0 {
		return nil, mongoerr.New(15958, "the limit must be positive")
	}
	return &limitStage{n: n}, nil
}

func (*limitStage) kind() string { return "$limit" }

type limitSource struct {
	in   Source
	left int64
}

// Next stops reading its input once the limit is reached, so an upstream
// stage is not drained needlessly.
func (l *limitSource) Next(ctx context.Context) (bson.Raw, error) {
	if l.left <= 0 {
		return nil, io.EOF
	}
	d, err := l.in.Next(ctx)
	if err != nil {
		return nil, err
	}
	l.left--
	return d, nil
}

func (s *limitStage) open(in Source, _ *runtime) Source { return &limitSource{in: in, left: s.n} }

// ---- $sort ----

type sortStage struct {
	spec bson.Raw
	sort *query.Sort
	// limit, when > 0, is how many leading documents the stage must
	// produce (a following $limit, plus any $skip before it).
	limit int64
}

func parseSort(arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(15973, "the $sort key specification must be an object")
	}
	elems, err := expr.Elems(arg.Value)
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in $sort")
	}
	if len(elems) == 0 {
		return nil, mongoerr.New(15976, "$sort stage must have at least one sort key")
	}
	s, err := query.ParseSort(bson.Raw(arg.Value))
	if err != nil {
		return nil, err
	}
	return &sortStage{spec: bson.Raw(arg.Value), sort: s}, nil
}

func (*sortStage) kind() string { return "$sort" }

func (s *sortStage) open(in Source, rt *runtime) Source {
	return &blockingSource{fill: func(ctx context.Context) ([]bson.Raw, error) {
		if s.limit > 0 && s.sort.Natural == 0 {
			return s.topK(ctx, in, rt)
		}
		var docs []bson.Raw
		var mem int64
		for {
			d, err := in.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
			docs = append(docs, d)
			mem += int64(len(d)) + 24
			if mem > rt.memLimit {
				return nil, memErr("$sort", rt.memLimit)
			}
		}
		// SortDocs computes each document's key once and is stable.
		query.SortDocs(docs, s.sort)
		if s.limit > 0 && int64(len(docs)) > s.limit {
			docs = docs[:s.limit]
		}
		return docs, nil
	}}
}

// keyedDoc is a document with its sort keys, computed once, and its input
// position (the tie-breaker that keeps the sort stable).
type keyedDoc struct {
	keys []bson.RawValue
	doc  bson.Raw
	seq  int64
}

func (s *sortStage) compareKeyed(a, b *keyedDoc) int {
	for i := range s.sort.Fields {
		c := compareSortKey(a.keys[i], b.keys[i])
		if s.sort.Fields[i].Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	switch {
	case a.seq < b.seq:
		return -1
	case a.seq > b.seq:
		return 1
	}
	return 0
}

// compareSortKey orders two sort keys as query.Sort does: an empty array
// key sorts below everything but MinKey.
func compareSortKey(a, b bson.RawValue) int {
	ea := a.Type == bson.TypeArray && len(a.Value) <= 5
	eb := b.Type == bson.TypeArray && len(b.Value) <= 5
	switch {
	case ea && eb:
		return 0
	case ea:
		if b.Type == bson.TypeMinKey {
			return 1
		}
		return -1
	case eb:
		if a.Type == bson.TypeMinKey {
			return -1
		}
		return 1
	}
	return keys.Compare(a, b)
}

// topK keeps the first s.limit documents in sort order in a max-heap (the
// document that sorts last on top), so memory is bounded by the limit.
func (s *sortStage) topK(ctx context.Context, in Source, rt *runtime) ([]bson.Raw, error) {
	var heap []*keyedDoc
	var mem int64
	less := func(i, j int) bool { return s.compareKeyed(heap[i], heap[j]) > 0 }
	down := func(i int) {
		for {
			l, r, m := 2*i+1, 2*i+2, i
			if l < len(heap) && less(l, m) {
				m = l
			}
			if r < len(heap) && less(r, m) {
				m = r
			}
			if m == i {
				return
			}
			heap[i], heap[m] = heap[m], heap[i]
			i = m
		}
	}
	up := func(i int) {
		for i > 0 {
			p := (i - 1) / 2
			if !less(i, p) {
				return
			}
			heap[i], heap[p] = heap[p], heap[i]
			i = p
		}
	}
	var seq int64
	for {
		d, err := in.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		kd := &keyedDoc{keys: s.sort.SortKeys(d), doc: d, seq: seq}
		seq++
		if int64(len(heap)) < s.limit {
			heap = append(heap, kd)
			up(len(heap) - 1)
			mem += int64(len(d)) + 64
			if mem > rt.memLimit {
				return nil, memErr("$sort", rt.memLimit)
			}
			continue
		}
		if s.compareKeyed(kd, heap[0]) < 0 {
			mem += int64(len(d) - len(heap[0].doc))
			heap[0] = kd
			down(0)
		}
	}
	sort.Slice(heap, func(i, j int) bool { return s.compareKeyed(heap[i], heap[j]) < 0 })
	out := make([]bson.Raw, len(heap))
	for i, kd := range heap {
		out[i] = kd.doc
	}
	return out, nil
}

func memErr(stage string, limit int64) error {
	return mongoerr.New(mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed, "Exceeded memory limit for %s, but didn't allow external spilling; the stage may hold at most %d bytes", stage, limit)
}

// blockingSource fills itself on the first Next, then replays the result.
type blockingSource struct {
	fill func(ctx context.Context) ([]bson.Raw, error)
	docs []bson.Raw
	done bool
	i    int
}

func (b *blockingSource) Next(ctx context.Context) (bson.Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !b.done {
		docs, err := b.fill(ctx)
		if err != nil {
			return nil, err
		}
		b.docs, b.done = docs, true
	}
	if b.i >= len(b.docs) {
		b.docs = nil
		return nil, io.EOF
	}
	d := b.docs[b.i]
	b.docs[b.i] = nil
	b.i++
	return d, nil
}

// ---- $unwind ----

type unwindStage struct {
	path          []string
	field         string
	indexField    string
	preserveEmpty bool
}

func parseUnwind(arg bson.RawValue) (stage, error) {
	u := &unwindStage{}
	var path string
	switch arg.Type {
	case bson.TypeString:
		path, _ = arg.StringValueOK()
	case bson.TypeEmbeddedDocument:
		elems, err := expr.Elems(arg.Value)
		if err != nil {
			return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in $unwind")
		}
		havePath := false
		for _, el := range elems {
			switch el.Key {
			case "path":
				s, ok := el.Value.StringValueOK()
				if !ok || el.Value.Type != bson.TypeString {
					return nil, mongoerr.New(28808, "expected a string as the path for $unwind stage, got %s", expr.TypeName(el.Value))
				}
				path, havePath = s, true
			case "includeArrayIndex":
				s, ok := el.Value.StringValueOK()
				if !ok || el.Value.Type != bson.TypeString {
					return nil, mongoerr.New(28810, "expected a non-empty string for the includeArrayIndex option to $unwind stage, got %s", expr.TypeName(el.Value))
				}
				if s == "" {
					return nil, mongoerr.New(28810, "expected a non-empty string for the includeArrayIndex option to $unwind stage")
				}
				if strings.HasPrefix(s, "$") {
					return nil, mongoerr.New(28822, "includeArrayIndex option to $unwind stage should not be prefixed with a '$': %s", s)
				}
				if _, err := expr.ParsePath(s); err != nil {
					return nil, err
				}
				u.indexField = s
			case "preserveNullAndEmptyArrays":
				b, ok := el.Value.BooleanOK()
				if !ok || el.Value.Type != bson.TypeBoolean {
					return nil, mongoerr.New(28809, "expected a boolean for the preserveNullAndEmptyArrays option to $unwind stage, got %s", expr.TypeName(el.Value))
				}
				u.preserveEmpty = b
			default:
				return nil, mongoerr.New(28811, "unrecognized option to $unwind stage: %s", el.Key)
			}
		}
		if !havePath {
			return nil, mongoerr.New(28812, "no path specified to $unwind stage")
		}
	default:
		return nil, mongoerr.New(15981, "expected either a string or an object as specification for $unwind stage, got %s", expr.TypeName(arg))
	}
	if path == "" {
		return nil, mongoerr.New(28812, "no path specified to $unwind stage")
	}
	if !strings.HasPrefix(path, "$") {
		return nil, mongoerr.New(28818, "path option to $unwind stage should be prefixed with a '$': %s", path)
	}
	parts, err := expr.ParsePath(path[1:])
	if err != nil {
		return nil, err
	}
	u.path, u.field = parts, path[1:]
	return u, nil
}

func (*unwindStage) kind() string { return "$unwind" }

type unwindSource struct {
	s       *unwindStage
	in      Source
	pending []bson.Raw
}

func (s *unwindStage) open(in Source, _ *runtime) Source { return &unwindSource{s: s, in: in} }

func (u *unwindSource) Next(ctx context.Context) (bson.Raw, error) {
	for len(u.pending) == 0 {
		d, err := u.in.Next(ctx)
		if err != nil {
			return nil, err
		}
		if u.pending, err = u.s.unwind(d); err != nil {
			return nil, err
		}
	}
	d := u.pending[0]
	u.pending = u.pending[1:]
	return d, nil
}

// unwind returns one document per element of the array at the path. The
// path is followed through documents only (not through arrays), as
// MongoDB's $unwind does.
func (s *unwindStage) unwind(doc bson.Raw) ([]bson.Raw, error) {
	v := expr.Doc(doc)
	for _, part := range s.path {
		if v.Type != bson.TypeEmbeddedDocument {
			v = expr.Missing
			break
		}
		v = expr.Lookup(v.Value, part)
	}
	withIndex := func(d bson.Raw, idx bson.RawValue) (bson.Raw, error) {
		if s.indexField == "" {
			return d, nil
		}
		return setPath(d, strings.Split(s.indexField, "."), idx)
	}
	switch {
	case v.Type == bson.TypeArray:
		elems, err := expr.Elems(v.Value)
		if err != nil {
			return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON array in $unwind")
		}
		if len(elems) == 0 {
			if !s.preserveEmpty {
				return nil, nil
			}
			d, err := setPath(doc, s.path, expr.Missing)
			if err != nil {
				return nil, err
			}
			d, err = withIndex(d, expr.Null())
			return []bson.Raw{d}, err
		}
		out := make([]bson.Raw, 0, len(elems))
		for i, e := range elems {
			d, err := setPath(doc, s.path, e.Value)
			if err != nil {
				return nil, err
			}
			if d, err = withIndex(d, expr.Int64(int64(i))); err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	case expr.IsNullish(v):
		if !s.preserveEmpty {
			return nil, nil
		}
		d, err := withIndex(doc, expr.Null())
		return []bson.Raw{d}, err
	}
	// A non-array value is treated as a one-element array.
	d, err := withIndex(doc, expr.Null())
	return []bson.Raw{d}, err
}

// ---- $replaceRoot / $replaceWith ----

type replaceRootStage struct{ newRoot expr.Expr }

func parseReplaceRoot(name string, arg bson.RawValue) (stage, error) {
	rootSpec := arg
	if name == "$replaceRoot" {
		if arg.Type != bson.TypeEmbeddedDocument {
			return nil, mongoerr.New(40229, "expected an object as specification for $replaceRoot stage, got %s", expr.TypeName(arg))
		}
		elems, err := expr.Elems(arg.Value)
		if err != nil {
			return nil, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in $replaceRoot")
		}
		rootSpec = bson.RawValue{}
		for _, el := range elems {
			if el.Key != "newRoot" {
				return nil, mongoerr.New(40415, "BSON field '$replaceRoot.%s' is an unknown field.", el.Key)
			}
			rootSpec = el.Value
		}
		if rootSpec.Type == 0 {
			return nil, mongoerr.New(40231, "no newRoot specified for the $replaceRoot stage")
		}
	}
	e, err := expr.Parse(rootSpec)
	if err != nil {
		return nil, err
	}
	return &replaceRootStage{newRoot: e}, nil
}

func (*replaceRootStage) kind() string { return "$replaceRoot" }

func (s *replaceRootStage) open(in Source, rt *runtime) Source {
	return &mapSource{in: in, fn: func(d bson.Raw) (bson.Raw, error) {
		v, err := s.newRoot.Eval(rt.ctx(d))
		if err != nil {
			return nil, err
		}
		if v.Type != bson.TypeEmbeddedDocument {
			shown := "MISSING"
			if v.Type != 0 {
				shown = v.String()
			}
			return nil, mongoerr.New(40228, "'newRoot' expression must evaluate to an object, but resulting value was: %s. Type of resulting value: '%s'. Input document: %s", shown, expr.TypeName(v), d.String())
		}
		return bson.Raw(v.Value), nil
	}}
}

// ---- $count and $sortByCount (rewritten into $group and friends) ----

func parseCount(arg bson.RawValue) ([]stage, error) {
	name, ok := arg.StringValueOK()
	switch {
	case !ok || arg.Type != bson.TypeString || name == "":
		return nil, mongoerr.New(40156, "the count field must be a non-empty string")
	case strings.HasPrefix(name, "$"):
		return nil, mongoerr.New(40158, "the count field cannot be a $-prefixed path")
	case strings.Contains(name, "."):
		return nil, mongoerr.New(40160, "the count field cannot contain '.'")
	case strings.Contains(name, "\x00"):
		return nil, mongoerr.New(40159, "the count field cannot contain a null byte")
	}
	g := &groupStage{
		id:   literalNull(),
		accs: []accSpec{{field: name, op: "$sum", arg: literalOne()}},
	}
	proj, err := parseProject(docOf("_id", expr.Int32(0), name, expr.Int32(1)))
	if err != nil {
		return nil, err
	}
	return []stage{g, proj}, nil
}

func parseSortByCount(arg bson.RawValue) ([]stage, error) {
	switch arg.Type {
	case bson.TypeString:
		if !strings.HasPrefix(arg.StringValue(), "$") {
			return nil, mongoerr.New(40148, "the sortByCount field must be defined as a $-prefixed path or an expression inside an object")
		}
	case bson.TypeEmbeddedDocument:
		elems, err := expr.Elems(arg.Value)
		if err != nil || len(elems) == 0 || !strings.HasPrefix(elems[0].Key, "$") {
			return nil, mongoerr.New(40147, "the sortByCount field must be defined as a $-prefixed path or an expression inside an object")
		}
	default:
		return nil, mongoerr.New(40149, "the sortByCount field must be specified as a string or as an object")
	}
	id, err := expr.Parse(arg)
	if err != nil {
		return nil, err
	}
	g := &groupStage{id: id, accs: []accSpec{{field: "count", op: "$sum", arg: literalOne()}}}
	srt, err := parseSort(docOf("count", expr.Int32(-1)))
	if err != nil {
		return nil, err
	}
	return []stage{g, srt}, nil
}

// docOf builds a document value from key, value pairs.
func docOf(kv ...any) bson.RawValue {
	var b expr.DocBuilder
	for i := 0; i+1 < len(kv); i += 2 {
		b.Append(kv[i].(string), kv[i+1].(bson.RawValue))
	}
	return expr.Doc(b.Doc())
}

func literalNull() expr.Expr {
	e, _ := expr.Parse(expr.Null())
	return e
}

func literalOne() expr.Expr {
	e, _ := expr.Parse(expr.Int32(1))
	return e
}
