package targeting

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
)

// ForInsert returns the shard owning a document to insert and the version
// to send. For an unsharded collection it is the database's primary shard
// with the zero (UNSHARDED) version; the database version is
// meta.Database's.
//
// As in MongoDB 4.4 and later, a missing shard-key field counts as null
// (hash(null) for a hashed field); a router that wants the older rule
// (the shard key is required) calls RequireShardKey first. An array on a
// shard-key path (the value itself or any document on the way, as in
// {a: [{b: 1}]} for key a.b) is refused with ShardKeyNotFound (61), as
// MongoDB does. A key containing _id needs the document's _id: the router
// must add a generated _id before targeting.
func ForInsert(meta Metadata, ns string, doc bson.Raw) (string, ShardVersion, error) {
	for range maxAttempts {
		coll, ok := meta.Collection(ns)
		if !ok || !coll.Sharded {
			t, err := unshardedTarget(meta, ns)
			if err != nil {
				return "", ShardVersion{}, err
			}
			return t.Shards[0], ShardVersion{}, nil
		}
		vals, err := KeyValues(coll.Key, doc)
		if err != nil {
			return "", ShardVersion{}, mongoerr.Wrap(ErrInvalidShardKey, mongoerr.ShardKeyNotFound,
				"document for %s: %s", ns, msgOf(err))
		}
		ch, err := meta.ChunkFor(ns, vals)
		var v ShardVersion
		if err == nil {
			v, err = meta.ShardVersion(ns, ch.Shard)
		}
		if same(meta, coll) {
			if err != nil {
				return "", ShardVersion{}, fmt.Errorf("target insert into %s: %w", ns, err)
			}
			return ch.Shard, v, nil
		}
	}
	return "", ShardVersion{}, mongoerr.Wrap(ErrMetadataChanging, mongoerr.ConflictingOperationInProgress,
		"chunks of %s changed during targeting %d times in a row; retry", ns, maxAttempts)
}

func msgOf(err error) string {
	if e, ok := mongoerr.As(err); ok {
		return e.Msg
	}
	return err.Error()
}

// KeyValues extracts a document's shard-key values in key order, ready
// for Metadata.ChunkFor: a missing field is null, a hashed field is
// replaced by NumberLong(keys.Hash(value)). A dotted field follows
// embedded documents only; an array anywhere on the path is an error
// wrapping ErrInvalidShardKey (the caller picks the code).
func KeyValues(key catalog.ShardKey, doc bson.Raw) ([]bson.RawValue, error) {
	out := make([]bson.RawValue, len(key))
	for i, f := range key {
		v, err := keyValue(f.Field, doc)
		if err != nil {
			return nil, err
		}
		if f.Hashed {
			v = hashValue(v)
		}
		out[i] = v
	}
	return out, nil
}

var nullValue = bson.RawValue{Type: bson.TypeNull}

// keyValue returns the value at a shard-key path; null when missing.
func keyValue(path string, doc bson.Raw) (bson.RawValue, error) {
	cur := doc
	rest := path
	for {
		name, more, dotted := strings.Cut(rest, ".")
		v, err := cur.LookupErr(name)
		if err != nil {
			return nullValue, nil // missing (or unreadable, which the insert path validates)
		}
		if v.Type == bson.TypeArray {
			return bson.RawValue{}, mongoerr.Wrap(ErrInvalidShardKey, mongoerr.ShardKeyNotFound,
				"shard key field %q cannot contain array values or array descendants", path)
		}
		if !dotted {
			return v, nil
		}
		if v.Type != bson.TypeEmbeddedDocument {
			return nullValue, nil
		}
		cur, rest = v.Document(), more
	}
}

// RequireShardKey refuses a document that lacks a field of the shard key
// (ShardKeyNotFound, 61), for routers that keep the pre-4.4 rule "inserts
// must carry the shard key". Arrays on key paths are refused too.
func RequireShardKey(key catalog.ShardKey, doc bson.Raw) error {
	for _, f := range key {
		if _, ok := query.LookupFirst(doc, f.Field); !ok {
			return mongoerr.Wrap(ErrInvalidShardKey, mongoerr.ShardKeyNotFound,
				"document does not contain shard key for pattern %s (missing %q)", key, f.Field)
		}
		if _, err := keyValue(f.Field, doc); err != nil {
			return err
		}
	}
	return nil
}

// ForUpdate targets an update. A multi-document update goes where its
// filter leads (ForQuery). A single-document update (multi false):
//
//   - goes to one shard when the filter pins one (equality on the full
//     shard key, or any filter whose key range lies on one shard; for an
//     upsert only the former, since the document it may insert must
//     belong there);
//   - without upsert and with an _id equality, is broadcast to the
//     shards by _id (ReasonByID): _id is taken as unique across the
//     cluster, so at most one shard finds the document;
//   - otherwise goes to the filter's shards with NeedsOneDocSemantics:
//     the router finds one matching document first, then updates it on
//     its shard by _id and shard key (MongoDB 7's write without shard
//     key). An upsert that finds nothing inserts the new document where
//     ForInsert sends it. (Also for a targeted upsert, the router should
//     check with ForInsert that the document it inserts belongs to the
//     targeted shard, since the update may set shard-key fields.)
//
// Replacement-document updates are targeted by their filter too.
func ForUpdate(meta Metadata, ns string, filter, update bson.Raw, multi, upsert bool) (Target, error) {
	_ = update // targeting is by filter; CheckShardKeyUnchanged checks the result
	return forWrite(meta, ns, filter, !multi, upsert)
}

// ForDelete targets a delete; limitOne is a delete with limit 1, which
// gets the single-document rules of ForUpdate (without upsert).
func ForDelete(meta Metadata, ns string, filter bson.Raw, limitOne bool) (Target, error) {
	return forWrite(meta, ns, filter, limitOne, false)
}

func forWrite(meta Metadata, ns string, filter bson.Raw, oneDoc, upsert bool) (Target, error) {
	if len(filter) == 0 {
		filter = emptyDoc
	}
	f, err := query.ParseFilter(filter)
	if err != nil {
		return Target{}, err
	}
	t, err := ForFilter(meta, ns, f)
	if err != nil || !oneDoc || t.Unsharded {
		return t, err
	}
	// An upsert may insert: only an equality on the full key says where
	// the new document belongs; otherwise ForQuery's single shard is
	// enough for a single-document write.
	if len(t.Shards) == 1 && (!upsert || t.Reason == ReasonFullKey) {
		return t, nil
	}
	switch {
	case upsert:
		t.Reason = ReasonUpsertNoKey
		t.NeedsOneDocSemantics = true
	case hasIDEquality(f):
		t.Reason = ReasonByID
	default:
		t.Reason = ReasonWithoutShardKey
		t.NeedsOneDocSemantics = true
	}
	return t, nil
}

func hasIDEquality(f *query.Filter) bool {
	v, ok := f.EqualityFields()["_id"]
	return ok && v.Type != bson.TypeArray && v.Type != bson.TypeRegex
}

// CheckShardKeyUnchanged refuses an update whose result changes the
// document's shard key: PSDB never moves a document between chunks as
// part of an update. The error is ImmutableField (66) "After applying the
// update, the (immutable) field 'k' was found to have been altered to
// k: v", MongoDB's answer before 4.2 (4.2+ moves the document inside a
// transaction or retryable write, and otherwise answers
// IllegalOperation). Values compare in keys.Compare order, so 1 -> 1.0 is
// no change, and missing and null are the same key value. An array on a
// key path after the update is NotSingleValueField (54), as in MongoDB.
func CheckShardKeyUnchanged(key catalog.ShardKey, before, after bson.Raw) error {
	for _, f := range key {
		a, err := keyValue(f.Field, after)
		if err != nil {
			return mongoerr.Wrap(ErrInvalidShardKey, mongoerr.NotSingleValueField,
				"after applying the update, shard key field %q holds an array", f.Field)
		}
		b, err := keyValue(f.Field, before)
		if err != nil {
			return err
		}
		if keys.Compare(a, b) != 0 {
			return mongoerr.Wrap(ErrShardKeyChanged, mongoerr.ImmutableField,
				"After applying the update, the (immutable) field '%s' was found to have been altered to %s: %s",
				f.Field, f.Field, a)
		}
	}
	return nil
}
