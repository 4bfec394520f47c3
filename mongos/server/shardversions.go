package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/pkg/shardversion"
)

// This file attaches shard versions to the router's shard requests
// (docs/design/shard-versions.md): every data request goes out with the
// version that the targeting decision which chose its shard computed for
// that shard, never with a version read later (a later version could
// belong to a map in which the request would go elsewhere, and the shard
// would accept it). The retries on StaleConfig are retry.go's.

type targetVersionsKey struct{}

// withTargetVersions returns ctx carrying a targeting decision's
// per-shard versions (Target.Versions) for shardCtx.
func withTargetVersions(ctx context.Context, vers map[string]targeting.ShardVersion) context.Context {
	return context.WithValue(ctx, targetVersionsKey{}, vers)
}

// shardCtx returns ctx whose shard requests carry the version of shard
// from withTargetVersions (pkg/shardclient sends it). A shard the decision
// did not target gets no version (unversioned).
func shardCtx(ctx context.Context, shard string) context.Context {
	vers, _ := ctx.Value(targetVersionsKey{}).(map[string]targeting.ShardVersion)
	v, ok := vers[shard]
	if !ok {
		return ctx
	}
	return shardclient.WithShardVersion(ctx, shardversion.Proto(v))
}

// queryRoute keeps the targeting decision of a query across the attempts
// of retryStaleQuery: the first attempt goes with the handler's Target, a
// later one (after a routing refresh) targets again for the versions of
// the shards it is given.
type queryRoute struct {
	b        Backend
	ns       string
	filter   bson.Raw
	t        targeting.Target
	attempts int
}

func newQueryRoute(b Backend, ns string, filter bson.Raw, t targeting.Target) *queryRoute {
	return &queryRoute{b: b, ns: ns, filter: filter, t: t}
}

// attempt returns ctx carrying the versions to send the query to shards
// with (shardCtx). When a fresh targeting no longer gives those shards
// the routing changed again: StaleConfig, so the caller refreshes and
// re-targets.
func (q *queryRoute) attempt(ctx context.Context, shards []string) (context.Context, error) {
	q.attempts++
	if q.attempts > 1 {
		rt, err := q.b.Routing()
		if err != nil {
			return ctx, err
		}
		t, err := targeting.ForQuery(rt, q.ns, q.filter)
		if err != nil {
			return ctx, err
		}
		q.t = t
	}
	if !sameShards(q.t.Shards, shards) {
		return ctx, mongoerr.New(mongoerr.StaleConfig, "the routing of %s changed while the query was re-targeted", q.ns)
	}
	return withTargetVersions(ctx, q.t.Versions), nil
}

func sameShards(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// statementVersions returns the versions the statements idx were targeted
// to shard with (targets[i].Versions[shard]).
func statementVersions(targets []targeting.Target, idx []int, shard string) []targeting.ShardVersion {
	out := make([]targeting.ShardVersion, 0, len(idx))
	for _, i := range idx {
		if v, ok := targets[i].Versions[shard]; ok {
			out = append(out, v)
		}
	}
	return out
}

// batchVersion is the version to send statements with that were targeted
// to one shard one by one, each with the version it saw: the oldest.
// Versions of one epoch only grow, so the shard accepts the oldest only
// when every statement's version has its current major, that is when each
// statement's routing is still right. Statements that saw different
// epochs (the collection was dropped and re-created while they were
// targeted) are StaleConfig: re-target them all.
func batchVersion(vs []targeting.ShardVersion) (targeting.ShardVersion, error) {
	if len(vs) == 0 {
		return targeting.ShardVersion{}, nil
	}
	out := vs[0]
	for _, v := range vs[1:] {
		if v.Epoch != out.Epoch {
			return targeting.ShardVersion{}, mongoerr.New(mongoerr.StaleConfig, "statements of one batch were targeted with different collection epochs (%s, %s)", out, v)
		}
		if v.Version.Less(out.Version) {
			out = v
		}
	}
	return out, nil
}

// insertTarget is the Target of one document of an insert (ForInsert).
func insertTarget(rt Routing, ns string, doc bson.Raw) (targeting.Target, error) {
	sh, v, err := targeting.ForInsert(rt, ns, doc)
	if err != nil {
		return targeting.Target{}, err
	}
	return targeting.Target{Kind: targeting.OneShard, Shards: []string{sh}, Versions: map[string]targeting.ShardVersion{sh: v}}, nil
}
