package server

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/executor"
	"github.com/psdb/psdb/shardd/storage"
)

// The Replication service (DESIGN §4). Its data path lives here: PullOplog
// streams this member's durable oplog to a puller, ReportProgress records a
// secondary's durable optime in the primary's progress tracker. Roles are
// not decided here: the member's Coordinator (shardd/replset) answers
// votes, status and step-down, says whether writes and reads may run, and
// installs the progress tracker when the member becomes primary
// (SetProgress) and removes it when it steps down.

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

// Coordinator is the member's replica-set role machine as the service and
// the read and write paths need it; shardd/replset.Member implements it.
type Coordinator interface {
	// CheckWritable refuses a write unless this member is primary with a
	// valid lease (NotWritablePrimary, 10107).
	CheckWritable() error
	// CheckReadable refuses a read with the given read preference
	// ("primary" when empty) that this member must not serve
	// (NotPrimaryNoSecondaryOk, 13435).
	CheckReadable(readPreference string) error
	// CommitPoint is the majority commit point as this member knows it.
	CommitPoint() storage.OpTime
	RequestVote(ctx context.Context, req *shardpb.VoteRequest) (*shardpb.VoteReply, error)
	Status(ctx context.Context, req *shardpb.StatusRequest) (*shardpb.StatusReply, error)
	StepDown(ctx context.Context, req *shardpb.StepDownRequest) (*shardpb.StepDownReply, error)
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
	// SetProgress changes it later (role changes).
	Progress ProgressTracker
	// Coordinator, when set, decides writability and readability and
	// answers RequestVote, Status and StepDown; without it those calls
	// answer CommandNotFound and writability follows Progress.
	Coordinator Coordinator
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
	eng   *storage.Engine
	prog  atomic.Pointer[progressBox]
	coord Coordinator
	log   zerolog.Logger
	opts  ReplicationOptions
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
	r := &Replication{eng: o.Engine, coord: o.Coordinator, log: o.Logger, opts: o, stopping: stopping, stop: stop}
	r.SetProgress(o.Progress)
	return r, nil
}

// progressBox lets a nil tracker be stored in an atomic.Pointer.
type progressBox struct{ p ProgressTracker }

// SetProgress installs the progress tracker of a new primary term, or
// removes it (nil) when the member stops being primary: progress reports
// are refused from then on and writes no longer wait on it.
func (r *Replication) SetProgress(p ProgressTracker) { r.prog.Store(&progressBox{p}) }

// progress returns the current tracker (nil on a secondary).
func (r *Replication) progress() ProgressTracker { return r.prog.Load().p }

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
	if p := r.progress(); p != nil {
		return fromOpTime(p.CommitPoint())
	}
	if r.coord != nil {
		return fromOpTime(r.coord.CommitPoint())
	}
	return nil
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
		// cur cannot miss one (ReadOplogRaw itself reads up to at least cur).
		cur := r.eng.LastOpTime()
		// The stored bytes are the wire form: no decode and re-encode.
		entries, err := r.eng.ReadOplogRaw(after, r.opts.MaxBatchEntries, r.opts.MaxBatchBytes)
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
		batch := &shardpb.OplogBatch{Term: r.eng.Term(), Entries: make([][]byte, len(entries))}
		for i, e := range entries {
			batch.Entries[i] = e.Data
		}
		after = entries[len(entries)-1].OpTime
		batch.CommitPoint = r.commitPoint()
		if err := stream.Send(batch); err != nil {
			return err
		}
	}
}

// ReportProgress records a secondary's durable optime and answers with the
// commit point. A member that is not primary answers NotWritablePrimary.
func (r *Replication) ReportProgress(_ context.Context, req *shardpb.ProgressRequest) (*shardpb.ProgressReply, error) {
	prog := r.progress()
	if prog == nil {
		return nil, mongoerr.New(mongoerr.NotWritablePrimary, "not primary: progress reports go to the primary")
	}
	if term := r.eng.Term(); req.GetTerm() > term {
		// The reporter promised a newer term: this primary is stale.
		return nil, mongoerr.New(mongoerr.StaleTerm, "this member is at term %d, older than the reporter's term %d", term, req.GetTerm())
	}
	if err := prog.Report(req.GetMember(), toOpTime(req.GetDurable())); err != nil {
		return nil, err
	}
	return &shardpb.ProgressReply{Term: r.eng.Term(), CommitPoint: r.commitPoint()}, nil
}

// AwaitWriteConcern waits for a write's replication on a primary; on a
// member without a progress tracker (replication off, or a secondary) it
// returns at once: the local synced write is all there is.
func (r *Replication) AwaitWriteConcern(ctx context.Context, t storage.OpTime, wc *shardpb.WriteConcern) error {
	p := r.progress()
	if p == nil {
		if r.coord != nil {
			// The member stepped down between the write and the wait: the
			// write may be rolled back, so it is not acknowledged beyond w:1.
			return mongoerr.New(mongoerr.PrimarySteppedDown, "primary stepped down before the write concern was satisfied")
		}
		return nil
	}
	return p.AwaitWriteConcern(ctx, t, wc)
}

// CheckWritable refuses writes on a member that is not primary with
// NotWritablePrimary (10107), so drivers retry on the primary: the
// Coordinator decides when there is one, else the presence of a progress
// tracker does.
func (r *Replication) CheckWritable() error {
	if r.coord != nil {
		return r.coord.CheckWritable()
	}
	if r.progress() == nil {
		return mongoerr.New(mongoerr.NotWritablePrimary, "not primary")
	}
	return nil
}

// CheckReadable refuses a read this member must not serve under its role
// (only with a Coordinator; without one every member serves reads).
func (r *Replication) CheckReadable(readPreference string) error {
	if r.coord != nil {
		return r.coord.CheckReadable(readPreference)
	}
	return nil
}

// RequestVote, Status and StepDown are the Coordinator's.
func (r *Replication) RequestVote(ctx context.Context, req *shardpb.VoteRequest) (*shardpb.VoteReply, error) {
	if r.coord == nil {
		return nil, notBuilt("RequestVote")
	}
	return r.coord.RequestVote(ctx, req)
}

func (r *Replication) Status(ctx context.Context, req *shardpb.StatusRequest) (*shardpb.StatusReply, error) {
	if r.coord == nil {
		return nil, notBuilt("Status")
	}
	return r.coord.Status(ctx, req)
}

func (r *Replication) StepDown(ctx context.Context, req *shardpb.StepDownRequest) (*shardpb.StepDownReply, error) {
	if r.coord == nil {
		return nil, notBuilt("StepDown")
	}
	return r.coord.StepDown(ctx, req)
}

// writeConcernWaiter and writableChecker are the hooks the write path looks
// for on Options.Replication (implemented by *Replication); without them
// (replication off) writes are w:1 on the local synced store.
type writeConcernWaiter interface {
	AwaitWriteConcern(ctx context.Context, t storage.OpTime, wc *shardpb.WriteConcern) error
}

type writableChecker interface{ CheckWritable() error }

type readableChecker interface {
	CheckReadable(readPreference string) error
}

// WaitCommitted blocks until the commit point this member knows of
// reaches at (readConcern "majority"). Without replication everything
// local is committed. The commit point moves with replication progress
// reports and oplog batches; the wait polls it with a short backoff and
// ends with ctx (MaxTimeMSExpired at its deadline).
func (r *Replication) WaitCommitted(ctx context.Context, at storage.OpTime) error {
	delay := time.Millisecond
	for {
		cp := r.commitPoint()
		if cp == nil || toOpTime(cp).Compare(at) >= 0 {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			code := mongoerr.Interrupted
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				code = mongoerr.MaxTimeMSExpired
			}
			return mongoerr.Wrap(ctx.Err(), code, "waiting for the majority commit point to reach %s (at %s) for readConcern majority", at, toOpTime(cp))
		case <-t.C:
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// readContext applies a read's read concern to ctx: "majority" makes the
// read wait, once its snapshot is open, until the snapshot's newest entry
// is majority-committed. "local" and "available" (and none) read the
// latest snapshot; "linearizable" and "snapshot" are not supported.
func (s *Server) readContext(ctx context.Context, ro *shardpb.ReadOptions) (context.Context, error) {
	switch lvl := ro.GetReadConcernLevel(); lvl {
	case "", "local", "available":
		return ctx, nil
	case "majority":
		r, ok := s.repl.(*Replication)
		if !ok {
			return ctx, nil // no replication: every local write is the whole truth
		}
		return executor.WithSnapshotWait(ctx, r.WaitCommitted), nil
	case "linearizable", "snapshot":
		return nil, mongoerr.New(mongoerr.InvalidOptions, "readConcern level %q is not supported", lvl)
	default:
		return nil, mongoerr.New(mongoerr.FailedToParse, "unrecognized readConcern level %q", lvl)
	}
}

// checkReadable is called before a read with the request's read options.
func (s *Server) checkReadable(ro *shardpb.ReadOptions) error {
	if c, ok := s.repl.(readableChecker); ok {
		return c.CheckReadable(ro.GetReadPreference())
	}
	return nil
}

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
