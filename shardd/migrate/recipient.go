package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// RangeFromProto parses the wire form of a range.
func RangeFromProto(p *shardpb.MigrationRange) (Range, error) {
	if p == nil {
		return Range{}, mongoerr.New(mongoerr.BadValue, "a migration needs a range")
	}
	return NewRange(p.GetNs(), p.GetKeyPattern(), p.GetMin(), p.GetMax())
}

// Proto returns the wire form of r.
func (r Range) Proto() *shardpb.MigrationRange {
	kp, err := bson.Marshal(r.Key.Doc())
	if err != nil {
		panic(fmt.Sprintf("migrate: marshal key pattern: %v", err)) // strings and int32s: cannot fail
	}
	return &shardpb.MigrationRange{Ns: r.NS, KeyPattern: kp, Min: r.Min, Max: r.Max}
}

// ModProto returns the wire form of a mod (deletes as {v: _id}).
func ModProto(m Mod) *shardpb.MigrationMod {
	if m.Put != nil {
		return &shardpb.MigrationMod{Put: m.Put}
	}
	b, err := bson.Marshal(bson.D{{Key: "v", Value: m.DeleteID}})
	if err != nil {
		panic(fmt.Sprintf("migrate: marshal _id: %v", err)) // a value read from a stored entry
	}
	return &shardpb.MigrationMod{DeleteId: b}
}

// ModFromProto parses the wire form of a mod.
func ModFromProto(p *shardpb.MigrationMod) (Mod, error) {
	if len(p.GetPut()) > 0 {
		return Mod{Put: p.GetPut()}, nil
	}
	v, err := bson.Raw(p.GetDeleteId()).LookupErr("v")
	if err != nil {
		return Mod{}, mongoerr.New(mongoerr.BadValue, "migration mod without put or delete_id")
	}
	return Mod{DeleteID: v}, nil
}

// ApplyMods applies mods to ns on eng in order, as local writes with
// their own oplog entries (storage.PutDocuments, DeleteDocuments): runs of
// puts and runs of deletes are one batch each. It returns the optime of
// the last entry written (zero when nothing changed).
func ApplyMods(ctx context.Context, eng *storage.Engine, ns string, mods []Mod) (storage.OpTime, error) {
	var last storage.OpTime
	note := func(t storage.OpTime) {
		if t.Compare(last) > 0 {
			last = t
		}
	}
	for i := 0; i < len(mods); {
		j := i
		if mods[i].Put != nil {
			var docs []bson.Raw
			for ; j < len(mods) && mods[j].Put != nil; j++ {
				docs = append(docs, mods[j].Put)
			}
			t, err := eng.PutDocuments(ctx, ns, docs)
			if err != nil {
				return last, err
			}
			note(t)
		} else {
			var ids []bson.RawValue
			for ; j < len(mods) && mods[j].Put == nil; j++ {
				ids = append(ids, mods[j].DeleteID)
			}
			_, t, err := eng.DeleteDocuments(ctx, ns, ids, nil)
			if err != nil {
				return last, err
			}
			note(t)
		}
		i = j
	}
	return last, nil
}

// Recipient is the recipient's side of one migration: it pulls the range
// from the donor's primary through the Migration service and writes it
// into its own store as local writes with oplog entries, so its own
// secondaries replicate them like any write. It must run on the
// recipient's primary (the orchestrator checks). Not safe for concurrent
// use.
type Recipient struct {
	eng     *storage.Engine
	donor   shardpb.MigrationClient
	r       Range
	session string
	// Last is the optime of the recipient's last write for the migration:
	// the orchestrator waits for it to be majority-committed before the
	// catalog commit.
	Last storage.OpTime
	// Stats.
	ClonedDocs, ClonedBytes, ModsApplied int64
	// Statements counts the retryable-write records taken over.
	Statements int64
}

// NewRecipient prepares a migration of r from donor into eng.
func NewRecipient(eng *storage.Engine, donor shardpb.MigrationClient, r Range) *Recipient {
	return &Recipient{eng: eng, donor: donor, r: r}
}

// Session returns the donor's session id (empty before Start).
func (rc *Recipient) Session() string { return rc.session }

// Range returns the range being received.
func (rc *Recipient) Range() Range { return rc.r }

// StatementsProto is the wire form of migrated statement records.
func StatementsProto(ws []storage.StmtWrite) []*shardpb.MigrationStatement {
	out := make([]*shardpb.MigrationStatement, len(ws))
	for i, w := range ws {
		out[i] = &shardpb.MigrationStatement{Lsid: w.LSID, TxnNumber: w.TxnNumber, StmtId: w.StmtID, Result: w.Result}
	}
	return out
}

// ModStatements returns the statements the mods carry, in order.
func ModStatements(mods []Mod) []storage.StmtWrite {
	var out []storage.StmtWrite
	for _, m := range mods {
		if m.Stmt != nil {
			out = append(out, *m.Stmt)
		}
	}
	return out
}

// importStatements records the donor's statement records on this shard.
func (rc *Recipient) importStatements(ctx context.Context, ps []*shardpb.MigrationStatement) error {
	if len(ps) == 0 {
		return nil
	}
	ws := make([]storage.StmtWrite, len(ps))
	for i, p := range ps {
		ws[i] = storage.StmtWrite{Statement: storage.Statement{LSID: p.GetLsid(), TxnNumber: p.GetTxnNumber(), StmtID: p.GetStmtId()}, Result: p.GetResult()}
	}
	n, t, err := rc.eng.ImportStatements(ctx, ws)
	if err != nil {
		return fmt.Errorf("record the migrated statements of %s: %w", rc.r, err)
	}
	if !t.IsZero() {
		rc.Last = t
	}
	rc.Statements += int64(n)
	return nil
}

// Start opens the donor's session, deletes whatever the recipient holds
// of the range (orphans of an earlier, aborted migration: they are not
// owned, and a document the donor no longer has would otherwise survive
// the copy), and creates the collection and the donor's indexes locally
// (identical existing indexes are kept; the recipient's changes are
// replicated DDL). The caller guarantees that the recipient does not own
// the range (the catalog says the donor does).
func (rc *Recipient) Start(ctx context.Context) error {
	rep, err := rc.donor.StartMigration(ctx, &shardpb.StartMigrationRequest{Range: rc.r.Proto()})
	if err != nil {
		return fmt.Errorf("start the migration of %s on the donor: %w", rc.r, err)
	}
	rc.session = rep.GetSessionId()
	if _, err := DeleteRangeDocuments(ctx, rc.eng, rc.r, 0); err != nil {
		return fmt.Errorf("delete orphans of %s before the clone: %w", rc.r, err)
	}
	if err := rc.eng.CreateCollection(ctx, rc.r.NS); err != nil && mongoerr.CodeOf(err) != mongoerr.NamespaceExists {
		return fmt.Errorf("create %s: %w", rc.r.NS, err)
	}
	for _, b := range rep.GetIndexSpecs() {
		spec, err := storage.DecodeIndexSpec(b)
		if err != nil {
			return fmt.Errorf("index spec of %s from the donor: %w", rc.r.NS, err)
		}
		if spec.Name == storage.IDIndexName {
			continue
		}
		spec.Multikey = false // computed from the documents
		if _, err := rc.eng.CreateIndex(ctx, rc.r.NS, spec); err != nil {
			return fmt.Errorf("create index %s on %s: %w", spec.Name, rc.r.NS, err)
		}
	}
	rc.Last = rc.eng.LastOpTime()
	return nil
}

// Clone copies the range from the donor's snapshot. Documents already
// present (a retried clone) are replaced, never duplicated.
func (rc *Recipient) Clone(ctx context.Context) error {
	stream, err := rc.donor.CloneRange(ctx, &shardpb.CloneRangeRequest{SessionId: rc.session})
	if err != nil {
		return fmt.Errorf("clone %s: %w", rc.r, err)
	}
	for {
		ch, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("clone %s: the donor ended the stream before its last chunk", rc.r)
		}
		if err != nil {
			return fmt.Errorf("clone %s: %w", rc.r, err)
		}
		if docs := ch.GetDocuments(); len(docs) > 0 {
			in := make([]bson.Raw, len(docs))
			for i, d := range docs {
				in[i] = d
			}
			t, err := rc.eng.PutDocuments(ctx, rc.r.NS, in)
			if err != nil {
				return fmt.Errorf("clone %s: %w", rc.r, err)
			}
			rc.Last = t
			rc.ClonedDocs += int64(len(in))
			for _, d := range in {
				rc.ClonedBytes += int64(len(d))
			}
		}
		if ch.GetDone() {
			return rc.importStatements(ctx, ch.GetStatements())
		}
	}
}

// TransferOnce pulls one batch of mods and applies it; it returns the
// donor's remaining entries after the batch and how many mods it applied.
func (rc *Recipient) TransferOnce(ctx context.Context, maxEntries int) (remaining int64, applied int, err error) {
	rep, err := rc.donor.TransferMods(ctx, &shardpb.TransferModsRequest{SessionId: rc.session, MaxEntries: int32(maxEntries)})
	if err != nil {
		return 0, 0, fmt.Errorf("transfer mods of %s: %w", rc.r, err)
	}
	mods := make([]Mod, len(rep.GetMods()))
	for i, p := range rep.GetMods() {
		if mods[i], err = ModFromProto(p); err != nil {
			return 0, 0, err
		}
	}
	t, err := ApplyMods(ctx, rc.eng, rc.r.NS, mods)
	if err != nil {
		return 0, 0, fmt.Errorf("apply mods of %s: %w", rc.r, err)
	}
	if !t.IsZero() {
		rc.Last = t
	}
	if err := rc.importStatements(ctx, rep.GetStatements()); err != nil {
		return 0, 0, err
	}
	rc.ModsApplied += int64(len(mods))
	return rep.GetRemaining(), len(mods), nil
}

// CatchUp pulls and applies mods until the donor's remaining entries
// (of every namespace: the lag) are at most maxLag after a batch (0: none
// left).
func (rc *Recipient) CatchUp(ctx context.Context, maxLag int64) error {
	for {
		remaining, _, err := rc.TransferOnce(ctx, 0)
		if err != nil {
			return err
		}
		if remaining <= maxLag {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Drain pulls mods until the donor has no entry left to read: called
// inside the donor's critical section, when nothing writes to the range,
// it brings the recipient's copy level with the donor's.
func (rc *Recipient) Drain(ctx context.Context) error { return rc.CatchUp(ctx, 0) }

// End closes the donor's session.
func (rc *Recipient) End(ctx context.Context) error {
	if rc.session == "" {
		return nil
	}
	_, err := rc.donor.EndMigration(ctx, &shardpb.EndMigrationRequest{SessionId: rc.session})
	return err
}

// Abort drops what the recipient copied of the range (a failed migration
// leaves nothing half-owned) and closes the donor's session, best effort.
func (rc *Recipient) Abort(ctx context.Context) (int64, error) {
	_ = rc.End(ctx)
	return DeleteRangeDocuments(ctx, rc.eng, rc.r, 0)
}
