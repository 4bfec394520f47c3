package server

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// The Replication service's data path (issue 5, DESIGN §4): PullOplog
// streams this member's durable oplog to a puller, ReportProgress records a
// secondary's durable optime in the primary's progress tracker. Votes,
// status, step-down and snapshot cloning are the election work's and still
// answer CommandNotFound.

// ProgressTracker is what the Replication service and the write path need
// of a primary's replication progress; shardd/repl.Progress implements it.
type ProgressTracker interface {
	// Report records a secondary's durable optime.
	Report(member string, durable storage.OpTime) error
	// CommitPoint is the majority commit point.
	CommitPoint() storage.OpTime
	// AwaitWriteConcern blocks until the entry at t satisfies wc (nil: the
	// default write concern), or returns the write concern error.
	AwaitWriteConcern(ctx context.Context, t storage.OpTime, wc *shardpb.WriteConcern) error
}

// Batch bounds of PullOplog (defaults of ReplicationOptions).
const (
	DefaultPullBatchEntries = 1000
	DefaultPullBatchBytes   = 4 << 20
)

// ReplicationOptions configure NewReplication.
type ReplicationOptions struct {
	// Engine is the member's store. Required.
	Engine *storage.Engine
	// Progress is set on a primary; nil on a secondary, which still serves
	// PullOplog (a chained puller) but refuses ReportProgress with
	// NotWritablePrimary (10107), and whose writes do not wait for others.
	Progress ProgressTracker
	// Logger should carry the node, role and shard fields.
	Logger zerolog.Logger
	// MaxBatchEntries and MaxBatchBytes bound one OplogBatch (defaults
	// DefaultPullBatchEntries, DefaultPullBatchBytes); a batch always holds
	// at least one entry.
	MaxBatchEntries int
	MaxBatchBytes   int
}

// Replication serves the Replication service over one store. Pass it as
// Options.Replication. It is safe for concurrent use.
type Replication struct {
	replicationNotBuilt
	eng  *storage.Engine
	prog ProgressTracker
	log  zerolog.Logger
	opts ReplicationOptions
	// stopping ends every PullOplog stream (Stop): they never end by
	// themselves, so a graceful stop of the gRPC server would wait for them.
	stopping context.Context
	stop     context.CancelFunc
}

// NewReplication returns the Replication service of a member.
func NewReplication(o ReplicationOptions) (*Replication, error) {
	if o.Engine == nil {
		return nil, errors.New("server.NewReplication: Engine is required")
	}
	if o.MaxBatchEntries <= 0 {
		o.MaxBatchEntries = DefaultPullBatchEntries
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultPullBatchBytes
	}
	stopping, stop := context.WithCancel(context.Background())
	return &Replication{eng: o.Engine, prog: o.Progress, log: o.Logger, opts: o, stopping: stopping, stop: stop}, nil
}

// Stop ends the PullOplog streams in progress and refuses new ones with
// InterruptedAtShutdown. Call it before stopping the gRPC server
// gracefully. It is idempotent.
func (r *Replication) Stop() { r.stop() }

func toOpTime(p *shardpb.OpTime) storage.OpTime {
	return storage.OpTime{Term: p.GetTerm(), Index: p.GetIndex()}
}

func fromOpTime(t storage.OpTime) *shardpb.OpTime {
	return &shardpb.OpTime{Term: t.Term, Index: t.Index}
}

func (r *Replication) commitPoint() *shardpb.OpTime {
	if r.prog == nil {
		return nil
	}
	return fromOpTime(r.prog.CommitPoint())
}

// PullOplog streams the durable entries after req.After until the client
// cancels. It first checks that req.After is in this member's log (same
// term at that index, or index 0): if not, it fails with OplogStartMissing
// (120) — the puller diverged and must roll back — or, when this log no
// longer reaches back that far (retention), with RemoteOplogStale (138) —
// the puller must resync. A puller whose term is newer than this member's
// is refused with StaleTerm (135): this member is a stale sync source.
// Each batch carries the commit point and term; batches are bounded by
// MaxBatchEntries and MaxBatchBytes.
func (r *Replication) PullOplog(req *shardpb.PullOplogRequest, stream shardpb.Replication_PullOplogServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(r.stopping, cancel)()
	if r.stopping.Err() != nil {
		return mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
	}
	after := toOpTime(req.GetAfter())
	if term := r.eng.Term(); req.GetTerm() > term {
		return mongoerr.New(mongoerr.StaleTerm, "sync source is at term %d, older than the puller's term %d", term, req.GetTerm())
	}
	first, has, err := r.eng.FirstOpTime()
	if err != nil {
		return err
	}
	if has && after.Index+1 < first.Index {
		return mongoerr.New(mongoerr.RemoteOplogStale, "the sync source's oplog starts at %s, after the puller's last entry %s: the puller must resync", first, after)
	}
	ok, err := r.eng.HasOplogEntry(after)
	if err != nil {
		return err
	}
	if !ok {
		return mongoerr.New(mongoerr.OplogStartMissing, "the puller's last entry %s is not in the sync source's oplog (last entry %s): the puller diverged", after, r.eng.LastOpTime())
	}
	log := r.log.With().Str(logging.FieldOp, "pullOplog").Str("member", req.GetMember()).Logger()
	log.Info().Stringer("after", after).Msg("secondary pulling")
	for {
		// cur is read before the entries: if none is found after `after`,
		// none up to cur exists, and waiting for the durable optime to pass
		// cur cannot miss one (ReadOplog itself reads up to at least cur).
		cur := r.eng.LastOpTime()
		entries, err := r.eng.ReadOplog(after, r.opts.MaxBatchEntries)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			if _, err := r.eng.WaitDurable(ctx, cur); err != nil {
				if r.stopping.Err() != nil {
					return mongoerr.New(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
				}
				return err
			}
			continue
		}
		batch := &shardpb.OplogBatch{Term: r.eng.Term()}
		size := 0
		for _, e := range entries {
			b := storage.EncodeOplogEntry(e)
			if len(batch.Entries) > 0 && size+len(b) > r.opts.MaxBatchBytes {
				break
			}
			batch.Entries = append(batch.Entries, b)
			size += len(b)
			after = e.OpTime()
		}
		batch.CommitPoint = r.commitPoint()
		if err := stream.Send(batch); err != nil {
			return err
		}
	}
}

// ReportProgress records a secondary's durable optime and answers with the
// commit point. A member that is not primary answers NotWritablePrimary.
func (r *Replication) ReportProgress(_ context.Context, req *shardpb.ProgressRequest) (*shardpb.ProgressReply, error) {
	if r.prog == nil {
		return nil, mongoerr.New(mongoerr.NotWritablePrimary, "not primary: progress reports go to the primary")
	}
	if err := r.prog.Report(req.GetMember(), toOpTime(req.GetDurable())); err != nil {
		return nil, err
	}
	return &shardpb.ProgressReply{Term: r.eng.Term(), CommitPoint: r.commitPoint()}, nil
}

// AwaitWriteConcern waits for a write's replication on a primary; on a
// member without a progress tracker (replication off, or a secondary) it
// returns at once: the local synced write is all there is.
func (r *Replication) AwaitWriteConcern(ctx context.Context, t storage.OpTime, wc *shardpb.WriteConcern) error {
	if r.prog == nil {
		return nil
	}
	return r.prog.AwaitWriteConcern(ctx, t, wc)
}

// CheckWritable refuses writes on a member that is not primary (a
// Replication without a progress tracker) with NotWritablePrimary (10107),
// so drivers retry on the primary.
func (r *Replication) CheckWritable() error {
	if r.prog == nil {
		return mongoerr.New(mongoerr.NotWritablePrimary, "not primary")
	}
	return nil
}

// writeConcernWaiter and writableChecker are the hooks the write path looks
// for on Options.Replication (implemented by *Replication); without them
// (replication off) writes are w:1 on the local synced store.
type writeConcernWaiter interface {
	AwaitWriteConcern(ctx context.Context, t storage.OpTime, wc *shardpb.WriteConcern) error
}

type writableChecker interface{ CheckWritable() error }

// checkWritable is called before a write is applied.
func (s *Server) checkWritable() error {
	if c, ok := s.repl.(writableChecker); ok {
		return c.CheckWritable()
	}
	return nil
}

// awaitWriteConcern is called after a write that produced oplog entries up
// to at; its error becomes the reply's writeConcernError (the write stays
// applied).
func (s *Server) awaitWriteConcern(ctx context.Context, wc *shardpb.WriteConcern, at *shardpb.OpTime) *shardpb.MongoError {
	w, ok := s.repl.(writeConcernWaiter)
	if !ok || at == nil {
		return nil
	}
	if err := w.AwaitWriteConcern(ctx, toOpTime(at), wc); err != nil {
		return rpcerr.Proto(clientError(err), nil)
	}
	return nil
}

// replicationNotBuilt answers the Replication calls that are not built
// yet with CommandNotFound (gRPC Unimplemented). Nothing here pretends to
// replicate.
type replicationNotBuilt struct {
	shardpb.UnimplementedReplicationServer
}

func notBuilt(method string) error {
	return mongoerr.New(mongoerr.CommandNotFound, "replication is not built yet: %s is not served by this shardd", method)
}

func (replicationNotBuilt) PullOplog(*shardpb.PullOplogRequest, shardpb.Replication_PullOplogServer) error {
	return notBuilt("PullOplog")
}

func (replicationNotBuilt) ReportProgress(context.Context, *shardpb.ProgressRequest) (*shardpb.ProgressReply, error) {
	return nil, notBuilt("ReportProgress")
}

func (replicationNotBuilt) RequestVote(context.Context, *shardpb.VoteRequest) (*shardpb.VoteReply, error) {
	return nil, notBuilt("RequestVote")
}

func (replicationNotBuilt) Status(context.Context, *shardpb.StatusRequest) (*shardpb.StatusReply, error) {
	return nil, notBuilt("Status")
}

func (replicationNotBuilt) StepDown(context.Context, *shardpb.StepDownRequest) (*shardpb.StepDownReply, error) {
	return nil, notBuilt("StepDown")
}

func (replicationNotBuilt) CloneSnapshot(*shardpb.CloneRequest, shardpb.Replication_CloneSnapshotServer) error {
	return notBuilt("CloneSnapshot")
}
