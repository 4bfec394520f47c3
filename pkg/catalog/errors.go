package catalog

import (
	"errors"
	"fmt"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Sentinel errors. Every error the catalog returns for one of these
// conditions wraps the sentinel (check with errors.Is) and, where a client
// can see it, is a *mongoerr.Error carrying MongoDB's code for it
// (mongoerr.CodeOf).
var (
	// ErrNotFound: the shard, database, collection, chunk, user or primary
	// does not exist (ShardNotFound, NamespaceNotFound, UserNotFound ...).
	ErrNotFound = errors.New("not found")
	// ErrExists: the thing to create already exists (NamespaceExists,
	// AlreadyInitialized, ...).
	ErrExists = errors.New("already exists")
	// ErrConflict: what the caller read changed before its transaction
	// committed (another change won the race); re-read and retry if the
	// operation still makes sense (ConflictingOperationInProgress).
	ErrConflict = errors.New("concurrent change")
	// ErrStale: the caller's expected version or epoch is not the current
	// one (StaleEpoch / ConflictingOperationInProgress).
	ErrStale = errors.New("stale version")
	// ErrInvalid: bad arguments (BadValue, InvalidNamespace, InvalidOptions).
	ErrInvalid = errors.New("invalid argument")
	// ErrIllegal: the operation is not allowed in the current state, e.g.
	// removing an active shard (IllegalOperation).
	ErrIllegal = errors.New("illegal in current state")
	// ErrPrimaryHeld: AcquirePrimary found a live primary lease.
	ErrPrimaryHeld = errors.New("primary lease held")
	// ErrClusterMismatch: Bootstrap's cluster description conflicts with
	// the catalog; nothing was changed.
	ErrClusterMismatch = errors.New("cluster description conflicts with catalog")
	// ErrCorrupt: a catalog value could not be decoded.
	ErrCorrupt = errors.New("corrupt catalog value")
	// ErrClosed: the ChunkMap was closed.
	ErrClosed = errors.New("closed")
)

// userExists is MongoDB's code for createUser of an existing user.
const userExists mongoerr.Code = 51003

func invalid(format string, args ...any) error {
	return mongoerr.Wrap(ErrInvalid, mongoerr.BadValue, format, args...)
}

func coded(sentinel error, code mongoerr.Code, format string, args ...any) error {
	return mongoerr.Wrap(sentinel, code, format, args...)
}

func conflict(format string, args ...any) error {
	return mongoerr.Wrap(ErrConflict, mongoerr.ConflictingOperationInProgress, format, args...)
}

func corrupt(key string, err error) error {
	return fmt.Errorf("decode %s: %w: %w", key, ErrCorrupt, err)
}
