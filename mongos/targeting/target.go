package targeting

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
)

// Metadata is what targeting reads: the routing metadata of the cluster.
// *catalog.ChunkMap implements it. Implementations must be safe for
// concurrent use; each call may see a newer state than the previous one
// (targeting detects a change of the collection version in between and
// starts over).
type Metadata interface {
	// Collection returns a collection record; false if unknown.
	Collection(ns string) (catalog.Collection, bool)
	// Database returns a database record; false if unknown.
	Database(name string) (catalog.Database, bool)
	// ChunkFor returns the chunk owning the shard-key values vals (in key
	// order, hashed fields already hashed).
	ChunkFor(ns string, vals []bson.RawValue) (catalog.Chunk, error)
	// ChunksOverlapping returns the chunks overlapping the encoded key
	// range [lo, hi) in key order; nil lo/hi are unbounded.
	ChunksOverlapping(ns string, lo, hi []byte) ([]catalog.Chunk, error)
	// ShardsFor returns the shards owning chunks of a sharded ns, sorted
	// (the database primary for an unsharded one).
	ShardsFor(ns string) ([]string, error)
	// ShardVersion returns the highest chunk version shard owns of ns, with
	// the collection epoch (0|0 if it owns none).
	ShardVersion(ns, shard string) (catalog.CollVersion, error)
}

// Compile-time proof that the real cache fits.
var _ Metadata = (*catalog.ChunkMap)(nil)

// ShardVersion is the version a router targeted a shard with: the
// collection epoch and the highest chunk version that shard owned in the
// router's metadata. A shard whose own version differs answers
// StaleConfig. The zero value means UNSHARDED (MongoDB's 0|0||0): the
// collection is unsharded and the database version applies.
type ShardVersion = catalog.CollVersion

// Kind is the kind of destination of an operation.
type Kind int

// Target kinds.
const (
	// OneShard: exactly one shard (the filter pins one chunk's owner, or
	// the collection is unsharded).
	OneShard Kind = iota + 1
	// Shards: the owners of the chunks a set of key points or ranges
	// overlaps (more than one shard).
	Shards
	// AllShards: every shard owning chunks of the collection (the filter
	// does not restrict the shard key). Shards may still hold one shard
	// when the collection lives on one.
	AllShards
)

func (k Kind) String() string {
	switch k {
	case OneShard:
		return "OneShard"
	case Shards:
		return "Shards"
	case AllShards:
		return "AllShards"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Reasons given in Target.Reason (stable strings; explain shows them).
const (
	ReasonUnsharded       = "unsharded: database primary"
	ReasonFullKey         = "equality on full shard key"
	ReasonRange           = "range on ranged key"
	ReasonPrefix          = "equality on shard key prefix"
	ReasonOr              = "union of $or branches"
	ReasonNoKey           = "no shard key in filter"
	ReasonHashedRange     = "no equality on hashed key"
	ReasonEmpty           = "filter matches no shard key value: first chunk's shard"
	ReasonInsert          = "shard key of document"
	ReasonByID            = "single-document write by _id: broadcast"
	ReasonWithoutShardKey = "single-document write without shard key: one-doc semantics"
	ReasonUpsertNoKey     = "upsert without full shard key: one-doc semantics"
)

// Target is a routing decision. It is a plain value; the router sends the
// operation to every shard in Shards with its version from Versions.
type Target struct {
	Kind Kind
	// Shards are the targeted shards, sorted and without duplicates; never
	// empty in a Target returned without error.
	Shards []string
	// Versions holds, per targeted shard, the version the router targeted
	// it with (the zero ShardVersion for an unsharded collection).
	Versions map[string]ShardVersion
	// Unsharded is true when the collection is unsharded (or unknown); the
	// router then sends DatabaseVersion.
	Unsharded       bool
	DatabaseVersion catalog.DatabaseVersion
	// Reason explains the decision (one of the Reason constants).
	Reason string
	// NeedsOneDocSemantics is set for a single-document update or delete
	// (multi: false, limit: 1) whose filter does not pin one shard: the
	// router must run MongoDB's "write without shard key" protocol (find
	// one matching document on the targeted shards, then write it on its
	// shard by _id and shard key) instead of sending the write to every
	// shard, which could change one document per shard.
	NeedsOneDocSemantics bool
}

// String renders a target for explain and logs, e.g.
// "Shards[s1 v2|1||e, s3 v1|4||e] (range on ranged key)".
func (t Target) String() string {
	var b strings.Builder
	b.WriteString(t.Kind.String())
	b.WriteString("[")
	for i, s := range t.Shards {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s)
		if t.Unsharded {
			continue
		}
		if v, ok := t.Versions[s]; ok {
			fmt.Fprintf(&b, " v%s", v)
		}
	}
	b.WriteString("]")
	if t.Unsharded {
		fmt.Fprintf(&b, " db v%s|%d", t.DatabaseVersion.UUID, t.DatabaseVersion.LastMod)
	}
	fmt.Fprintf(&b, " (%s)", t.Reason)
	if t.NeedsOneDocSemantics {
		b.WriteString(" one-doc")
	}
	return b.String()
}

// Has reports whether shard is targeted.
func (t Target) Has(shard string) bool {
	_, ok := slices.BinarySearch(t.Shards, shard)
	return ok
}

// Sentinel errors; each is wrapped in a *mongoerr.Error with MongoDB's
// code (mongoerr.CodeOf).
var (
	// ErrUnknownDatabase: the namespace's database does not exist
	// (NamespaceNotFound). A router creates the database before an insert.
	ErrUnknownDatabase = errors.New("database not found")
	// ErrInvalidShardKey: a document's shard key cannot be extracted: an
	// array on the key path (ShardKeyNotFound for inserts,
	// NotSingleValueField after an update) or, in RequireShardKey, a
	// missing field (ShardKeyNotFound).
	ErrInvalidShardKey = errors.New("invalid shard key value")
	// ErrShardKeyChanged: an update would change a document's shard key
	// (ImmutableField).
	ErrShardKeyChanged = errors.New("shard key changed")
	// ErrMetadataChanging: the collection's chunks kept changing while
	// targeting read them (ConflictingOperationInProgress); retry.
	ErrMetadataChanging = errors.New("routing metadata kept changing")
)
