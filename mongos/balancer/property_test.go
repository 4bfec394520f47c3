package balancer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/psdb/psdb/pkg/catalog"
)

// randomState builds a random cluster: 1-7 shards (some draining, at
// least one active), 1-4 collections of 0-120 chunks placed with a skew,
// a few jumbo chunks if jumbo is set, and some in-flight migrations if
// inFlight is set.
func randomState(r *rand.Rand, jumbo, inFlight bool) ClusterState {
	st := ClusterState{Now: noon}
	nShards := 1 + r.IntN(7)
	for i := range nShards {
		st.Shards = append(st.Shards, Shard{Name: fmt.Sprintf("rs%d", i), Draining: i > 0 && r.IntN(4) == 0})
	}
	for c := range 1 + r.IntN(4) {
		coll := Collection{NS: fmt.Sprintf("db.c%d", c)}
		n := r.IntN(121)
		hot := r.IntN(nShards)
		for i := range n {
			s := hot
			if r.IntN(3) == 0 {
				s = r.IntN(nShards)
			}
			coll.Chunks = append(coll.Chunks, Chunk{Chunk: catalog.Chunk{MinKey: []byte{byte(i >> 8), byte(i)}, Shard: st.Shards[s].Name},
				Jumbo: jumbo && r.IntN(10) == 0})
		}
		st.Collections = append(st.Collections, coll)
	}
	if inFlight {
		used := map[string]bool{}
		for range r.IntN(3) {
			c := st.Collections[r.IntN(len(st.Collections))]
			if len(c.Chunks) == 0 {
				continue
			}
			ch := c.Chunks[r.IntN(len(c.Chunks))].Chunk
			to := st.Shards[r.IntN(nShards)]
			if used[ch.Shard] || used[to.Name] || to.Name == ch.Shard || to.Draining {
				continue
			}
			used[ch.Shard], used[to.Name] = true, true
			st.InFlight = append(st.InFlight, Migration{NS: c.NS, Chunk: ch, From: ch.Shard, To: to.Name})
		}
	}
	return st
}

func randomSettings(r *rand.Rand) Settings {
	return Settings{Enabled: true, Threshold: []int{0, 1, 2, 3, 4, 8}[r.IntN(6)], MaxConcurrent: r.IntN(4), ChunkSizeBytes: 100}
}

// checkPlan asserts the plan's invariants against the state it was made
// from.
func checkPlan(t *testing.T, st ClusterState, set Settings, migs []Migration) {
	t.Helper()
	draining := map[string]bool{}
	known := map[string]bool{}
	for _, s := range st.Shards {
		draining[s.Name], known[s.Name] = s.Draining, true
	}
	used := map[string]bool{}
	moving := map[string]bool{}
	for _, m := range st.InFlight {
		used[m.From], used[m.To] = true, true
		moving[m.NS+string(m.Chunk.MinKey)] = true
	}
	if set.MaxConcurrent > 0 && len(migs) > 0 && len(migs)+len(st.InFlight) > set.MaxConcurrent {
		t.Fatalf("%d planned + %d in flight > maxConcurrent %d", len(migs), len(st.InFlight), set.MaxConcurrent)
	}
	for _, m := range migs {
		if used[m.From] || used[m.To] {
			t.Fatalf("shard used twice: %s\nplan %q\nin flight %v", m, describe(migs), st.InFlight)
		}
		used[m.From], used[m.To] = true, true
		if !known[m.To] || draining[m.To] || m.From == m.To {
			t.Fatalf("bad recipient: %s", m)
		}
		if m.Chunk.Shard != m.From || moving[m.NS+string(m.Chunk.MinKey)] {
			t.Fatalf("chunk not movable from %s: %s", m.From, m)
		}
		var c Collection
		for _, x := range st.Collections {
			if x.NS == m.NS {
				c = x
			}
		}
		counts := map[string]int{}
		for _, ch := range c.Chunks {
			counts[ch.Shard]++
			if string(ch.MinKey) == string(m.Chunk.MinKey) && ch.Jumbo {
				t.Fatalf("jumbo chunk moved: %s", m)
			}
		}
		switch m.Reason {
		case ReasonDraining:
			if !draining[m.From] {
				t.Fatalf("draining move off an active shard: %s", m)
			}
		case ReasonBalance:
			// Each shard is in one migration, so these counts are the
			// donor's and recipient's before and after this move alone.
			if draining[m.From] || counts[m.From]-1 < counts[m.To]+1 {
				t.Fatalf("move leaves the donor less loaded than the recipient: %s (%d vs %d)", m, counts[m.From], counts[m.To])
			}
		default:
			t.Fatalf("no reason: %s", m)
		}
	}
}

// apply moves the planned chunks.
func apply(st ClusterState, migs []Migration) ClusterState {
	out := st
	out.Collections = slices.Clone(st.Collections)
	for i := range out.Collections {
		out.Collections[i].Chunks = slices.Clone(out.Collections[i].Chunks)
	}
	for _, m := range migs {
		for i := range out.Collections {
			c := &out.Collections[i]
			if c.NS != m.NS {
				continue
			}
			for j := range c.Chunks {
				if string(c.Chunks[j].MinKey) == string(m.Chunk.MinKey) {
					c.Chunks[j].Shard = m.To
				}
			}
		}
	}
	return out
}

func TestPlanProperties(t *testing.T) {
	for seed := range uint64(3000) {
		r := rand.New(rand.NewPCG(seed, 7))
		st := randomState(r, seed%2 == 0, seed%3 == 0)
		set := randomSettings(r)
		migs := Plan(st, set)
		checkPlan(t, st, set, migs)
		if ex := Explain(st, set); ex.Planned != len(migs) || (len(migs) > 0) != (ex.Verdict == VerdictMoving) {
			t.Fatalf("seed %d: explanation %s disagrees with plan %q", seed, ex, describe(migs))
		}
		// Same state shuffled: same plan.
		sh := st
		sh.Shards = slices.Clone(st.Shards)
		r.Shuffle(len(sh.Shards), func(i, j int) { sh.Shards[i], sh.Shards[j] = sh.Shards[j], sh.Shards[i] })
		if a, b := describe(migs), describe(Plan(sh, set)); !slices.Equal(a, b) {
			t.Fatalf("seed %d: plan depends on shard order: %q vs %q", seed, a, b)
		}
	}
}

// TestPlanConverges applies plans round after round (every migration
// succeeding) and checks the cluster reaches an empty plan within a bound,
// and then, without jumbo chunks, every collection is within its threshold
// and draining shards are empty.
func TestPlanConverges(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 11))
		jumbo := seed%3 == 0
		st := randomState(r, jumbo, false)
		set := randomSettings(r)
		total := 0
		for _, c := range st.Collections {
			total += len(c.Chunks)
		}
		// Each balance move lowers the sum of squared counts by at least
		// 2 and each drain move empties one chunk of a draining shard, and
		// every round that is not the last moves at least one chunk.
		bound := total*total/2 + total + 1
		rounds := 0
		for {
			migs := Plan(st, set)
			checkPlan(t, st, set, migs)
			if len(migs) == 0 {
				break
			}
			st = apply(st, migs)
			rounds++
			if rounds > bound {
				t.Fatalf("seed %d: no convergence after %d rounds", seed, rounds)
			}
		}
		ex := Explain(st, set)
		if jumbo {
			if ex.Verdict != VerdictBalanced && ex.Verdict != VerdictStuck {
				t.Fatalf("seed %d: final verdict %s", seed, ex)
			}
			continue
		}
		if ex.Verdict != VerdictBalanced {
			t.Fatalf("seed %d: final verdict %s", seed, ex)
		}
		for _, c := range ex.Collections {
			if c.Imbalance >= c.Threshold {
				t.Fatalf("seed %d: %s still imbalanced: %s", seed, c.NS, ex)
			}
			for _, l := range c.Loads {
				if l.Draining && l.Chunks > 0 {
					t.Fatalf("seed %d: draining %s keeps %d chunks of %s", seed, l.Shard, l.Chunks, c.NS)
				}
			}
		}
	}
}
