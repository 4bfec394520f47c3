package server

import (
	"context"

	"github.com/psdb/psdb/proto/shardpb"
)

// VersionChecker decides whether a versioned request may run on this
// shard (DESIGN §6, docs/design/shard-versions.md). The catalog-backed
// implementation is shardd/versions; the rule itself is
// shardversion.Matches.
type VersionChecker interface {
	// Check returns nil when a request for ns sent with version v may run
	// on this member's shard. It returns a *shardversion.StaleConfigError
	// (StaleConfig, 13388, with errInfo) when v and the shard's view of
	// ns disagree after the shard made sure its own view is not behind
	// the catalog; other errors when it could not decide (Interrupted
	// when ctx ends first, NotYetInitialized while the routing metadata
	// cannot be loaded, HostUnreachable when a write cannot confirm its
	// view with the config servers). write is true for requests that
	// change data (inserts, updates, deletes, findAndModify, index
	// commands). v is never nil.
	Check(ctx context.Context, ns string, v *shardpb.ShardVersion, write bool) error
}

// checkVersion runs the version check at the top of a data request. A
// request without a ShardVersion (nil) is unversioned, as a direct
// connection to a MongoDB shard is: a tool or a test talking to this
// member, never the router, which always sends one (UNSHARDED included).
// Without a VersionChecker (Options.Versions nil) nothing is checked.
func (s *Server) checkVersion(ctx context.Context, ns string, v *shardpb.ShardVersion, write bool) error {
	if s.versions == nil || v == nil {
		return nil
	}
	return s.versions.Check(ctx, ns, v, write)
}
