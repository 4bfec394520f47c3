package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/executor"
)

// The gates every data request passes before any work, in one place so
// that their order is the same for every handler: what the member may
// serve (its replication role), what the request names (a valid
// namespace), what the router believes (its shard version), and, for
// writes, the migration critical sections; reads also take their read
// concern and the ownership filter that hides orphans.

// readRequest is what every versioned read carries.
type readRequest interface {
	GetNs() string
	GetReadOptions() *shardpb.ReadOptions
	GetShardVersion() *shardpb.ShardVersion
}

// beginRead runs the read gates and returns ctx carrying the read concern
// (readContext) and the ownership filter (withOwnership) for the executor.
func (s *Server) beginRead(ctx context.Context, req readRequest) (context.Context, error) {
	if err := s.checkReadable(req.GetReadOptions()); err != nil {
		return nil, err
	}
	if err := checkNS(req.GetNs()); err != nil {
		return nil, err
	}
	if err := s.checkVersion(ctx, req.GetNs(), req.GetShardVersion(), false); err != nil {
		return nil, err
	}
	ctx, err := s.readContext(ctx, req.GetReadOptions())
	if err != nil {
		return nil, err
	}
	return s.withOwnership(ctx, req.GetNs(), req.GetShardVersion()) // orphans (migration.go)
}

// writeRequest is what every versioned write carries.
type writeRequest interface {
	GetNs() string
	GetShardVersion() *shardpb.ShardVersion
}

// beginWrite runs the write gates; docs are an insert's documents (nil for
// other writes: they wait for any critical section of the collection).
// The caller must call done when the write has finished.
func (s *Server) beginWrite(ctx context.Context, req writeRequest, docs [][]byte) (done func(), err error) {
	if err := checkNS(req.GetNs()); err != nil {
		return nil, err
	}
	if err := s.checkWritable(); err != nil {
		return nil, err
	}
	done, err = s.beginMigrationWrite(ctx, req.GetNs(), docs) // migration critical sections (migration.go)
	if err != nil {
		return nil, err
	}
	if err := s.checkVersion(ctx, req.GetNs(), req.GetShardVersion(), true); err != nil {
		done()
		// A member that lost its lease while it waited for the catalog
		// (cut off from etcd) says so: the router retries the write on
		// the next primary at once, knowing nothing ran here.
		if werr := s.checkWritable(); werr != nil {
			return nil, werr
		}
		return nil, err
	}
	return done, nil
}

// shardKeyChecker is the part of the VersionChecker that knows a sharded
// collection's key (shardd/versions.Checker).
type shardKeyChecker interface {
	ShardKeyCheck(ctx context.Context, ns string) (func(before, after bson.Raw) error, error)
}

// withShardKeyCheck makes a versioned update or findAndModify refuse a
// change of the document's shard key (ImmutableField), which would leave
// the document in a chunk its shard does not own.
func (s *Server) withShardKeyCheck(ctx context.Context, req writeRequest) (context.Context, error) {
	if req.GetShardVersion() == nil {
		return ctx, nil
	}
	kc, ok := s.versions.(shardKeyChecker)
	if !ok {
		return ctx, nil
	}
	check, err := kc.ShardKeyCheck(ctx, req.GetNs())
	if err != nil {
		return nil, err
	}
	return executor.WithUpdateCheck(ctx, check), nil
}
