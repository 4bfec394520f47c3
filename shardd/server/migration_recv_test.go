package server

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/migrate"
	"github.com/psdb/psdb/shardd/storage"
)

// The recipient side of the Migration service, on two in-process members:
// argument and session errors, clone, catch-up of writes made after the
// snapshot, WaitMajority, an abort that drops the copy and ends the
// donor's session, and the refusal of a range whose deletion is pending on
// the recipient.
func TestRecvChunk(t *testing.T) {
	ctx := ctxT(t)
	donor, rec := migMember(t), migMember(t)
	const ns = "db.c"
	var docs []bson.Raw
	for i := range 100 {
		docs = append(docs, raw(t, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: i}}))
	}
	if _, err := donor.Client.Insert(ctx, ns, docs, shardclient.WriteOptions{Ordered: true}); err != nil {
		t.Fatal(err)
	}
	r, err := migrate.NewRange(ns, raw(t, bson.D{{Key: "a", Value: 1}}), raw(t, bson.D{{Key: "a", Value: 10}}), raw(t, bson.D{{Key: "a", Value: 50}}))
	if err != nil {
		t.Fatal(err)
	}
	code := func(err error) mongoerr.Code { return mongoerr.CodeOf(rpcerr.Error(err)) }
	recv := shardpb.NewMigrationClient(rec.Client.Conn())
	if _, err := recv.RecvChunkStart(ctx, &shardpb.RecvChunkStartRequest{Range: r.Proto()}); code(err) != mongoerr.BadValue {
		t.Fatalf("start without a donor: %v", err)
	}
	if _, err := recv.RecvChunkClone(ctx, &shardpb.RecvChunkRequest{RecvId: "nope"}); code(err) != mongoerr.NoSuchSession {
		t.Fatalf("clone of an unknown session: %v", err)
	}
	if _, err := recv.RecvChunkEnd(ctx, &shardpb.RecvChunkRequest{RecvId: "nope", Abort: true}); err != nil {
		t.Fatalf("end of an unknown session: %v", err)
	}

	st, err := recv.RecvChunkStart(ctx, &shardpb.RecvChunkStartRequest{Range: r.Proto(), DonorAddr: donor.Addr})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetDonorSessionId() == "" || st.GetRecvId() == "" {
		t.Fatalf("start reply without ids: %v", st)
	}
	cl, err := recv.RecvChunkClone(ctx, &shardpb.RecvChunkRequest{RecvId: st.GetRecvId()})
	if err != nil {
		t.Fatal(err)
	}
	if cl.GetClonedDocs() != 40 || cl.GetClonedBytes() == 0 {
		t.Fatalf("cloned %d documents, %d bytes; want 40", cl.GetClonedDocs(), cl.GetClonedBytes())
	}
	// Writes after the snapshot: five inserts into the range, one outside.
	var more []bson.Raw
	for i := 200; i < 205; i++ {
		more = append(more, raw(t, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: i - 180}}))
	}
	more = append(more, raw(t, bson.D{{Key: "_id", Value: 300}, {Key: "a", Value: 70}}))
	if _, err := donor.Client.Insert(ctx, ns, more, shardclient.WriteOptions{Ordered: true}); err != nil {
		t.Fatal(err)
	}
	cu, err := recv.RecvChunkCatchUp(ctx, &shardpb.RecvChunkRequest{RecvId: st.GetRecvId()})
	if err != nil {
		t.Fatal(err)
	}
	if cu.GetModsApplied() != 5 || cu.GetRemaining() != 0 {
		t.Fatalf("catch-up: %d mods, %d remaining; want 5, 0", cu.GetModsApplied(), cu.GetRemaining())
	}
	if got := len(migRangeDocs(t, rec.Engine, r)); got != 45 {
		t.Fatalf("recipient holds %d documents of the range, want 45", got)
	}
	wm, err := recv.WaitMajority(ctx, &shardpb.WaitMajorityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if toOpTime(wm.GetOpTime()).Compare(toOpTime(cu.GetLastOpTime())) < 0 {
		t.Fatalf("WaitMajority at %v, before the recipient's last write %v", wm.GetOpTime(), cu.GetLastOpTime())
	}
	ab, err := recv.RecvChunkEnd(ctx, &shardpb.RecvChunkRequest{RecvId: st.GetRecvId(), Abort: true})
	if err != nil {
		t.Fatal(err)
	}
	if ab.GetDeleted() != 45 || len(migRangeDocs(t, rec.Engine, r)) != 0 {
		t.Fatalf("abort deleted %d, want 45", ab.GetDeleted())
	}
	mig := shardpb.NewMigrationClient(donor.Client.Conn())
	if _, err := mig.TransferMods(ctx, &shardpb.TransferModsRequest{SessionId: st.GetDonorSessionId()}); code(err) != mongoerr.NoSuchSession {
		t.Fatalf("donor session after the abort: %v", err)
	}

	// A pending deletion of an overlapping range on the recipient (a task
	// recorded while its deleter is not running) refuses the range until
	// the deletion, started by the refusal, is done.
	task := raw(t, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "ns", Value: ns}, {Key: "key", Value: raw(t, bson.D{{Key: "a", Value: 1}})},
		{Key: "min", Value: raw(t, bson.D{{Key: "a", Value: 0}})}, {Key: "max", Value: raw(t, bson.D{{Key: "a", Value: 20}})},
		{Key: "created", Value: time.Now().UTC()}})
	if res, err := rec.Engine.Insert(ctx, migrate.RangeDeletionsNS, []bson.Raw{task}, storage.WriteOptions{Ordered: true}); err != nil || res[0].Err != nil {
		t.Fatalf("record a range deletion: %v %v", err, res)
	}
	if _, err := recv.RecvChunkStart(ctx, &shardpb.RecvChunkStartRequest{Range: r.Proto(), DonorAddr: donor.Addr}); code(err) != mongoerr.ConflictingOperationInProgress {
		t.Fatalf("start over a pending range deletion: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := recv.RecvChunkStart(ctx, &shardpb.RecvChunkStartRequest{Range: r.Proto(), DonorAddr: donor.Addr})
		if err == nil {
			if _, err := recv.RecvChunkEnd(ctx, &shardpb.RecvChunkRequest{RecvId: st.GetRecvId()}); err != nil {
				t.Fatal(err)
			}
			break
		}
		if code(err) != mongoerr.ConflictingOperationInProgress || time.Now().After(deadline) {
			t.Fatalf("start after the range deletion: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
