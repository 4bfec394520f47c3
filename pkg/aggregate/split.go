package aggregate

import (
	"context"
	"errors"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/expr"
	"github.com/psdb/psdb/pkg/query"
)

// Split cuts the pipeline into the part every shard runs over its own
// documents and the part the router runs over the shards' outputs. The cut
// is at the first stage that needs all documents:
//
//   - $match, $project, $addFields/$set, $unset, $unwind and $replaceRoot
//     before the cut run on the shards.
//   - $group becomes a partial $group on the shards (same _id; $sum and
//     $count emit partial sums, $avg emits {sum, count}, $min/$max,
//     $push, $addToSet and $mergeObjects emit their partial values) and a
//     final $group on the router that combines partials per _id ($sum of
//     sums, sum/count, $min of mins, concatenated arrays, union of sets).
//     A $group with $first or $last is not split: those need the global
//     input order, so the shards send their documents and the router
//     groups.
//   - $sort runs on the shards (keeping only skip+limit documents when a
//     $limit follows); the router merges the sorted shard streams in the
//     order MergeSort returns, then runs the rest ($skip/$limit included).
//   - $limit n runs on both sides; a $skip k stays on the router and the
//     shards keep k+n documents when a $limit follows.
//   - $count and $sortByCount were rewritten by Parse into $group (and
//     $project/$sort) and split as such.
//
// shard is never nil; merge may be empty (the router then only
// concatenates the shard outputs, or merge-sorts them when MergeSort is
// not nil). The merge part's MergeSort tells the router how to combine the
// shard streams before running it.
func (p *Pipeline) Split() (shard *Pipeline, merge *Pipeline) {
	shard = &Pipeline{MemoryLimit: p.MemoryLimit, Let: p.Let}
	merge = &Pipeline{MemoryLimit: p.MemoryLimit, Let: p.Let}
	for i, s := range p.stages {
		switch st := s.(type) {
		case *matchStage, *projectStage, *addFieldsStage, *unwindStage, *replaceRootStage:
			shard.stages = append(shard.stages, s)
			continue
		case *groupStage:
			if partial, final, ok := st.split(); ok {
				shard.stages = append(shard.stages, partial)
				merge.stages = append(merge.stages, final)
			} else {
				merge.stages = append(merge.stages, st)
			}
		case *sortStage:
			shard.stages = append(shard.stages, st)
			merge.mergeSort = st.sort
			merge.stages = append(merge.stages, p.stages[i+1:]...)
			return shard, merge
		case *limitStage:
			shard.stages = append(shard.stages, st)
			merge.stages = append(merge.stages, st)
		case *skipStage:
			if n := limitAfter(p.stages[i:]); n > 0 {
				shard.stages = append(shard.stages, &limitStage{n: n})
			}
			merge.stages = append(merge.stages, st)
		default:
			merge.stages = append(merge.stages, s)
		}
		merge.stages = append(merge.stages, p.stages[i+1:]...)
		return shard, merge
	}
	return shard, merge
}

// split returns the shard and router halves of a $group, or ok false when
// it cannot be split ($first/$last need the global input order).
func (g *groupStage) split() (partial, final *groupStage, ok bool) {
	partial = &groupStage{id: g.id}
	idPath, _ := expr.Parse(expr.String("$_id"))
	final = &groupStage{id: idPath}
	for _, a := range g.accs {
		fieldPath, err := expr.Parse(expr.String("$" + a.field))
		if err != nil {
			return nil, nil, false
		}
		pa := accSpec{field: a.field, op: a.op, arg: a.arg}
		fa := accSpec{field: a.field, arg: fieldPath}
		switch a.op {
		case "$sum", "$min", "$max", "$mergeObjects":
			fa.op = a.op
		case "$avg":
			pa.op, fa.op = accAvgPartial, accAvgMerge
		case "$push":
			fa.op = accConcat
		case "$addToSet":
			fa.op = accUnion
		default:
			return nil, nil, false
		}
		partial.accs = append(partial.accs, pa)
		final.accs = append(final.accs, fa)
	}
	return partial, final, true
}

// MergeSorted merges streams that are each sorted in the order of p's
// MergeSort (or concatenates them when it is nil), as the router does
// before running the merge part. Equal documents keep the order of the
// streams they came from.
func (p *Pipeline) MergeSorted(streams [][]bson.Raw) []bson.Raw {
	srcs := make([]Source, len(streams))
	for i, s := range streams {
		srcs[i] = FromSlice(s)
	}
	out, err := Collect(context.Background(), MergeStreams(p.mergeSort, srcs))
	if err != nil {
		// Slice sources fail only on a cancelled context, which
		// context.Background never is.
		return nil
	}
	return out
}

// MergeStreams returns a Source over the documents of streams, each already
// sorted by s, in the order of s: a k-way merge that holds one document per
// stream. A nil s concatenates the streams in order. Equal documents come
// in the order of the streams that hold them. The router uses it over its
// shard cursors before running a pipeline's merge part.
func MergeStreams(s *query.Sort, streams []Source) Source {
	return &mergeSource{sort: s, streams: streams}
}

type mergeHead struct {
	keyedDoc
	stream int
}

type mergeSource struct {
	sort    *query.Sort
	streams []Source
	started bool
	heads   []*mergeHead // min-heap by sort keys, then stream index
	cur     int          // concatenation: the stream being read
}

func (m *mergeSource) less(a, b *mergeHead) bool {
	for i := range m.sort.Fields {
		c := compareSortKey(a.keys[i], b.keys[i])
		if m.sort.Fields[i].Desc {
			c = -c
		}
		if c != 0 {
			return c < 0
		}
	}
	return a.stream < b.stream
}

func (m *mergeSource) push(h *mergeHead) {
	m.heads = append(m.heads, h)
	for i := len(m.heads) - 1; i > 0; {
		p := (i - 1) / 2
		if !m.less(m.heads[i], m.heads[p]) {
			break
		}
		m.heads[i], m.heads[p] = m.heads[p], m.heads[i]
		i = p
	}
}

func (m *mergeSource) pop() *mergeHead {
	top := m.heads[0]
	last := len(m.heads) - 1
	m.heads[0] = m.heads[last]
	m.heads = m.heads[:last]
	for i := 0; ; {
		l, r, min := 2*i+1, 2*i+2, i
		if l < len(m.heads) && m.less(m.heads[l], m.heads[min]) {
			min = l
		}
		if r < len(m.heads) && m.less(m.heads[r], m.heads[min]) {
			min = r
		}
		if min == i {
			break
		}
		m.heads[i], m.heads[min] = m.heads[min], m.heads[i]
		i = min
	}
	return top
}

// fill reads the next document of stream i into the heap.
func (m *mergeSource) fill(ctx context.Context, i int) error {
	d, err := m.streams[i].Next(ctx)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	m.push(&mergeHead{keyedDoc: keyedDoc{keys: m.sort.SortKeys(d), doc: d}, stream: i})
	return nil
}

func (m *mergeSource) Next(ctx context.Context) (bson.Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.sort == nil || len(m.sort.Fields) == 0 {
		for m.cur < len(m.streams) {
			d, err := m.streams[m.cur].Next(ctx)
			if errors.Is(err, io.EOF) {
				m.cur++
				continue
			}
			return d, err
		}
		return nil, io.EOF
	}
	if !m.started {
		m.started = true
		for i := range m.streams {
			if err := m.fill(ctx, i); err != nil {
				return nil, err
			}
		}
	}
	if len(m.heads) == 0 {
		return nil, io.EOF
	}
	h := m.pop()
	if err := m.fill(ctx, h.stream); err != nil {
		return nil, err
	}
	return h.doc, nil
}
