package server

import (
	"context"
	"slices"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/pkg/shardversion"
)

// This file re-targets the statements of a write command (insert, update,
// delete) after a shard answers StaleConfig (docs/design/mongos.md,
// "Following primaries and retries"; docs/design/shard-versions.md): the
// router refreshes its routing table, targets the refused statements
// again and sends each shard its part, with runTargeted's semantics
// (ordered: client order, stop at the first error). A shard refuses a
// stale request before running any statement, so re-sending the refused
// statements is safe; statement ids stay the client's indexes.

// writeRoute is what a write command gives sendWrite: how to target one
// of its statements and how to send a group of them to a shard. Read-only
// once built; safe for the concurrent sends of an unordered batch.
type writeRoute struct {
	ctx  context.Context
	b    Backend
	opts cmdOptions
	// target is the Target of the client's statement i under rt.
	target func(rt Routing, i int) (targeting.Target, error)
	// call sends the client's statements idx to conn with wo (its
	// ShardVersion and Session already set).
	call func(conn ShardConn, idx []int, wo shardclient.WriteOptions) (*shardclient.WriteResult, error)
}

// sender returns the sendFunc of runBatched and runTargeted for
// statements targeted with targets (indexed by the client's indexes).
func (w *writeRoute) sender(targets []targeting.Target) sendFunc {
	return func(shard string, idx []int, ordered bool) (*shardclient.WriteResult, error) {
		return w.sendWrite(targets, idx, shard, idx, ordered, maxStaleRetries)
	}
}

// sendWrite sends the client's statements idx to shard, with the version
// batchVersion gives their targets (targets[pos[k]] is the target of
// idx[k]). On StaleConfig, with rounds left, it refreshes the routing
// table and re-targets: the statements of a batch go through resplit;
// one statement of a write sent to several shards (pos of one statement
// whose target has more than one shard) through resendPiece. The result's
// statement indexes are positions in idx.
func (w *writeRoute) sendWrite(targets []targeting.Target, pos []int, shard string, idx []int, ordered bool, rounds int) (*shardclient.WriteResult, error) {
	var r *shardclient.WriteResult
	ver, err := batchVersion(statementVersions(targets, pos, shard))
	if err == nil {
		r, err = w.once(shard, ver, idx, ordered)
	}
	if classify(err) != classStale || rounds <= 0 {
		return r, err
	}
	if len(pos) == 1 && len(targets[pos[0]].Shards) > 1 {
		return w.resendPiece(targets[pos[0]].Shards, shard, idx, ordered, rounds, err)
	}
	return w.resplit(idx, ordered, rounds-1, err)
}

// once sends the statements idx to shard with version ver through
// callShard (a retryable write also retried on a writeConcernError or
// write error that says the primary changed).
func (w *writeRoute) once(shard string, ver targeting.ShardVersion, idx []int, ordered bool) (*shardclient.WriteResult, error) {
	wo := w.opts.writeOptions(ordered, idx)
	wo.ShardVersion = shardversion.Proto(ver)
	var check func(*shardclient.WriteResult) error
	if w.opts.retryable() {
		check = failoverInResult
	}
	r, _, err := callShard(w.ctx, w.b, shard, w.opts.writeKind(), "", func(c ShardConn) (*shardclient.WriteResult, error) {
		return w.call(c, idx, wo)
	}, check)
	return r, err
}

// refreshed refreshes the routing table and returns it; nil when either
// fails (the caller then answers with the StaleConfig it had).
func (w *writeRoute) refreshed() Routing {
	if err := refreshRouting(w.ctx, w.b); err != nil {
		return nil
	}
	rt, err := w.b.Routing()
	if err != nil {
		return nil
	}
	return rt
}

// resplit re-targets the client's statements idx, which a shard refused
// with stale (StaleConfig), with the refreshed routing table and runs
// them as a batch of their own (runTargeted: ordered stops at the first
// error in client order; unordered sends every shard its part). A
// statement that cannot be targeted any more is its write error. The
// result's indexes are positions in idx.
func (w *writeRoute) resplit(idx []int, ordered bool, rounds int, stale error) (*shardclient.WriteResult, error) {
	rt := w.refreshed()
	if rt == nil {
		return nil, stale
	}
	targets, errs := retargetStatements(rt, idx, w.target)
	o := runTargeted(targets, errs, ordered, func(shard string, pos []int, ordered bool) (*shardclient.WriteResult, error) {
		return w.sendWrite(targets, pos, shard, pick(idx, pos), ordered, rounds)
	})
	return o.result(), nil
}

// retargetStatements targets the client's statements idx under rt:
// targets[k] (or errs[k]) is the target of idx[k].
func retargetStatements(rt Routing, idx []int, target func(rt Routing, i int) (targeting.Target, error)) ([]targeting.Target, []error) {
	targets := make([]targeting.Target, len(idx))
	errs := make([]error, len(idx))
	for k, i := range idx {
		targets[k], errs[k] = target(rt, i)
	}
	return targets, errs
}

// resendPiece handles a StaleConfig from shard for one statement (idx,
// one client index) that was sent to each of the shards orig (a
// multi-document write, or a single-document write tried shard by shard).
// The other shards ran, or will run, the statement under their own
// version checks, so re-targeting it whole could run it twice on them.
// The piece is sent again to shard alone, with its new version, only when
// the refreshed target still includes shard and adds no shard outside
// orig (whatever moved between those shards is covered by their own
// checks); otherwise it fails with StaleConfig, as a bounded number of
// rounds that keep failing do.
func (w *writeRoute) resendPiece(orig []string, shard string, idx []int, ordered bool, rounds int, stale error) (*shardclient.WriteResult, error) {
	for ; rounds > 0; rounds-- {
		rt := w.refreshed()
		if rt == nil {
			return nil, stale
		}
		t, err := w.target(rt, idx[0])
		if err != nil {
			return nil, err
		}
		if !pieceStillCovered(t.Shards, orig, shard) {
			return nil, mongoerr.New(mongoerr.StaleConfig,
				"statement %d was sent to shards %v and now targets %v: not re-sent, so that no shard runs it twice", idx[0], orig, t.Shards)
		}
		r, err := w.once(shard, t.Versions[shard], idx, ordered)
		if classify(err) != classStale {
			return r, err
		}
		stale = err
	}
	return nil, stale
}

// pieceStillCovered reports whether a statement first sent to each shard
// of orig, whose part for shard was refused, may be re-sent to shard
// alone given its new target shards now: now includes shard and nothing
// outside orig.
func pieceStillCovered(now, orig []string, shard string) bool {
	if !slices.Contains(now, shard) {
		return false
	}
	for _, sh := range now {
		if !slices.Contains(orig, sh) {
			return false
		}
	}
	return true
}

// result is the outcome as one shard-like WriteResult (write errors
// sorted by statement index), for a caller that maps its indexes.
func (o *writeOutcome) result() *shardclient.WriteResult {
	errs := slices.Clone(o.errs)
	slices.SortStableFunc(errs, func(a, b shardclient.WriteError) int { return a.Index - b.Index })
	ups := slices.Clone(o.upserted)
	slices.SortFunc(ups, func(a, b shardclient.Upserted) int { return a.Index - b.Index })
	return &shardclient.WriteResult{N: o.n, NModified: o.nModified, Upserted: ups, WriteErrors: errs, WriteConcernError: o.wce}
}
