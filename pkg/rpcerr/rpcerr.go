// Package rpcerr translates errors across the gRPC boundary between PSDB
// processes, in both directions, in this one place:
//
//   - Status (server side) turns a Go error into a gRPC status error whose
//     details carry one shardpb.MongoError, so the MongoDB code, code name
//     and message reach the caller unchanged;
//   - Error (client side) turns such a status back into a *mongoerr.Error,
//     and any other gRPC failure (no server, deadline, cancel) into the
//     MongoDB code a driver expects for it.
//
// Proto and FromProto convert one error for the places where an error
// travels inside a reply (per-statement write errors).
//
// The package must never match errors by their text and must never depend
// on a server's internals: a server maps its own sentinels to *mongoerr.Error
// before calling Status.
package rpcerr

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// Proto returns err as a MongoError: the code of its first *mongoerr.Error,
// or InternalError with err's text for any other error. info (may be nil)
// is a BSON document of extra fields for the client.
func Proto(err error, info bson.Raw) *shardpb.MongoError {
	if err == nil {
		return nil
	}
	me, ok := mongoerr.As(err)
	if !ok {
		me = fromContext(err)
	}
	if me == nil {
		return &shardpb.MongoError{Code: int32(mongoerr.InternalError), CodeName: mongoerr.InternalError.Name(), Message: err.Error(), Info: info}
	}
	return &shardpb.MongoError{Code: int32(me.Code), CodeName: me.Code.Name(), Message: me.Msg, Info: info}
}

// FromProto returns the *mongoerr.Error a MongoError describes; nil for nil.
// The code name is not needed: mongoerr derives it from the code.
func FromProto(m *shardpb.MongoError) *mongoerr.Error {
	if m == nil {
		return nil
	}
	return &mongoerr.Error{Code: mongoerr.Code(m.GetCode()), Msg: m.GetMessage()}
}

// fromContext maps the context package's errors to MongoDB's codes; nil
// when err is neither.
func fromContext(err error) *mongoerr.Error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return mongoerr.Wrap(err, mongoerr.MaxTimeMSExpired, "operation exceeded time limit")
	case errors.Is(err, context.Canceled):
		return mongoerr.Wrap(err, mongoerr.Interrupted, "operation was interrupted")
	}
	return nil
}

// Status returns err as a gRPC status error (nil for nil). The status code
// is chosen from the MongoDB code (GRPCCode); the details hold the
// MongoError. An error without a MongoDB code becomes InternalError.
func Status(err error) error {
	if err == nil {
		return nil
	}
	m := Proto(err, nil)
	st := status.New(GRPCCode(mongoerr.Code(m.Code)), m.Message)
	if withDetails, derr := st.WithDetails(m); derr == nil {
		st = withDetails
	}
	return st.Err()
}

// GRPCCode is the gRPC status code used for a MongoDB code. It only helps
// generic gRPC tooling; PSDB's own clients read the MongoError details.
func GRPCCode(c mongoerr.Code) codes.Code {
	switch {
	case c.NotPrimary(), c.StaleConfig():
		return codes.FailedPrecondition
	}
	switch c {
	case mongoerr.InternalError:
		return codes.Internal
	case mongoerr.BadValue, mongoerr.FailedToParse, mongoerr.TypeMismatch, mongoerr.InvalidBSON,
		mongoerr.InvalidNamespace, mongoerr.InvalidOptions, mongoerr.InvalidLength,
		mongoerr.InvalidIndexSpecificationOption, mongoerr.CannotCreateIndex, mongoerr.BSONObjectTooLarge:
		return codes.InvalidArgument
	case mongoerr.NamespaceNotFound, mongoerr.IndexNotFound, mongoerr.CursorNotFound, mongoerr.NoSuchKey:
		return codes.NotFound
	case mongoerr.DuplicateKey, mongoerr.NamespaceExists:
		return codes.AlreadyExists
	case mongoerr.Unauthorized:
		return codes.PermissionDenied
	case mongoerr.Interrupted:
		return codes.Canceled
	case mongoerr.MaxTimeMSExpired, mongoerr.ExceededTimeLimit:
		return codes.DeadlineExceeded
	case mongoerr.InterruptedAtShutdown, mongoerr.ShutdownInProgress, mongoerr.HostUnreachable:
		return codes.Unavailable
	case mongoerr.CommandNotFound:
		return codes.Unimplemented
	}
	return codes.Unknown
}

// Error returns the *mongoerr.Error a gRPC call's error stands for (nil
// for nil). The gRPC error is kept as the Cause.
//
//   - a status with a MongoError detail: that code and message;
//   - Unavailable without details (no server, connection lost):
//     HostUnreachable (retryable);
//   - DeadlineExceeded: NetworkTimeout (retryable) — the caller's deadline
//     or the transport's;
//   - Canceled: Interrupted;
//   - Unimplemented: CommandNotFound;
//   - anything else: InternalError with the status message.
//
// A context error of the caller (not a status) maps as in Proto.
func Error(err error) error {
	if err == nil {
		return nil
	}
	if me, ok := mongoerr.As(err); ok {
		return me
	}
	st, ok := status.FromError(err)
	if !ok {
		if me := fromContext(err); me != nil {
			return me
		}
		return mongoerr.Wrap(err, mongoerr.InternalError, "%v", err)
	}
	for _, d := range st.Details() {
		if m, ok := d.(*shardpb.MongoError); ok {
			me := FromProto(m)
			me.Cause = err
			return me
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		return mongoerr.Wrap(err, mongoerr.HostUnreachable, "shard unreachable: %s", st.Message())
	case codes.DeadlineExceeded:
		return mongoerr.Wrap(err, mongoerr.NetworkTimeout, "shard call timed out: %s", st.Message())
	case codes.Canceled:
		return mongoerr.Wrap(err, mongoerr.Interrupted, "shard call cancelled: %s", st.Message())
	case codes.Unimplemented:
		return mongoerr.Wrap(err, mongoerr.CommandNotFound, "%s", st.Message())
	}
	return mongoerr.Wrap(err, mongoerr.InternalError, "shard call failed (%s): %s", st.Code(), st.Message())
}
