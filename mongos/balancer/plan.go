package balancer

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/psdb/psdb/pkg/catalog"
)

// Shard is a shard as the planner sees it.
type Shard struct {
	Name string
	// Draining shards (removeShard) give away all their chunks and never
	// receive any.
	Draining bool
}

// Chunk is a chunk with what the planner needs beyond the catalog record.
type Chunk struct {
	catalog.Chunk
	// Jumbo chunks are too large to move and cannot be split; the planner
	// never moves them, not even off a draining shard.
	Jumbo bool
}

// Collection is one sharded collection's placement.
type Collection struct {
	NS string
	// Version is the collection version the chunks were read at; it is
	// copied into each Migration for the Mover.
	Version catalog.CollVersion
	// Chunks in key order, each naming its shard.
	Chunks []Chunk
	// DataSize, if not nil, is the collection's data size in bytes per
	// shard (a shard absent from the map holds 0). The planner then
	// balances bytes instead of chunk counts.
	DataSize map[string]int64
}

// ClusterState is everything a plan is computed from. It is plain data:
// the caller reads it (from the catalog, or writes it by hand in tests).
type ClusterState struct {
	// Now is the time of day the active window is checked against, in the
	// location the window is meant in.
	Now         time.Time
	Shards      []Shard
	Collections []Collection
	// InFlight are migrations already running: their donors and
	// recipients are busy and their chunks are not planned again.
	InFlight []Migration
}

// Settings are the balancer's settings as the planner uses them.
type Settings struct {
	Enabled bool
	// WindowStart and WindowEnd ("HH:MM") limit when migrations are
	// planned; both empty, or equal, means always. A window may wrap
	// midnight (22:00-06:00).
	WindowStart, WindowEnd string
	// Threshold is the chunk-count difference between the most and the
	// least loaded active shard of a collection from which chunks move.
	// 0 means MongoDB's table by the collection's chunk count (2 below 20
	// chunks, 4 below 80, 8 from 80). Values below 2 act as 2: moving one
	// chunk across a difference of 1 only swaps the imbalance.
	Threshold int
	// MaxConcurrent bounds migrations running at once, in flight ones
	// included; 0 means only the one-migration-per-shard rule bounds them.
	MaxConcurrent int
	// ChunkSizeBytes is the maximum chunk size. For collections with
	// DataSize the threshold is 3 × ChunkSizeBytes (MongoDB's rule).
	ChunkSizeBytes int64
}

// SettingsFromCatalog converts the stored settings.
func SettingsFromCatalog(s catalog.BalancerSettings) Settings {
	return Settings{Enabled: s.Enabled, WindowStart: s.WindowStart, WindowEnd: s.WindowEnd,
		Threshold: s.Threshold, MaxConcurrent: s.MaxConcurrent, ChunkSizeBytes: s.ChunkSizeBytes}
}

// Reason says why a migration was planned.
type Reason string

const (
	// ReasonDraining moves a chunk off a draining shard.
	ReasonDraining Reason = "draining"
	// ReasonBalance moves a chunk from the most to the least loaded shard.
	ReasonBalance Reason = "balance"
)

// Migration is one planned chunk move: plain data handed to a Mover.
type Migration struct {
	NS string
	// Chunk is the chunk as read (bounds, shard, version, ModRevision).
	Chunk catalog.Chunk
	// From is the donor (Chunk.Shard), To the recipient.
	From, To string
	// Version is the collection version the plan was computed on.
	Version catalog.CollVersion
	Reason  Reason
}

func (m Migration) String() string {
	return fmt.Sprintf("%s [%s, %s) %s -> %s (%s)", m.NS, m.Chunk.Min, m.Chunk.Max, m.From, m.To, m.Reason)
}

// Verdict summarises a plan.
type Verdict string

const (
	VerdictMoving        Verdict = "moving"        // the plan moves chunks
	VerdictDisabled      Verdict = "disabled"      // balancer stopped
	VerdictOutsideWindow Verdict = "outsideWindow" // outside the active window
	VerdictBalanced      Verdict = "balanced"      // every collection within its threshold, nothing draining
	VerdictBusy          Verdict = "busy"          // moves are due but their shards are in migrations or maxConcurrent is reached
	VerdictStuck         Verdict = "stuck"         // moves are due but only jumbo chunks (or chunks too large to even out) could move
)

// ShardLoad is one shard's load in one collection.
type ShardLoad struct {
	Shard    string
	Chunks   int
	Load     int64 // chunks, or bytes in data-size mode
	Draining bool
	Busy     bool // in an in-flight migration
}

// CollectionExplanation is the planner's view of one collection.
type CollectionExplanation struct {
	NS string
	// DataSize reports whether loads are bytes (else chunk counts).
	DataSize  bool
	Threshold int64
	// Imbalance is the most minus the least load among active shards,
	// before the plan.
	Imbalance int64
	Loads     []ShardLoad // by shard name
	Planned   int
	Why       string
}

// Explanation says what a plan does and, when it moves nothing, why.
type Explanation struct {
	Verdict     Verdict
	Message     string
	Planned     int
	InFlight    int
	Collections []CollectionExplanation
}

func (e Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", e.Verdict, e.Message)
	for _, c := range e.Collections {
		unit := "chunks"
		if c.DataSize {
			unit = "bytes"
		}
		fmt.Fprintf(&b, "\n  %s: imbalance %d %s (threshold %d): %s [", c.NS, c.Imbalance, unit, c.Threshold, c.Why)
		for i, l := range c.Loads {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%s=%d", l.Shard, l.Load)
			if l.Draining {
				b.WriteString("(draining)")
			}
			if l.Busy {
				b.WriteString("(busy)")
			}
		}
		b.WriteString("]")
	}
	return b.String()
}

// Plan computes the migrations to start now. It is pure and deterministic:
// the same state and settings always give the same list, in the same order.
//
// Rules: nothing moves while disabled or outside the active window. A
// shard takes part in at most one migration (in flight or planned), as
// donor or recipient; at most MaxConcurrent migrations run. Draining shards
// go first: each gives its first movable chunk (collections by namespace,
// chunks in key order) to the least loaded free active shard of that
// collection. Then, per collection by namespace, the most loaded free
// active shard gives its first movable chunk to the least loaded free
// active shard while their difference reaches the threshold and the donor
// stays at least as loaded as the recipient. Ties go to the shard whose
// name sorts first. Jumbo chunks and chunks in flight never move.
func Plan(state ClusterState, settings Settings) []Migration {
	migs, _ := plan(state, settings)
	return migs
}

// Explain runs the planner and says what it would do and why nothing
// moves when nothing does.
func Explain(state ClusterState, settings Settings) Explanation {
	_, ex := plan(state, settings)
	return ex
}

// MongoDBThreshold is MongoDB's migration threshold for a collection of n
// chunks.
func MongoDBThreshold(n int) int {
	switch {
	case n < 20:
		return 2
	case n < 80:
		return 4
	default:
		return 8
	}
}

// InWindow reports whether now's time of day is inside [start, end); an
// empty or zero-length window is always open. ok is false if a bound is
// not "HH:MM".
func InWindow(now time.Time, start, end string) (in, ok bool) {
	if start == "" && end == "" {
		return true, true
	}
	s, err1 := time.Parse("15:04", start)
	e, err2 := time.Parse("15:04", end)
	if err1 != nil || err2 != nil {
		return false, false
	}
	sm, em := s.Hour()*60+s.Minute(), e.Hour()*60+e.Minute()
	m := now.Hour()*60 + now.Minute()
	switch {
	case sm == em:
		return true, true
	case sm < em:
		return sm <= m && m < em, true
	default:
		return m >= sm || m < em, true
	}
}

// collPlan is the planner's working copy of one collection.
type collPlan struct {
	c        *Collection
	dataMode bool
	thr      int64
	chunks   map[string]int   // chunks per shard (all, in flight included)
	load     map[string]int64 // load per shard
	movable  map[string][]int // indices of movable chunks per shard, key order
	next     map[string]int   // next index into movable
	ex       *CollectionExplanation
}

func (cp *collPlan) hasMovable(shard string) bool { return cp.next[shard] < len(cp.movable[shard]) }

// estimate is the load one chunk of shard carries.
func (cp *collPlan) estimate(shard string) int64 {
	if !cp.dataMode {
		return 1
	}
	n := cp.chunks[shard]
	if n == 0 {
		return 0
	}
	return max(cp.load[shard]/int64(n), 1) // a move always carries load
}

func plan(state ClusterState, settings Settings) ([]Migration, Explanation) {
	ex := Explanation{InFlight: len(state.InFlight)}
	if !settings.Enabled {
		ex.Verdict, ex.Message = VerdictDisabled, "the balancer is stopped"
		return nil, ex
	}
	if in, ok := InWindow(state.Now, settings.WindowStart, settings.WindowEnd); !ok {
		ex.Verdict, ex.Message = VerdictOutsideWindow, fmt.Sprintf("active window %q-%q is not two HH:MM times", settings.WindowStart, settings.WindowEnd)
		return nil, ex
	} else if !in {
		ex.Verdict, ex.Message = VerdictOutsideWindow, fmt.Sprintf("%s is outside the active window %s-%s", state.Now.Format("15:04"), settings.WindowStart, settings.WindowEnd)
		return nil, ex
	}

	shards := append([]Shard(nil), state.Shards...)
	sort.Slice(shards, func(i, j int) bool { return shards[i].Name < shards[j].Name })
	busy := map[string]bool{}
	inFlight := map[string]bool{} // ns + "\x00" + minKey
	for _, m := range state.InFlight {
		busy[m.From], busy[m.To] = true, true
		inFlight[m.NS+"\x00"+string(m.Chunk.MinKey)] = true
	}
	budget := -1 // unbounded
	if settings.MaxConcurrent > 0 {
		budget = max(settings.MaxConcurrent-len(state.InFlight), 0)
	}
	chunkSize := settings.ChunkSizeBytes
	if chunkSize <= 0 {
		chunkSize = catalog.DefaultBalancerSettings().ChunkSizeBytes
	}

	colls := make([]*collPlan, 0, len(state.Collections))
	for i := range state.Collections {
		c := &state.Collections[i]
		cp := &collPlan{c: c, dataMode: c.DataSize != nil, chunks: map[string]int{}, load: map[string]int64{},
			movable: map[string][]int{}, next: map[string]int{}}
		for j, ch := range c.Chunks {
			cp.chunks[ch.Shard]++
			if !ch.Jumbo && !inFlight[c.NS+"\x00"+string(ch.MinKey)] {
				cp.movable[ch.Shard] = append(cp.movable[ch.Shard], j)
			}
		}
		for _, s := range shards {
			if cp.dataMode {
				cp.load[s.Name] = c.DataSize[s.Name]
			} else {
				cp.load[s.Name] = int64(cp.chunks[s.Name])
			}
		}
		switch {
		case cp.dataMode:
			cp.thr = 3 * chunkSize
		case settings.Threshold > 0:
			cp.thr = int64(max(settings.Threshold, 2))
		default:
			cp.thr = int64(MongoDBThreshold(len(c.Chunks)))
		}
		ce := CollectionExplanation{NS: c.NS, DataSize: cp.dataMode, Threshold: cp.thr}
		var lo, hi int64
		first := true
		for _, s := range shards {
			ce.Loads = append(ce.Loads, ShardLoad{Shard: s.Name, Chunks: cp.chunks[s.Name], Load: cp.load[s.Name], Draining: s.Draining, Busy: busy[s.Name]})
			if s.Draining {
				continue
			}
			if l := cp.load[s.Name]; first {
				lo, hi, first = l, l, false
			} else {
				lo, hi = min(lo, l), max(hi, l)
			}
		}
		ce.Imbalance = hi - lo
		ex.Collections = append(ex.Collections, ce)
		colls = append(colls, cp)
	}
	sort.SliceStable(colls, func(i, j int) bool { return colls[i].c.NS < colls[j].c.NS })
	sort.SliceStable(ex.Collections, func(i, j int) bool { return ex.Collections[i].NS < ex.Collections[j].NS })
	for i := range colls {
		colls[i].ex = &ex.Collections[i]
	}

	var out []Migration
	move := func(cp *collPlan, from, to string, r Reason) {
		idx := cp.movable[from][cp.next[from]]
		cp.next[from]++
		est := cp.estimate(from)
		cp.chunks[from]--
		cp.chunks[to]++
		cp.load[from] -= est
		cp.load[to] += est
		busy[from], busy[to] = true, true
		if budget > 0 {
			budget--
		}
		cp.ex.Planned++
		out = append(out, Migration{NS: cp.c.NS, Chunk: cp.c.Chunks[idx].Chunk, From: from, To: to, Version: cp.c.Version, Reason: r})
	}
	// recipient is the least loaded free active shard of cp other than not.
	recipient := func(cp *collPlan, not string) (string, bool) {
		best, found := "", false
		for _, s := range shards {
			if s.Draining || busy[s.Name] || s.Name == not {
				continue
			}
			if !found || cp.load[s.Name] < cp.load[best] {
				best, found = s.Name, true
			}
		}
		return best, found
	}

	blockedBusy, stuck := false, false
	// Draining shards first.
	for _, d := range shards {
		if !d.Draining {
			continue
		}
		for _, cp := range colls {
			if !cp.hasMovable(d.Name) {
				continue
			}
			if busy[d.Name] || budget == 0 {
				blockedBusy = true
				cp.ex.Why = "draining shard " + d.Name + " waits: shards busy or maxConcurrent reached"
				break
			}
			to, ok := recipient(cp, d.Name)
			if !ok {
				blockedBusy = true
				cp.ex.Why = "draining shard " + d.Name + " waits: no free active shard"
				break
			}
			move(cp, d.Name, to, ReasonDraining)
			break
		}
	}
	// Then balance each collection.
	for _, cp := range colls {
		for budget != 0 {
			to, ok := recipient(cp, "")
			if !ok {
				break
			}
			from := ""
			for _, s := range donorOrder(shards, cp, busy) {
				diff := cp.load[s] - cp.load[to]
				if diff < cp.thr {
					break
				}
				if s == to || !cp.hasMovable(s) || diff < 2*cp.estimate(s) {
					continue
				}
				from = s
				break
			}
			if from == "" {
				break
			}
			move(cp, from, to, ReasonBalance)
		}
	}
	for _, cp := range colls {
		ce := cp.ex
		drainLeft := 0
		for _, s := range shards {
			if s.Draining {
				drainLeft += cp.chunks[s.Name]
			}
		}
		switch {
		case ce.Planned > 0:
			ce.Why = fmt.Sprintf("moving %d chunk(s)", ce.Planned)
		case ce.Why != "":
		case drainLeft > 0 && drainLeft == cp.jumboOnDraining(shards):
			stuck = true
			ce.Why = fmt.Sprintf("%d jumbo chunk(s) on draining shards cannot move", drainLeft)
		case drainLeft > 0:
			blockedBusy = true
			ce.Why = "chunks on draining shards wait for busy shards"
		case ce.Imbalance < ce.Threshold:
			ce.Why = "balanced: imbalance below threshold"
		case budget == 0 || anyActiveBusy(shards, busy):
			blockedBusy = true
			ce.Why = "imbalanced, but the shards that would move are busy or maxConcurrent is reached"
		default:
			stuck = true
			ce.Why = "imbalanced, but the most loaded shards hold only jumbo chunks or chunks too large to even out"
		}
	}
	ex.Planned = len(out)
	switch {
	case len(out) > 0:
		ex.Verdict, ex.Message = VerdictMoving, fmt.Sprintf("planned %d migration(s), %d in flight", len(out), len(state.InFlight))
	case blockedBusy:
		ex.Verdict, ex.Message = VerdictBusy, fmt.Sprintf("moves are due but shards are busy (%d migration(s) in flight, maxConcurrent %d)", len(state.InFlight), settings.MaxConcurrent)
	case stuck:
		ex.Verdict, ex.Message = VerdictStuck, "moves are due but only jumbo chunks could move"
	default:
		ex.Verdict, ex.Message = VerdictBalanced, "every collection is within its threshold and no shard is draining"
	}
	return out, ex
}

// donorOrder is the free active shards of cp, most loaded first, ties by
// name.
func donorOrder(shards []Shard, cp *collPlan, busy map[string]bool) []string {
	var out []string
	for _, s := range shards {
		if !s.Draining && !busy[s.Name] {
			out = append(out, s.Name)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return cp.load[out[i]] > cp.load[out[j]] })
	return out
}

func (cp *collPlan) jumboOnDraining(shards []Shard) int {
	n := 0
	draining := map[string]bool{}
	for _, s := range shards {
		draining[s.Name] = s.Draining
	}
	for _, ch := range cp.c.Chunks {
		if draining[ch.Shard] && ch.Jumbo {
			n++
		}
	}
	return n
}

// anyActiveBusy reports whether an active shard is in a migration, in
// flight or planned.
func anyActiveBusy(shards []Shard, busy map[string]bool) bool {
	for _, s := range shards {
		if !s.Draining && busy[s.Name] {
			return true
		}
	}
	return false
}
