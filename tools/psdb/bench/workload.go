package bench

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
)

// Operation types, as they appear in reports.
const (
	OpRead   = "read"
	OpUpdate = "update"
	OpInsert = "insert"
	OpScan   = "scan"
	OpRMW    = "rmw" // read-modify-write: a read then an update of the same record
)

// Workload is a YCSB-style operation mix.
type Workload struct {
	// Name is "a".."f" or "load".
	Name string
	// Mix maps operation types to proportions summing to 1.
	Mix map[string]float64
	// Distribution is the default key distribution ("latest" for D).
	Distribution string
	// MaxScan bounds a scan's length, drawn uniformly from 1..MaxScan.
	MaxScan int
}

// Workloads are YCSB's core workloads and the insert-only load.
var Workloads = map[string]Workload{
	"a":    {Name: "a", Mix: map[string]float64{OpRead: 0.5, OpUpdate: 0.5}, Distribution: DistUniform},
	"b":    {Name: "b", Mix: map[string]float64{OpRead: 0.95, OpUpdate: 0.05}, Distribution: DistUniform},
	"c":    {Name: "c", Mix: map[string]float64{OpRead: 1}, Distribution: DistUniform},
	"d":    {Name: "d", Mix: map[string]float64{OpRead: 0.95, OpInsert: 0.05}, Distribution: DistLatest},
	"e":    {Name: "e", Mix: map[string]float64{OpScan: 0.95, OpInsert: 0.05}, Distribution: DistUniform, MaxScan: 100},
	"f":    {Name: "f", Mix: map[string]float64{OpRead: 0.5, OpRMW: 0.5}, Distribution: DistUniform},
	"load": {Name: "load", Mix: map[string]float64{OpInsert: 1}, Distribution: DistUniform},
}

// LookupWorkload returns the workload called name (case-insensitive).
func LookupWorkload(name string) (Workload, error) {
	w, ok := Workloads[strings.ToLower(name)]
	if !ok {
		names := make([]string, 0, len(Workloads))
		for n := range Workloads {
			names = append(names, n)
		}
		sort.Strings(names)
		return Workload{}, fmt.Errorf("unknown workload %q (want one of %s)", name, strings.Join(names, ", "))
	}
	return w, nil
}

// opChooser draws operation types in a workload's proportions.
type opChooser struct {
	ops []string
	cum []float64
}

func newOpChooser(w Workload) *opChooser {
	c := &opChooser{}
	for op := range w.Mix {
		c.ops = append(c.ops, op)
	}
	sort.Strings(c.ops) // deterministic for a seeded rand
	total := 0.0
	for _, op := range c.ops {
		total += w.Mix[op]
		c.cum = append(c.cum, total)
	}
	for i := range c.cum {
		c.cum[i] /= total
	}
	return c
}

func (c *opChooser) next(r *rand.Rand) string {
	u := r.Float64()
	for i, p := range c.cum {
		if u < p {
			return c.ops[i]
		}
	}
	return c.ops[len(c.ops)-1]
}
