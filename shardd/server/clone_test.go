package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

// serveClone serves eng's Replication service with small clone chunks.
func serveClone(t *testing.T, eng *storage.Engine, entries, bytes int) (shardpb.ReplicationClient, *Replication) {
	t.Helper()
	rs, err := NewReplication(ReplicationOptions{Engine: eng, MaxBatchEntries: entries, MaxBatchBytes: bytes, Logger: logging.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	m := servertest.Start(t, func(e *storage.Engine) (*Server, error) {
		return New(Options{Engine: e, Replication: rs})
	}, servertest.Options{Engine: eng})
	t.Cleanup(rs.Stop) // before the member stops
	return shardpb.NewReplicationClient(m.Client.Conn()), rs
}

func cloneAll(ctx context.Context, c shardpb.ReplicationClient) ([]*shardpb.CloneChunk, error) {
	st, err := c.CloneSnapshot(ctx, &shardpb.CloneRequest{Member: "new"})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	var out []*shardpb.CloneChunk
	for {
		ch, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, rpcerr.Error(err)
		}
		out = append(out, ch)
	}
}

func TestCloneSnapshotChunks(t *testing.T) {
	ctx := ctxT(t)
	eng := openStore(t)
	pad := strings.Repeat("p", 60)
	var docs []bson.Raw
	for i := range 10 {
		docs = append(docs, raw(t, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: bson.A{i, i + 1}}, {Key: "pad", Value: pad}}))
	}
	if _, err := eng.Insert(ctx, "db.a", docs, storage.WriteOptions{Ordered: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.CreateIndex(ctx, "db.a", storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "a", Desc: true}}, Unique: false}); err != nil {
		t.Fatal(err)
	}
	if err := eng.CreateCollection(ctx, "db.empty"); err != nil {
		t.Fatal(err)
	}
	c, _ := serveClone(t, eng, 3, 250)
	chunks, err := cloneAll(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ch := range chunks {
		size := 0
		for _, d := range ch.GetDocuments() {
			size += len(d)
		}
		if len(ch.GetDocuments()) > 3 || (len(ch.GetDocuments()) > 1 && size > 250) {
			t.Errorf("chunk of %d documents, %d bytes", len(ch.GetDocuments()), size)
		}
		var specs []string
		for _, b := range ch.GetIndexSpecs() {
			s, err := storage.DecodeIndexSpec(b)
			if err != nil {
				t.Fatal(err)
			}
			specs = append(specs, fmt.Sprintf("%s/%v", s.Name, s.Multikey))
		}
		at := "-"
		if o := ch.GetSnapshotOpTime(); o != nil {
			at = fmt.Sprintf("(%d, %d)", o.GetTerm(), o.GetIndex())
		}
		got = append(got, fmt.Sprintf("%s %v %d %v %s", ch.GetNs(), specs, len(ch.GetDocuments()), ch.GetDone(), at))
	}
	last := eng.LastOpTime()
	want := []string{
		"db.a [_id_/false a_-1/true] 2 false -", // 2 documents of 91 bytes fit in 250
		"db.a [] 2 false -",
		"db.a [] 2 false -",
		"db.a [] 2 false -",
		"db.a [] 2 false -",
		"db.empty [_id_/false] 0 false -",
		fmt.Sprintf(" [] 0 true %s", last),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("chunks\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A member whose own initial sync is unfinished cannot be cloned.
	if err := eng.ResetForInitialSync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cloneAll(ctx, c); mongoerr.CodeOf(err) != mongoerr.NotYetInitialized {
		t.Fatalf("clone of a pending member: %v", err)
	}
}
