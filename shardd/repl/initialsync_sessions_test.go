package repl_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/protobuf/proto"

	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// allSessions is every statement record of the store, through a snapshot.
func allSessions(t *testing.T, e *storage.Engine) []storage.RefetchedSession {
	t.Helper()
	s, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	var out []storage.RefetchedSession
	var after []byte
	for {
		page, next, err := s.ScanSessions(after, 1000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if next == nil {
			return out
		}
		after = next
	}
}

// shardClient dials addr's Shard service.
func shardClient(t *testing.T, addr string) shardpb.ShardClient {
	t.Helper()
	c, err := shardclient.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return shardpb.NewShardClient(c.Conn())
}

// retryableRequests are writes of every kind in one session (txnNumber 4).
func retryableRequests() []proto.Message {
	lsid := rawDoc(bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: []byte("initialsync-sess")}}})
	sess := func(ids ...int32) *shardpb.SessionInfo {
		return &shardpb.SessionInfo{Lsid: lsid, TxnNumber: 4, StmtIds: ids}
	}
	inc := rawDoc(bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})
	return []proto.Message{
		&shardpb.InsertRequest{Ns: ns, Ordered: true, Session: sess(0, 1, 2), Documents: [][]byte{
			rawDoc(bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}}),
			rawDoc(bson.D{{Key: "_id", Value: 2}, {Key: "n", Value: 0}}),
			rawDoc(bson.D{{Key: "_id", Value: 3}, {Key: "n", Value: 0}}),
		}},
		&shardpb.UpdateRequest{Ns: ns, Ordered: true, Session: sess(3, 4, 5), Updates: []*shardpb.UpdateStatement{
			{Filter: rawDoc(bson.D{{Key: "_id", Value: 1}}), Update: inc},
			{Filter: rawDoc(bson.D{{Key: "_id", Value: 99}}), Update: inc},
			{Filter: rawDoc(bson.D{{Key: "_id", Value: 7}}), Update: inc, Upsert: true},
		}},
		&shardpb.DeleteRequest{Ns: ns, Ordered: true, Session: sess(6), Deletes: []*shardpb.DeleteStatement{
			{Filter: rawDoc(bson.D{{Key: "_id", Value: 3}}), Limit: 1},
		}},
		&shardpb.FindAndModifyRequest{Ns: ns, Session: sess(7), Filter: rawDoc(bson.D{{Key: "_id", Value: 2}}), Update: inc, New: true},
	}
}

func sendWrite(ctx context.Context, c shardpb.ShardClient, req proto.Message) (proto.Message, error) {
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
	return nil, fmt.Errorf("request %T", req)
}

// TestInitialSyncSessionsFailover: retryable writes run on the source
// over gRPC, many more sessions are recorded; an empty member joins by
// InitialSync (clone chunks of 7: the 33 records span 5 chunks) and holds
// the source's records; promoted (new term, election no-op), it answers
// every retried request with the first reply and writes nothing.
func TestInitialSyncSessionsFailover(t *testing.T) {
	ctx := waitCtx(t, 20*time.Second)
	pe, me := openEngine(t), openEngine(t)
	history(t, pe, 0, 20)
	src := startPrimary(t, pe, []string{"p"}) // clone chunks of 7
	reqs := retryableRequests()
	first := make([]proto.Message, len(reqs))
	pc := shardClient(t, src.addr)
	for i, req := range reqs {
		rep, err := sendWrite(ctx, pc, req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		first[i] = rep
	}
	for i := range 25 {
		w := storage.StmtWrite{
			Statement: storage.Statement{LSID: rawDoc(bson.D{{Key: "id", Value: fmt.Sprint("s", i)}}), TxnNumber: int64(i + 1), StmtID: int32(i % 4)},
			Result:    rawDoc(bson.D{{Key: "n", Value: i}}),
		}
		if _, _, err := pe.RecordStatement(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	want := allSessions(t, pe)
	if n := len(want); n != 26 {
		t.Fatalf("source holds %d sessions", n)
	}

	at := initialSync(t, "m", src.addr, me)
	if at != pe.LastOpTime() {
		t.Fatalf("snapshot %s, source last %s", at, pe.LastOpTime())
	}
	if got := allSessions(t, me); !reflect.DeepEqual(got, want) {
		t.Fatalf("member's statement records\n%+v\nsource's\n%+v", got, want)
	}
	if got, want := storeData(t, me), storeData(t, pe); got != want {
		t.Fatalf("stores differ:\nmember\n%s\nsource\n%s", got, want)
	}

	// Failover: the member becomes primary and the client retries.
	if err := me.SetTerm(ctx, at.Term+1); err != nil {
		t.Fatal(err)
	}
	if _, err := me.AppendNoop(ctx, nil); err != nil {
		t.Fatal(err)
	}
	last := me.LastOpTime()
	mc := shardClient(t, startPrimary(t, me, []string{"m"}).addr)
	for i, req := range reqs {
		rep, err := sendWrite(ctx, mc, req)
		if err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
		if !proto.Equal(rep, first[i]) {
			t.Fatalf("retry %d (%T) on the synced member:\n got %v\nwant %v", i, req, rep, first[i])
		}
	}
	if me.LastOpTime() != last {
		t.Fatalf("retries wrote on the synced member: last %s, was %s", me.LastOpTime(), last)
	}
	if got, want := storeData(t, me), storeData(t, pe); got != want {
		t.Fatalf("after retries:\nmember\n%s\nsource\n%s", got, want)
	}
}
