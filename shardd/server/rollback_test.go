package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

// startReplication serves eng's Replication service (chunks of at most
// maxBytes) on a real port and returns its client.
func startReplication(t *testing.T, eng *storage.Engine, maxBytes int) shardpb.ReplicationClient {
	t.Helper()
	c, _ := serveClone(t, eng, 0, maxBytes)
	return c
}

// openStore opens a store in a temporary directory, closed at cleanup.
func openStore(t *testing.T) *storage.Engine {
	t.Helper()
	return servertest.OpenStore(t, "", storage.Options{})
}

func putDocs(t *testing.T, e *storage.Engine, docs ...bson.D) {
	t.Helper()
	raws := make([]bson.Raw, len(docs))
	for i, d := range docs {
		raws[i] = raw(t, d)
	}
	if _, err := e.Insert(context.Background(), ns, raws, storage.WriteOptions{Ordered: true}); err != nil {
		t.Fatal(err)
	}
}

func rollbackCall(t *testing.T, c shardpb.ReplicationClient, req *shardpb.RollbackRequest) ([]*shardpb.RollbackChunk, error) {
	t.Helper()
	stream, err := c.Rollback(ctxT(t), req)
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	var out []*shardpb.RollbackChunk
	for {
		ch, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, rpcerr.Error(err)
		}
		out = append(out, ch)
	}
}

func tailOf(t *testing.T, e *storage.Engine) [][]byte {
	t.Helper()
	tail, err := e.OplogTail(storage.RollbackTailEntries, storage.RollbackTailBytes)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, en := range tail {
		out = append(out, storage.EncodeOplogEntry(en))
	}
	return out
}

// TestRollbackService: the answer is chunked by MaxBatchBytes, starts with
// the common point and snapshot optime and ends with done; resync answers
// are one chunk; bad requests and members of a newer term are refused.
func TestRollbackService(t *testing.T) {
	ctx := ctxT(t)
	src, member := openStore(t), openStore(t)
	putDocs(t, src, bson.D{{Key: "_id", Value: 0}})
	log, err := src.ReadOplog(storage.OpTime{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := member.ApplyOplog(ctx, log); err != nil {
		t.Fatal(err)
	}
	common := src.LastOpTime()
	putDocs(t, member, bson.D{{Key: "_id", Value: 1}, {Key: "who", Value: "member"}})
	if err := src.SetTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("p", 1000)
	for i := range 20 {
		putDocs(t, src, bson.D{{Key: "_id", Value: i + 1}, {Key: "pad", Value: pad}})
	}
	c := startReplication(t, src, 4000)

	chunks, err := rollbackCall(t, c, &shardpb.RollbackRequest{Member: "m", Term: member.PromisedTerm(), LocalTail: tailOf(t, member)})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 5 {
		t.Fatalf("%d chunks, want several of <= 4000 bytes", len(chunks))
	}
	first := chunks[0]
	if !first.GetFound() || first.GetResyncRequired() || toOpTime(first.GetCommonPoint()) != common || toOpTime(first.GetSnapshotOpTime()) != src.LastOpTime() {
		t.Fatalf("first chunk %v", first)
	}
	var entries [][]byte
	ids := map[string]string{}
	for i, ch := range chunks {
		if ch.GetDone() != (i == len(chunks)-1) {
			t.Fatalf("chunk %d: done %v", i, ch.GetDone())
		}
		entries = append(entries, ch.GetEntries()...)
		for _, d := range ch.GetDocs() {
			ids[bson.Raw(d.GetId()).Lookup("_id").String()] = bson.Raw(d.GetDoc()).Lookup("who").String()
		}
	}
	want, err := src.ReadOplog(common, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(entries), len(want))
	}
	for i := range want {
		if !bytes.Equal(entries[i], storage.EncodeOplogEntry(want[i])) {
			t.Fatalf("entry %d differs", i)
		}
	}
	if len(ids) != 20 {
		t.Fatalf("docs %v", ids)
	}

	// No common point: one chunk, resync, done.
	other := openStore(t)
	if err := other.SetTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	putDocs(t, other, bson.D{{Key: "_id", Value: 7}})
	chunks, err = rollbackCall(t, c, &shardpb.RollbackRequest{Member: "o", Term: 2, LocalTail: tailOf(t, other)})
	if err != nil || len(chunks) != 1 || !chunks[0].GetResyncRequired() || chunks[0].GetFound() || !chunks[0].GetDone() || chunks[0].GetReason() == "" {
		t.Fatalf("no common point: %v %v", chunks, err)
	}

	_, err = rollbackCall(t, c, &shardpb.RollbackRequest{Member: "m", Term: 1})
	wantCode(t, err, mongoerr.BadValue)
	tail := tailOf(t, member)
	_, err = rollbackCall(t, c, &shardpb.RollbackRequest{Member: "m", Term: 1, LocalTail: [][]byte{tail[1], tail[0]}})
	wantCode(t, err, mongoerr.BadValue)
	_, err = rollbackCall(t, c, &shardpb.RollbackRequest{Member: "m", Term: 1, LocalTail: [][]byte{[]byte("junk")}})
	wantCode(t, err, mongoerr.BadValue)
	_, err = rollbackCall(t, c, &shardpb.RollbackRequest{Member: "m", Term: 3, LocalTail: tail})
	wantCode(t, err, mongoerr.StaleTerm)
}
