package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// overTheWire marshals a status error as gRPC sends it (the google.rpc.Status
// proto, details as Any) and returns what the other side decodes.
func overTheWire(t *testing.T, err error) error {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a status error: %v", err)
	}
	b, merr := proto.Marshal(st.Proto())
	if merr != nil {
		t.Fatal(merr)
	}
	var p spb.Status
	if uerr := proto.Unmarshal(b, &p); uerr != nil {
		t.Fatal(uerr)
	}
	return status.FromProto(&p).Err()
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		code     mongoerr.Code
		msg      string
		grpcCode codes.Code
	}{
		{"bad value", mongoerr.New(mongoerr.BadValue, "unknown operator: $foo"), mongoerr.BadValue, "unknown operator: $foo", codes.InvalidArgument},
		{"duplicate key", mongoerr.New(mongoerr.DuplicateKey, "E11000 duplicate key error collection: db.c index: _id_ dup key: { _id: 1 }"), mongoerr.DuplicateKey, "E11000 duplicate key error collection: db.c index: _id_ dup key: { _id: 1 }", codes.AlreadyExists},
		{"not primary", mongoerr.New(mongoerr.NotWritablePrimary, "not primary"), mongoerr.NotWritablePrimary, "not primary", codes.FailedPrecondition},
		{"stale config", mongoerr.New(mongoerr.StaleConfig, "version mismatch"), mongoerr.StaleConfig, "version mismatch", codes.FailedPrecondition},
		{"number-only code", mongoerr.New(16410, "FieldPath field names may not start with '$'"), 16410, "FieldPath field names may not start with '$'", codes.Unknown},
		{"wrapped", fmt.Errorf("update db.c: %w", mongoerr.New(mongoerr.TypeMismatch, "bad type")), mongoerr.TypeMismatch, "bad type", codes.InvalidArgument},
		{"cursor not found", mongoerr.New(mongoerr.CursorNotFound, "cursor id 7 not found"), mongoerr.CursorNotFound, "cursor id 7 not found", codes.NotFound},
		{"plain error", errors.New("pebble: disk full"), mongoerr.InternalError, "pebble: disk full", codes.Internal},
		{"context cancelled", context.Canceled, mongoerr.Interrupted, "operation was interrupted", codes.Canceled},
		{"context deadline", fmt.Errorf("scan: %w", context.DeadlineExceeded), mongoerr.MaxTimeMSExpired, "operation exceeded time limit", codes.DeadlineExceeded},
		{"unicode message", mongoerr.New(mongoerr.BadValue, "naïve — ünïcode ✓"), mongoerr.BadValue, "naïve — ünïcode ✓", codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serr := Status(tt.err)
			if got := status.Code(serr); got != tt.grpcCode {
				t.Errorf("gRPC code = %s, want %s", got, tt.grpcCode)
			}
			got := Error(overTheWire(t, serr))
			me, ok := mongoerr.As(got)
			if !ok {
				t.Fatalf("Error returned %T %v, want *mongoerr.Error", got, got)
			}
			if me.Code != tt.code || me.Msg != tt.msg || me.Code.Name() != tt.code.Name() {
				t.Errorf("got %d %s %q, want %d %s %q", me.Code, me.Code.Name(), me.Msg, tt.code, tt.code.Name(), tt.msg)
			}
			if me.Cause == nil {
				t.Error("the gRPC error is not kept as the cause")
			}
			// The detail carries the code name as sent.
			st, _ := status.FromError(serr)
			m := st.Details()[0].(*shardpb.MongoError)
			if m.GetCodeName() != tt.code.Name() {
				t.Errorf("code_name = %q, want %q", m.GetCodeName(), tt.code.Name())
			}
		})
	}
}

func TestErrorWithoutDetails(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code mongoerr.Code
	}{
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), mongoerr.HostUnreachable},
		{"deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), mongoerr.NetworkTimeout},
		{"cancelled", status.Error(codes.Canceled, "context canceled"), mongoerr.Interrupted},
		{"unimplemented", status.Error(codes.Unimplemented, "unknown method"), mongoerr.CommandNotFound},
		{"internal", status.Error(codes.Internal, "boom"), mongoerr.InternalError},
		{"unknown", status.Error(codes.Unknown, "boom"), mongoerr.InternalError},
		{"caller context", context.DeadlineExceeded, mongoerr.MaxTimeMSExpired},
		{"plain", errors.New("x"), mongoerr.InternalError},
		{"already mongo", mongoerr.New(mongoerr.BadValue, "b"), mongoerr.BadValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Error(tt.err)
			if c := mongoerr.CodeOf(got); c != tt.code {
				t.Errorf("code = %s, want %s (err %v)", c, tt.code, got)
			}
			if tt.code.Retryable() != mongoerr.CodeOf(got).Retryable() {
				t.Error("retryable flag differs")
			}
		})
	}
}

func TestNil(t *testing.T) {
	if Status(nil) != nil || Error(nil) != nil || Proto(nil, nil) != nil || FromProto(nil) != nil {
		t.Fatal("nil must map to nil")
	}
}

func TestProtoInfo(t *testing.T) {
	info, _ := bson.Marshal(bson.D{{Key: "keyPattern", Value: bson.D{{Key: "a", Value: 1}}}})
	m := Proto(mongoerr.New(mongoerr.DuplicateKey, "dup"), info)
	if m.GetCode() != 11000 || m.GetCodeName() != "DuplicateKey" || m.GetMessage() != "dup" || string(m.GetInfo()) != string(info) {
		t.Fatalf("Proto = %v", m)
	}
	back := FromProto(m)
	if back.Code != mongoerr.DuplicateKey || back.Msg != "dup" {
		t.Fatalf("FromProto = %v", back)
	}
}
