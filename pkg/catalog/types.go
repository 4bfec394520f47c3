package catalog

import (
	"encoding/json"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Member is one shardd of a shard's replica set.
type Member struct {
	Name string `json:"name"`
	Addr string `json:"addr"` // gRPC address host:port
}

// ShardState is a shard's lifecycle state.
type ShardState string

const (
	ShardActive   ShardState = "active"
	ShardDraining ShardState = "draining"
)

// Shard is a shard record. ModRevision is the etcd revision it was read at
// (for callers that pass it back); it is not stored.
type Shard struct {
	Name        string     `json:"name"`
	Members     []Member   `json:"members"`
	State       ShardState `json:"state"`
	ModRevision int64      `json:"-"`
}

// Member returns the member with the given name.
func (s Shard) Member(name string) (Member, bool) {
	for _, m := range s.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// DatabaseVersion identifies a database's placement; LastMod grows on every
// movePrimary (SetPrimaryShard) so a shard can detect a stale router for
// unsharded collections.
type DatabaseVersion struct {
	UUID    string `json:"uuid"`
	LastMod int64  `json:"lastMod"`
}

// Database is a database record.
type Database struct {
	Name         string          `json:"name"`
	PrimaryShard string          `json:"primaryShard"`
	Version      DatabaseVersion `json:"version"`
	ModRevision  int64           `json:"-"`
}

// KeyField is one field of a shard key: ranged ({f: 1}) or hashed
// ({f: "hashed"}).
type KeyField struct {
	Field  string `json:"field"`
	Hashed bool   `json:"hashed,omitempty"`
}

// ShardKey is an ordered shard key pattern. At most one field is hashed.
type ShardKey []KeyField

// ParseShardKey parses a shard key document such as {a: 1, b: 1} or
// {k: "hashed"}. Errors are BadValue (ErrInvalid).
func ParseShardKey(doc bson.Raw) (ShardKey, error) {
	elems, err := doc.Elements()
	if err != nil {
		return nil, mongoerr.Wrap(ErrInvalid, mongoerr.InvalidBSON, "shard key pattern: %v", err)
	}
	var k ShardKey
	for _, e := range elems {
		f := KeyField{Field: e.Key()}
		v := e.Value()
		switch v.Type {
		case bson.TypeString:
			if v.StringValue() != "hashed" {
				return nil, invalid("shard key field %q: unsupported index type %q; use 1 or \"hashed\"", f.Field, v.StringValue())
			}
			f.Hashed = true
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
			n, _ := v.AsInt64OK()
			if v.Type == bson.TypeDouble {
				n = int64(v.Double())
			}
			if n != 1 {
				return nil, invalid("shard key field %q must be 1 or \"hashed\", got %v", f.Field, v)
			}
		default:
			return nil, invalid("shard key field %q must be 1 or \"hashed\", got %v", f.Field, v)
		}
		k = append(k, f)
	}
	if err := k.validate(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k ShardKey) validate() error {
	if len(k) == 0 {
		return invalid("shard key pattern is empty")
	}
	hashed := 0
	seen := map[string]bool{}
	for _, f := range k {
		if f.Field == "" || strings.HasPrefix(f.Field, "$") || strings.Contains(f.Field, "..") ||
			strings.HasPrefix(f.Field, ".") || strings.HasSuffix(f.Field, ".") {
			return invalid("shard key field name %q is not valid", f.Field)
		}
		if seen[f.Field] {
			return invalid("shard key field %q appears twice", f.Field)
		}
		seen[f.Field] = true
		if f.Hashed {
			hashed++
		}
	}
	if hashed > 1 {
		return invalid("a shard key may have at most one hashed field")
	}
	return nil
}

// Hashed reports whether the key's first field is hashed (the pre-split
// case).
func (k ShardKey) Hashed() bool { return len(k) > 0 && k[0].Hashed }

// Doc returns the key pattern as a document ({a: 1, k: "hashed"}).
func (k ShardKey) Doc() bson.D {
	d := make(bson.D, 0, len(k))
	for _, f := range k {
		if f.Hashed {
			d = append(d, bson.E{Key: f.Field, Value: "hashed"})
		} else {
			d = append(d, bson.E{Key: f.Field, Value: int32(1)})
		}
	}
	return d
}

// Equal reports whether two keys are the same pattern.
func (k ShardKey) Equal(o ShardKey) bool {
	if len(k) != len(o) {
		return false
	}
	for i := range k {
		if k[i] != o[i] {
			return false
		}
	}
	return true
}

func (k ShardKey) String() string {
	var b strings.Builder
	b.WriteString("{")
	for i, f := range k {
		if i > 0 {
			b.WriteString(", ")
		}
		if f.Hashed {
			fmt.Fprintf(&b, "%s: \"hashed\"", f.Field)
		} else {
			fmt.Fprintf(&b, "%s: 1", f.Field)
		}
	}
	b.WriteString("}")
	return b.String()
}

// Version is a chunk version major.minor. A migration bumps major, a split
// bumps minor. Versions are compared within one epoch only.
type Version struct {
	Major uint32 `json:"major"`
	Minor uint32 `json:"minor"`
}

// Less orders versions.
func (v Version) Less(o Version) bool {
	return v.Major < o.Major || v.Major == o.Major && v.Minor < o.Minor
}

func (v Version) String() string { return fmt.Sprintf("%d|%d", v.Major, v.Minor) }

// CollVersion is a version with its collection's epoch: what routers send
// with a request and shards compare (MongoDB's ChunkVersion).
type CollVersion struct {
	Epoch string `json:"epoch"`
	Version
}

func (v CollVersion) String() string { return fmt.Sprintf("%d|%d||%s", v.Major, v.Minor, v.Epoch) }

// Collection is a collection record. An unsharded collection (Sharded
// false) has no key, no chunks and lives on its database's primary shard.
type Collection struct {
	NS      string   `json:"ns"`
	UUID    string   `json:"uuid"`
	Epoch   string   `json:"epoch"`
	Sharded bool     `json:"sharded"`
	Key     ShardKey `json:"key,omitempty"`
	Unique  bool     `json:"unique,omitempty"`
	// Version is the collection version: the highest version of its
	// chunks (kept equal by every chunk-changing Txn).
	Version     Version `json:"version"`
	ModRevision int64   `json:"-"`
}

// DB returns the database part of the namespace.
func (c Collection) DB() string { db, _, _ := strings.Cut(c.NS, "."); return db }

// CollVersion returns the collection version with its epoch.
func (c Collection) CollVersion() CollVersion { return CollVersion{Epoch: c.Epoch, Version: c.Version} }

// Chunk is one range [Min, Max) of a sharded collection's key space. Min
// and Max are shard-key documents in key order (hashed fields hold the
// NumberLong hash); MinKey and MaxKey are their order-preserving encodings
// (keys.EncodeTuple), so chunk order is bytes.Compare of MinKey. Values
// returned by the catalog and ChunkMap share these slices: treat them as
// read-only.
type Chunk struct {
	UUID        string
	Min, Max    bson.Raw
	MinKey      []byte
	MaxKey      []byte
	Shard       string
	Version     Version
	ModRevision int64
}

func (ch Chunk) String() string {
	return fmt.Sprintf("[%s, %s) on %s v%s", ch.Min, ch.Max, ch.Shard, ch.Version)
}

// chunkRecord is a chunk's stored value.
type chunkRecord struct {
	Min     json.RawMessage `json:"min"`
	Max     json.RawMessage `json:"max"`
	Shard   string          `json:"shard"`
	Version Version         `json:"version"`
}

// PrimaryInfo is the holder of a shard's primary lease.
type PrimaryInfo struct {
	Member string `json:"member"`
	Term   int64  `json:"term"`
}

// Router is a registered router.
type Router struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// Role is a role grant of a user.
type Role struct {
	Role string `json:"role"`
	DB   string `json:"db"`
}

// User is a stored user. Credentials is opaque to the catalog (the SCRAM
// credentials blob the auth code produces).
type User struct {
	User        string `json:"user"`
	DB          string `json:"db"`
	Credentials []byte `json:"credentials"`
	Roles       []Role `json:"roles"`
	ModRevision int64  `json:"-"`
}

type clusterRecord struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	CreatedAt string `json:"createdAt"`
}

type termRecord struct {
	Term int64 `json:"term"`
}
