package storage

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// TestVotePromise: a vote is durable, never goes back, and makes the
// member refuse batches from a sync source of an older term while it
// still accepts older terms' entries held by a newer source.
func TestVotePromise(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	primary := openTest(t, Options{})
	insertOK(t, primary, "db.c", bson.D{{Key: "_id", Value: 1}})
	insertOK(t, primary, "db.c", bson.D{{Key: "_id", Value: 2}})
	entries, err := primary.ReadOplog(OpTime{}, 0)
	if err != nil || len(entries) != 3 { // create, two inserts
		t.Fatalf("primary oplog: %v %v", entries, err)
	}

	e := openDir(t, dir, Options{})
	if e.VotedTerm() != 0 || e.PromisedTerm() != e.Term() {
		t.Fatalf("fresh store: voted %d, promised %d", e.VotedTerm(), e.PromisedTerm())
	}
	last, err := e.Vote(ctx, 5)
	if err != nil || !last.IsZero() && last.Index != 0 {
		t.Fatalf("vote: %v %v", last, err)
	}
	if _, err := e.Vote(ctx, 3); err != nil || e.VotedTerm() != 5 {
		t.Fatalf("an older vote moved the promise: %d %v", e.VotedTerm(), err)
	}
	// A source in term 4 (an old primary) is refused; nothing is written.
	err = e.ApplyOplogFrom(ctx, 4, entries[:1])
	if mongoerr.CodeOf(err) != mongoerr.StaleTerm || e.LastOpTime().Index != 0 {
		t.Fatalf("old source: %v, last %s", err, e.LastOpTime())
	}
	// A source in term 5 sends entries of term 1: accepted.
	if err := e.ApplyOplogFrom(ctx, 5, entries[:2]); err != nil {
		t.Fatalf("new source, old entries: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDir(t, dir, Options{})
	if e.VotedTerm() != 5 || e.PromisedTerm() != 5 {
		t.Fatalf("after restart: voted %d", e.VotedTerm())
	}
	if err := e.ApplyOplogFrom(ctx, 2, entries[2:]); mongoerr.CodeOf(err) != mongoerr.StaleTerm {
		t.Fatalf("old source after restart: %v", err)
	}
	if last, err := e.Vote(ctx, 6); err != nil || last != entries[1].OpTime() {
		t.Fatalf("vote answers the last entry: %v %v", last, err)
	}
}
