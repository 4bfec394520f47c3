package repl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// ErrResyncRequired: the member cannot roll back exactly to its sync
// source's history (no common point in its newest entries, a catalog
// command among the entries to undo or redo, more than a rollback carries,
// or data that differs outside the rolled-back entries). Nothing was
// changed in the store; the caller must run an initial sync.
var ErrResyncRequired = errors.New("rollback impossible: resync required")

// RollbackDir is the directory, under a member's data directory, of the
// rollback files.
const RollbackDir = "rollback"

// RollbackOptions configure Rollback.
type RollbackOptions struct {
	// Member is this member's name; Source the sync source's gRPC address.
	Member, Source string
	// Engine is this member's store. No Puller may run on it.
	Engine *storage.Engine
	// DataDir is the member's data directory: the rollback files go to
	// <DataDir>/rollback/<ns>.<time>.bson.
	DataDir string
	// Logger should carry the node, role and shard fields.
	Logger zerolog.Logger
}

// Rollback brings a diverged member (its Puller ended with ErrDiverged)
// back to its sync source's history (docs/design/rollback.md): it sends its
// newest entries, receives the common point, the source's entries after it
// up to the source's snapshot optime P and the source's versions of the
// affected documents, saves its own versions to rollback files and
// rewrites its store in one batch (storage.Engine.RollbackTo). It returns
// the new last optime (P), from which the caller starts a new Puller.
//
// Errors wrapping ErrResyncRequired mean the member must resync; other
// errors (source unreachable, stream cut, StaleTerm from a source older
// than this member) leave the store as it was and may be retried, with
// this or another source.
func Rollback(ctx context.Context, o RollbackOptions) (storage.OpTime, error) {
	if o.Engine == nil || o.Member == "" || o.Source == "" || o.DataDir == "" {
		return storage.OpTime{}, errors.New("repl.Rollback: Engine, Member, Source and DataDir are required")
	}
	start := time.Now()
	log := o.Logger.With().Str(logging.FieldOp, "rollback").Str("syncSource", o.Source).Logger()
	tail, err := o.Engine.OplogTail(storage.RollbackTailEntries, storage.RollbackTailBytes)
	if err != nil {
		return storage.OpTime{}, fmt.Errorf("rollback: %w", err)
	}
	if len(tail) == 0 {
		return storage.OpTime{}, fmt.Errorf("%w: the local oplog is empty", ErrResyncRequired)
	}
	req := &shardpb.RollbackRequest{Member: o.Member, Term: o.Engine.PromisedTerm()}
	for _, en := range tail {
		req.LocalTail = append(req.LocalTail, storage.EncodeOplogEntry(en))
	}
	in, err := fetchRollback(ctx, o, req)
	if err != nil {
		return storage.OpTime{}, err
	}
	held := false
	for _, en := range tail {
		held = held || en.OpTime() == in.Common
	}
	if !held {
		return storage.OpTime{}, fmt.Errorf("rollback: the sync source %s answered common point %s, which is not among the entries sent", o.Source, in.Common)
	}
	in.Dir = filepath.Join(o.DataDir, RollbackDir)
	log.Warn().Stringer("last", o.Engine.LastOpTime()).Stringer("common", in.Common).Stringer("snapshot", in.SnapshotOpTime).
		Int("entries", len(in.Entries)).Int("docs", len(in.Docs)).Msg("rolling back to the sync source's history")
	res, err := o.Engine.RollbackTo(ctx, in)
	if err != nil {
		if errors.Is(err, storage.ErrRollbackImpossible) || errors.Is(err, storage.ErrOplogDiverged) {
			return storage.OpTime{}, fmt.Errorf("%w: %w", ErrResyncRequired, err)
		}
		return storage.OpTime{}, err
	}
	undone := zerolog.Arr()
	for _, en := range res.Undone {
		undone.Str(fmt.Sprintf("%s %s %s %s", en.OpTime(), en.Op, en.NS, en.ID))
	}
	log.Warn().Stringer("common", in.Common).Stringer("last", res.LastOpTime).Int("undoneEntries", len(res.Undone)).
		Array("undone", undone).Int("entries", len(in.Entries)).Int("docs", res.Docs).Int("sessions", res.Sessions).Int("saved", res.Saved).
		Strs("files", res.Files).Dur(logging.FieldDur, time.Since(start)).Msg("rolled back")
	return res.LastOpTime, nil
}

// fetchRollback asks the source and collects its whole answer.
func fetchRollback(ctx context.Context, o RollbackOptions, req *shardpb.RollbackRequest) (storage.RollbackInput, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := shardclient.Dial(ctx, o.Source)
	if err != nil {
		return storage.RollbackInput{}, fmt.Errorf("rollback: dial %s: %w", o.Source, err)
	}
	defer c.Close()
	stream, err := shardpb.NewReplicationClient(c.Conn()).Rollback(ctx, req)
	if err != nil {
		return storage.RollbackInput{}, fmt.Errorf("rollback from %s: %w", o.Source, rpcerr.Error(err))
	}
	var in storage.RollbackInput
	size := 0
	for first := true; ; first = false {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return storage.RollbackInput{}, fmt.Errorf("rollback from %s: the answer ended before its last chunk", o.Source)
		}
		if err != nil {
			return storage.RollbackInput{}, fmt.Errorf("rollback from %s: %w", o.Source, rpcerr.Error(err))
		}
		if first {
			if chunk.GetResyncRequired() || !chunk.GetFound() {
				return storage.RollbackInput{}, fmt.Errorf("%w: sync source %s: %s", ErrResyncRequired, o.Source, chunk.GetReason())
			}
			in.Common = storage.OpTime{Term: chunk.GetCommonPoint().GetTerm(), Index: chunk.GetCommonPoint().GetIndex()}
			in.SnapshotOpTime = storage.OpTime{Term: chunk.GetSnapshotOpTime().GetTerm(), Index: chunk.GetSnapshotOpTime().GetIndex()}
		}
		for _, b := range chunk.GetEntries() {
			en, err := storage.DecodeOplogEntry(b)
			if err != nil {
				return storage.RollbackInput{}, fmt.Errorf("rollback from %s: %w", o.Source, err)
			}
			in.Entries = append(in.Entries, en)
			size += len(b)
		}
		for _, d := range chunk.GetDocs() {
			var id bson.RawValue
			if bson.Raw(d.GetId()).Validate() == nil {
				id = bson.Raw(d.GetId()).Lookup("_id")
			}
			if id.Type == 0 {
				return storage.RollbackInput{}, fmt.Errorf("rollback from %s: refetched document of %s without an _id", o.Source, d.GetNs())
			}
			rd := storage.RefetchedDoc{NS: d.GetNs(), ID: id}
			if len(d.GetDoc()) > 0 {
				rd.Doc = bson.Raw(d.GetDoc())
			}
			in.Docs = append(in.Docs, rd)
			size += len(d.GetId()) + len(d.GetDoc()) + len(d.GetNs())
		}
		for _, ss := range chunk.GetSessions() {
			rs := storage.RefetchedSession{LSID: ss.GetLsid()}
			size += len(ss.GetLsid())
			for _, st := range ss.GetStatements() {
				rs.Records = append(rs.Records, storage.SessionRecord{
					TxnNumber: st.GetTxnNumber(),
					StmtID:    st.GetStmtId(),
					Record: storage.StmtRecord{
						Result: bson.Raw(st.GetResult()),
						OpTime: storage.OpTime{Term: st.GetOpTime().GetTerm(), Index: st.GetOpTime().GetIndex()},
					},
				})
				size += 32 + len(st.GetResult())
			}
			in.Sessions = append(in.Sessions, rs)
		}
		if len(in.Entries) > storage.RollbackMaxEntries || len(in.Docs) > storage.RollbackMaxDocs || size > storage.RollbackMaxBytes+(1<<20) {
			return storage.RollbackInput{}, fmt.Errorf("rollback from %s: the answer exceeds a rollback's bounds (%d entries, %d documents, %d bytes)", o.Source, len(in.Entries), len(in.Docs), size)
		}
		if chunk.GetDone() {
			return in, nil
		}
	}
}
