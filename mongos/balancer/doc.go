// Package balancer owns the balancer's decisions and its leadership: which
// chunks should move where (Plan, a pure function from a ClusterState to a
// list of Migrations, with Explain saying why nothing moves), and the round
// loop (Balancer.Run) that, only while this router holds the catalog's
// balancer election, reads the state, plans, and hands each planned
// migration to a Mover, reporting progress through Status.
//
// It must never move data or change the catalog itself: every chunk move
// goes through the Mover, which owns the migration protocol (clone,
// catch-up, critical section, commit, range deletion). It must never run a
// round without holding leadership, never plan a shard into two migrations
// at once, never plan a move to a draining shard, and never keep state in
// package globals. Plan and Explain do no I/O and read no clock: the time
// of day is part of the ClusterState they are given.
package balancer
