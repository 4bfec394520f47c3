// Package chaos runs fault scenarios against a real PSDB cluster under the
// history checker's load (integration/checker) and judges the outcome:
// every acknowledged write present exactly once, no read back in time for
// one client, and the cluster healed (every node healthy, one primary per
// shard, the routers see every member healthy). It is the library behind
// `psdb chaos run` and `make chaos`, and the CI form in
// integration/chaos_test.go.
//
// A Cluster is booted (Boot: a throw-away cluster with free ports, by
// default with a faultproxy on every link a shard member dials, so links
// can be cut), opened (Open: a cluster running from a cluster.yaml) or
// attached (Attach: e.g. the integration harness's). Run runs Scenarios
// one after another, each on a collection of its own sharded on a hashed
// _id, and returns a Report (table, medians over repeats, JSON).
//
// It must never leave a node it booted behind, never inject a fault into
// a cluster that is not whole, and never call a write lost whose outcome
// the client could not know (that is the checker's rule). Design:
// docs/design/chaos.md; results: docs/CHAOS.md.
package chaos
