// Package gcpercent sets the garbage collector's target of PSDB's server
// processes (shardd and mongos). It owns that one decision and must never
// override an operator's choice: GOGC in the environment wins.
//
// Why not Go's default of 100: both servers keep small Go heaps (a shard's
// documents live in Pebble's block cache, which is allocated outside the
// Go heap; a router holds its chunk map) and allocate fast per request, so
// at 100 they collect often for little memory returned. A profile of the
// router under a point-read workload showed 5% of its CPU in GC marking
// and another 10% allocating; at 400 the router's CPU per operation fell
// by about 10% (docs/BENCHMARKS.md), for a heap that may grow to five
// times its live size instead of twice.
package gcpercent

import (
	"os"
	"runtime/debug"
)

// Server is the GC target of the servers when GOGC is not set.
const Server = 400

// Apply sets the GC target to Server unless the environment sets GOGC.
func Apply() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(Server)
	}
}
