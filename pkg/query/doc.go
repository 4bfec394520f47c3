// Package query owns PSDB's MongoDB query language on documents: filters
// (ParseFilter, Filter.Match), the dotted-path traversal they rely on
// (Lookup), sort specifications (ParseSort), find projections
// (ParseProjection) and a one-node executor over a slice of documents (Find,
// Count, Distinct) that tests, the conformance corpus and shardd use.
//
// Semantics follow MongoDB's documented behaviour: a condition on a path
// matches when any value the path reaches matches (arrays are traversed),
// null matches missing fields, comparisons only match inside one canonical
// type bracket (numbers compare by value across int32/int64/double/
// decimal128), and documents compare field by field in order. The order of
// values is pkg/keys' Compare, the one definition PSDB uses everywhere.
//
// Every parse function validates its input fully and returns a
// *mongoerr.Error with MongoDB's code (BadValue 2, FailedToParse 9,
// TypeMismatch 14, Location3125x for projections ...); nothing in this
// package panics on user input, and nesting is capped at MaxDepth like
// MongoDB's query parser. Parsed values (Filter, Sort, Projection) are
// immutable and safe for concurrent use.
//
// This package must never import storage, networking or router packages,
// never log and never keep state between calls: it is a pure library used by
// pkg/update, pkg/aggregate, shardd and mongos. pkg/expr must never import
// it (it imports pkg/expr for $expr and computed projections).
package query
