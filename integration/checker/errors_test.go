package checker

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// The adapter over the real driver must satisfy the consumer's interface.
var _ Store = (*MongoStore)(nil)

type netTimeout struct{}

func (netTimeout) Error() string   { return "i/o timeout" }
func (netTimeout) Timeout() bool   { return true }
func (netTimeout) Temporary() bool { return true }

func TestErrorClassification(t *testing.T) {
	wce := &mongo.WriteConcernError{Code: 64, Name: "WriteConcernTimeout", Message: "waiting for replication timed out"}
	tests := []struct {
		name     string
		err      error
		key      string
		definite bool
	}{
		{"nil", nil, "", false},
		{"bad value", mongo.CommandError{Code: 2, Name: "BadValue"}, "2 BadValue", true},
		{"wrapped bad value", fmt.Errorf("insert: %w", mongo.CommandError{Code: 2}), "2 BadValue", true},
		{"validation write error", mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 121, Message: "failed validation"}}}, "121 DocumentValidationFailure", true},
		{"write error with write concern error", mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 2}}, WriteConcernError: wce}, "2 BadValue", false},
		{"write concern timeout", mongo.WriteException{WriteConcernError: wce}, "64 WriteConcernTimeout", false},
		{"duplicate key", mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 11000}}}, "11000 DuplicateKey", false},
		{"not writable primary", mongo.CommandError{Code: 10107, Labels: []string{"RetryableWriteError"}}, "10107 NotWritablePrimary", false},
		{"interrupted at shutdown", mongo.CommandError{Code: 11600}, "11600 InterruptedAtShutdown", false},
		{"bad value on a retry", mongo.CommandError{Code: 2, Labels: []string{"RetryableWriteError"}}, "2 BadValue", false},
		{"network", mongo.CommandError{Labels: []string{"NetworkError"}, Message: "connection reset"}, ClassNetwork, false},
		{"deadline", fmt.Errorf("op: %w", context.DeadlineExceeded), ClassTimeout, false},
		{"net timeout", fmt.Errorf("read: %w", netTimeout{}), ClassTimeout, false},
		{"canceled", fmt.Errorf("op: %w", context.Canceled), ClassCanceled, false},
		{"psdb error", fmt.Errorf("x: %w", mongoerr.New(mongoerr.NotWritablePrimary, "not primary")), "10107 NotWritablePrimary", false},
		{"psdb bad value", mongoerr.New(mongoerr.BadValue, "bad"), "2 BadValue", true},
		{"plain", errors.New("boom"), ClassOther, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorKey(tc.err); got != tc.key {
				t.Errorf("ErrorKey = %q, want %q", got, tc.key)
			}
			if got := DefiniteFailure(tc.err); got != tc.definite {
				t.Errorf("DefiniteFailure = %v, want %v", got, tc.definite)
			}
			want := Indeterminate
			switch {
			case tc.err == nil:
				want = Acked
			case tc.definite:
				want = Failed
			}
			if got := outcomeOf(tc.err); got != want {
				t.Errorf("outcomeOf = %v, want %v", got, want)
			}
		})
	}
}
