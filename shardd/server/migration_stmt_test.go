package server

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/migrate"
)

// Retryable-write statement records move with the range: a statement the
// donor ran before the migration (cloned) or during it (a mod) answers a
// retry on the recipient with the donor's first result and writes
// nothing; a statement of a document outside the range stays behind.
func TestMigrateStatements(t *testing.T) {
	ctx := ctxT(t)
	const ns = "db.c"
	donor, rec := migMember(t), migMember(t)
	r, err := migrate.NewRange(ns, raw(t, bson.D{{Key: "_id", Value: 1}}), raw(t, bson.D{{Key: "_id", Value: 0}}), raw(t, bson.D{{Key: "_id", Value: 1000}}))
	if err != nil {
		t.Fatal(err)
	}
	lsid := raw(t, bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}}})
	other := raw(t, bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: []byte("fedcba9876543210")}}})
	sess := func(l bson.Raw, txn int64, ids ...int32) shardclient.WriteOptions {
		return shardclient.WriteOptions{Ordered: true, Session: &shardpb.SessionInfo{Lsid: l, TxnNumber: txn, StmtIds: ids}}
	}
	// Before the migration: statement 0 in the range, statement 1 outside.
	if res, err := donor.Client.Insert(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: 10}, {Key: "n", Value: 1}}),
		raw(t, bson.D{{Key: "_id", Value: 2000}, {Key: "n", Value: 1}})}, sess(lsid, 5, 0, 1)); err != nil || res.N != 2 {
		t.Fatalf("retryable insert on the donor: %+v, %v", res, err)
	}
	mig := shardpb.NewMigrationClient(donor.Client.Conn())
	rc := migrate.NewRecipient(rec.Engine, mig, r)
	if err := rc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc.Clone(ctx); err != nil {
		t.Fatal(err)
	}
	// During the migration, another session's statement in the range.
	if res, err := donor.Client.Insert(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: 20}, {Key: "n", Value: 1}})}, sess(other, 3, 0)); err != nil || res.N != 1 {
		t.Fatalf("retryable insert during the migration: %+v, %v", res, err)
	}
	if err := rc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if rc.Statements != 2 {
		t.Fatalf("the recipient took over %d statements, want 2 (one cloned, one from the mods)", rc.Statements)
	}
	if err := rc.End(ctx); err != nil {
		t.Fatal(err)
	}

	// Retries on the recipient: answered from the records, nothing written.
	before := rec.Engine.LastOpTime()
	res, err := rec.Client.Insert(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: 10}, {Key: "n", Value: 1}})}, sess(lsid, 5, 0))
	if err != nil || res.N != 1 || len(res.WriteErrors) != 0 {
		t.Fatalf("retry of the cloned statement on the recipient: %+v, %v", res, err)
	}
	res, err = rec.Client.Insert(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: 20}, {Key: "n", Value: 1}})}, sess(other, 3, 0))
	if err != nil || res.N != 1 || len(res.WriteErrors) != 0 {
		t.Fatalf("retry of the migrated mod's statement on the recipient: %+v, %v", res, err)
	}
	if after := rec.Engine.LastOpTime(); after != before {
		t.Fatalf("the retries wrote on the recipient: last optime %s -> %s", before, after)
	}
	// The statement of the document outside the range did not move: a
	// retry of it on the recipient runs (and inserts the document there).
	res, err = rec.Client.Insert(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: 2000}, {Key: "n", Value: 1}})}, sess(lsid, 5, 1))
	if err != nil || res.N != 1 {
		t.Fatalf("statement outside the range on the recipient: %+v, %v", res, err)
	}
	if rec.Engine.LastOpTime() == before {
		t.Fatal("the statement outside the range was answered from a record it should not have")
	}
}
