package checker

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// Error classes used as ErrorKey for errors that carry no MongoDB code.
const (
	ClassTimeout  = "timeout"
	ClassNetwork  = "network"
	ClassCanceled = "canceled"
	ClassOther    = "other"
)

// definiteCodes are rejections that depend only on the request, never on
// the state of the cluster: a driver retry of the same request gets the same
// answer, so no attempt can have applied it.
var definiteCodes = map[int]bool{
	int(mongoerr.BadValue):                true,
	int(mongoerr.FailedToParse):           true,
	int(mongoerr.Unauthorized):            true,
	int(mongoerr.TypeMismatch):            true,
	int(mongoerr.DollarPrefixedFieldName): true,
	int(mongoerr.InvalidIdField):          true,
	int(mongoerr.EmptyFieldName):          true,
	int(mongoerr.DottedFieldName):         true,
	int(mongoerr.InvalidNamespace):        true,
	int(mongoerr.BSONObjectTooLarge):      true,
	121:                                   true, // DocumentValidationFailure
}

// serverCodes returns the MongoDB codes an error carries (top level first,
// then nested write errors and write concern errors), without zeros.
func serverCodes(err error) []int {
	var se mongo.ServerError
	if errors.As(err, &se) {
		var codes []int
		for _, c := range se.ErrorCodes() {
			if c != 0 {
				codes = append(codes, c)
			}
		}
		if len(codes) > 0 {
			return codes
		}
	}
	if me, ok := mongoerr.As(err); ok && me.Code != 0 {
		return []int{int(me.Code)}
	}
	return nil
}

// DefiniteFailure reports whether err proves that a write was not applied.
// It is deliberately conservative: only errors whose every code is a
// request-only rejection (BadValue, FailedToParse, DocumentValidationFailure,
// ...), with no write concern error and no retryable label, count. Anything
// else — network errors, timeouts, cancellation, not-primary or shutdown
// codes, write concern errors, duplicate keys (an earlier attempt of a
// retried insert may have applied it) — leaves the write indeterminate,
// because with retryable writes the error returned may belong to a retry
// while an earlier attempt succeeded.
func DefiniteFailure(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || mongo.IsTimeout(err) || mongo.IsNetworkError(err) {
		return false
	}
	var le mongo.LabeledError
	if errors.As(err, &le) && (le.HasErrorLabel("RetryableWriteError") || le.HasErrorLabel("NoWritesPerformed")) {
		return false
	}
	var we mongo.WriteException
	if errors.As(err, &we) && we.WriteConcernError != nil {
		return false
	}
	codes := serverCodes(err)
	if len(codes) == 0 {
		return false
	}
	for _, c := range codes {
		if !definiteCodes[c] {
			return false
		}
	}
	return true
}

// ErrorKey names an error for Report.ErrorsByCode: "<code> <name>" for an
// error with a MongoDB code (the first one: the top-level code, else the
// first write error, else the write concern error), otherwise its class:
// ClassCanceled, ClassTimeout, ClassNetwork or ClassOther. It returns "" for
// nil.
func ErrorKey(err error) string {
	if err == nil {
		return ""
	}
	if codes := serverCodes(err); len(codes) > 0 {
		return fmt.Sprintf("%d %s", codes[0], mongoerr.Code(codes[0]).Name())
	}
	switch {
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case mongo.IsTimeout(err):
		return ClassTimeout
	case mongo.IsNetworkError(err):
		return ClassNetwork
	}
	return ClassOther
}

// outcomeOf classifies the result of one operation.
func outcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return Acked
	case DefiniteFailure(err):
		return Failed
	}
	return Indeterminate
}
