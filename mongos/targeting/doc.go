// Package targeting decides which shards a router sends an operation to.
// It owns the routing decision only, as plain data: a Target says which
// kind of destination an operation has (one shard, a set of shards found
// from a key range, all shards of the collection), the shards themselves,
// the shard version the router targeted each one with (so a shard can
// answer StaleConfig) and a reason for explain. The query path sends to
// Target.Shards and never special-cases scatter-gather.
//
// Targets are resolved against routing metadata read through the small
// Metadata interface, which *catalog.ChunkMap implements. The rules follow
// MongoDB's (see docs/design/targeting.md):
//
//   - an unsharded (or unknown) collection lives on its database's primary
//     shard;
//   - equality or $in on every field of the shard key goes to the owning
//     shards (hashed fields are hashed first);
//   - on ranged fields, an equality prefix followed by a range goes to the
//     chunks overlapping the encoded key range;
//   - everything else goes to all shards owning chunks of the collection.
//
// Targeting only ever over-approximates: every document a filter can
// match lives on a targeted shard (the superset invariant, tested as a
// property). A missing shard-key field is stored as null, so {k: null}
// targets the chunk of null, which holds both.
//
// This package must never do network I/O, log, keep state between calls,
// or modify the metadata it reads. Its functions are safe for concurrent
// use when the Metadata they are given is.
package targeting
