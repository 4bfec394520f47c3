package executor

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// An update check vets every document an update or findAndModify is about
// to write, given its version before and after: the shard attaches one
// that refuses a change of the document's shard key (a document never
// moves between chunks as part of an update; MongoDB answers
// ImmutableField). A refused document is left as it was and the
// statement fails with the check's error.

type updateCheckKey struct{}

// WithUpdateCheck returns ctx carrying check; nil checks nothing.
func WithUpdateCheck(ctx context.Context, check func(before, after bson.Raw) error) context.Context {
	if check == nil {
		return ctx
	}
	return context.WithValue(ctx, updateCheckKey{}, check)
}

// checkUpdate runs ctx's update check, if any.
func checkUpdate(ctx context.Context, before, after bson.Raw) error {
	f, _ := ctx.Value(updateCheckKey{}).(func(before, after bson.Raw) error)
	if f == nil {
		return nil
	}
	return f(before, after)
}
