// Package mongoerr owns PSDB's MongoDB error codes and the error type that
// carries them from wherever an error starts to the wire reply.
//
// The codes are one list, codes.txt, turned into Go by `go generate`; no
// other package keeps its own list of codes or names. Every error a client
// can see is a *Error (or wraps one), so its code and code name reach the
// reply unchanged; anything else becomes InternalError at the boundary.
// This package must never import another PSDB package.
package mongoerr

//go:generate go run gen.go

import (
	"errors"
	"fmt"
	"strconv"
)

// Code is a MongoDB error code.
type Code int32

type info struct {
	name        string
	retryable   bool
	notPrimary  bool
	staleConfig bool
}

// Name returns the code's name ("BadValue"), or "Location<code>" for codes
// MongoDB only knows by number, as MongoDB itself reports them.
func (c Code) Name() string {
	if i, ok := codeInfo[c]; ok {
		return i.name
	}
	return "Location" + strconv.Itoa(int(c))
}

// String implements fmt.Stringer.
func (c Code) String() string { return c.Name() }

// Retryable reports whether a driver may retry an operation that failed
// with this code (MongoDB's RetriableError category).
func (c Code) Retryable() bool { return codeInfo[c].retryable }

// NotPrimary reports whether the code means the node was not primary.
func (c Code) NotPrimary() bool { return codeInfo[c].notPrimary }

// StaleConfig reports whether the code asks the router to refresh its
// routing table and retry.
func (c Code) StaleConfig() bool { return codeInfo[c].staleConfig }

// Error is an error with a MongoDB code. It is safe to share between
// goroutines once built.
type Error struct {
	Code Code
	Msg  string
	// Cause, if set, is the underlying error; it is reachable with
	// errors.Unwrap but never shown to clients.
	Cause error
}

// New returns an *Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with the given code and message that wraps cause.
func Wrap(cause error, code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Cause: cause}
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d): %s", e.Code.Name(), int32(e.Code), e.Msg)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &mongoerr.Error{Code: mongoerr.DuplicateKey}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Msg == "" || t.Msg == e.Msg)
}

// As returns the first *Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// CodeOf returns the code of err's first *Error, InternalError for any
// other non-nil error, and 0 for nil.
func CodeOf(err error) Code {
	if err == nil {
		return 0
	}
	if e, ok := As(err); ok {
		return e.Code
	}
	return InternalError
}

// HasCode reports whether err carries the given code.
func HasCode(err error, code Code) bool { return err != nil && CodeOf(err) == code }
