// Package storage owns shardd's on-disk state: one Pebble database per
// shardd holding the documents, the secondary indexes, the oplog and the
// metadata that describes them (DESIGN §3).
//
// Key space, by first byte (see keyspace.go for the exact layout):
//
//	d | collID | key(_id)                                      → BSON document
//	i | collID | indexID | key(indexed values) | key(_id) | n  → empty
//	o | term | index                                         → BSON oplog entry
//	m | ...                                                  → metadata
//
// key(...) is the order-preserving encoding of package keys, so Pebble's
// byte order is MongoDB's comparison order and _id and index range scans are
// plain Pebble range scans.
//
// Every write (insert, replace, delete, create/drop of a collection or an
// index) is one Pebble batch that carries the document change, all its index
// changes, one oplog entry per document and the updated collection
// statistics, so a crash leaves either all of it or none of it. A write is
// acknowledged only after the write-ahead log is synced; concurrent writers
// share syncs (group commit, see Engine.commit). Recovery is Pebble's WAL
// replay: there is no other log and no other source of truth.
//
// The package must never know about replication roles, sharding, chunk
// ownership or the wire protocol: it stores and indexes documents of
// namespaces it is told about and records an oplog; callers decide whether
// a write is allowed.
package storage
