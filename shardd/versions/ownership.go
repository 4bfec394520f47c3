package versions

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// chunkLister is the part of *catalog.ChunkMap the ownership filter reads.
type chunkLister interface {
	Chunks(ns string) ([]catalog.Chunk, error)
}

// OwnershipFilter returns the test that hides orphans from a versioned
// read of ns on this shard: it reports whether this shard owns the chunk
// of a document (its shard key within one of the shard's chunks, the
// collection's last chunk also holding a key equal to the global
// maximum). Documents whose key cannot be extracted are not owned. The
// result is nil (no filtering) when ns is unsharded or unknown. It is a
// copy of the shard's chunks at the call, safe for concurrent use; a read
// builds it right after its version check, so it reflects the view the
// check accepted. Errors: those of loading the routing metadata.
func (c *Checker) OwnershipFilter(ctx context.Context, ns string) (func(doc bson.Raw) bool, error) {
	rt, err := c.routing(ctx)
	if err != nil {
		return nil, err
	}
	coll, ok := rt.Collection(ns)
	if !ok || !coll.Sharded {
		return nil, nil
	}
	cl, ok := rt.(chunkLister)
	if !ok {
		return nil, fmt.Errorf("routing metadata of %s cannot list chunks", ns)
	}
	chunks, err := cl.Chunks(ns)
	if err != nil {
		return nil, fmt.Errorf("chunks of %s: %w", ns, err)
	}
	return ownedRanges(coll.Key, chunks, c.shard), nil
}

// ownedRanges builds the ownership test of shard from chunks in key order.
func ownedRanges(key catalog.ShardKey, chunks []catalog.Chunk, shard string) func(bson.Raw) bool {
	type span struct {
		lo, hi []byte
		toEnd  bool
	}
	var spans []span
	for i, ch := range chunks {
		if ch.Shard != shard {
			continue
		}
		last := i == len(chunks)-1
		if n := len(spans); n > 0 && bytes.Equal(spans[n-1].hi, ch.MinKey) {
			spans[n-1].hi, spans[n-1].toEnd = ch.MaxKey, last
			continue
		}
		spans = append(spans, span{lo: ch.MinKey, hi: ch.MaxKey, toEnd: last})
	}
	return func(doc bson.Raw) bool {
		enc, err := key.EncodeDoc(doc)
		if err != nil {
			return false
		}
		// The last span whose lo <= enc.
		i := sort.Search(len(spans), func(i int) bool { return bytes.Compare(spans[i].lo, enc) > 0 }) - 1
		if i < 0 {
			return false
		}
		c := bytes.Compare(enc, spans[i].hi)
		return c < 0 || (c == 0 && spans[i].toEnd)
	}
}

// ShardKeyCheck returns the update check of ns (executor.WithUpdateCheck):
// it refuses an update whose result changes the document's shard key,
// with ImmutableField (66) as MongoDB does; nil for an unsharded
// collection.
func (c *Checker) ShardKeyCheck(ctx context.Context, ns string) (func(before, after bson.Raw) error, error) {
	rt, err := c.routing(ctx)
	if err != nil {
		return nil, err
	}
	coll, ok := rt.Collection(ns)
	if !ok || !coll.Sharded {
		return nil, nil
	}
	key := coll.Key
	return func(before, after bson.Raw) error {
		was, err := key.EncodeDoc(before)
		if err != nil {
			return mongoerr.Wrap(err, mongoerr.ImmutableField, "the shard key of the document before the update is unreadable: %v", err)
		}
		now, err := key.EncodeDoc(after)
		if err != nil {
			return mongoerr.Wrap(err, mongoerr.ImmutableField, "after applying the update, the shard key %s is invalid: %v", key, err)
		}
		if !bytes.Equal(was, now) {
			return mongoerr.New(mongoerr.ImmutableField, "After applying the update, the (immutable) shard key %s was found to have been altered for the document with _id %s", key, before.Lookup("_id"))
		}
		return nil
	}, nil
}
