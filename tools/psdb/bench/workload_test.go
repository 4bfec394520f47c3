package bench

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestWorkloadMixRatios(t *testing.T) {
	want := map[string]map[string]float64{
		"a":    {OpRead: 0.5, OpUpdate: 0.5},
		"b":    {OpRead: 0.95, OpUpdate: 0.05},
		"c":    {OpRead: 1},
		"d":    {OpRead: 0.95, OpInsert: 0.05},
		"e":    {OpScan: 0.95, OpInsert: 0.05},
		"f":    {OpRead: 0.5, OpRMW: 0.5},
		"load": {OpInsert: 1},
	}
	const draws = 200_000
	for name, mix := range want {
		w, err := LookupWorkload(name)
		if err != nil {
			t.Fatal(err)
		}
		c := newOpChooser(w)
		r := rand.New(rand.NewPCG(11, 12))
		counts := map[string]int{}
		for range draws {
			counts[c.next(r)]++
		}
		for op, p := range mix {
			got := float64(counts[op]) / draws
			if math.Abs(got-p) > 0.005 {
				t.Errorf("workload %s: %s drawn %.4f of the time, want %.2f", name, op, got, p)
			}
		}
		for op := range counts {
			if _, ok := mix[op]; !ok {
				t.Errorf("workload %s drew %s, not in its mix", name, op)
			}
		}
	}
	if w, _ := LookupWorkload("D"); w.Distribution != DistLatest {
		t.Errorf("workload d distribution %q, want latest", w.Distribution)
	}
	if w, _ := LookupWorkload("e"); w.MaxScan != 100 {
		t.Errorf("workload e max scan %d, want 100", w.MaxScan)
	}
	if _, err := LookupWorkload("g"); err == nil {
		t.Error("unknown workload accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"workload":  func(c *Config) { c.Workload = "z" },
		"records":   func(c *Config) { c.Records = 0 },
		"threads":   func(c *Config) { c.Threads = 0 },
		"bounds":    func(c *Config) { c.Duration, c.Ops = 0, 0 },
		"wc":        func(c *Config) { c.WriteConcern = "most" },
		"readpref":  func(c *Config) { c.ReadPreference = "any" },
		"dist":      func(c *Config) { c.Distribution = "normal" },
		"docsize":   func(c *Config) { c.DocSize = 0 },
		"batchsize": func(c *Config) { c.BatchSize = 0 },
	} {
		c := DefaultConfig()
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
	}
	c = DefaultConfig()
	c.WriteConcern, c.ReadPreference = "1", "secondaryPreferred"
	if err := c.Validate(); err != nil {
		t.Errorf("w:1, secondaryPreferred: %v", err)
	}
}
