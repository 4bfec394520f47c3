package server

import (
	"github.com/psdb/psdb/pkg/opstats"
)

// opType is the opstats type of a command, as MongoDB's opcounters count
// it: find is a query, getMore a getmore, the three writes are their own
// types, and everything else (aggregate, findAndModify, count, hello, ...)
// is a command.
func opType(cmd string) string {
	switch cmd {
	case "insert":
		return opstats.OpInsert
	case "find":
		return opstats.OpQuery
	case "update":
		return opstats.OpUpdate
	case "delete":
		return opstats.OpDelete
	case "getMore":
		return opstats.OpGetMore
	}
	return opstats.OpCommand
}

// LoadGauges returns the router's fields of its load line (package
// opstats): open client connections and open router cursors.
func (s *Server) LoadGauges() map[string]any {
	s.cursors.mu.Lock()
	cursors := len(s.cursors.cursors)
	s.cursors.mu.Unlock()
	return map[string]any{"conns": s.currentConns(), "cursors": cursors}
}

// LoadGauges returns the backend's fields of the router's load line:
// whether it reached the config servers (configConnected), how many shards
// the catalog lists (shards) and of those how many have a primary the
// router knows of (shardsWithPrimary: writes and primary reads can be
// routed there). A shard's primary watcher is started on its first
// report, so a shard the router has not used yet counts from the next
// line on.
func (b *ClusterBackend) LoadGauges() map[string]any {
	b.mu.Lock()
	cm := b.cm
	b.mu.Unlock()
	if cm == nil {
		return map[string]any{"configConnected": false}
	}
	shards := cm.Shards()
	withPrimary := 0
	for _, sh := range shards {
		if v, _, err := b.Primary(sh.Name); err == nil && v.Member != "" {
			withPrimary++
		}
	}
	return map[string]any{"configConnected": true, "shards": len(shards), "shardsWithPrimary": withPrimary}
}
