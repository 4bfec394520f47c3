// Package catalog owns PSDB's cluster metadata in etcd: the key schema, the
// record formats, and every transaction that changes them. It is the only
// code that builds or parses catalog keys; everything else (configsvr,
// mongos, shardd, tools) goes through its typed API or through ChunkMap,
// the watch-driven in-memory copy of the routing metadata kept in this
// package for the same reason.
//
// It must never: keep cluster state in package globals, change more than
// one key outside a single etcd transaction, or commit a change without
// comparing the revisions it read (every multi-key change is one Txn whose
// If clause names the ModRevisions the decision was based on, so two
// concurrent callers deciding on the same state can never both commit).
//
// # Key schema
//
// All keys live under a root prefix, "/psdb" by default (WithPrefix changes it,
// which tests use to share one etcd). Values are JSON, readable with
// `etcdctl get --prefix /psdb/`; shard-key bounds inside values are MongoDB
// canonical Extended JSON so their BSON types survive the round trip.
//
//	<root>/cluster                         {"name", "id", "createdAt"}               Bootstrap
//	<root>/shards/<shard>                  {"name","members":[{"name","addr"}],"state"}  state: active|draining
//	<root>/shards/<shard>/primary          {"member","term"}             bound to the holder's etcd lease
//	<root>/shards/<shard>/term             {"term"}                      last term handed out; only grows
//	<root>/databases/<db>                  {"name","primaryShard","version":{"uuid","lastMod"}}
//	<root>/collections/<db>.<coll>         {"ns","uuid","epoch","sharded","key":[{"field","hashed"}],
//	                                        "unique","version":{"major","minor"}}
//	<root>/chunks/<uuid>/<hex(minKey)>     {"min","max","shard","version":{"major","minor"}}
//	<root>/routers/<id>                    {"id","addr"}                 bound to the router's lease
//	<root>/balancer/leader/...             etcd election (concurrency.Election)
//	<root>/balancer/settings               {"enabled","windowStart","windowEnd","threshold",...}
//	<root>/users/<db>/<url-escaped user>   {"user","db","credentials","roles":[{"role","db"}]}
//
// <hex(minKey)> is the lowercase hex of keys.EncodeTuple of the chunk's min
// bound values in shard-key order (hashed fields hold NumberLong(hash)), so
// etcd's byte order of a collection's chunk keys is the chunks' key order
// and a range read returns them sorted.
//
// The prefixes "chunks", "cluster", "collections", "databases", "routers"
// and "shards" sort contiguously, which lets ChunkMap read and watch all
// routing metadata with one range [<root>/chunks/, <root>/shards0).
//
// # Invariants
//
//   - A collection record's "version" is the highest version of its chunks
//     (the collection version). Every change to a collection's chunks
//     compares the collection key's ModRevision and rewrites it with the new
//     version in the same Txn; this serializes all chunk changes of one
//     collection (split vs migration, two migrations of one chunk).
//   - The chunks of a sharded collection tile [MinKey, MaxKey) of its shard
//     key with no gap and no overlap. Chunks exist only under the uuid of a
//     live collection record; DropCollection deletes both in one Txn.
//   - A term key only grows: it is rewritten only by AcquirePrimary's Txn,
//     which compares its ModRevision and writes last+1.
//   - A uuid and an epoch are never reused: a dropped and re-created
//     collection gets fresh random ones.
package catalog
