package executor

import (
	"context"
	"io"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/aggregate"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
)

// Count returns how many documents match filter, after skip and limit (0:
// no limit), as the count command does.
func (x *Executor) Count(ctx context.Context, ns string, filter bson.Raw, skip, limit int64) (int64, error) {
	c, err := x.Find(ctx, ns, FindSpec{Filter: filter, Skip: skip, Limit: limit, Projection: idOnly})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var n int64
	for {
		if _, ok := c.Next(); !ok {
			break
		}
		n++
	}
	return n, c.Err()
}

// idOnly is the projection {_id: 1}: counting needs no document bodies.
var idOnly = mustMarshal(bson.D{{Key: "_id", Value: 1}})

func mustMarshal(d bson.D) bson.Raw {
	b, err := bson.Marshal(d)
	if err != nil {
		panic(err) // constant input
	}
	return b
}

// Distinct returns the distinct values of key among the documents matching
// filter, in keys.Compare order. Arrays contribute their elements, as in
// MongoDB.
func (x *Executor) Distinct(ctx context.Context, ns, key string, filter bson.Raw) ([]bson.RawValue, error) {
	if key == "" {
		return nil, mongoerr.New(mongoerr.InvalidOptions, "distinct key must not be empty")
	}
	c, err := x.Find(ctx, ns, FindSpec{Filter: filter})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	seen := make(map[string]struct{})
	var out []bson.RawValue
	for {
		doc, ok := c.Next()
		if !ok {
			break
		}
		for _, v := range query.Lookup(doc, key) {
			k := string(keys.Encode(v))
			if _, dup := seen[k]; dup {
				continue
			}
			seen[k] = struct{}{}
			out = append(out, v)
		}
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return keys.Compare(out[i], out[j]) < 0 })
	return out, nil
}

// Aggregate runs a pipeline over the collection. A leading $match is used
// to choose an index for the scan (the stage still runs, so its semantics
// stay the pipeline's own).
func (x *Executor) Aggregate(ctx context.Context, ns string, pipeline []bson.Raw) ([]bson.Raw, error) {
	p, err := aggregate.Parse(pipeline)
	if err != nil {
		return nil, err
	}
	return x.RunPipeline(ctx, ns, p, leadingMatch(pipeline))
}

// AggregateShardPart runs only the shard part of the pipeline's Split, for
// a router that merges several shards' outputs and runs the rest. The
// router splits the same pipeline the same way, so the part is never sent.
// A leading $match narrows the scan as in Aggregate.
func (x *Executor) AggregateShardPart(ctx context.Context, ns string, pipeline []bson.Raw) ([]bson.Raw, error) {
	p, err := aggregate.Parse(pipeline)
	if err != nil {
		return nil, err
	}
	shard, _ := p.Split()
	return x.RunPipeline(ctx, ns, shard, leadingMatch(pipeline))
}

// RunPipeline runs a parsed pipeline (for example the shard part of a
// split one); scanFilter, if not nil, narrows the scan that feeds it.
func (x *Executor) RunPipeline(ctx context.Context, ns string, p *aggregate.Pipeline, scanFilter bson.Raw) ([]bson.Raw, error) {
	c, err := x.Find(ctx, ns, FindSpec{Filter: scanFilter})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return aggregate.Collect(ctx, p.Stream(cursorSource{c}))
}

// leadingMatch returns the filter of a first {$match: {...}} stage.
func leadingMatch(pipeline []bson.Raw) bson.Raw {
	if len(pipeline) == 0 {
		return nil
	}
	v, err := pipeline[0].LookupErr("$match")
	if err != nil || v.Type != bson.TypeEmbeddedDocument {
		return nil
	}
	return v.Document()
}

// cursorSource adapts a Cursor to an aggregate.Source.
type cursorSource struct{ c *Cursor }

func (s cursorSource) Next(ctx context.Context) (bson.Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, ok := s.c.Next()
	if !ok {
		if err := s.c.Err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	return d, nil
}
