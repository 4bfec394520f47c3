package storage

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// A vote is a promise (DESIGN §4, fencing): a member that grants a
// candidate its vote for term T never again accepts oplog entries sent by
// a sync source in a term older than T (an old primary); entries of older
// terms that the new primary itself holds are accepted. The promise is
// durable before the vote is answered, and it is checked by ApplyOplogFrom
// under the engine's write lock, which Vote also holds: a batch applied
// concurrently with a vote is either in the log the voter reported or
// refused afterwards, never both.

// VotedTerm returns the newest term promised in a vote (0 if none).
func (e *Engine) VotedTerm() uint64 { return e.voted.Load() }

// PromisedTerm is the newest term this member knows of: its own term or
// the newest it promised in a vote. A puller sends it so that a sync
// source in an older term learns it is stale.
func (e *Engine) PromisedTerm() uint64 { return max(e.term.Load(), e.voted.Load()) }

// Vote records durably the promise to refuse oplog entries of a term
// older than term, and returns the last optime at the moment of the
// promise (the optime the voter compares with the candidate's). A term
// not newer than the current promise changes nothing.
func (e *Engine) Vote(ctx context.Context, term uint64) (OpTime, error) {
	if err := e.begin(); err != nil {
		return OpTime{}, err
	}
	defer e.end()
	if err := e.lock(ctx); err != nil {
		return OpTime{}, err
	}
	defer e.unlock()
	if term > e.voted.Load() {
		if err := e.db.Set(metaKey(metaVote), marshalRecord(termRecord{Term: int64(term)}), e.writeOptions()); err != nil {
			return OpTime{}, fmt.Errorf("record vote for term %d: %w", term, err)
		}
		e.voted.Store(term)
	}
	// e.last (applied, maybe still syncing in a group commit) may be newer
	// than LastOpTime: the voter answers with it, which errs on the side
	// of refusing a candidate.
	return e.last, nil
}

// loadVote reads the vote record at Open (absent: no vote yet).
func (e *Engine) loadVote() error {
	val, err := e.getMeta(metaKey(metaVote))
	if err != nil || val == nil {
		return err
	}
	var r termRecord
	if err := bson.Unmarshal(val, &r); err != nil || r.Term < 0 {
		return fmt.Errorf("vote record %x: %w", val, ErrCorrupt)
	}
	e.voted.Store(uint64(r.Term))
	return nil
}
