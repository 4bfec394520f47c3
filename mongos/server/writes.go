package server

import (
	"slices"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

// writeOutcome accumulates the result of a write command over shards, in
// the client's statement indexes. Owned by one handler.
type writeOutcome struct {
	n, nModified int64
	upserted     []shardclient.Upserted
	errs         []shardclient.WriteError
	wce          *mongoerr.Error
}

// add merges a shard's result whose statement i is the client's idx[i].
func (o *writeOutcome) add(r *shardclient.WriteResult, idx []int) {
	o.n += r.N
	o.nModified += r.NModified
	for _, u := range r.Upserted {
		o.upserted = append(o.upserted, shardclient.Upserted{Index: idx[u.Index], ID: u.ID})
	}
	for _, we := range r.WriteErrors {
		we.Index = idx[we.Index]
		o.errs = append(o.errs, we)
	}
	if o.wce == nil && r.WriteConcernError != nil {
		o.wce = r.WriteConcernError
	}
}

// fail records err as the write error of statement i.
func (o *writeOutcome) fail(i int, err error) {
	e, ok := mongoerr.As(err)
	if !ok {
		e = mongoerr.New(mongoerr.InternalError, "%v", err)
	}
	o.errs = append(o.errs, shardclient.WriteError{Index: i, Err: e})
}

// reply builds MongoDB's write reply: {n, [nModified], [upserted],
// [writeErrors], [writeConcernError], ok: 1}. Write errors are sorted by
// statement index.
func (o *writeOutcome) reply(withModified bool) (bson.Raw, error) {
	fields := []bson.E{{Key: "n", Value: number(o.n)}}
	if withModified {
		fields = append(fields, bson.E{Key: "nModified", Value: number(o.nModified)})
	}
	if len(o.upserted) > 0 {
		slices.SortFunc(o.upserted, func(a, b shardclient.Upserted) int { return a.Index - b.Index })
		arr := bson.A{}
		for _, u := range o.upserted {
			arr = append(arr, bson.D{{Key: "index", Value: int32(u.Index)}, {Key: "_id", Value: u.ID}})
		}
		fields = append(fields, bson.E{Key: "upserted", Value: arr})
	}
	if len(o.errs) > 0 {
		slices.SortStableFunc(o.errs, func(a, b shardclient.WriteError) int { return a.Index - b.Index })
		arr := bson.A{}
		for _, we := range o.errs {
			d := bson.D{{Key: "index", Value: int32(we.Index)}, {Key: "code", Value: int32(we.Err.Code)},
				{Key: "codeName", Value: we.Err.Code.Name()}, {Key: "errmsg", Value: we.Err.Msg}}
			if len(we.Info) > 0 {
				if elems, err := we.Info.Elements(); err == nil {
					for _, e := range elems {
						d = append(d, bson.E{Key: e.Key(), Value: e.Value()})
					}
				}
			}
			arr = append(arr, d)
		}
		fields = append(fields, bson.E{Key: "writeErrors", Value: arr})
	}
	if o.wce != nil {
		fields = append(fields, bson.E{Key: "writeConcernError", Value: bson.D{
			{Key: "code", Value: int32(o.wce.Code)}, {Key: "codeName", Value: o.wce.Code.Name()}, {Key: "errmsg", Value: o.wce.Msg}}})
	}
	return okReply(fields...)
}

// sendFunc sends statements (the client's indexes idx) to one shard.
type sendFunc func(shard string, idx []int, ordered bool) (*shardclient.WriteResult, error)

// runBatched sends statements already targeted to one shard each
// (shards[i], or errs[i] when statement i could not be targeted), with
// MongoDB's semantics:
//
//   - ordered: contiguous runs of statements for the same shard go in
//     order, one run at a time; the first error (targeting, a shard's
//     write error or a failed request) stops the batch, so no later
//     statement runs on any shard;
//   - unordered: one request per shard, concurrently; every error is
//     reported and the other statements still run.
//
// A request that fails as a whole becomes a write error of its first
// statement (ordered) or of each of its statements (unordered).
func runBatched(shards []string, errs []error, ordered bool, send sendFunc) *writeOutcome {
	o := &writeOutcome{}
	if ordered {
		for i := 0; i < len(shards); {
			if errs[i] != nil {
				o.fail(i, errs[i])
				return o
			}
			j := i
			var idx []int
			for j < len(shards) && errs[j] == nil && shards[j] == shards[i] {
				idx = append(idx, j)
				j++
			}
			r, err := send(shards[i], idx, true)
			if err != nil {
				o.fail(i, err)
				return o
			}
			o.add(r, idx)
			if len(r.WriteErrors) > 0 {
				return o
			}
			i = j
		}
		return o
	}
	groups := map[string][]int{}
	var order []string
	for i, sh := range shards {
		if errs[i] != nil {
			o.fail(i, errs[i])
			continue
		}
		if _, ok := groups[sh]; !ok {
			order = append(order, sh)
		}
		groups[sh] = append(groups[sh], i)
	}
	type result struct {
		r   *shardclient.WriteResult
		err error
	}
	results := make([]result, len(order))
	var wg sync.WaitGroup
	for k, sh := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := send(sh, groups[sh], false)
			results[k] = result{r, err}
		}()
	}
	wg.Wait()
	for k, sh := range order {
		if results[k].err != nil {
			for _, i := range groups[sh] {
				o.fail(i, results[k].err)
			}
			continue
		}
		o.add(results[k].r, groups[sh])
	}
	return o
}

// pick returns docs[i] for i in idx.
func pick[T any](all []T, idx []int) []T {
	out := make([]T, len(idx))
	for k, i := range idx {
		out[k] = all[i]
	}
	return out
}

// runTargeted runs update or delete statements whose targets may span
// several shards (targets[i], or errs[i] when statement i could not be
// targeted). When every statement goes to exactly one shard they are
// batched as runBatched does. Otherwise statements run one at a time, in
// order (ordered: stopping at the first error):
//
//   - one shard: sent there;
//   - a single-document write whose filter does not pin one shard
//     (targeting's NeedsOneDocSemantics or ReasonByID): sent to the
//     targeted shards ONE AT A TIME until one reports n > 0. This is the
//     router's interim rule; MongoDB's "write without shard key" protocol
//     (find one match, then write it by _id and shard key) replaces it
//     later. It never changes more than one document, but is not atomic
//     with respect to concurrent writes of the same document on another
//     shard;
//   - a multi-document write: sent to every targeted shard, results
//     summed.
func runTargeted(targets []targeting.Target, errs []error, ordered bool, send sendFunc) *writeOutcome {
	single := true
	shards := make([]string, len(targets))
	for i, t := range targets {
		if errs[i] != nil {
			continue
		}
		if len(t.Shards) != 1 {
			single = false
			break
		}
		shards[i] = t.Shards[0]
	}
	if single {
		return runBatched(shards, errs, ordered, send)
	}
	o := &writeOutcome{}
	for i, t := range targets {
		before := len(o.errs)
		switch {
		case errs[i] != nil:
			o.fail(i, errs[i])
		case t.NeedsOneDocSemantics || t.Reason == targeting.ReasonByID:
			for _, sh := range t.Shards {
				r, err := send(sh, []int{i}, ordered)
				if err != nil {
					o.fail(i, err)
					break
				}
				o.add(r, []int{i})
				if r.N > 0 || len(r.Upserted) > 0 || len(r.WriteErrors) > 0 {
					break
				}
			}
		default:
			for _, sh := range t.Shards {
				r, err := send(sh, []int{i}, ordered)
				if err != nil {
					o.fail(i, err)
					break
				}
				o.add(r, []int{i})
				if len(r.WriteErrors) > 0 {
					break
				}
			}
		}
		if ordered && len(o.errs) > before {
			return o
		}
	}
	return o
}
