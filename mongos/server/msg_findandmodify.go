package server

import (
	"context"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/pkg/shardversion"
)

func init() {
	register(Command{
		Name:    "findAndModify",
		Aliases: []string{"findandmodify"},
		Help:    "change or remove one document and return it: runs on the one shard its query pins (shard-key equality on a sharded collection)",
		Handler: handleFindAndModify,
	})
}

// famArgs is a parsed findAndModify command.
type famArgs struct {
	f shardclient.FindAndModify
	// update is the raw update (a document, or a pipeline passed on as
	// sent); nil with remove.
	update bson.RawValue
}

func parseFindAndModify(doc bson.Raw) (famArgs, error) {
	var a famArgs
	var err error
	if a.f.Filter, err = docArg(doc, "query"); err != nil {
		return a, err
	}
	if a.f.Sort, err = docArg(doc, "sort"); err != nil {
		return a, err
	}
	if a.f.Fields, err = docArg(doc, "fields"); err != nil {
		return a, err
	}
	if a.f.Remove, err = boolArg(doc, "remove", false); err != nil {
		return a, err
	}
	if a.f.New, err = boolArg(doc, "new", false); err != nil {
		return a, err
	}
	if a.f.Upsert, err = boolArg(doc, "upsert", false); err != nil {
		return a, err
	}
	if u, lerr := doc.LookupErr("update"); lerr == nil && u.Type != bson.TypeNull {
		if u.Type != bson.TypeEmbeddedDocument && u.Type != bson.TypeArray {
			return a, mongoerr.New(mongoerr.FailedToParse, "Update argument must be either an object or an array")
		}
		a.update = u
		a.f.Update = bson.Raw(u.Value)
	}
	hasArrayFilters := false
	if v, lerr := doc.LookupErr("arrayFilters"); lerr == nil && v.Type != bson.TypeNull {
		hasArrayFilters = true
		if a.f.ArrayFilters, err = docsArg(doc, "arrayFilters"); err != nil {
			return a, err
		}
	}
	// MongoDB's checks and messages (write_ops FindAndModifyCommandRequest
	// validation), before anything is sent.
	hasUpdate := a.update.Type != 0
	switch {
	case a.f.Remove && hasUpdate:
		return a, mongoerr.New(mongoerr.FailedToParse, "Cannot specify both an update and remove=true")
	case !a.f.Remove && !hasUpdate:
		return a, mongoerr.New(mongoerr.FailedToParse, "Either an update or remove=true must be specified")
	case a.f.Remove && a.f.Upsert:
		return a, mongoerr.New(mongoerr.FailedToParse, "Cannot specify both upsert=true and remove=true ")
	case a.f.Remove && a.f.New:
		return a, mongoerr.New(mongoerr.FailedToParse, "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document")
	case a.f.Remove && hasArrayFilters:
		return a, mongoerr.New(mongoerr.FailedToParse, "Cannot specify arrayFilters and remove=true")
	}
	if a.f.Filter == nil {
		a.f.Filter = emptyFilter
	}
	return a, nil
}

// emptyFilter is {}.
var emptyFilter = bson.Raw{5, 0, 0, 0, 0}

func handleFindAndModify(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ns, err := collectionNS(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	a, err := parseFindAndModify(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	opts, err := parseCmdOptions(req)
	if err != nil {
		return ErrorReply(err), nil
	}
	a.f.WriteConcern, a.f.Session = opts.wc, opts.session(nil)
	b, rep := s.backend()
	if rep != nil {
		return rep, nil
	}
	if a.f.Upsert {
		if err := b.EnsureDatabase(ctx, req.DB); err != nil {
			return ErrorReply(err), nil
		}
	}
	// A StaleConfig from the shard refreshes the routing table and runs
	// the targeting and the call again (retryStale's bound): the shard
	// refused before running anything.
	var r *shardclient.FindAndModifyResult
	noDB := false
	err = retryStale(ctx, b, func() error {
		rt, err := b.Routing()
		if err != nil {
			return err
		}
		t, err := targeting.ForUpdate(rt, ns, a.f.Filter, a.f.Update, false, a.f.Upsert)
		if unknownDB(err) {
			noDB = true
			return nil
		}
		if err != nil {
			return err
		}
		// MongoDB (before the 7.x two-phase "write without shard key"
		// protocol) runs findAndModify on exactly one shard: the query
		// must pin it. An upsert needs equality on the full shard key,
		// since the document it may insert must belong to that shard
		// (ForUpdate).
		if len(t.Shards) != 1 || t.NeedsOneDocSemantics || t.Reason == targeting.ReasonByID {
			return mongoerr.New(mongoerr.ShardKeyNotFound, "Query for sharded findAndModify must contain the shard key")
		}
		if coll, ok := rt.Collection(ns); ok && coll.Sharded && !a.f.Remove {
			if err := checkFamShardKey(coll.Key, a.f.Filter, a.update); err != nil {
				return err
			}
		}
		f := a.f
		f.ShardVersion = shardversion.Proto(t.Versions[t.Shards[0]])
		r, err = famShard(ctx, b, t.Shards[0], opts, func(conn ShardConn) (*shardclient.FindAndModifyResult, error) {
			return conn.FindAndModify(ctx, ns, f)
		})
		return err
	})
	if err != nil {
		return ErrorReply(err), nil
	}
	if noDB {
		return famReply(a.f.Remove, &shardclient.FindAndModifyResult{})
	}
	return famReply(a.f.Remove, r)
}

// checkFamShardKey refuses, before anything runs, an update that could
// change the shard key of the document it changes (or give an upserted
// document a key that belongs elsewhere): the shard applies it without
// knowing the key, so the document would stay on a shard that does not
// own it. It is checked from the command alone, conservatively:
//
//   - a replacement document must carry, for every shard-key field, the
//     value the query's equality gives that field (a missing field counts
//     as null, as in the key);
//   - an operator update may touch a shard-key path (the field, a parent
//     or a child of it) only with $set or $setOnInsert of the field itself
//     to the value of the query's equality on it;
//   - a pipeline update (which the shards refuse anyway) is not checked.
//
// The error is ImmutableField (66), the router's answer to any update of
// a shard key (see CheckShardKeyUnchanged in package targeting).
func checkFamShardKey(key catalog.ShardKey, filter bson.Raw, update bson.RawValue) error {
	if update.Type != bson.TypeEmbeddedDocument {
		return nil
	}
	f, err := query.ParseFilter(filter)
	if err != nil {
		return err // the shard would refuse the query the same way
	}
	eq := f.EqualityFields()
	upd := update.Document()
	elems, err := upd.Elements()
	if err != nil || len(elems) == 0 {
		return nil
	}
	if !strings.HasPrefix(elems[0].Key(), "$") {
		for _, kf := range key {
			v, ok := query.LookupFirst(upd, kf.Field)
			if !ok {
				v = bson.RawValue{Type: bson.TypeNull}
			}
			want, hasEq := eq[kf.Field]
			if !hasEq || keys.Compare(v, want) != 0 {
				return mongoerr.New(mongoerr.ImmutableField,
					"the replacement document must keep the shard key field '%s' equal to the query's equality on it (PSDB never moves a document between shards in findAndModify)", kf.Field)
			}
		}
		return nil
	}
	for _, op := range elems {
		args, ok := op.Value().DocumentOK()
		if !ok {
			continue // the shard reports the malformed operator
		}
		fields, err := args.Elements()
		if err != nil {
			continue
		}
		for _, fe := range fields {
			paths := []string{fe.Key()}
			if op.Key() == "$rename" {
				if to, ok := fe.Value().StringValueOK(); ok {
					paths = append(paths, to)
				}
			}
			for _, p := range paths {
				for _, kf := range key {
					if p != kf.Field && !strings.HasPrefix(kf.Field, p+".") && !strings.HasPrefix(p, kf.Field+".") {
						continue
					}
					want, hasEq := eq[kf.Field]
					if (op.Key() == "$set" || op.Key() == "$setOnInsert") && p == kf.Field && hasEq && keys.Compare(fe.Value(), want) == 0 {
						continue
					}
					return mongoerr.New(mongoerr.ImmutableField,
						"Performing an update on the path '%s' would modify the shard key field '%s' (PSDB never moves a document between shards in findAndModify)", p, kf.Field)
				}
			}
		}
	}
	return nil
}

// famReply is MongoDB's findAndModify reply: {lastErrorObject: {n,
// updatedExisting, upserted?}, value, writeConcernError?, ok: 1}; a
// remove's lastErrorObject has n only. updatedExisting is true when an
// existing document matched (even if the update left it unchanged), as in
// MongoDB.
func famReply(remove bool, r *shardclient.FindAndModifyResult) (bson.Raw, error) {
	upserted := r.UpsertedID.Type != 0
	n := int32(0)
	if r.Matched || upserted {
		n = 1
	}
	leo := bson.D{{Key: "n", Value: n}}
	if !remove {
		leo = append(leo, bson.E{Key: "updatedExisting", Value: r.Matched})
		if upserted && !r.Matched {
			leo = append(leo, bson.E{Key: "upserted", Value: r.UpsertedID})
		}
	}
	var value any = nil
	if r.Value != nil {
		value = r.Value
	}
	fields := []bson.E{{Key: "lastErrorObject", Value: leo}, {Key: "value", Value: value}}
	if r.WriteConcernError != nil {
		fields = append(fields, bson.E{Key: "writeConcernError", Value: bson.D{
			{Key: "code", Value: int32(r.WriteConcernError.Code)}, {Key: "codeName", Value: r.WriteConcernError.Code.Name()},
			{Key: "errmsg", Value: r.WriteConcernError.Msg}}})
	}
	return okReply(fields...)
}
