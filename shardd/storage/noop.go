package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// No-op entries ("n"): an oplog entry whose Doc is a message and that
// changes no data. A new primary appends one on step-up: its commit point
// may only advance to an entry of its own term (Raft's rule), and the
// no-op gives it one without waiting for a client write. Retryable
// statements that wrote nothing carry their record on one (session.go).

// maxNoopMsg bounds the message of a no-op entry.
const maxNoopMsg = 16 << 10

// AppendNoop writes one synced no-op entry with msg (nil: an empty
// document), stamped with the engine's current term, and returns its
// optime. Like every write it is durable when AppendNoop returns.
// Errors: BadValue (2) for a message that is not a BSON document or is
// over 16 KiB; ctx's error if it ends while waiting for the write lock.
func (e *Engine) AppendNoop(ctx context.Context, msg bson.Raw) (OpTime, error) {
	if msg == nil {
		msg = emptyDoc
	}
	en := OplogEntry{Op: OpNoop, Doc: msg}
	if err := checkNoopEntry(&en); err != nil {
		return OpTime{}, mongoerr.New(mongoerr.BadValue, "no-op entry: %v", err)
	}
	if err := e.begin(); err != nil {
		return OpTime{}, err
	}
	defer e.end()
	start := time.Now()
	if err := e.lock(ctx); err != nil {
		return OpTime{}, err
	}
	t := e.newTxn("noop", "", start)
	at := t.oplog(OpNoop, "", bson.RawValue{}, msg)
	if err := e.commit(t); err != nil {
		return OpTime{}, fmt.Errorf("append no-op entry: %w", err)
	}
	return at, nil
}

// checkNoopEntry checks an "n" entry: a BSON document as message, no _id.
func checkNoopEntry(en *OplogEntry) error {
	if en.ID.Type != 0 {
		return errors.New("a no-op entry has no _id")
	}
	if len(en.Doc) > maxNoopMsg {
		return fmt.Errorf("message of %d bytes (at most %d)", len(en.Doc), maxNoopMsg)
	}
	if err := bsoncore.Document(en.Doc).Validate(); err != nil {
		return fmt.Errorf("message is not a BSON document: %v", err)
	}
	return nil
}
