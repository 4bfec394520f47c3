package catalog

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// benchFixture is one catalog prefix holding hashed collections with 1k,
// 10k and 100k chunks, built once per test binary run.
type benchFixture struct {
	c     *Catalog
	sizes map[int]string // chunk count -> ns
}

var (
	benchOnce sync.Once
	bench     *benchFixture
	benchErr  error
)

func getBenchFixture(b *testing.B) *benchFixture {
	benchOnce.Do(func() {
		start := time.Now()
		bench, benchErr = buildBenchFixture(b)
		b.Logf("fixture built in %v", time.Since(start).Round(time.Millisecond))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return bench
}

func buildBenchFixture(b *testing.B) (*benchFixture, error) {
	ctx := context.Background()
	c := New(testCli, WithPrefix(fmt.Sprintf("/bench-%d/psdb", time.Now().UnixNano())))
	for _, s := range []string{"rs0", "rs1", "rs2"} {
		if _, err := c.AddShard(ctx, s, members(s, 3), ShardActive); err != nil {
			return nil, err
		}
	}
	if _, err := c.CreateDatabase(ctx, "bench", nil); err != nil {
		return nil, err
	}
	f := &benchFixture{c: c, sizes: map[int]string{}}
	for _, total := range []int{1000, 10000, 100000} {
		ns := fmt.Sprintf("bench.c%d", total)
		const initial = 100
		per := total / initial
		_, chunks, err := c.ShardCollection(ctx, ns, ShardOptions{Key: ShardKey{{Field: "k", Hashed: true}}, NumInitialChunks: initial})
		if err != nil {
			return nil, err
		}
		bounds := append([]int64{math.MinInt64}, hashSplitPoints(initial)...)
		bounds = append(bounds, math.MaxInt64)
		for i, ch := range chunks {
			lo, hi := bounds[i], bounds[i+1]
			step := uint64(hi-lo) / uint64(per)
			pts := make([]bson.Raw, 0, per-1)
			for j := 1; j < per; j++ {
				pts = append(pts, doc(b, bson.D{{Key: "k", Value: int64(uint64(lo) + uint64(j)*step)}}))
			}
			if _, err := c.SplitChunk(ctx, ns, ch, pts...); err != nil {
				return nil, fmt.Errorf("split %s chunk %d: %w", ns, i, err)
			}
		}
		f.sizes[total] = ns
	}
	return f, nil
}

// cpuTime is the user+system CPU time of this process (the test and the
// in-process etcd server together): on a shared machine a better measure
// of the work done than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkChunkMapLoad: initial load of the routing range (111,000
// chunks in three collections, of which 100,000 in one) and the heap the
// loaded map retains.
func BenchmarkChunkMapLoad(b *testing.B) {
	f := getBenchFixture(b)
	ctx := context.Background()
	var st *routingState
	before := heapInUse()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st = nil
		var err error
		st, _, err = f.c.loadRouting(ctx)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	after := heapInUse()
	n := 0
	for _, set := range st.chunks {
		n += set.byMin.Len()
	}
	runtime.KeepAlive(st)
	b.ReportMetric(float64(n), "chunks")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(after-before)/(1<<20), "MB-retained")
	b.ReportMetric(float64(after-before)/float64(n), "B/chunk-retained")
}

func openBenchMap(b *testing.B, f *benchFixture) *ChunkMap {
	m, err := f.c.OpenChunkMap(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	return m
}

// BenchmarkChunkMapLookup: ChunkForDoc (hash + encode + B-tree search) and
// ChunkFor on pre-hashed values, by collection size.
func BenchmarkChunkMapLookup(b *testing.B) {
	f := getBenchFixture(b)
	m := openBenchMap(b, f)
	docs := make([]bson.Raw, 1024)
	for i := range docs {
		docs[i] = doc(b, bson.D{{Key: "k", Value: fmt.Sprintf("user-%d", i)}})
	}
	for _, size := range []int{1000, 100000} {
		ns := f.sizes[size]
		coll, _ := m.Collection(ns)
		b.Run(fmt.Sprintf("doc/chunks=%d", size), func(b *testing.B) {
			defer cpuPerOp(b)()
			for i := 0; i < b.N; i++ {
				if _, err := m.ChunkForDoc(ns, docs[i%len(docs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		vals := make([][]bson.RawValue, len(docs))
		for i := range docs {
			vals[i], _ = coll.Key.Values(docs[i])
		}
		b.Run(fmt.Sprintf("hashed-values/chunks=%d", size), func(b *testing.B) {
			defer cpuPerOp(b)()
			for i := 0; i < b.N; i++ {
				if _, err := m.ChunkFor(ns, vals[i%len(vals)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChunkMapApplyOne: the in-memory cost of one incremental chunk
// update (decode the watch event, apply it under the write lock) by
// collection size: it must not grow with the number of chunks beyond the
// B-tree's log factor.
func BenchmarkChunkMapApplyOne(b *testing.B) {
	f := getBenchFixture(b)
	ctx := context.Background()
	for _, size := range []int{1000, 10000, 100000} {
		ns := f.sizes[size]
		b.Run(fmt.Sprintf("chunks=%d", size), func(b *testing.B) {
			m := openBenchMap(b, f)
			coll, _ := m.Collection(ns)
			chunks, _, err := f.c.ListChunks(ctx, coll.UUID)
			if err != nil {
				b.Fatal(err)
			}
			// Pre-build the events: chunk j moves to another shard with a
			// new version, as CommitMigration writes it.
			kvs := make([]*mvccpb.KeyValue, 256)
			for j := range kvs {
				ch := chunks[rand.IntN(len(chunks))]
				rec := chunkRecord{Min: boundToJSON(ch.Min), Max: boundToJSON(ch.Max), Shard: "rs2", Version: Version{Major: 1000 + uint32(j)}}
				kvs[j] = &mvccpb.KeyValue{Key: []byte(f.c.chunkKey(coll.UUID, ch.MinKey)), Value: []byte(mustJSON(rec)), ModRevision: 1}
			}
			b.ResetTimer()
			defer cpuPerOp(b)()
			for i := 0; i < b.N; i++ {
				ev, err := f.c.decodeRouting(kvs[i%len(kvs)], false)
				if err != nil {
					b.Fatal(err)
				}
				m.mu.Lock()
				m.st.apply(&ev)
				m.mu.Unlock()
			}
		})
	}
}

// BenchmarkChunkMapUpdateEndToEnd: one split committed to etcd until the
// map has applied it (txn + watch delivery + apply), by collection size.
func BenchmarkChunkMapUpdateEndToEnd(b *testing.B) {
	f := getBenchFixture(b)
	ctx := context.Background()
	for _, size := range []int{1000, 100000} {
		ns := f.sizes[size]
		b.Run(fmt.Sprintf("chunks=%d", size), func(b *testing.B) {
			m := openBenchMap(b, f)
			b.ResetTimer()
			defer cpuPerOp(b)()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				v := rand.Int64()
				ch, err := m.ChunkFor(ns, []bson.RawValue{int64Value(v)})
				if err != nil {
					b.Fatal(err)
				}
				if lo, ok := ch.Min.Lookup("k").Int64OK(); ok && lo == v {
					v++ // a split point must be strictly inside the chunk
				}
				point := doc(b, bson.D{{Key: "k", Value: v}})
				b.StartTimer()
				parts, err := f.c.SplitChunk(ctx, ns, ch, point)
				if err != nil {
					b.Fatalf("split %s at %d: %v", ch, v, err)
				}
				if err := m.WaitForRevision(ctx, parts[0].ModRevision); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// syntheticSet builds a chunk set of n chunks tiling the int64 hash space
// in memory (no etcd), to measure the data structure alone.
func syntheticSet(n int) (*chunkSet, ShardKey, []*Chunk) {
	key := ShardKey{{Field: "k", Hashed: true}}
	set := newChunkSet("uuid")
	pts := hashSplitPoints(n)
	lo := key.GlobalMin()
	loKey, _ := encodeBoundAnyKey(lo)
	all := make([]*Chunk, 0, n)
	for i := 0; i < n; i++ {
		hi := key.GlobalMax()
		if i < len(pts) {
			hi = key.bound([]bson.RawValue{int64Value(pts[i])})
		}
		hiKey, _ := encodeBoundAnyKey(hi)
		ch := &Chunk{UUID: "uuid", Min: lo, Max: hi, MinKey: loKey, MaxKey: hiKey, Shard: []string{"rs0", "rs1", "rs2"}[i%3], Version: Version{Major: 1, Minor: uint32(i)}}
		set.put(ch)
		all = append(all, ch)
		lo, loKey = hi, hiKey
	}
	return set, key, all
}

// BenchmarkChunkSet: lookup and one-chunk update on the in-memory
// structure alone, by size.
func BenchmarkChunkSet(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000, 1000000} {
		set, key, all := syntheticSet(n)
		m := &ChunkMap{st: newRoutingState()}
		m.st.chunks["uuid"] = set
		m.st.colls["db.c"] = &Collection{NS: "db.c", UUID: "uuid", Sharded: true, Key: key}
		vals := make([][]bson.RawValue, 1024)
		for i := range vals {
			vals[i] = []bson.RawValue{int64Value(rand.Int64())}
		}
		b.Run(fmt.Sprintf("lookup/chunks=%d", n), func(b *testing.B) {
			defer cpuPerOp(b)()
			for i := 0; i < b.N; i++ {
				if _, err := m.ChunkFor("db.c", vals[i%len(vals)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("update/chunks=%d", n), func(b *testing.B) {
			defer cpuPerOp(b)()
			for i := 0; i < b.N; i++ {
				old := all[rand.IntN(len(all))]
				moved := *old
				moved.Shard, moved.Version = "rs9", Version{Major: 2, Minor: uint32(i)}
				m.mu.Lock()
				set.put(&moved)
				m.mu.Unlock()
			}
		})
	}
}

// cpuPerOp reports the process CPU time per op from start on (call it
// right before the timed loop and defer the result).
func cpuPerOp(b *testing.B) func() {
	c0 := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op") }
}
