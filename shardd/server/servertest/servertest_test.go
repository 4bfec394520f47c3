package servertest_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/shardd/server"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

func newServer(e *storage.Engine) (*server.Server, error) {
	return server.New(server.Options{Engine: e})
}

// TestMember: a started member serves its store to its client, comes back
// on the same address after StopServing and Serve, and a reopened store
// in the same directory holds what was written.
func TestMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	m := servertest.Start(t, newServer, servertest.Options{Dir: dir, Store: storage.Options{NoSync: true}})
	if err := m.Client.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	d, err := bson.Marshal(bson.D{{Key: "_id", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Client.Insert(ctx, "db.c", []bson.Raw{d}, shardclient.WriteOptions{}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	addr := m.Addr
	m.StopServing()
	m.StopServing() // a no-op when stopped
	m.Serve(addr)
	if m.Addr != addr {
		t.Fatalf("served again on %s, want %s", m.Addr, addr)
	}
	// The client reconnects on its own; poll until it has.
	for {
		docs, err := m.Client.FindAll(ctx, "db.c", shardclient.Find{})
		if err == nil {
			if len(docs) != 1 {
				t.Fatalf("after restart: %d documents, want 1", len(docs))
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after restart: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.Stop()
	m.Stop() // idempotent; the cleanup does nothing more

	again := servertest.Start(t, newServer, servertest.Options{Dir: dir})
	if n := len(mustFindAll(t, ctx, again.Client)); n != 1 {
		t.Fatalf("reopened store holds %d documents, want 1", n)
	}
}

// TestMemberOwnEngine: a member over the caller's store leaves it open.
func TestMemberOwnEngine(t *testing.T) {
	e := servertest.OpenStore(t, "", storage.Options{NoSync: true})
	m := servertest.Start(t, newServer, servertest.Options{Engine: e})
	if m.Engine != e {
		t.Fatal("member serves another store")
	}
	m.Stop()
	d, err := bson.Marshal(bson.D{{Key: "_id", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Insert(context.Background(), "db.c", []bson.Raw{d}, storage.WriteOptions{}); err != nil {
		t.Fatalf("store closed by the member: %v", err)
	}
}

func mustFindAll(t *testing.T, ctx context.Context, c *shardclient.Client) []bson.Raw {
	t.Helper()
	docs, err := c.FindAll(ctx, "db.c", shardclient.Find{})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}
