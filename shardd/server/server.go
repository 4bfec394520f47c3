// Package server is shardd's gRPC service: it serves the Shard service of
// proto/shard.proto (document operations, cursors, catalog commands) over
// one storage engine and its query executor, plus the standard gRPC health
// service, and registers the Replication service (with Options.Replication,
// see NewReplication: the oplog stream, progress, clone and rollback, and
// through its Coordinator votes, status and step-down) and the Migration
// service (migration.go: the donor's side of a chunk move).
//
// Handlers return plain Go errors (*mongoerr.Error for everything a client
// may see); one interceptor (dispatch) turns them into gRPC statuses with
// pkg/rpcerr, recovers panics, and logs one line per slow operation. Per
// statement write errors travel inside the WriteReply, never as a status.
//
// What this package must never do: decide replication roles (the
// Coordinator does), decide chunk ownership (the VersionChecker of
// Options.Versions does, versions.go; this package only applies its
// version check and its ownership filter to versioned requests), or talk
// to other nodes.
package server

import (
	"context"
	"errors"
	"path"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/executor"
	"github.com/psdb/psdb/shardd/storage"
)

// Defaults of Options.
const (
	DefaultCursorTimeout = 10 * time.Minute
	DefaultSlowOp        = 100 * time.Millisecond
	// DefaultFirstBatch is MongoDB's first batch: 101 documents.
	DefaultFirstBatch = 101
	// MaxBatchBytes bounds the documents of one batch, as MongoDB's 16 MiB
	// reply limit does; a batch always holds at least one document.
	MaxBatchBytes = 16 << 20
	// MaxMessageSize is the gRPC message limit of both sides: a batch of
	// 16 MiB plus framing, or an insert of up to 48 MiB of documents
	// (MongoDB's maxMessageSizeBytes).
	MaxMessageSize = 64 << 20
)

// Options configure a Server.
type Options struct {
	// Engine is the open store. Required. The Server does not close it.
	Engine *storage.Engine
	// Logger should carry the node, role and shard fields.
	Logger zerolog.Logger
	// CursorTimeout closes a server-side cursor idle for this long
	// (default DefaultCursorTimeout).
	CursorTimeout time.Duration
	// SlowOp is the duration above which an operation is logged
	// (default DefaultSlowOp; negative logs nothing).
	SlowOp time.Duration
	// Replication serves the Replication service; nil registers a service
	// whose every method answers CommandNotFound (replication not built).
	Replication shardpb.ReplicationServer
	// Versions checks the ShardVersion of every versioned data request
	// (versions.go); nil checks nothing.
	Versions VersionChecker
}

// Server implements shardpb.ShardServer. It is safe for concurrent use.
// Close it after the gRPC server has stopped.
type Server struct {
	shardpb.UnimplementedShardServer

	eng     *storage.Engine
	exec    *executor.Executor
	log     zerolog.Logger
	slowOp  time.Duration
	cursors *cursorRegistry
	health  *health.Server
	repl    shardpb.ReplicationServer
	// versions is Options.Versions (nil: not checked).
	versions VersionChecker
	// migration serves the Migration service (migration.go).
	migration *migrationService
}

// New returns a Server over opts.Engine and starts its cursor reaper.
func New(opts Options) (*Server, error) {
	if opts.Engine == nil {
		return nil, errors.New("server.New: Options.Engine is required")
	}
	if opts.CursorTimeout <= 0 {
		opts.CursorTimeout = DefaultCursorTimeout
	}
	if opts.SlowOp == 0 {
		opts.SlowOp = DefaultSlowOp
	}
	s := &Server{
		eng:    opts.Engine,
		exec:   executor.New(opts.Engine),
		log:    opts.Logger,
		slowOp: opts.SlowOp,
		health: health.NewServer(),
		repl:   opts.Replication,
	}
	s.versions = opts.Versions
	s.migration = newMigrationService(s)
	if s.repl == nil {
		s.repl = replicationNotBuilt{}
	}
	s.cursors = newCursorRegistry(opts.CursorTimeout, opts.Logger)
	// Nothing is served until the caller says so (SetServing).
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(shardpb.Shard_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return s, nil
}

// streamWorkers is the size of the gRPC server's pool of call goroutines.
const streamWorkers = 32

// NewGRPCServer returns a gRPC server with the Shard, Replication and health
// services registered and the dispatch interceptors installed. extra
// options are appended (tests use none).
func (s *Server) NewGRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.dispatch),
		grpc.ChainStreamInterceptor(s.dispatchStream),
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.MaxSendMsgSize(MaxMessageSize),
		// Calls run on a pool of goroutines instead of a new one each:
		// a new goroutine grows its stack through the handler's depth
		// (gRPC, interceptors, executor, Pebble) on every call, which a
		// profile under a read workload showed at 8% of a shard's CPU.
		// Streams that outlast a call (oplog tailing) take a worker for
		// their lifetime; when all are busy gRPC starts a goroutine as
		// before, so the pool never makes a call wait.
		grpc.NumStreamWorkers(streamWorkers),
		// Fixed windows, the clients' (shardclient.StreamWindow): no
		// bandwidth-probing pings on every few messages.
		grpc.InitialWindowSize(shardclient.StreamWindow),
		grpc.InitialConnWindowSize(shardclient.ConnWindow),
	}, extra...)
	g := grpc.NewServer(opts...)
	shardpb.RegisterShardServer(g, s)
	shardpb.RegisterReplicationServer(g, s.repl)
	shardpb.RegisterMigrationServer(g, s.migration)
	healthpb.RegisterHealthServer(g, s.health)
	return g
}

// SetServing reports SERVING (true) or NOT_SERVING on the health service,
// for the whole server and for the Shard service.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(shardpb.Shard_ServiceDesc.ServiceName, st)
}

// Close reports NOT_SERVING, stops the cursor reaper and closes every open
// cursor (releasing its snapshot). Call it after the gRPC server stopped:
// a call still running may otherwise see its cursor closed (it then fails
// with CursorNotFound or InterruptedAtShutdown, never a panic).
func (s *Server) Close() error {
	s.health.Shutdown()
	s.cursors.close()
	s.migration.close()
	return nil
}

// OpenCursors returns the number of open server-side cursors.
func (s *Server) OpenCursors() int { return s.cursors.len() }

// nsRequest is implemented by every request that names a namespace.
type nsRequest interface{ GetNs() string }

// dispatch is the one place where a unary call's result is finished: it
// recovers a panic into InternalError, translates the handler's Go error
// into a gRPC status (toStatus), and logs slow and failed operations.
func (s *Server) dispatch(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Str(logging.FieldOp, info.FullMethod).Interface("panic", r).
				Bytes("stack", debug.Stack()).Msg("operation panicked")
			resp, err = nil, mongoerr.New(mongoerr.InternalError, "internal error in %s: %v", info.FullMethod, r)
		}
		var ns string
		if r, ok := req.(nsRequest); ok {
			ns = r.GetNs()
		}
		s.logOp(info.FullMethod, ns, time.Since(start), err)
		err = toStatus(err)
	}()
	resp, err = handler(ctx, req)
	if err == nil && isDDL(req) {
		// Catalog changes carry no write concern of their own: they wait
		// for the default one (w:"majority") before answering.
		if w, ok := s.repl.(writeConcernWaiter); ok {
			if werr := w.AwaitWriteConcern(ctx, s.eng.LastOpTime(), nil); werr != nil {
				return nil, werr
			}
		}
	}
	return resp, err
}

// isDDL reports whether req changes a collection's catalog.
func isDDL(req any) bool {
	switch req.(type) {
	case *shardpb.CreateCollectionRequest, *shardpb.DropCollectionRequest, *shardpb.CreateIndexesRequest, *shardpb.DropIndexesRequest:
		return true
	}
	return false
}

// dispatchStream does for streaming calls what dispatch does for unary ones.
func (s *Server) dispatchStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Str(logging.FieldOp, info.FullMethod).Interface("panic", r).
				Bytes("stack", debug.Stack()).Msg("operation panicked")
			err = mongoerr.New(mongoerr.InternalError, "internal error in %s: %v", info.FullMethod, r)
		}
		s.logOp(info.FullMethod, "", time.Since(start), err)
		err = toStatus(err)
	}()
	return handler(srv, ss)
}

// logOp writes one line for a slow operation and one for a failure that
// is not the client's fault (InternalError).
func (s *Server) logOp(op, ns string, dur time.Duration, err error) {
	op = path.Base(op) // "/psdb.shard.v1.Shard/Insert" -> "Insert"
	if err != nil && mongoerr.CodeOf(clientError(err)) == mongoerr.InternalError {
		if _, isStatus := status.FromError(err); !isStatus {
			s.log.Error().Str(logging.FieldOp, op).Str(logging.FieldNS, ns).
				Dur(logging.FieldDur, dur).Err(err).Msg("operation failed")
			return
		}
	}
	if s.slowOp >= 0 && dur >= s.slowOp {
		ev := s.log.Info().Str(logging.FieldOp, op).Str(logging.FieldNS, ns).Dur(logging.FieldDur, dur)
		if err != nil {
			ev = ev.Int32("code", int32(mongoerr.CodeOf(clientError(err))))
		}
		ev.Msg("slow operation")
	}
}

// toStatus is the server side of the error translation: the engine's
// sentinels become the MongoDB codes a client understands, then pkg/rpcerr
// builds the status. An error that already is a gRPC status (the health
// service's, grpc's own) passes unchanged.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return rpcerr.Status(clientError(err))
}

// clientError maps the engine's sentinels to the MongoDB codes a client
// understands; other errors are returned unchanged. It is used for whole
// call errors (toStatus) and per-statement write errors alike.
func clientError(err error) error {
	if _, ok := mongoerr.As(err); ok {
		return err
	}
	switch {
	case errors.Is(err, storage.ErrClosed):
		return mongoerr.Wrap(err, mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
	case errors.Is(err, storage.ErrCorrupt):
		return mongoerr.Wrap(err, mongoerr.InternalError, "storage corrupt: %v", err)
	}
	return err
}
