package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Distributions of the keys a workload reads and updates.
const (
	DistUniform = "uniform"
	DistZipfian = "zipfian"
	DistLatest  = "latest"
)

// keyPrefix and keyDigits shape record keys: "user000000000123".
const (
	keyPrefix = "user"
	keyDigits = 12
)

// KeyName returns the _id of record n: "user" and n zero-padded to 12
// digits, so that string order is numeric order.
func KeyName(n int64) string {
	var buf [len(keyPrefix) + keyDigits]byte
	copy(buf[:], keyPrefix)
	s := strconv.AppendInt(nil, n, 10)
	if len(s) > keyDigits {
		return keyPrefix + string(s)
	}
	for i := len(keyPrefix); i < len(buf)-len(s); i++ {
		buf[i] = '0'
	}
	copy(buf[len(buf)-len(s):], s)
	return string(buf[:])
}

// ParseKey returns the record number of a KeyName key.
func ParseKey(id string) (int64, bool) {
	rest, ok := strings.CutPrefix(id, keyPrefix)
	if !ok || rest == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil && n >= 0
}

// ZipfTheta is YCSB's default Zipfian constant.
const ZipfTheta = 0.99

// Zipfian draws integers in [0, n) with P(i) proportional to 1/(i+1)^theta
// (item 0 most popular), by the method of Gray et al. ("Quickly generating
// billion-record synthetic databases", SIGMOD 1994), as YCSB's
// ZipfianGenerator. The item count can grow (NextN with a larger n): zeta
// is then extended incrementally. A Zipfian is not safe for concurrent
// use; Clone gives each worker its own.
type Zipfian struct {
	items      int64
	theta      float64
	alpha      float64
	zetan      float64
	zeta2theta float64
	eta        float64
}

// NewZipfian returns a generator over [0, items), items >= 1.
func NewZipfian(items int64, theta float64) *Zipfian {
	if items < 1 {
		items = 1
	}
	z := &Zipfian{theta: theta, alpha: 1 / (1 - theta), zeta2theta: zeta(0, 2, theta, 0)}
	z.zetan = zeta(0, items, theta, 0)
	z.items = items
	z.eta = z.computeEta()
	return z
}

// zeta returns sum over i in (from, to] of 1/i^theta, plus initial.
func zeta(from, to int64, theta, initial float64) float64 {
	sum := initial
	for i := from; i < to; i++ {
		sum += 1 / math.Pow(float64(i+1), theta)
	}
	return sum
}

func (z *Zipfian) computeEta() float64 {
	return (1 - math.Pow(2/float64(z.items), 1-z.theta)) / (1 - z.zeta2theta/z.zetan)
}

// Clone returns an independent copy (for another goroutine).
func (z *Zipfian) Clone() *Zipfian { c := *z; return &c }

// Items returns the current item count.
func (z *Zipfian) Items() int64 { return z.items }

// Next draws from [0, Items()).
func (z *Zipfian) Next(r *rand.Rand) int64 { return z.NextN(r, z.items) }

// NextN draws from [0, n); a larger n than before extends the item count
// (zeta is updated incrementally, as YCSB does); a smaller one is only
// used for clamping.
func (z *Zipfian) NextN(r *rand.Rand, n int64) int64 {
	if n > z.items {
		z.zetan = zeta(z.items, n, z.theta, z.zetan)
		z.items = n
		z.eta = z.computeEta()
	}
	u := r.Float64()
	uz := u * z.zetan
	var v int64
	switch {
	case uz < 1:
		v = 0
	case uz < 1+math.Pow(0.5, z.theta):
		v = 1
	default:
		v = int64(float64(z.items) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	}
	if v >= n {
		v = n - 1
	}
	if v < 0 {
		v = 0
	}
	return v
}

// fnv64 is the FNV-1a hash of the 8 bytes of v, as YCSB's fnvhash64.
func fnv64(v int64) uint64 {
	const offset, prime = 0xCBF29CE484222325, 1099511628211
	h := uint64(offset)
	for range 8 {
		h ^= uint64(v & 0xff)
		h *= prime
		v >>= 8
	}
	return h
}

// KeyChooser picks the record a read, update or scan addresses. Each
// worker owns one; limit is the number of records known to exist (keys
// [0, limit)), which grows when the workload inserts.
type KeyChooser interface {
	Next(r *rand.Rand, limit int64) int64
}

// UniformChooser picks every existing record with equal probability.
type UniformChooser struct{}

// Next implements KeyChooser.
func (UniformChooser) Next(r *rand.Rand, limit int64) int64 { return r.Int64N(max(limit, 1)) }

// ScrambledZipfianChooser is YCSB's scrambled Zipfian: Zipfian popularity
// ranks over the initial records, each rank hashed (FNV-1a) to a record,
// so the popular records are spread over the key space instead of
// clustered at its start. Inserted records are never chosen (as in YCSB,
// whose scrambled generator keeps its item count).
type ScrambledZipfianChooser struct {
	z     *Zipfian
	items int64
}

// NewScrambledZipfian returns a chooser over [0, items).
func NewScrambledZipfian(items int64) *ScrambledZipfianChooser {
	return &ScrambledZipfianChooser{z: NewZipfian(items, ZipfTheta), items: max(items, 1)}
}

// Clone returns an independent copy sharing the precomputed zeta.
func (s *ScrambledZipfianChooser) Clone() *ScrambledZipfianChooser {
	return &ScrambledZipfianChooser{z: s.z.Clone(), items: s.items}
}

// Next implements KeyChooser.
func (s *ScrambledZipfianChooser) Next(r *rand.Rand, limit int64) int64 {
	k := int64(fnv64(s.z.Next(r)) % uint64(s.items))
	if k >= limit {
		k %= max(limit, 1)
	}
	return k
}

// LatestChooser is YCSB's skewed-latest: the most recently inserted record
// is the most popular, with Zipfian popularity going back in time.
type LatestChooser struct{ z *Zipfian }

// NewLatest returns a chooser whose Zipfian starts over items records.
func NewLatest(items int64) *LatestChooser { return &LatestChooser{z: NewZipfian(items, ZipfTheta)} }

// Clone returns an independent copy.
func (l *LatestChooser) Clone() *LatestChooser { return &LatestChooser{z: l.z.Clone()} }

// Next implements KeyChooser.
func (l *LatestChooser) Next(r *rand.Rand, limit int64) int64 {
	limit = max(limit, 1)
	return limit - 1 - l.z.NextN(r, limit)
}

// chooserFactory returns a function building one KeyChooser per worker.
func chooserFactory(dist string, records int64) (func() KeyChooser, error) {
	switch dist {
	case DistUniform, "":
		return func() KeyChooser { return UniformChooser{} }, nil
	case DistZipfian:
		proto := NewScrambledZipfian(records)
		return func() KeyChooser { return proto.Clone() }, nil
	case DistLatest:
		proto := NewLatest(records)
		return func() KeyChooser { return proto.Clone() }, nil
	}
	return nil, fmt.Errorf("unknown distribution %q (want uniform, zipfian or latest)", dist)
}

// InsertCounter hands out the record numbers of inserts and tracks which
// have been acknowledged, as YCSB's AcknowledgedCounterGenerator: Limit is
// the length of the longest prefix of records all of which exist, so
// reads never address a record whose insert is still in flight or failed.
type InsertCounter struct {
	next  atomic.Int64
	limit atomic.Int64

	mu      sync.Mutex
	pending map[int64]bool // acknowledged records above limit
}

// NewInsertCounter starts after the records [0, records).
func NewInsertCounter(records int64) *InsertCounter {
	c := &InsertCounter{pending: map[int64]bool{}}
	c.next.Store(records)
	c.limit.Store(records)
	return c
}

// Next returns the record number of the next insert.
func (c *InsertCounter) Next() int64 { return c.next.Add(1) - 1 }

// Ack records that the insert of record n succeeded.
func (c *InsertCounter) Ack(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending[n] = true
	l := c.limit.Load()
	for c.pending[l] {
		delete(c.pending, l)
		l++
	}
	c.limit.Store(l)
}

// Limit returns the number of records known to exist, [0, Limit()).
func (c *InsertCounter) Limit() int64 { return c.limit.Load() }
