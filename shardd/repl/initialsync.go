package repl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// InitialSyncOptions configure InitialSync.
type InitialSyncOptions struct {
	// Member is this member's name, sent to the source.
	Member string
	// Source is the gRPC address of the member to clone.
	Source string
	// Engine is this member's store. Nothing else may write to it while
	// InitialSync runs (no Puller, no client writes).
	Engine *storage.Engine
	// Logger should carry the node, role and shard fields.
	Logger zerolog.Logger
}

// InitialSync replaces the store's content by a consistent snapshot of the
// source (docs/design/initial-sync.md): ResetForInitialSync, then every
// collection of the source's CloneSnapshot stream is installed with its
// indexes and documents, and the source's retryable-write statement
// records with them (InstallSessions), then FinishInitialSync at the
// snapshot's optime, which it returns. A Puller started afterwards
// continues from the source's oplog after that optime.
//
// On any error (source unreachable, stream cut, ctx ended) the store stays
// marked as an unfinished initial sync (Engine.InitialSyncPending, also
// after a restart) and InitialSync must be run again, from any source.
func InitialSync(ctx context.Context, o InitialSyncOptions) (storage.OpTime, error) {
	if o.Engine == nil || o.Member == "" || o.Source == "" {
		return storage.OpTime{}, errors.New("repl.InitialSync: Engine, Member and Source are required")
	}
	log := o.Logger.With().Str(logging.FieldOp, "initialSync").Str("syncSource", o.Source).Logger()
	start := time.Now()
	c, err := shardclient.Dial(ctx, o.Source)
	if err != nil {
		return storage.OpTime{}, fmt.Errorf("initial sync: dial %s: %w", o.Source, err)
	}
	defer c.Close()
	if err := o.Engine.ResetForInitialSync(ctx); err != nil {
		return storage.OpTime{}, fmt.Errorf("initial sync: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := shardpb.NewReplicationClient(c.Conn()).CloneSnapshot(ctx, &shardpb.CloneRequest{Member: o.Member})
	if err != nil {
		return storage.OpTime{}, fmt.Errorf("initial sync: clone from %s: %w", o.Source, rpcerr.Error(err))
	}
	log.Info().Msg("initial sync started")
	var (
		cur                string // namespace being installed
		colls, docs, bytes int64
		stmts              int64 // statement records installed
		lastLog            = time.Now()
	)
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return storage.OpTime{}, fmt.Errorf("initial sync: clone stream from %s ended before the snapshot was complete", o.Source)
		}
		if err != nil {
			return storage.OpTime{}, fmt.Errorf("initial sync: clone from %s: %w", o.Source, rpcerr.Error(err))
		}
		if ns := chunk.GetNs(); ns != "" {
			if ns != cur {
				specs := make([]storage.IndexSpec, 0, len(chunk.GetIndexSpecs()))
				for _, b := range chunk.GetIndexSpecs() {
					s, err := storage.DecodeIndexSpec(b)
					if err != nil {
						return storage.OpTime{}, fmt.Errorf("initial sync: collection %s: %w", ns, err)
					}
					specs = append(specs, s)
				}
				if err := o.Engine.InstallCollection(ctx, ns, specs); err != nil {
					return storage.OpTime{}, fmt.Errorf("initial sync: %w", err)
				}
				cur = ns
				colls++
			}
			if n := len(chunk.GetDocuments()); n > 0 {
				batch := make([]bson.Raw, n)
				for i, d := range chunk.GetDocuments() {
					batch[i] = d
					bytes += int64(len(d))
				}
				if err := o.Engine.InstallDocuments(ctx, ns, batch); err != nil {
					return storage.OpTime{}, fmt.Errorf("initial sync: %w", err)
				}
				docs += int64(n)
			}
			if time.Since(lastLog) >= 10*time.Second {
				lastLog = time.Now()
				log.Info().Int64("collections", colls).Int64("docs", docs).Int64("bytes", bytes).Str("ns", ns).Msg("initial sync progress")
			}
		}
		if ss := chunk.GetSessions(); len(ss) > 0 {
			page := sessionsFromProto(ss)
			if err := o.Engine.InstallSessions(ctx, page); err != nil {
				return storage.OpTime{}, fmt.Errorf("initial sync: %w", err)
			}
			for _, rs := range page {
				stmts += int64(len(rs.Records))
			}
		}
		if chunk.GetDone() {
			at := storage.OpTime{Term: chunk.GetSnapshotOpTime().GetTerm(), Index: chunk.GetSnapshotOpTime().GetIndex()}
			if err := o.Engine.FinishInitialSync(ctx, at); err != nil {
				return storage.OpTime{}, fmt.Errorf("initial sync: %w", err)
			}
			log.Info().Stringer("snapshot", at).Int64("collections", colls).Int64("docs", docs).Int64("bytes", bytes).
				Int64("statements", stmts).Dur(logging.FieldDur, time.Since(start)).Msg("initial sync finished")
			return at, nil
		}
	}
}

// sessionsFromProto converts a clone chunk's statement records.
func sessionsFromProto(ss []*shardpb.RefetchedSession) []storage.RefetchedSession {
	out := make([]storage.RefetchedSession, 0, len(ss))
	for _, s := range ss {
		rs := storage.RefetchedSession{LSID: s.GetLsid(), Records: make([]storage.SessionRecord, 0, len(s.GetStatements()))}
		for _, st := range s.GetStatements() {
			rs.Records = append(rs.Records, storage.SessionRecord{
				TxnNumber: st.GetTxnNumber(),
				StmtID:    st.GetStmtId(),
				Record: storage.StmtRecord{
					Result: bson.Raw(st.GetResult()),
					OpTime: storage.OpTime{Term: st.GetOpTime().GetTerm(), Index: st.GetOpTime().GetIndex()},
				},
			})
		}
		out = append(out, rs)
	}
	return out
}
