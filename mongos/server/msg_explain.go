package server

import (
	"context"
	"net"
	"os"
	"strconv"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/aggregate"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

func init() {
	register(Command{
		Name:    "explain",
		Help:    "explain a find, count, distinct or aggregate: the shards it targets (SINGLE_SHARD, SHARD_MERGE, SHARD_MERGE_SORT) and each shard's query plan",
		Handler: handleExplain,
	})
}

// explainVerbosities are the verbosities MongoDB accepts. Every one is
// answered with the queryPlanner section only (see docs/design/mongos.md).
var explainVerbosities = map[string]bool{"queryPlanner": true, "executionStats": true, "allPlansExecution": true}

// explainPlan is what explain sends to the targeted shards: the filter to
// target with and the find each shard plans.
type explainPlan struct {
	find   shardclient.Find
	sorted bool // a find with a sort: the router merges sorted streams
}

func handleExplain(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ev := req.Doc.Index(0).Value()
	inner, ok := ev.DocumentOK()
	if !ok {
		return errReply(mongoerr.TypeMismatch, "BSON field 'explain.explain' is the wrong type '%s', expected type 'object'", typeName(ev.Type))
	}
	if vv, err := req.Doc.LookupErr("verbosity"); err == nil {
		v, ok := vv.StringValueOK()
		if !ok {
			return errReply(mongoerr.TypeMismatch, "BSON field 'explain.verbosity' is the wrong type '%s', expected type 'string'", typeName(vv.Type))
		}
		if !explainVerbosities[v] {
			return errReply(mongoerr.BadValue, "Enumeration value '%s' for field 'explain.verbosity' is not a valid value.", v)
		}
	}
	first, err := inner.IndexErr(0)
	if err != nil {
		return errReply(mongoerr.FailedToParse, "explain command requires a nested object")
	}
	if dv, err := inner.LookupErr("$db"); err == nil {
		if db, _ := dv.StringValueOK(); db != req.DB {
			return errReply(mongoerr.InvalidNamespace, "Mismatched $db in explain command. Expected %s but got %s", req.DB, db)
		}
	}
	name := first.Key()
	sub := &Request{Name: name, DB: req.DB, Doc: inner, Conn: req.Conn, LSID: req.LSID}
	var p explainPlan
	switch name {
	case "find", "count", "distinct", "aggregate":
		if _, err := collectionNS(sub); err != nil {
			return ErrorReply(err), nil
		}
		if p, err = parseExplained(name, inner); err != nil {
			return ErrorReply(err), nil
		}
	case "update", "delete", "findAndModify", "findandmodify", "insert":
		return errReply(mongoerr.CommandNotSupported, "explain of %s is not supported by this router", name)
	default:
		return errReply(mongoerr.CommandNotFound, "Explain failed due to unknown command: %s", name)
	}
	ns := sub.NS
	req.NS = ns
	b, rep := s.backend()
	if rep != nil {
		return rep, nil
	}
	rt, err := b.Routing()
	if err != nil {
		return ErrorReply(err), nil
	}
	t, err := targeting.ForQuery(rt, ns, p.find.Filter)
	if unknownDB(err) {
		// No database, no shard: MongoDB plans an empty result.
		return explainReply(req, inner, bson.D{{Key: "stage", Value: "EOF"}, {Key: "shards", Value: bson.A{}}})
	}
	if err != nil {
		return ErrorReply(err), nil
	}
	f := p.find
	if len(t.Shards) > 1 && f.Limit > 0 {
		// As openCursor: each shard returns up to limit+skip documents and
		// the router skips after the merge.
		f.Limit += f.Skip
		f.Skip = 0
	}
	plans := make([]bson.Raw, len(t.Shards))
	errs := make([]error, len(t.Shards))
	var wg sync.WaitGroup
	for i, sh := range t.Shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := b.Shard(sh)
			if err == nil {
				plans[i], err = conn.Explain(shardCtx(withTargetVersions(ctx, t.Versions), sh), ns, f) // shardversions.go
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	shards := make(bson.A, len(t.Shards))
	for i, sh := range t.Shards {
		if errs[i] != nil {
			return ErrorReply(errs[i]), nil
		}
		entry := bson.D{{Key: "shardName", Value: sh}, {Key: "connectionString", Value: shardConnString(rt, sh)}}
		elems, err := plans[i].Elements()
		if err != nil {
			return errReply(mongoerr.InvalidBSON, "shard %s sent a malformed plan: %v", sh, err)
		}
		for _, e := range elems {
			entry = append(entry, bson.E{Key: e.Key(), Value: e.Value()})
		}
		shards[i] = entry
	}
	stage := "SINGLE_SHARD"
	switch {
	case len(t.Shards) > 1 && p.sorted:
		stage = "SHARD_MERGE_SORT"
	case len(t.Shards) > 1:
		stage = "SHARD_MERGE"
	}
	return explainReply(req, inner, bson.D{{Key: "stage", Value: stage}, {Key: "shards", Value: shards}})
}

// parseExplained reads the explained command's arguments with the
// command's own parser and returns the find its shards plan.
func parseExplained(name string, inner bson.Raw) (explainPlan, error) {
	var p explainPlan
	switch name {
	case "find":
		a, err := parseFind(inner)
		if err != nil {
			return p, err
		}
		p.find = shardclient.Find{Filter: a.filter, Projection: a.projection, Sort: a.sort, Skip: a.skip, Limit: a.limit}
		p.sorted = len(a.sort) > 5
	case "count":
		filter, err := docArg(inner, "query")
		if err != nil {
			return p, err
		}
		skip, err := intArg(inner, "skip", 0)
		if err != nil {
			return p, err
		}
		limit, err := intArg(inner, "limit", 0)
		if err != nil {
			return p, err
		}
		if skip < 0 {
			return p, mongoerr.New(mongoerr.BadValue, "skip value is negative in count query")
		}
		p.find = shardclient.Find{Filter: filter, Skip: skip, Limit: max(limit, -limit)}
	case "distinct":
		kv, err := inner.LookupErr("key")
		if err != nil {
			return p, mongoerr.New(40414, "BSON field 'distinct.key' is missing but a required field")
		}
		if _, ok := kv.StringValueOK(); !ok {
			return p, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'distinct.key' is the wrong type '%s', expected type 'string'", typeName(kv.Type))
		}
		filter, err := docArg(inner, "query")
		if err != nil {
			return p, err
		}
		p.find = shardclient.Find{Filter: filter}
	case "aggregate":
		pipeline, err := docsArg(inner, "pipeline")
		if err != nil {
			return p, err
		}
		if _, err := aggregate.Parse(pipeline); err != nil {
			return p, err
		}
		p.find = shardclient.Find{Filter: leadingMatch(pipeline)}
	}
	return p, nil
}

// explainReply is MongoDB's sharded explain document for the queryPlanner
// verbosity: {queryPlanner: {mongosPlannerVersion: 1, winningPlan},
// serverInfo, command, ok: 1}.
func explainReply(req *Request, inner bson.Raw, winningPlan bson.D) (bson.Raw, error) {
	host, _ := os.Hostname()
	port := int32(0)
	if req.Conn != nil {
		if _, p, err := net.SplitHostPort(req.Conn.Local); err == nil {
			n, _ := strconv.Atoi(p)
			port = int32(n)
		}
	}
	command := bson.D{}
	if elems, err := inner.Elements(); err == nil {
		for _, e := range elems {
			if e.Key() != "$db" {
				command = append(command, bson.E{Key: e.Key(), Value: e.Value()})
			}
		}
	}
	command = append(command, bson.E{Key: "$db", Value: req.DB})
	return okReply(
		bson.E{Key: "queryPlanner", Value: bson.D{{Key: "mongosPlannerVersion", Value: int32(1)}, {Key: "winningPlan", Value: winningPlan}}},
		bson.E{Key: "serverInfo", Value: bson.D{{Key: "host", Value: host}, {Key: "port", Value: port},
			{Key: "version", Value: ServerVersion}, {Key: "gitVersion", Value: "psdb-" + vcsRevision()}}},
		bson.E{Key: "command", Value: command},
	)
}
