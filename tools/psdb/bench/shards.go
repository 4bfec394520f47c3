package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/keys"
)

// broadcastShard is the shard name under which operations sent to every
// shard (range scans over a hashed key) are counted.
const broadcastShard = "*"

// ShardMap says which shard owns a record key, from a snapshot of the
// router's config.collections, config.chunks and config.databases. Key
// hashing and encoding are the server's own (pkg/catalog, pkg/keys), so
// the owner computed here is the shard the router targets, as of the
// snapshot. It is immutable once built.
type ShardMap struct {
	NS      string
	Sharded bool
	// Key is the shard key pattern, nil when unsharded.
	Key catalog.ShardKey
	// Primary is the database's primary shard (owner of an unsharded
	// collection).
	Primary string
	mins    [][]byte // encoded chunk lower bounds, ascending
	owners  []string // owners[i] owns [mins[i], mins[i+1])
	// ChunksPerShard counts the chunks of each shard.
	ChunksPerShard map[string]int
}

// LoadShardMap reads the placement of db.coll through a router.
func LoadShardMap(ctx context.Context, cli *mongo.Client, db, coll string) (*ShardMap, error) {
	ns := db + "." + coll
	cfg := cli.Database("config")
	m := &ShardMap{NS: ns, ChunksPerShard: map[string]int{}}
	var dbDoc struct {
		Primary string `bson:"primary"`
	}
	err := cfg.Collection("databases").FindOne(ctx, bson.D{{Key: "_id", Value: db}}).Decode(&dbDoc)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("read config.databases for %s: %w", db, err)
	}
	m.Primary = dbDoc.Primary
	var collDoc struct {
		Key bson.Raw `bson:"key"`
	}
	err = cfg.Collection("collections").FindOne(ctx, bson.D{{Key: "_id", Value: ns}}).Decode(&collDoc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config.collections for %s: %w", ns, err)
	}
	if m.Key, err = catalog.ParseShardKey(collDoc.Key); err != nil {
		return nil, fmt.Errorf("shard key of %s: %w", ns, err)
	}
	m.Sharded = true
	cur, err := cfg.Collection("chunks").Find(ctx, bson.D{{Key: "ns", Value: ns}})
	if err != nil {
		return nil, fmt.Errorf("read config.chunks for %s: %w", ns, err)
	}
	var chunks []chunkDoc
	if err := cur.All(ctx, &chunks); err != nil {
		return nil, fmt.Errorf("read config.chunks for %s: %w", ns, err)
	}
	if err := m.setChunks(chunks); err != nil {
		return nil, err
	}
	return m, nil
}

// chunkDoc is the part of a config.chunks document the map needs.
type chunkDoc struct {
	Min   bson.Raw `bson:"min"`
	Shard string   `bson:"shard"`
}

// setChunks sorts the chunks by lower bound, encoded as the server
// encodes them (keys.EncodeTuple of the bound's values, already hashed).
func (m *ShardMap) setChunks(chunks []chunkDoc) error {
	type bound struct {
		min   []byte
		shard string
	}
	bounds := make([]bound, 0, len(chunks))
	for _, ch := range chunks {
		elems, err := ch.Min.Elements()
		if err != nil {
			return fmt.Errorf("chunk bound %v of %s: %w", ch.Min, m.NS, err)
		}
		vals := make([]bson.RawValue, len(elems))
		for i, e := range elems {
			vals[i] = e.Value()
		}
		bounds = append(bounds, bound{min: keys.EncodeTuple(vals, nil), shard: ch.Shard})
		m.ChunksPerShard[ch.Shard]++
	}
	sort.Slice(bounds, func(i, j int) bool { return bytes.Compare(bounds[i].min, bounds[j].min) < 0 })
	m.mins, m.owners = nil, nil
	for _, b := range bounds {
		m.mins = append(m.mins, b.min)
		m.owners = append(m.owners, b.shard)
	}
	return nil
}

// OnID reports whether the owner of a record follows from its _id alone
// (unsharded, or sharded on {_id: 1} or {_id: "hashed"}).
func (m *ShardMap) OnID() bool {
	return !m.Sharded || (len(m.Key) == 1 && m.Key[0].Field == "_id")
}

// Owner returns the shard owning the record with this _id, "" if unknown.
func (m *ShardMap) Owner(id string) string {
	if m == nil {
		return ""
	}
	if !m.Sharded {
		return m.Primary
	}
	if !m.OnID() || len(m.mins) == 0 {
		return ""
	}
	doc, err := bson.Marshal(bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return ""
	}
	enc, err := m.Key.EncodeDoc(doc)
	if err != nil {
		return ""
	}
	// The last chunk whose lower bound is <= enc.
	i := sort.Search(len(m.mins), func(i int) bool { return bytes.Compare(m.mins[i], enc) > 0 }) - 1
	if i < 0 {
		return ""
	}
	return m.owners[i]
}

// ScanOwner returns the shard a range scan starting at id is counted
// against: every shard (broadcastShard) on a hashed key, whose ranges
// scatter over all chunks; otherwise the owner of the start key (a scan
// of at most 100 records rarely crosses a chunk bound).
func (m *ShardMap) ScanOwner(id string) string {
	if m != nil && m.Sharded && m.Key.Hashed() {
		return broadcastShard
	}
	return m.Owner(id)
}
