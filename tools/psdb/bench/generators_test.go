package bench

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestKeyNameOrderAndParse(t *testing.T) {
	prev := ""
	for _, n := range []int64{0, 1, 9, 10, 99, 123, 100_000, 999_999_999_999} {
		k := KeyName(n)
		if len(k) != len(keyPrefix)+keyDigits {
			t.Fatalf("KeyName(%d) = %q: want %d characters", n, k, len(keyPrefix)+keyDigits)
		}
		if k <= prev {
			t.Fatalf("KeyName(%d) = %q sorts before the previous key %q", n, k, prev)
		}
		prev = k
		got, ok := ParseKey(k)
		if !ok || got != n {
			t.Fatalf("ParseKey(%q) = %d, %v; want %d", k, got, ok, n)
		}
	}
	if KeyName(123) != "user000000000123" {
		t.Fatalf("KeyName(123) = %q", KeyName(123))
	}
	for _, bad := range []string{"", "user", "x000000000001", "user-1", "userabc"} {
		if _, ok := ParseKey(bad); ok {
			t.Fatalf("ParseKey(%q) accepted", bad)
		}
	}
}

// TestZipfianSkew checks the empirical frequencies of the first ranks
// against P(i) = (1/(i+1)^theta) / zeta(n).
func TestZipfianSkew(t *testing.T) {
	const items, draws = 1000, 200_000
	z := NewZipfian(items, ZipfTheta)
	r := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, items)
	for range draws {
		v := z.Next(r)
		if v < 0 || v >= items {
			t.Fatalf("draw %d out of [0, %d)", v, items)
		}
		counts[v]++
	}
	// Ranks 0 and 1 are drawn exactly by Gray's method; later ranks come
	// from its continuous approximation (as in YCSB), within about 20%.
	zetan := zeta(0, items, ZipfTheta, 0)
	for i := range 5 {
		want := (1 / math.Pow(float64(i+1), ZipfTheta)) / zetan
		got := float64(counts[i]) / draws
		tol := 0.05
		if i >= 2 {
			tol = 0.2
		}
		if math.Abs(got-want)/want > tol {
			t.Errorf("rank %d: frequency %.4f, want %.4f ± %.0f%%", i, got, want, 100*tol)
		}
		if i > 0 && counts[i] >= counts[i-1] {
			t.Errorf("rank %d drawn %d times, not less than rank %d (%d)", i, counts[i], i-1, counts[i-1])
		}
	}
	// Heavy head: the top 10% of ranks take well over half the draws
	// (uniform would give 10%).
	head := 0
	for i := range items / 10 {
		head += counts[i]
	}
	if f := float64(head) / draws; f < 0.6 {
		t.Errorf("top 10%% of ranks drew %.2f of the draws, want > 0.6", f)
	}
}

func TestZipfianGrows(t *testing.T) {
	z := NewZipfian(100, ZipfTheta)
	grown := NewZipfian(200, ZipfTheta)
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		if v := z.NextN(r, 200); v < 0 || v >= 200 {
			t.Fatalf("NextN(200) = %d", v)
		}
	}
	if z.Items() != 200 || math.Abs(z.zetan-grown.zetan) > 1e-9 || math.Abs(z.eta-grown.eta) > 1e-9 {
		t.Fatalf("incremental zeta %v/%v, from scratch %v/%v", z.zetan, z.eta, grown.zetan, grown.eta)
	}
}

func TestScrambledZipfianSpreadsHotKeys(t *testing.T) {
	const items, draws = 10_000, 100_000
	c := NewScrambledZipfian(items)
	r := rand.New(rand.NewPCG(5, 6))
	counts := map[int64]int{}
	for range draws {
		v := c.Next(r, items)
		if v < 0 || v >= items {
			t.Fatalf("draw %d out of range", v)
		}
		counts[v]++
	}
	type kc struct {
		k int64
		n int
	}
	var top []kc
	for k, n := range counts {
		top = append(top, kc{k, n})
	}
	sort.Slice(top, func(i, j int) bool { return top[i].n > top[j].n })
	// Skewed: the hottest key is far above the uniform share (10 draws).
	if top[0].n < 500 {
		t.Fatalf("hottest key drawn %d times, want a Zipfian head (> 500)", top[0].n)
	}
	// Scrambled: the 10 hottest keys are not the 10 lowest key numbers.
	low := 0
	for _, x := range top[:10] {
		if x.k < 10 {
			low++
		}
	}
	if low == 10 {
		t.Fatal("the hottest keys are the first records: not scrambled")
	}
	// A smaller limit is respected.
	for range 1000 {
		if v := c.Next(r, 100); v >= 100 {
			t.Fatalf("Next(limit 100) = %d", v)
		}
	}
}

func TestLatestFavoursNewest(t *testing.T) {
	const draws = 100_000
	c := NewLatest(1000)
	r := rand.New(rand.NewPCG(7, 8))
	limit := int64(1000)
	newest, recent := 0, 0
	for i := range draws {
		if i%1000 == 999 {
			limit++ // records are being inserted
		}
		v := c.Next(r, limit)
		if v < 0 || v >= limit {
			t.Fatalf("draw %d out of [0, %d)", v, limit)
		}
		if v == limit-1 {
			newest++
		}
		if v >= limit-10 {
			recent++
		}
	}
	if f := float64(newest) / draws; f < 0.1 {
		t.Errorf("newest record drawn %.3f of the time, want > 0.1", f)
	}
	if f := float64(recent) / draws; f < 0.3 {
		t.Errorf("10 newest records drawn %.3f of the time, want > 0.3", f)
	}
}

func TestUniformCoversRange(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	counts := make([]int, 10)
	for range 100_000 {
		counts[UniformChooser{}.Next(r, 10)]++
	}
	for i, n := range counts {
		if n < 9000 || n > 11000 {
			t.Errorf("key %d drawn %d times of 100000, want about 10000", i, n)
		}
	}
}

func TestInsertCounterAcknowledgedPrefix(t *testing.T) {
	c := NewInsertCounter(10)
	a, b, d := c.Next(), c.Next(), c.Next()
	if a != 10 || b != 11 || d != 12 {
		t.Fatalf("Next = %d, %d, %d; want 10, 11, 12", a, b, d)
	}
	c.Ack(b)
	if c.Limit() != 10 {
		t.Fatalf("limit %d after acking 11 before 10, want 10", c.Limit())
	}
	c.Ack(a)
	if c.Limit() != 12 {
		t.Fatalf("limit %d after acking 10 and 11, want 12", c.Limit())
	}
	c.Ack(d)
	if c.Limit() != 13 {
		t.Fatalf("limit %d, want 13", c.Limit())
	}
}

func TestChooserFactory(t *testing.T) {
	for _, d := range []string{"", DistUniform, DistZipfian, DistLatest} {
		f, err := chooserFactory(d, 100)
		if err != nil {
			t.Fatalf("%q: %v", d, err)
		}
		if f() == nil {
			t.Fatalf("%q: nil chooser", d)
		}
	}
	if _, err := chooserFactory("gaussian", 100); err == nil {
		t.Fatal("unknown distribution accepted")
	}
}
