// Package server is the router's MongoDB wire-protocol server: it accepts
// client connections, reads messages with package wire, hands each command
// to the one dispatcher, and writes the reply.
//
// It owns:
//
//   - the listener's accept loop and one goroutine per connection, all
//     tracked by the Server and stopped by Shutdown (refuse new work, let
//     requests in flight finish, close idle connections, force-close at the
//     deadline);
//   - the command table: one file per command (msg_<command>.go) registers
//     a Command with its handler and help text; nothing else needs editing
//     to add a command;
//   - the dispatcher (dispatch.go), the only place that enforces the handler
//     contract, recovers panics, checks $db and admin-only commands, applies
//     maxTimeMS, counts commands for serverStatus and logs one line per
//     command;
//   - the data commands (insert, find, getMore, killCursors, update,
//     delete, findAndModify, count, distinct, aggregate, createIndexes,
//     listIndexes, dropIndexes, explain, listDatabases, listCollections,
//     create, drop), which reach the cluster through the Backend interface
//     (backend.go; the ClusterBackend reads the catalog's ChunkMap and talks
//     to shards with pkg/shardclient), and the router cursors with their
//     idle reaper (cursors.go), owned by the Server and stopped by
//     Shutdown/Close;
//   - the admin commands (enableSharding, shardCollection, addShard,
//     removeShard, listShards, flushRouterConfig, balancerStatus, ...) and
//     the read-only config database (configdb.go), answered from the
//     catalog.
//
// The handler contract: a Handler returns either a reply document — which
// may be a MongoDB error document built with ErrorReply — and a nil error,
// or a nil reply and a Go error, which closes the client's connection. It
// never returns both. MongoDB errors are replies, never Go errors: an
// unknown command is a CommandNotFound (59) reply, not a closed connection.
//
// This package must never let client input panic the process or hang a
// connection other than the client's own: malformed messages close only
// the connection they arrived on, with the reason logged. It keeps no
// package-level state: besides constant tables, the only package variable
// is the command registry, filled by init functions and read-only
// afterwards. It writes nothing to disk.
package server
