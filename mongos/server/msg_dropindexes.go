package server

import (
	"context"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:    "dropIndexes",
		Aliases: []string{"deleteIndexes"},
		Help:    "drop indexes by name, list of names, key pattern or \"*\" on every shard owning chunks of the collection (its primary shard when unsharded)",
		Handler: handleDropIndexes,
	})
}

// dropSpec is what a dropIndexes names: index names ("*" alone for all
// but _id_) or one key pattern.
type dropSpec struct {
	names []string
	key   bson.Raw
}

func parseDropIndexes(doc bson.Raw) (dropSpec, error) {
	var d dropSpec
	v, err := doc.LookupErr("index")
	if err != nil {
		return d, mongoerr.New(40414, "BSON field 'dropIndexes.index' is missing but a required field")
	}
	switch v.Type {
	case bson.TypeString:
		d.names = []string{v.StringValue()}
	case bson.TypeEmbeddedDocument:
		d.key = v.Document()
		if first, err := d.key.IndexErr(0); err == nil && first.Key() == "_id" {
			if _, err := d.key.IndexErr(1); err != nil {
				return d, mongoerr.New(mongoerr.InvalidOptions, "cannot drop _id index")
			}
		}
	case bson.TypeArray:
		vals, err := v.Array().Values()
		if err != nil {
			return d, mongoerr.New(mongoerr.InvalidBSON, "BSON field 'dropIndexes.index': %v", err)
		}
		for i, e := range vals {
			s, ok := e.StringValueOK()
			if !ok {
				return d, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'dropIndexes.index.%d' is the wrong type '%s', expected type 'string'", i, typeName(e.Type))
			}
			d.names = append(d.names, s)
		}
	default:
		return d, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'dropIndexes.index' is the wrong type '%s', expected types '[string, object, array]'", typeName(v.Type))
	}
	for _, n := range d.names {
		if n == "_id_" {
			return d, mongoerr.New(mongoerr.InvalidOptions, "cannot drop _id index")
		}
		if n == "*" && len(d.names) > 1 {
			return d, mongoerr.New(mongoerr.BadValue, "The wildcard '*' cannot be used together with other index names")
		}
	}
	return d, nil
}

func handleDropIndexes(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	spec, err := parseDropIndexes(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	b, rep := s.backend()
	if rep != nil {
		return rep, nil
	}
	// As createIndexes: each shard gets its targeted version, and a
	// StaleConfig refreshes and drops again on the new targeting's shards
	// (a shard that already dropped answers IndexNotFound, which
	// mergeDropIndexes skips when another shard dropped it).
	var n int
	err = retryStale(ctx, b, func() error {
		rt, err := b.Routing()
		if err != nil {
			return err
		}
		t, err := indexTarget(rt, ns) // msg_createindexes.go
		if err != nil {
			return mongoerr.New(mongoerr.NamespaceNotFound, "ns not found %s", ns)
		}
		shards := t.Shards
		vctx := withTargetVersions(ctx, t.Versions) // shardversions.go
		was := make([]int, len(shards))
		errs := make([]error, len(shards))
		var wg sync.WaitGroup
		for i, sh := range shards {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := b.Shard(sh)
				if err == nil {
					sctx := shardCtx(vctx, sh)
					if spec.key != nil {
						was[i], err = conn.DropIndexByKey(sctx, ns, spec.key)
					} else {
						was[i], err = conn.DropIndexes(sctx, ns, spec.names...)
					}
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		if err := firstStaleOrError(errs); classify(err) == classStale {
			return err
		}
		n, err = mergeDropIndexes(was, errs)
		return err
	})
	if err != nil {
		if mongoerr.HasCode(err, mongoerr.NamespaceNotFound) {
			return errReply(mongoerr.NamespaceNotFound, "ns not found %s", ns)
		}
		return ErrorReply(err), nil
	}
	return okReply(bson.E{Key: "nIndexesWas", Value: int32(n)})
}

// mergeDropIndexes combines the shards' answers. A shard without a copy
// of the collection (NamespaceNotFound: it never received a document or
// an index) is skipped, and so is one that lacks the index (IndexNotFound)
// when another shard dropped it; any other error fails the command. With
// no successful shard the first error is the answer, NamespaceNotFound
// only when every shard said so. nIndexesWas is the largest count.
func mergeDropIndexes(was []int, errs []error) (int, error) {
	n, okCount := 0, 0
	var first, firstOther error
	for i, err := range errs {
		switch {
		case err == nil:
			okCount++
			n = max(n, was[i])
		case mongoerr.HasCode(err, mongoerr.NamespaceNotFound):
			if first == nil {
				first = err
			}
		case mongoerr.HasCode(err, mongoerr.IndexNotFound):
			if firstOther == nil {
				firstOther = err
			}
		default:
			return 0, err
		}
	}
	switch {
	case okCount > 0:
		return n, nil
	case firstOther != nil:
		return 0, firstOther
	}
	return 0, first
}
