package executor

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Ownership filtering (DESIGN §6, docs/design/migrations.md): a shard may
// hold documents of chunks it does not own — a migration's copy on the
// recipient before the commit, the donor's copy until its range deletion
// ends. A versioned read must not see them. The server attaches the
// shard's ownership test to the read's context; every scan of a cursor
// opened with that context (Find, and Count, Distinct and aggregation,
// which run through Find) skips the documents it rejects, before the
// query filter, sort, skip and limit.

type ownershipKey struct{}

// WithOwnership returns ctx carrying owns: reads run with it skip every
// document for which owns returns false. owns must be safe for concurrent
// use; nil removes nothing.
func WithOwnership(ctx context.Context, owns func(doc bson.Raw) bool) context.Context {
	if owns == nil {
		return ctx
	}
	return context.WithValue(ctx, ownershipKey{}, owns)
}

// ownershipOf returns the ownership test of ctx, or nil.
func ownershipOf(ctx context.Context) func(bson.Raw) bool {
	f, _ := ctx.Value(ownershipKey{}).(func(bson.Raw) bool)
	return f
}
