package server

import (
	"context"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/protobuf/proto"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

// node is a Server over a store in dir, served on 127.0.0.1 over gRPC.
type node struct {
	eng  *storage.Engine
	cli  shardpb.ShardClient
	stop func()
}

func startNode(t *testing.T, dir string) *node {
	t.Helper()
	m := servertest.Start(t, func(e *storage.Engine) (*Server, error) {
		return New(Options{Engine: e})
	}, servertest.Options{Dir: dir, Store: storage.Options{NoSync: true}})
	return &node{eng: m.Engine, cli: shardpb.NewShardClient(m.Client.Conn()), stop: m.Stop}
}

func (n *node) entries(t *testing.T) int {
	t.Helper()
	ens, err := n.eng.ReadOplog(storage.OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(ens)
}

func (n *node) count(t *testing.T) int64 {
	t.Helper()
	r, err := n.eng.Validate(context.Background(), ns)
	if err != nil || !r.Valid {
		t.Fatalf("validate: %+v %v", r, err)
	}
	return r.NRecords
}

var sessLSID = func() []byte {
	b, _ := bson.Marshal(bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}}})
	return b
}()

func sess(txn int64, ids ...int32) *shardpb.SessionInfo {
	return &shardpb.SessionInfo{Lsid: sessLSID, TxnNumber: txn, StmtIds: ids}
}

// sessionRequests are one request of each kind, all in txnNumber 1.
func sessionRequests(t *testing.T) []proto.Message {
	inc := raw(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})
	return []proto.Message{
		&shardpb.InsertRequest{Ns: ns, Ordered: true, Session: sess(1, 0, 1, 2), Documents: [][]byte{
			raw(t, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}}),
			raw(t, bson.D{{Key: "_id", Value: 2}, {Key: "n", Value: 0}}),
			raw(t, bson.D{{Key: "_id", Value: 3}, {Key: "n", Value: 0}}),
		}},
		&shardpb.UpdateRequest{Ns: ns, Ordered: true, Session: sess(1, 3, 4, 5, 6), Updates: []*shardpb.UpdateStatement{
			{Filter: raw(t, bson.D{{Key: "_id", Value: 1}}), Update: inc},
			{Filter: raw(t, bson.D{{Key: "_id", Value: 99}}), Update: inc},
			{Filter: raw(t, bson.D{{Key: "_id", Value: 7}}), Update: inc, Upsert: true},
			{Filter: raw(t, bson.D{{Key: "_id", Value: 2}}), Update: raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 0}}}})},
		}},
		&shardpb.DeleteRequest{Ns: ns, Ordered: true, Session: sess(1, 7, 8), Deletes: []*shardpb.DeleteStatement{
			{Filter: raw(t, bson.D{{Key: "_id", Value: 3}}), Limit: 1},
			{Filter: raw(t, bson.D{{Key: "_id", Value: 98}}), Limit: 1},
		}},
		&shardpb.FindAndModifyRequest{Ns: ns, Session: sess(1, 9), Filter: raw(t, bson.D{{Key: "_id", Value: 1}}), Update: inc, New: true},
		&shardpb.FindAndModifyRequest{Ns: ns, Session: sess(1, 10), Filter: raw(t, bson.D{{Key: "_id", Value: "new"}}), Update: inc, Upsert: true, New: true},
	}
}

func send(t *testing.T, c shardpb.ShardClient, req proto.Message) (proto.Message, error) {
	t.Helper()
	ctx := ctxT(t)
	switch r := req.(type) {
	case *shardpb.InsertRequest:
		return c.Insert(ctx, r)
	case *shardpb.UpdateRequest:
		return c.Update(ctx, r)
	case *shardpb.DeleteRequest:
		return c.Delete(ctx, r)
	case *shardpb.FindAndModifyRequest:
		return c.FindAndModify(ctx, r)
	}
	t.Fatalf("request %T", req)
	return nil, nil
}

// retryAll sends every request again and wants the first replies, with
// nothing written.
func retryAll(t *testing.T, n *node, reqs, first []proto.Message) {
	t.Helper()
	entries, docs := n.entries(t), n.count(t)
	for i, req := range reqs {
		got, err := send(t, n.cli, req)
		if err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
		if !proto.Equal(got, first[i]) {
			t.Fatalf("retry %d (%T):\n got %v\nwant %v", i, req, got, first[i])
		}
	}
	if n.entries(t) != entries || n.count(t) != docs {
		t.Fatalf("retries wrote: %d entries (was %d), %d documents (was %d)", n.entries(t), entries, n.count(t), docs)
	}
}

// TestRetryableWrites: over gRPC, every retried request answers its first
// reply and writes nothing, on the same node, after a restart, and on a
// node that applied the first one's oplog (a failover).
func TestRetryableWrites(t *testing.T) {
	dir := t.TempDir()
	a := startNode(t, dir)
	reqs := sessionRequests(t)
	first := make([]proto.Message, len(reqs))
	for i, req := range reqs {
		rep, err := send(t, a.cli, req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		first[i] = rep
		t.Logf("%T → %v", req, rep)
	}
	upd := first[1].(*shardpb.WriteReply)
	if upd.N != 3 || upd.NModified != 1 || len(upd.Upserted) != 1 || upd.OpTime == nil {
		t.Fatalf("update reply %v", upd)
	}
	if del := first[2].(*shardpb.WriteReply); del.N != 1 {
		t.Fatalf("delete reply %v", del)
	}
	retryAll(t, a, reqs, first)

	// Failover: a second node applies the oplog and answers the retries.
	ens, err := a.eng.ReadOplog(storage.OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := startNode(t, t.TempDir())
	if err := b.eng.ApplyOplog(context.Background(), ens); err != nil {
		t.Fatal(err)
	}
	if err := b.eng.SetTerm(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.AppendNoop(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	retryAll(t, b, reqs, first)

	// Restart: the records are on disk.
	a.stop()
	a = startNode(t, dir)
	retryAll(t, a, reqs, first)
}

// TestRetryablePartialBatch: a batch whose first statements ran executes
// only the rest when retried whole.
func TestRetryablePartialBatch(t *testing.T) {
	n := startNode(t, t.TempDir())
	docs := make([][]byte, 5)
	for i := range docs {
		docs[i] = raw(t, bson.D{{Key: "_id", Value: i}})
	}
	part, err := n.cli.Insert(ctxT(t), &shardpb.InsertRequest{Ns: ns, Ordered: true, Documents: docs[:2], Session: sess(4, 20, 21)})
	if err != nil || part.N != 2 {
		t.Fatalf("%v %v", part, err)
	}
	before := n.entries(t)
	whole := &shardpb.InsertRequest{Ns: ns, Ordered: true, Documents: docs, Session: sess(4, 20, 21, 22, 23, 24)}
	rep, err := n.cli.Insert(ctxT(t), whole)
	if err != nil || rep.N != 5 || len(rep.WriteErrors) != 0 {
		t.Fatalf("%v %v", rep, err)
	}
	if got := n.entries(t); got != before+3 || n.count(t) != 5 {
		t.Fatalf("%d entries (want %d), %d documents", got, before+3, n.count(t))
	}
	again, err := n.cli.Insert(ctxT(t), whole)
	if err != nil || !proto.Equal(again, rep) {
		t.Fatalf("retry %v (%v), first %v", again, err, rep)
	}

	// An ordered batch that fails at a duplicate key: the retry records
	// nothing more and fails the same way.
	bad := &shardpb.InsertRequest{Ns: ns, Ordered: true, Session: sess(5), Documents: [][]byte{
		raw(t, bson.D{{Key: "_id", Value: 10}}), docs[0], raw(t, bson.D{{Key: "_id", Value: 11}}),
	}}
	r1, err := n.cli.Insert(ctxT(t), bad)
	if err != nil || r1.N != 1 || len(r1.WriteErrors) != 1 {
		t.Fatalf("%v %v", r1, err)
	}
	entries := n.entries(t)
	r2, err := n.cli.Insert(ctxT(t), bad)
	if err != nil || !proto.Equal(r1, r2) || n.entries(t) != entries {
		t.Fatalf("retry %v (%v), first %v", r2, err, r1)
	}
}

// TestRetryableConcurrent: concurrent retries of one request apply it once.
func TestRetryableConcurrent(t *testing.T) {
	n := startNode(t, t.TempDir())
	if _, err := n.cli.Insert(ctxT(t), &shardpb.InsertRequest{Ns: ns, Documents: [][]byte{raw(t, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}})}}); err != nil {
		t.Fatal(err)
	}
	req := &shardpb.UpdateRequest{Ns: ns, Ordered: true, Session: sess(1), Updates: []*shardpb.UpdateStatement{
		{Filter: raw(t, bson.D{{Key: "_id", Value: 1}}), Update: raw(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})},
	}}
	const k = 10
	reps := make([]*shardpb.WriteReply, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], errs[i] = n.cli.Update(ctxT(t), req)
		}()
	}
	wg.Wait()
	for i := range k {
		if errs[i] != nil || !proto.Equal(reps[i], reps[0]) {
			t.Fatalf("reply %d: %v %v, first %v", i, reps[i], errs[i], reps[0])
		}
	}
	d, _, err := n.eng.Get(ns, bson.RawValue{Type: bson.TypeInt32, Value: []byte{1, 0, 0, 0}})
	if err != nil || d.Lookup("n").Int32() != 1 {
		t.Fatalf("document %s (%v): want n 1", d, err)
	}
}

// TestRetryableRefusals: TransactionTooOld, and the statements MongoDB
// does not retry.
func TestRetryableRefusals(t *testing.T) {
	n := startNode(t, t.TempDir())
	ctx := ctxT(t)
	if _, err := n.cli.Insert(ctx, &shardpb.InsertRequest{Ns: ns, Session: sess(3), Documents: [][]byte{
		raw(t, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}}), raw(t, bson.D{{Key: "_id", Value: 2}, {Key: "a", Value: 1}}),
	}}); err != nil {
		t.Fatal(err)
	}
	_, err := n.cli.Insert(ctx, &shardpb.InsertRequest{Ns: ns, Session: sess(2), Documents: [][]byte{raw(t, bson.D{{Key: "_id", Value: 3}})}})
	if mongoerr.CodeOf(rpcerr.Error(err)) != mongoerr.TransactionTooOld {
		t.Fatalf("older txnNumber: %v", err)
	}
	set := raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: 1}}}})
	multi := &shardpb.UpdateRequest{Ns: ns, Session: sess(4), Updates: []*shardpb.UpdateStatement{
		{Filter: raw(t, bson.D{{Key: "a", Value: 1}}), Update: set, Multi: true},
	}}
	rep, err := n.cli.Update(ctx, multi)
	if err != nil || len(rep.WriteErrors) != 1 || rep.WriteErrors[0].Error.Code != int32(mongoerr.InvalidOptions) || rep.N != 0 {
		t.Fatalf("multi update: %v %v", rep, err)
	}
	del := &shardpb.DeleteRequest{Ns: ns, Session: sess(4), Deletes: []*shardpb.DeleteStatement{{Filter: raw(t, bson.D{{Key: "a", Value: 1}})}}}
	drep, err := n.cli.Delete(ctx, del)
	if err != nil || len(drep.WriteErrors) != 1 || drep.WriteErrors[0].Error.Code != int32(mongoerr.InvalidOptions) {
		t.Fatalf("limit-0 delete: %v %v", drep, err)
	}
	// The uninitialized statement id opts out: the statement just runs.
	multi.Session = sess(4, -1)
	rep, err = n.cli.Update(ctx, multi)
	if err != nil || rep.N != 2 || rep.NModified != 2 || rep.OpTime == nil {
		t.Fatalf("opted-out multi update: %v %v", rep, err)
	}
	// Malformed sessions.
	_, err = n.cli.Insert(ctx, &shardpb.InsertRequest{Ns: ns, Session: &shardpb.SessionInfo{TxnNumber: 5}, Documents: [][]byte{raw(t, bson.D{})}})
	if mongoerr.CodeOf(rpcerr.Error(err)) != mongoerr.InvalidOptions {
		t.Fatalf("txnNumber without lsid: %v", err)
	}
	_, err = n.cli.Insert(ctx, &shardpb.InsertRequest{Ns: ns, Session: sess(5, 1, 2), Documents: [][]byte{raw(t, bson.D{})}})
	if mongoerr.CodeOf(rpcerr.Error(err)) != mongoerr.BadValue {
		t.Fatalf("statement ids for another batch: %v", err)
	}
}
