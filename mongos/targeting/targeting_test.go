package targeting

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// hashOwners returns the sorted owners of the chunks of db.hashed holding
// the hashes of vals.
func hashOwners(t *testing.T, f *fakeMeta, ns string, vals ...any) []string {
	t.Helper()
	var out []string
	for _, v := range vals {
		ch, err := f.ChunkFor(ns, []bson.RawValue{hashValue(rv(t, v))})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ch.Shard)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

type queryCase struct {
	name   string
	ns     string
	filter bson.D
	kind   Kind
	shards []string
	reason string
}

func TestForQuery(t *testing.T) {
	f := testMeta(t)
	ints := make([]any, 40)
	for i := range ints {
		ints[i] = i
	}
	tests := []queryCase{
		// Ranged, single field.
		{"eq", "db.ranged", bson.D{{Key: "a", Value: 5}}, OneShard, []string{"s3"}, ReasonFullKey},
		{"eq double", "db.ranged", bson.D{{Key: "a", Value: 5.0}}, OneShard, []string{"s3"}, ReasonFullKey},
		{"eq int64 on bound", "db.ranged", bson.D{{Key: "a", Value: int64(10)}}, OneShard, []string{"s1"}, ReasonFullKey},
		{"$eq with other field", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$eq", Value: 5}}}, {Key: "c", Value: 3}}, OneShard, []string{"s3"}, ReasonFullKey},
		{"$in two", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{5, 15}}}}}, Shards, []string{"s1", "s3"}, ReasonFullKey},
		{"$in three", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{25, 5, 15, 5}}}}}, Shards, threeShards, ReasonFullKey},
		{"null: chunk of null and missing", "db.ranged", bson.D{{Key: "a", Value: nil}}, OneShard, []string{"s2"}, ReasonFullKey},
		{"$in with null", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{nil, 5}}}}}, Shards, []string{"s2", "s3"}, ReasonFullKey},
		{"closed range in a chunk", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}, {Key: "$lt", Value: 10}}}}, OneShard, []string{"s3"}, ReasonRange},
		{"closed range touching next chunk", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}, {Key: "$lte", Value: 10}}}}, Shards, []string{"s1", "s3"}, ReasonRange},
		{"open interval", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 10}, {Key: "$lt", Value: 20}}}}, OneShard, []string{"s1"}, ReasonRange},
		{"exclusive low on bound", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 9.5}, {Key: "$lt", Value: 10}}}}, OneShard, []string{"s3"}, ReasonRange},
		{"crossing chunks", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 5}, {Key: "$lt", Value: 25}}}}, Shards, threeShards, ReasonRange},
		{"open above", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 25}}}}, Shards, threeShards, ReasonRange},
		{"open below", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$lt", Value: -5}}}}, Shards, []string{"s1", "s2"}, ReasonRange},
		{"strings", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: "n"}}}}, OneShard, []string{"s1"}, ReasonRange},
		{"$and of ranges", "db.ranged", bson.D{{Key: "$and", Value: bson.A{bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 10}}}}, bson.D{{Key: "a", Value: bson.D{{Key: "$lt", Value: 20}}}}}}}, OneShard, []string{"s1"}, ReasonRange},
		{"contradiction", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 5}, {Key: "$lt", Value: 3}}}}, OneShard, []string{"s1"}, ReasonEmpty},
		{"$in empty", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}, OneShard, []string{"s1"}, ReasonEmpty},
		{"eq and $in intersect", "db.ranged", bson.D{{Key: "a", Value: 5}, {Key: "$and", Value: bson.A{bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{5, 15}}}}}}}}, OneShard, []string{"s3"}, ReasonFullKey},
		{"many $in values", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A(ints[:9])}}}}, OneShard, []string{"s3"}, ReasonFullKey},
		{"no key", "db.ranged", bson.D{{Key: "b", Value: 1}}, AllShards, threeShards, ReasonNoKey},
		{"empty filter", "db.ranged", bson.D{}, AllShards, threeShards, ReasonNoKey},
		{"$ne", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$ne", Value: 5}}}}, AllShards, threeShards, ReasonNoKey},
		{"$or one chunk", "db.ranged", bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 2}}}}}, OneShard, []string{"s3"}, ReasonFullKey},
		{"$or two chunks", "db.ranged", bson.D{{Key: "c", Value: 1}, {Key: "$or", Value: bson.A{bson.D{{Key: "a", Value: 5}}, bson.D{{Key: "a", Value: 15}}}}}, Shards, []string{"s1", "s3"}, ReasonFullKey},
		{"$or point and range", "db.ranged", bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "a", Value: 5}}, bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 10}, {Key: "$lt", Value: 20}}}}}}}, Shards, []string{"s1", "s3"}, ReasonOr},
		{"$or with unkeyed branch", "db.ranged", bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "a", Value: 5}}, bson.D{{Key: "b", Value: 1}}}}}, AllShards, threeShards, ReasonNoKey},
		{"$or with contradicting branch", "db.ranged", bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "a", Value: 5}}, bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}}}}, OneShard, []string{"s3"}, ReasonFullKey},
		{"$or under bounded conjunction", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}, {Key: "$lt", Value: 10}}}, {Key: "$or", Value: bson.A{bson.D{{Key: "b", Value: 1}}, bson.D{{Key: "b", Value: 2}}}}}, OneShard, []string{"s3"}, ReasonRange},
		{"$or branch uses rest", "db.compound", bson.D{{Key: "a", Value: 1}, {Key: "$or", Value: bson.A{bson.D{{Key: "b", Value: 5}}, bson.D{{Key: "b", Value: -1}}}}}, Shards, []string{"s2", "s3"}, ReasonFullKey},
		{"regex", "db.ranged", bson.D{{Key: "a", Value: bson.Regex{Pattern: "^x"}}}, AllShards, threeShards, ReasonNoKey},
		{"array equality", "db.ranged", bson.D{{Key: "a", Value: bson.A{1, 2}}}, AllShards, threeShards, ReasonNoKey},
		{"$in with array", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{1, bson.A{2}}}}}}, AllShards, threeShards, ReasonNoKey},
		// Compound ranged key.
		{"compound full", "db.compound", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 5}}, OneShard, []string{"s3"}, ReasonFullKey},
		{"compound full, b null", "db.compound", bson.D{{Key: "a", Value: 3}, {Key: "b", Value: nil}}, OneShard, []string{"s2"}, ReasonFullKey},
		{"compound $in x $in", "db.compound", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{0, 5}}}}, {Key: "b", Value: bson.D{{Key: "$in", Value: bson.A{0, 5}}}}}, Shards, []string{"s2", "s3"}, ReasonFullKey},
		{"compound prefix", "db.compound", bson.D{{Key: "a", Value: 1}}, Shards, threeShards, ReasonPrefix},
		{"compound prefix one chunk", "db.compound", bson.D{{Key: "a", Value: 3}}, OneShard, []string{"s2"}, ReasonPrefix},
		{"compound prefix + range", "db.compound", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: bson.D{{Key: "$gte", Value: 0}, {Key: "$lt", Value: 10}}}}, OneShard, []string{"s3"}, ReasonRange},
		{"compound prefix + open range", "db.compound", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: bson.D{{Key: "$gte", Value: 10}}}}, OneShard, []string{"s1"}, ReasonRange},
		{"compound prefix + below", "db.compound", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: bson.D{{Key: "$lt", Value: 0}}}}, OneShard, []string{"s2"}, ReasonRange},
		{"compound range on first", "db.compound", bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 2}, {Key: "$lt", Value: 5}}}}, Shards, []string{"s1", "s2"}, ReasonRange},
		{"compound range on first ignores second", "db.compound", bson.D{{Key: "a", Value: bson.D{{Key: "$gt", Value: 5}}}, {Key: "b", Value: 1}}, OneShard, []string{"s3"}, ReasonRange},
		{"compound second only", "db.compound", bson.D{{Key: "b", Value: 1}}, AllShards, threeShards, ReasonNoKey},
		// Dotted key.
		{"dotted eq", "db.dotted", bson.D{{Key: "x.y", Value: 50}}, OneShard, []string{"s2"}, ReasonFullKey},
		{"dotted range", "db.dotted", bson.D{{Key: "x.y", Value: bson.D{{Key: "$gte", Value: 100}}}}, OneShard, []string{"s3"}, ReasonRange},
		{"dotted null", "db.dotted", bson.D{{Key: "x.y", Value: nil}}, OneShard, []string{"s1"}, ReasonFullKey},
		{"dotted via object", "db.dotted", bson.D{{Key: "x", Value: bson.D{{Key: "y", Value: 50}}}}, AllShards, threeShards, ReasonNoKey},
		// Hashed key.
		{"hashed eq", "db.hashed", bson.D{{Key: "h", Value: 5}}, OneShard, hashOwners(t, f, "db.hashed", 5), ReasonFullKey},
		{"hashed eq double", "db.hashed", bson.D{{Key: "h", Value: 5.0}}, OneShard, hashOwners(t, f, "db.hashed", 5), ReasonFullKey},
		{"hashed null", "db.hashed", bson.D{{Key: "h", Value: nil}}, OneShard, hashOwners(t, f, "db.hashed", nil), ReasonFullKey},
		{"hashed range", "db.hashed", bson.D{{Key: "h", Value: bson.D{{Key: "$gt", Value: 5}}}}, AllShards, threeShards, ReasonHashedRange},
		{"hashed range and eq", "db.hashed", bson.D{{Key: "h", Value: bson.D{{Key: "$gt", Value: 1}, {Key: "$eq", Value: 5}}}}, OneShard, hashOwners(t, f, "db.hashed", 5), ReasonFullKey},
		{"hashed no key", "db.hashed", bson.D{{Key: "z", Value: 5}}, AllShards, threeShards, ReasonNoKey},
		{"hashed compound prefix", "db.hcomp", bson.D{{Key: "h", Value: 5}}, OneShard, hashOwners(t, f, "db.hcomp", 5), ReasonPrefix},
		{"hashed compound second only", "db.hcomp", bson.D{{Key: "a", Value: 5}}, AllShards, []string{"s1", "s2"}, ReasonNoKey},
		// Unsharded.
		{"unsharded", "db.plain", bson.D{{Key: "a", Value: 5}}, OneShard, []string{"s2"}, ReasonUnsharded},
		{"unknown collection", "db.nothere", bson.D{}, OneShard, []string{"s2"}, ReasonUnsharded},
	}
	// $in over many values on the hashed key: the union of their owners.
	many := make(bson.A, 50)
	for i := range many {
		many[i] = i
	}
	tests = append(tests, queryCase{"hashed $in many", "db.hashed", bson.D{{Key: "h", Value: bson.D{{Key: "$in", Value: many}}}}, Shards, hashOwners(t, f, "db.hashed", []any(many)...), ReasonFullKey})

	// Past maxPoints values, the hull of the $in values bounds the field.
	huge := make(bson.A, maxPoints+1)
	for i := range huge {
		huge[i] = float64(i) / 2000
	}
	tests = append(tests, queryCase{"$in past maxPoints", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: huge}}}}, OneShard, []string{"s3"}, ReasonRange},
		queryCase{"hashed $in past maxPoints", "db.hashed", bson.D{{Key: "h", Value: bson.D{{Key: "$in", Value: huge}}}}, AllShards, threeShards, ReasonNoKey})

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ForQuery(f, tc.ns, raw(t, tc.filter))
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != tc.kind || !slices.Equal(got.Shards, tc.shards) || got.Reason != tc.reason {
				t.Fatalf("got %s, want %s %v (%s)", got, tc.kind, tc.shards, tc.reason)
			}
			if len(got.Versions) != len(got.Shards) {
				t.Fatalf("versions %v for shards %v", got.Versions, got.Shards)
			}
			for _, s := range got.Shards {
				want, err := f.ShardVersion(tc.ns, s)
				if got.Unsharded {
					want, err = ShardVersion{}, nil
				}
				if err != nil || got.Versions[s] != want {
					t.Fatalf("version of %s: got %v, want %v (%v)", s, got.Versions[s], want, err)
				}
			}
			if got.NeedsOneDocSemantics {
				t.Fatal("a query never needs one-doc semantics")
			}
		})
	}
}

func TestForQueryDetails(t *testing.T) {
	f := testMeta(t)
	got, err := ForQuery(f, "db.ranged", raw(t, bson.D{{Key: "a", Value: 5}}))
	if err != nil {
		t.Fatal(err)
	}
	// s3 owns chunks 2 and 5 of db.ranged (versions 1|2 and 1|5).
	want := ShardVersion{Epoch: "db.ranged-epoch", Version: catalog.Version{Major: 1, Minor: 5}}
	if got.Versions["s3"] != want {
		t.Fatalf("version %v, want %v", got.Versions["s3"], want)
	}
	if s := got.String(); s != "OneShard[s3 v1|5||db.ranged-epoch] (equality on full shard key)" {
		t.Fatalf("String() = %q", s)
	}
	if !got.Has("s3") || got.Has("s1") {
		t.Fatal("Has")
	}

	u, err := ForQuery(f, "db.plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Unsharded || u.DatabaseVersion != f.dbs["db"].Version || u.Versions["s2"] != (ShardVersion{}) {
		t.Fatalf("unsharded target %+v", u)
	}
	if s := u.String(); !strings.Contains(s, "db vdbuuid|3") || !strings.Contains(s, ReasonUnsharded) {
		t.Fatalf("String() = %q", s)
	}

	// Errors: bad filter, unknown database, bad namespace.
	_, err = ForQuery(f, "db.ranged", raw(t, bson.D{{Key: "a", Value: bson.D{{Key: "$bogus", Value: 1}}}}))
	if mongoerr.CodeOf(err) != mongoerr.BadValue {
		t.Fatalf("bad operator: %v", err)
	}
	_, err = ForQuery(f, "nodb.c", nil)
	if !errors.Is(err, ErrUnknownDatabase) || mongoerr.CodeOf(err) != mongoerr.NamespaceNotFound {
		t.Fatalf("unknown db: %v", err)
	}
	if _, err = ForQuery(f, "nodot", nil); err == nil {
		t.Fatal("namespace without a dot accepted")
	}
}

// TestConsistencyRetry changes the collection version while targeting
// reads the chunks: the first attempts are discarded.
func TestConsistencyRetry(t *testing.T) {
	f := testMeta(t)
	bumps := 0
	f.onCollection = func(f *fakeMeta) {
		if bumps < 3 {
			bumps++
			c := f.colls["db.ranged"]
			c.Version.Minor++
			f.colls["db.ranged"] = c
		}
	}
	got, err := ForQuery(f, "db.ranged", raw(t, bson.D{{Key: "a", Value: 5}}))
	if err != nil || !slices.Equal(got.Shards, []string{"s3"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	// The hook bumps before reads 1, 2 and 3: attempt 1 (reads 1, 2) sees
	// a change and is discarded; attempt 2 (reads 3, 4) is kept.
	if f.calls != 4 {
		t.Fatalf("%d Collection calls", f.calls)
	}
	f.onCollection = func(f *fakeMeta) {
		c := f.colls["db.ranged"]
		c.Version.Minor++
		f.colls["db.ranged"] = c
	}
	_, err = ForQuery(f, "db.ranged", raw(t, bson.D{{Key: "a", Value: 5}}))
	if !errors.Is(err, ErrMetadataChanging) || mongoerr.CodeOf(err) != mongoerr.ConflictingOperationInProgress {
		t.Fatalf("want ErrMetadataChanging, got %v", err)
	}
	_, _, err = ForInsert(f, "db.ranged", raw(t, bson.D{{Key: "a", Value: 5}}))
	if !errors.Is(err, ErrMetadataChanging) {
		t.Fatalf("insert: want ErrMetadataChanging, got %v", err)
	}
}

func TestForInsert(t *testing.T) {
	f := testMeta(t)
	hashOwner := func(v any) string { return hashOwners(t, f, "db.hashed", v)[0] }
	tests := []struct {
		name  string
		ns    string
		doc   bson.D
		shard string
		code  mongoerr.Code
	}{
		{"ranged", "db.ranged", bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 5}}, "s3", 0},
		{"ranged string", "db.ranged", bson.D{{Key: "a", Value: "zz"}}, "s1", 0},
		{"ranged missing is null", "db.ranged", bson.D{{Key: "_id", Value: 1}}, "s2", 0},
		{"ranged explicit null", "db.ranged", bson.D{{Key: "a", Value: nil}}, "s2", 0},
		{"ranged MaxKey", "db.ranged", bson.D{{Key: "a", Value: bson.MaxKey{}}}, "s1", 0},
		{"ranged MinKey", "db.ranged", bson.D{{Key: "a", Value: bson.MinKey{}}}, "s1", 0},
		{"ranged array", "db.ranged", bson.D{{Key: "a", Value: bson.A{1, 2}}}, "", mongoerr.ShardKeyNotFound},
		{"ranged empty array", "db.ranged", bson.D{{Key: "a", Value: bson.A{}}}, "", mongoerr.ShardKeyNotFound},
		{"hashed", "db.hashed", bson.D{{Key: "h", Value: 5}}, hashOwner(5), 0},
		{"hashed missing is hash(null)", "db.hashed", bson.D{{Key: "x", Value: 5}}, hashOwner(nil), 0},
		{"hashed array", "db.hashed", bson.D{{Key: "h", Value: bson.A{5}}}, "", mongoerr.ShardKeyNotFound},
		{"compound", "db.compound", bson.D{{Key: "b", Value: 5}, {Key: "a", Value: 1}}, "s3", 0},
		{"compound missing b", "db.compound", bson.D{{Key: "a", Value: 1}}, "s2", 0},
		{"dotted", "db.dotted", bson.D{{Key: "x", Value: bson.D{{Key: "y", Value: 50}}}}, "s2", 0},
		{"dotted parent scalar", "db.dotted", bson.D{{Key: "x", Value: 5}}, "s1", 0},
		{"dotted array descendant", "db.dotted", bson.D{{Key: "x", Value: bson.A{bson.D{{Key: "y", Value: 50}}}}}, "", mongoerr.ShardKeyNotFound},
		{"dotted array leaf", "db.dotted", bson.D{{Key: "x", Value: bson.D{{Key: "y", Value: bson.A{1}}}}}, "", mongoerr.ShardKeyNotFound},
		{"unsharded", "db.plain", bson.D{{Key: "a", Value: bson.A{1}}}, "s2", 0},
		{"unknown collection", "db.new", bson.D{{Key: "a", Value: 1}}, "s2", 0},
		{"unknown database", "nodb.c", bson.D{{Key: "a", Value: 1}}, "", mongoerr.NamespaceNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			shard, v, err := ForInsert(f, tc.ns, raw(t, tc.doc))
			if tc.code != 0 {
				if mongoerr.CodeOf(err) != tc.code {
					t.Fatalf("want code %v, got %v", tc.code, err)
				}
				if tc.code == mongoerr.ShardKeyNotFound && !errors.Is(err, ErrInvalidShardKey) {
					t.Fatalf("want ErrInvalidShardKey, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if shard != tc.shard {
				t.Fatalf("shard %s, want %s", shard, tc.shard)
			}
			want := ShardVersion{}
			if c := f.colls[tc.ns]; c.Sharded {
				want, _ = f.ShardVersion(tc.ns, shard)
			}
			if v != want {
				t.Fatalf("version %v, want %v", v, want)
			}
		})
	}
}

func TestRequireShardKey(t *testing.T) {
	for _, tc := range []struct {
		doc  bson.D
		code mongoerr.Code
	}{
		{bson.D{{Key: "a", Value: 1}, {Key: "b", Value: nil}}, 0},
		{bson.D{{Key: "a", Value: 1}}, mongoerr.ShardKeyNotFound},
		{bson.D{{Key: "a", Value: 1}, {Key: "b", Value: bson.A{1}}}, mongoerr.ShardKeyNotFound},
	} {
		err := RequireShardKey(compoundKey, raw(t, tc.doc))
		if mongoerr.CodeOf(err) != tc.code {
			t.Fatalf("%v: got %v, want code %v", tc.doc, err, tc.code)
		}
	}
}

func TestForWrites(t *testing.T) {
	f := testMeta(t)
	tests := []struct {
		name    string
		ns      string
		filter  bson.D
		delete  bool
		multi   bool // update multi; delete without limit
		upsert  bool
		shards  []string
		reason  string
		oneDocs bool
	}{
		{"update by full key", "db.ranged", bson.D{{Key: "a", Value: 5}}, false, false, false, []string{"s3"}, ReasonFullKey, false},
		{"upsert by full key", "db.ranged", bson.D{{Key: "a", Value: 5}}, false, false, true, []string{"s3"}, ReasonFullKey, false},
		{"update by _id", "db.ranged", bson.D{{Key: "_id", Value: 7}}, false, false, false, threeShards, ReasonByID, false},
		{"upsert by _id", "db.ranged", bson.D{{Key: "_id", Value: 7}}, false, false, true, threeShards, ReasonUpsertNoKey, true},
		{"update without key", "db.ranged", bson.D{{Key: "b", Value: 1}}, false, false, false, threeShards, ReasonWithoutShardKey, true},
		{"update multi without key", "db.ranged", bson.D{{Key: "b", Value: 1}}, false, true, false, threeShards, ReasonNoKey, false},
		{"update range in one shard", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}, {Key: "$lt", Value: 10}}}}, false, false, false, []string{"s3"}, ReasonRange, false},
		{"upsert range in one shard", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}, {Key: "$lt", Value: 10}}}}, false, false, true, []string{"s3"}, ReasonUpsertNoKey, true},
		{"update range over shards", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}, {Key: "$lt", Value: 15}}}}, false, false, false, []string{"s1", "s3"}, ReasonWithoutShardKey, true},
		{"update $in over shards", "db.ranged", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{5, 15}}}}}, false, false, false, []string{"s1", "s3"}, ReasonWithoutShardKey, true},
		{"update hashed key", "db.hashed", bson.D{{Key: "h", Value: 5}}, false, false, true, hashOwners(t, f, "db.hashed", 5), ReasonFullKey, false},
		{"update unsharded", "db.plain", bson.D{{Key: "b", Value: 1}}, false, false, true, []string{"s2"}, ReasonUnsharded, false},
		{"delete one by key", "db.compound", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 5}}, true, false, false, []string{"s3"}, ReasonFullKey, false},
		{"delete one without key", "db.compound", bson.D{{Key: "c", Value: 1}}, true, false, false, threeShards, ReasonWithoutShardKey, true},
		{"delete one by _id", "db.compound", bson.D{{Key: "_id", Value: 1}}, true, false, false, threeShards, ReasonByID, false},
		{"delete many without key", "db.compound", bson.D{{Key: "c", Value: 1}}, true, true, false, threeShards, ReasonNoKey, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Target
			var err error
			if tc.delete {
				got, err = ForDelete(f, tc.ns, raw(t, tc.filter), !tc.multi)
			} else {
				got, err = ForUpdate(f, tc.ns, raw(t, tc.filter), raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "z", Value: 1}}}}), tc.multi, tc.upsert)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Shards, tc.shards) || got.Reason != tc.reason || got.NeedsOneDocSemantics != tc.oneDocs {
				t.Fatalf("got %s, want %v (%s) one-doc %v", got, tc.shards, tc.reason, tc.oneDocs)
			}
		})
	}
	if _, err := ForDelete(f, "db.ranged", raw(t, bson.D{{Key: "$where", Value: 1}}), true); err == nil {
		t.Fatal("bad filter accepted")
	}
}

func TestCheckShardKeyUnchanged(t *testing.T) {
	tests := []struct {
		name          string
		key           catalog.ShardKey
		before, after bson.D
		code          mongoerr.Code
	}{
		{"other field set", compoundKey, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}, {Key: "c", Value: 3}}, 0},
		{"same value other type", compoundKey, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, bson.D{{Key: "b", Value: 2.0}, {Key: "a", Value: int64(1)}}, 0},
		{"changed", compoundKey, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, bson.D{{Key: "a", Value: 2}, {Key: "b", Value: 2}}, mongoerr.ImmutableField},
		{"type changed", compoundKey, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, bson.D{{Key: "a", Value: "1"}, {Key: "b", Value: 2}}, mongoerr.ImmutableField},
		{"removed", compoundKey, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, bson.D{{Key: "a", Value: 1}}, mongoerr.ImmutableField},
		{"missing to null", compoundKey, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: nil}}, 0},
		{"missing to value", compoundKey, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 3}}, mongoerr.ImmutableField},
		{"array after", compoundKey, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, bson.D{{Key: "a", Value: bson.A{1}}, {Key: "b", Value: 2}}, mongoerr.NotSingleValueField},
		{"dotted sibling", dottedKey, bson.D{{Key: "x", Value: bson.D{{Key: "y", Value: 1}}}}, bson.D{{Key: "x", Value: bson.D{{Key: "y", Value: 1}, {Key: "z", Value: 2}}}}, 0},
		{"dotted changed", dottedKey, bson.D{{Key: "x", Value: bson.D{{Key: "y", Value: 1}}}}, bson.D{{Key: "x", Value: bson.D{{Key: "y", Value: 2}}}}, mongoerr.ImmutableField},
		{"hashed changed", hashedKey, bson.D{{Key: "h", Value: 1}}, bson.D{{Key: "h", Value: 2}}, mongoerr.ImmutableField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckShardKeyUnchanged(tc.key, raw(t, tc.before), raw(t, tc.after))
			if mongoerr.CodeOf(err) != tc.code {
				t.Fatalf("got %v, want code %v", err, tc.code)
			}
			if tc.code == mongoerr.ImmutableField {
				if !errors.Is(err, ErrShardKeyChanged) {
					t.Fatalf("not ErrShardKeyChanged: %v", err)
				}
				if !strings.Contains(err.Error(), "After applying the update, the (immutable) field") {
					t.Fatalf("message %q", err)
				}
			}
		})
	}
}

func TestKeyValuesMatchCatalog(t *testing.T) {
	// Where both accept a document, KeyValues and catalog's ShardKey.Values
	// agree, so routers and shards place documents alike.
	docs := []bson.D{
		{{Key: "a", Value: 1}, {Key: "b", Value: "x"}, {Key: "h", Value: 3}, {Key: "x", Value: bson.D{{Key: "y", Value: 2}}}},
		{},
		{{Key: "a", Value: nil}, {Key: "x", Value: 5}},
		{{Key: "h", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "x", Value: bson.D{{Key: "z", Value: 1}}}},
	}
	for _, key := range []catalog.ShardKey{rangedKey, compoundKey, hashedKey, dottedKey, hcompKey} {
		for _, d := range docs {
			doc := raw(t, d)
			a, err1 := KeyValues(key, doc)
			b, err2 := key.Values(doc)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if !slices.EqualFunc(a, b, func(x, y bson.RawValue) bool { return keys.Compare(x, y) == 0 && x.Type == y.Type }) {
				t.Fatalf("key %s doc %v: %v vs %v", key, d, a, b)
			}
		}
	}
}
