package catalog

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

const pageSize = 2000

// scanRange reads [start, end) at revision rev (0: latest, fixed after the
// first page) in pages, calling fn for each key in order. It returns the
// revision read at. Returning errStopScan from fn ends the scan early.
func (c *Catalog) scanRange(ctx context.Context, start, end string, rev int64, fn func(*mvccpb.KeyValue) error) (int64, error) {
	key := start
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := c.cli.Get(ctx, key, opts...)
		if err != nil {
			return 0, fmt.Errorf("etcd range %s: %w", start, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv); err != nil {
				if err == errStopScan {
					return rev, nil
				}
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

var errStopScan = fmt.Errorf("stop scan")

// decodeChunk parses a stored chunk. The key's last component is the hex
// of the encoded min bound, so only the max bound is re-encoded.
func (c *Catalog) decodeChunk(kv *mvccpb.KeyValue) (Chunk, error) {
	rest := strings.TrimPrefix(string(kv.Key), c.chunksPrefix())
	uuid, hexMin, ok := strings.Cut(rest, "/")
	if !ok {
		return Chunk{}, corrupt(string(kv.Key), fmt.Errorf("chunk key has no min component"))
	}
	minKey, err := hex.DecodeString(hexMin)
	if err != nil {
		return Chunk{}, corrupt(string(kv.Key), err)
	}
	var r chunkRecord
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return Chunk{}, corrupt(string(kv.Key), err)
	}
	lo, err := boundFromJSON(r.Min)
	if err != nil {
		return Chunk{}, corrupt(string(kv.Key), err)
	}
	hi, err := boundFromJSON(r.Max)
	if err != nil {
		return Chunk{}, corrupt(string(kv.Key), err)
	}
	maxKey, err := encodeBoundAnyKey(hi)
	if err != nil {
		return Chunk{}, corrupt(string(kv.Key), err)
	}
	return Chunk{UUID: uuid, Min: lo, Max: hi, MinKey: minKey, MaxKey: maxKey, Shard: r.Shard,
		Version: r.Version, ModRevision: kv.ModRevision}, nil
}

// ListChunks returns a collection's chunks in key order and the revision
// they were read at (one consistent snapshot, read in pages).
func (c *Catalog) ListChunks(ctx context.Context, uuid string) ([]Chunk, int64, error) {
	var out []Chunk
	p := c.chunkPrefix(uuid)
	rev, err := c.scanRange(ctx, p, clientv3.GetPrefixRangeEnd(p), 0, func(kv *mvccpb.KeyValue) error {
		ch, err := c.decodeChunk(kv)
		if err != nil {
			return err
		}
		out = append(out, ch)
		return nil
	})
	return out, rev, err
}

func (c *Catalog) shardedCollection(ctx context.Context, ns, uuid string) (Collection, error) {
	coll, err := c.GetCollection(ctx, ns)
	if err != nil {
		return Collection{}, err
	}
	if !coll.Sharded {
		return Collection{}, coded(ErrNotFound, mongoerr.NamespaceNotSharded, "collection %s is not sharded", ns)
	}
	if uuid != "" && coll.UUID != uuid {
		return Collection{}, coded(ErrStale, mongoerr.StaleEpoch, "collection %s was dropped and re-created (uuid %s, caller had %s)", ns, coll.UUID, uuid)
	}
	return coll, nil
}

// SplitChunk splits chunk at the given split points (shard-key documents
// in key order, strictly inside the chunk and increasing). The resulting
// chunks stay on the chunk's shard and get versions major|minor+1,
// major|minor+2, ... after the collection version (MongoDB's rule), so the
// collection and the shard version grow. The Txn compares the chunk's and
// the collection's ModRevisions: a concurrent split or migration of the
// collection makes it fail with ErrConflict. Returns the new chunks.
func (c *Catalog) SplitChunk(ctx context.Context, ns string, chunk Chunk, splitPoints ...bson.Raw) ([]Chunk, error) {
	if len(splitPoints) == 0 {
		return nil, invalid("split of %s needs at least one split point", ns)
	}
	if len(splitPoints) > MaxInitialChunks {
		return nil, invalid("split of %s into more than %d chunks at once", ns, MaxInitialChunks)
	}
	coll, err := c.shardedCollection(ctx, ns, chunk.UUID)
	if err != nil {
		return nil, err
	}
	prev := chunk.MinKey
	encs := make([][]byte, len(splitPoints))
	for i, p := range splitPoints {
		enc, err := coll.Key.checkBound(p)
		if err != nil {
			return nil, err
		}
		if bytes.Compare(enc, prev) <= 0 || bytes.Compare(enc, chunk.MaxKey) >= 0 {
			return nil, coded(ErrInvalid, mongoerr.CannotSplit, "split point %s is not strictly inside chunk %s after the previous point", p, chunk)
		}
		encs[i], prev = enc, enc
	}
	v := coll.Version
	out := make([]Chunk, 0, len(splitPoints)+1)
	lo, loKey := chunk.Min, chunk.MinKey
	for i := 0; i <= len(splitPoints); i++ {
		hi, hiKey := chunk.Max, chunk.MaxKey
		if i < len(splitPoints) {
			hi, hiKey = splitPoints[i], encs[i]
		}
		v.Minor++
		out = append(out, Chunk{UUID: coll.UUID, Min: lo, Max: hi, MinKey: loKey, MaxKey: hiKey, Shard: chunk.Shard, Version: v})
		lo, loKey = hi, hiKey
	}
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(c.collectionKey(ns)), "=", coll.ModRevision),
		clientv3.Compare(clientv3.ModRevision(c.chunkKey(coll.UUID, chunk.MinKey)), "=", chunk.ModRevision),
	}
	ops := make([]clientv3.Op, 0, len(out)+1)
	for i, ch := range out {
		k := c.chunkKey(coll.UUID, ch.MinKey)
		if i > 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		}
		ops = append(ops, clientv3.OpPut(k, mustJSON(chunkRecord{Min: boundToJSON(ch.Min), Max: boundToJSON(ch.Max), Shard: ch.Shard, Version: ch.Version})))
	}
	coll.Version = v
	ops = append(ops, clientv3.OpPut(c.collectionKey(ns), mustJSON(coll)))
	resp, err := c.commit(ctx, "split chunk of "+ns, c.cli.Txn(ctx).If(cmps...).Then(ops...))
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, conflict("chunk %s of %s or the collection changed since it was read", chunk, ns)
	}
	for i := range out {
		out[i].ModRevision = resp.Header.Revision
	}
	return out, nil
}

// CommitMigration moves chunk from one shard to another (a migration's
// commit). It succeeds only if the collection version is still expected
// (same epoch and major.minor) and the chunk is unchanged since it was
// read (its ModRevision), in one Txn.
//
// Version rule (MongoDB's): with M the collection's major version, the
// moved chunk becomes M+1|0 on the recipient, and if the donor keeps any
// chunk, one of them (the control chunk: the donor's first chunk in key
// order) becomes M+1|1, so the donor's shard version changes too and a
// router that targeted the donor with the old map gets StaleConfig from it.
// Finding the control chunk scans the collection's chunks in pages until
// the first donor chunk. Returns the new collection version.
//
// Errors: ErrStale (StaleEpoch) if the epoch changed, ErrConflict
// (ConflictingOperationInProgress) if the version or the chunk changed,
// ErrNotFound (ShardNotFound) for an unknown recipient, ErrIllegal for a
// draining recipient.
func (c *Catalog) CommitMigration(ctx context.Context, ns string, chunk Chunk, from, to string, expected CollVersion) (CollVersion, error) {
	if from == to {
		return CollVersion{}, invalid("migration of %s: donor and recipient are both %q", ns, from)
	}
	if chunk.Shard != from {
		return CollVersion{}, conflict("chunk %s of %s is on %q, not on donor %q", chunk, ns, chunk.Shard, from)
	}
	coll, err := c.shardedCollection(ctx, ns, chunk.UUID)
	if err != nil {
		return CollVersion{}, err
	}
	if coll.Epoch != expected.Epoch {
		return CollVersion{}, coded(ErrStale, mongoerr.StaleEpoch, "collection %s epoch is %s, migration expected %s", ns, coll.Epoch, expected.Epoch)
	}
	if coll.Version != expected.Version {
		return CollVersion{}, coded(ErrConflict, mongoerr.ConflictingOperationInProgress, "collection %s version is %s, migration expected %s", ns, coll.Version, expected.Version)
	}
	recipient, err := c.GetShard(ctx, to)
	if err != nil {
		return CollVersion{}, err
	}
	if recipient.State != ShardActive {
		return CollVersion{}, coded(ErrIllegal, mongoerr.IllegalOperation, "recipient shard %q is draining", to)
	}
	var control *Chunk
	p := c.chunkPrefix(coll.UUID)
	movedKey := c.chunkKey(coll.UUID, chunk.MinKey)
	if _, err := c.scanRange(ctx, p, clientv3.GetPrefixRangeEnd(p), 0, func(kv *mvccpb.KeyValue) error {
		if string(kv.Key) == movedKey {
			return nil
		}
		var r chunkRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return corrupt(string(kv.Key), err)
		}
		if r.Shard != from {
			return nil
		}
		ch, err := c.decodeChunk(kv)
		if err != nil {
			return err
		}
		control = &ch
		return errStopScan
	}); err != nil {
		return CollVersion{}, err
	}
	newV := Version{Major: coll.Version.Major + 1}
	moved := chunk
	moved.Shard, moved.Version = to, newV
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(c.collectionKey(ns)), "=", coll.ModRevision),
		clientv3.Compare(clientv3.ModRevision(movedKey), "=", chunk.ModRevision),
		clientv3.Compare(clientv3.ModRevision(c.shardKey(to)), "=", recipient.ModRevision),
	}
	ops := []clientv3.Op{clientv3.OpPut(movedKey, mustJSON(chunkRecord{Min: boundToJSON(moved.Min), Max: boundToJSON(moved.Max), Shard: to, Version: newV}))}
	coll.Version = newV
	if control != nil {
		ck := c.chunkKey(coll.UUID, control.MinKey)
		cv := Version{Major: newV.Major, Minor: 1}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(ck), "=", control.ModRevision))
		ops = append(ops, clientv3.OpPut(ck, mustJSON(chunkRecord{Min: boundToJSON(control.Min), Max: boundToJSON(control.Max), Shard: from, Version: cv})))
		coll.Version = cv
	}
	ops = append(ops, clientv3.OpPut(c.collectionKey(ns), mustJSON(coll)))
	resp, err := c.commit(ctx, "commit migration of "+ns, c.cli.Txn(ctx).If(cmps...).Then(ops...))
	if err != nil {
		return CollVersion{}, err
	}
	if !resp.Succeeded {
		return CollVersion{}, conflict("chunk %s of %s, the collection or shard %q changed during the migration", chunk, ns, to)
	}
	return coll.CollVersion(), nil
}
