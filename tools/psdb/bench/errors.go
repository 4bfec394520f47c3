package bench

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Client-side error names, for failures that carry no server code.
const (
	CodeClientTimeout = "ClientTimeout" // the operation's deadline passed in the driver
	CodeNetwork       = "NetworkError"  // connection refused, reset, closed
	CodeNotFound      = "NoDocument"    // a read found no record (the record should exist)
	CodeClient        = "ClientError"   // anything else the driver reported
)

// timeoutCodes are the error names that mean "too slow", the only errors a
// peak-load run tolerates.
var timeoutCodes = map[string]bool{
	CodeClientTimeout:     true,
	"MaxTimeMSExpired":    true,
	"NetworkTimeout":      true,
	"ExceededTimeLimit":   true,
	"WriteConcernFailed":  true, // wtimeout (older name)
	"WriteConcernTimeout": true, // wtimeout
}

// IsTimeoutCode reports whether the error name means a timeout.
func IsTimeoutCode(name string) bool { return timeoutCodes[name] }

func codeName(c int) string { return mongoerr.Code(int32(c)).Name() }

// ErrorCode names err by its server code (through pkg/mongoerr's table)
// or, without one, by a client-side category.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var we mongo.WriteException
	if errors.As(err, &we) {
		if len(we.WriteErrors) > 0 {
			return codeName(we.WriteErrors[0].Code)
		}
		if we.WriteConcernError != nil {
			return codeName(we.WriteConcernError.Code)
		}
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) {
		if len(bwe.WriteErrors) > 0 {
			return codeName(bwe.WriteErrors[0].Code)
		}
		if bwe.WriteConcernError != nil {
			return codeName(bwe.WriteConcernError.Code)
		}
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) && ce.Code != 0 {
		return codeName(int(ce.Code))
	}
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return CodeNotFound
	case errors.Is(err, context.DeadlineExceeded) || mongo.IsTimeout(err):
		return CodeClientTimeout
	case mongo.IsNetworkError(err):
		return CodeNetwork
	}
	return CodeClient
}
