// Package aggregate owns MongoDB's aggregation pipeline on one node: parsing
// and validating a pipeline ($match, $project, $addFields/$set, $unset,
// $group, $sort, $skip, $limit, $unwind, $count, $sortByCount,
// $replaceRoot/$replaceWith), running it over a stream of documents, and
// splitting it into a part every shard runs and a part the router runs over
// the shards' merged outputs (Split).
//
// Expressions come from pkg/expr and filters and sort orders from
// pkg/query; this package never reads storage, never talks to the network,
// never logs and keeps no state between calls. A parsed *Pipeline is
// immutable (set MemoryLimit before sharing it) and safe for concurrent
// use; every Run or Stream has its own state.
//
// Bad pipelines fail in Parse, before any document is read, with MongoDB's
// codes: 40323 (a stage must have exactly one field), 40324 (unknown
// stage), 15952 (unknown group operator), 168 (unknown expression), 15955
// ($group without _id) and the per-stage codes listed next to each parser.
//
// Memory: the blocking stages ($group, $sort) count the bytes they hold and
// fail with QueryExceededMemoryLimitNoDiskUseAllowed (292) past
// MemoryLimit, MongoDB's 100 MiB per-stage limit by default; PSDB does not
// spill to disk. Streaming stages hold one document at a time. Cancelling
// the context passed to Run or Next stops the pipeline with ctx.Err().
package aggregate

import (
	"context"
	"errors"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/expr"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
)

// DefaultMemoryLimit is the bytes one blocking stage may hold: MongoDB's
// 100 MiB limit for a pipeline stage without allowDiskUse.
const DefaultMemoryLimit = 100 << 20

// MaxStages bounds a pipeline's length (MongoDB's default
// internalPipelineLengthLimit is 1000).
const MaxStages = 1000

// Pipeline is a parsed, validated pipeline.
type Pipeline struct {
	stages []stage
	// MemoryLimit is the bytes each blocking stage may hold; 0 means
	// DefaultMemoryLimit. Set it before the pipeline is shared.
	MemoryLimit int64
	// Let holds the aggregate command's let variables ($$name in every
	// expression). Set it before the pipeline is shared; each run works on
	// its own copy.
	Let map[string]bson.RawValue
	// mergeSort, set on the router part produced by Split, is the order
	// the shards' outputs must be merged in before this part runs.
	mergeSort *query.Sort
}

// Source is a stream of documents. Next returns io.EOF after the last
// document; it returns ctx.Err() once ctx is cancelled. A Source is used
// by one goroutine at a time.
type Source interface {
	Next(ctx context.Context) (bson.Raw, error)
}

// FromSlice returns a Source over docs.
func FromSlice(docs []bson.Raw) Source { return &sliceSource{docs: docs} }

type sliceSource struct {
	docs []bson.Raw
	i    int
}

func (s *sliceSource) Next(ctx context.Context) (bson.Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.i >= len(s.docs) {
		return nil, io.EOF
	}
	d := s.docs[s.i]
	s.i++
	return d, nil
}

// stage is one parsed pipeline stage.
type stage interface {
	// open returns the stage's output stream over in.
	open(in Source, rt *runtime) Source
	// kind is the stage's name ("$match").
	kind() string
}

// runtime is the per-run state shared by a run's stages. A run is driven
// by one goroutine (Source's contract), so the variables map is not locked.
type runtime struct {
	memLimit int64
	now      time.Time
	vars     map[string]bson.RawValue
}

func (rt *runtime) ctx(doc bson.Raw) *expr.Context {
	return &expr.Context{Root: doc, Now: rt.now, Vars: rt.vars}
}

// Parse validates and parses a pipeline. Every stage is checked before
// anything runs.
func Parse(pipeline []bson.Raw) (*Pipeline, error) {
	if len(pipeline) > MaxStages {
		return nil, mongoerr.New(7749501, "Pipeline length must be no longer than %d stages", MaxStages)
	}
	p := &Pipeline{}
	for _, spec := range pipeline {
		stages, err := parseStage(spec)
		if err != nil {
			return nil, err
		}
		p.stages = append(p.stages, stages...)
	}
	p.pushLimitsIntoSorts()
	return p, nil
}

// Stages returns the names of the pipeline's stages after desugaring
// ($count becomes $group and $project, $sortByCount $group and $sort).
func (p *Pipeline) Stages() []string {
	out := make([]string, len(p.stages))
	for i, s := range p.stages {
		out[i] = s.kind()
	}
	return out
}

// MergeSort returns the order in which the shard outputs must be merged
// before this (router) part runs, or nil when their order does not matter.
func (p *Pipeline) MergeSort() *query.Sort { return p.mergeSort }

// Empty reports whether the pipeline has no stages.
func (p *Pipeline) Empty() bool { return len(p.stages) == 0 }

// Stream returns the pipeline's output over in. Documents are produced
// lazily as the caller calls Next.
func (p *Pipeline) Stream(in Source) Source {
	rt := &runtime{memLimit: p.MemoryLimit, now: time.Now()}
	if len(p.Let) > 0 {
		rt.vars = make(map[string]bson.RawValue, len(p.Let))
		for k, v := range p.Let {
			rt.vars[k] = v
		}
	}
	if rt.memLimit <= 0 {
		rt.memLimit = DefaultMemoryLimit
	}
	out := in
	for _, s := range p.stages {
		out = s.open(out, rt)
	}
	return out
}

// Run runs the pipeline over in and returns all output documents.
func (p *Pipeline) Run(ctx context.Context, in []bson.Raw) ([]bson.Raw, error) {
	return Collect(ctx, p.Stream(FromSlice(in)))
}

// Collect reads a Source to its end.
func Collect(ctx context.Context, src Source) ([]bson.Raw, error) {
	var out []bson.Raw
	for {
		d, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
}

// stageSpec checks the one-field shape of a stage document.
func stageSpec(spec bson.Raw) (string, bson.RawValue, error) {
	elems, err := expr.Elems(spec)
	if err != nil {
		return "", bson.RawValue{}, mongoerr.New(mongoerr.InvalidBSON, "invalid BSON in pipeline stage")
	}
	if len(elems) != 1 {
		return "", bson.RawValue{}, mongoerr.New(40323, "A pipeline stage specification object must contain exactly one field.")
	}
	return elems[0].Key, elems[0].Value, nil
}

func parseStage(spec bson.Raw) ([]stage, error) {
	name, arg, err := stageSpec(spec)
	if err != nil {
		return nil, err
	}
	one := func(s stage, err error) ([]stage, error) {
		if err != nil {
			return nil, err
		}
		return []stage{s}, nil
	}
	switch name {
	case "$match":
		return one(parseMatch(arg))
	case "$project":
		return one(parseProject(arg))
	case "$addFields", "$set":
		return one(parseAddFields(name, arg))
	case "$unset":
		return one(parseUnset(arg))
	case "$group":
		return one(parseGroup(arg))
	case "$sort":
		return one(parseSort(arg))
	case "$skip":
		return one(parseSkip(arg))
	case "$limit":
		return one(parseLimit(arg))
	case "$unwind":
		return one(parseUnwind(arg))
	case "$replaceRoot", "$replaceWith":
		return one(parseReplaceRoot(name, arg))
	case "$count":
		return parseCount(arg)
	case "$sortByCount":
		return parseSortByCount(arg)
	}
	return nil, mongoerr.New(40324, "Unrecognized pipeline stage name: '%s'", name)
}

// pushLimitsIntoSorts gives each $sort followed (through $skip and $limit
// stages only) by a $limit the number of documents it must keep, so it can
// keep a top-k instead of everything. The $skip/$limit stages stay.
func (p *Pipeline) pushLimitsIntoSorts() {
	for i, s := range p.stages {
		if st, ok := s.(*sortStage); ok && st.limit == 0 {
			st.limit = limitAfter(p.stages[i+1:])
		}
	}
}

// limitAfter returns skip+limit when stages begins with $skip/$limit stages
// that include a $limit, else 0 (no limit).
func limitAfter(stages []stage) int64 {
	var skip int64
	for _, s := range stages {
		switch st := s.(type) {
		case *skipStage:
			skip += st.n
			if skip < 0 {
				return 0
			}
		case *limitStage:
			if skip+st.n < 0 {
				return 0
			}
			return skip + st.n
		default:
			return 0
		}
	}
	return 0
}
