// Package bench is PSDB's load generator, behind `psdb bench`: YCSB-style
// workloads (A to F and an insert-only load) run through the official Go
// driver against any router URI, with per-operation-type HDR histograms,
// error counts by MongoDB code name, the spread of operations over shards
// (computed from the router's config.chunks and the server's hashed-key
// function), a per-second time series, a JSON report and an SVG chart;
// and a peak-load search that doubles concurrency until p99 latency
// passes a bound.
//
// Keys are "user" followed by a 12-digit zero-padded record number, so
// that _id order is record order and workload E's range scans read
// consecutive records. Every generator is owned by one worker goroutine
// (no shared random state); the only shared state while a workload runs
// is the insert counter (workloads D and E), the per-worker recorders the
// reporter drains once per interval, and the shard map it refreshes.
//
// See docs/design/bench.md.
package bench
