package migrate

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/shardd/storage"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func raw(t testing.TB, d any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openEngine(t *testing.T) *storage.Engine {
	t.Helper()
	e, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func mustRange(t *testing.T, ns string, key, min, max bson.D) Range {
	t.Helper()
	r, err := NewRange(ns, raw(t, key), raw(t, min), raw(t, max))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func insert(t *testing.T, e *storage.Engine, ns string, docs ...bson.Raw) {
	t.Helper()
	res, err := e.Insert(context.Background(), ns, docs, storage.WriteOptions{Ordered: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}

func scanIDs(t *testing.T, e *storage.Engine, r Range) (ids []int32, index string) {
	t.Helper()
	snap, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	index, err = r.Scan(context.Background(), snap, func(d bson.Raw) error {
		ids = append(ids, d.Lookup("_id").Int32())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, index
}

func TestNewRangeErrors(t *testing.T) {
	k := bson.D{{Key: "a", Value: 1}}
	for name, tc := range map[string][3]bson.D{
		"empty":      {k, {{Key: "a", Value: 5}}, {{Key: "a", Value: 5}}},
		"reversed":   {k, {{Key: "a", Value: 6}}, {{Key: "a", Value: 5}}},
		"wrongField": {k, {{Key: "b", Value: 1}}, {{Key: "a", Value: 5}}},
		"tooMany":    {k, {{Key: "a", Value: 1}, {Key: "b", Value: 1}}, {{Key: "a", Value: 5}}},
		"hashedInt":  {{{Key: "h", Value: "hashed"}}, {{Key: "h", Value: int32(1)}}, {{Key: "h", Value: int64(5)}}},
		"badKey":     {{{Key: "a", Value: "text"}}, {{Key: "a", Value: 1}}, {{Key: "a", Value: 5}}},
	} {
		if _, err := NewRange("db.c", raw(t, tc[0]), raw(t, tc[1]), raw(t, tc[2])); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Scans by index and by collection scan keep exactly the range; the
// global maximum includes MaxKey-valued keys; missing fields are null.
func TestRangeScan(t *testing.T) {
	e := openEngine(t)
	const ns = "db.c"
	for i := range 50 {
		insert(t, e, ns, raw(t, bson.D{{Key: "_id", Value: int32(i)}, {Key: "a", Value: (i * 7) % 50}, {Key: "b", Value: i}}))
	}
	insert(t, e, ns, raw(t, bson.D{{Key: "_id", Value: int32(100)}}))                                   // a missing: null
	insert(t, e, ns, raw(t, bson.D{{Key: "_id", Value: int32(101)}, {Key: "a", Value: bson.MaxKey{}}})) // global max
	r := mustRange(t, ns, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 10}}, bson.D{{Key: "a", Value: 20}})
	want := map[int32]bool{}
	for i := range 50 {
		if a := (i * 7) % 50; a >= 10 && a < 20 {
			want[int32(i)] = true
		}
	}
	check := func(ids []int32, wantIndex, index string) {
		t.Helper()
		if index != wantIndex {
			t.Fatalf("index %q, want %q", index, wantIndex)
		}
		if len(ids) != len(want) {
			t.Fatalf("%d ids, want %d: %v", len(ids), len(want), ids)
		}
		for _, id := range ids {
			if !want[id] {
				t.Fatalf("id %d not in range", id)
			}
		}
	}
	ids, index := scanIDs(t, e, r)
	check(ids, "", index)
	if _, err := e.CreateIndex(context.Background(), ns, storage.IndexSpec{Key: []storage.IndexKeyPart{{Field: "a"}, {Field: "b"}}}); err != nil {
		t.Fatal(err)
	}
	ids, index = scanIDs(t, e, r)
	check(ids, "a_1_b_1", index)

	low := mustRange(t, ns, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: bson.MinKey{}}}, bson.D{{Key: "a", Value: 0}})
	if ids, _ := scanIDs(t, e, low); len(ids) != 1 || ids[0] != 100 {
		t.Fatalf("[MinKey, 0): %v, want the null document", ids)
	}
	top := mustRange(t, ns, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 49}}, bson.D{{Key: "a", Value: bson.MaxKey{}}})
	if ids, _ := scanIDs(t, e, top); len(ids) != 2 {
		t.Fatalf("[49, MaxKey]: %v, want a=49 and the MaxKey document", ids)
	}
	// {_id: 1} uses the _id index.
	idr := mustRange(t, ns, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 5}}, bson.D{{Key: "_id", Value: 8}})
	if ids, index := scanIDs(t, e, idr); index != "_id_" || len(ids) != 3 || ids[0] != 5 {
		t.Fatalf("_id range: %v by %q", ids, index)
	}
	// A hashed key: collection scan, membership by the hash.
	hr := mustRange(t, ns, bson.D{{Key: "b", Value: "hashed"}}, bson.D{{Key: "b", Value: int64(0)}}, bson.D{{Key: "b", Value: bson.MaxKey{}}})
	ids, index = scanIDs(t, e, hr)
	if index != "" {
		t.Fatalf("hashed scan used %q", index)
	}
	n := 0
	for i := range 50 {
		if keys.Hash(bson.RawValue{Type: bson.TypeInt32, Value: raw(t, bson.D{{Key: "v", Value: int32(i)}}).Lookup("v").Value}) >= 0 {
			n++
		}
	}
	if len(ids) != n+boolInt(keys.Hash(bson.RawValue{Type: bson.TypeNull}) >= 0)*2 { // _id 100 and 101 have no b: null
		t.Fatalf("hashed range: %d docs, want %d (+ nulls)", len(ids), n)
	}
	if !r.Overlaps(mustRange(t, ns, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 19}}, bson.D{{Key: "a", Value: 30}})) ||
		r.Overlaps(mustRange(t, ns, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 20}}, bson.D{{Key: "a", Value: 30}})) ||
		!top.Overlaps(mustRange(t, ns, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 60}}, bson.D{{Key: "a", Value: 70}})) {
		t.Fatal("Overlaps wrong")
	}
}

// waitFor polls cond until it holds (5 s at most).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Inserts into a held range wait, inserts elsewhere and other namespaces
// do not; updates (documents unknown) of the namespace wait; Enter waits
// for the running writes; a timeout ends a section as aborted.
func TestCriticalSections(t *testing.T) {
	ctx := ctxT(t)
	cs := NewCriticalSections()
	r := mustRange(t, "db.c", bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 10}}, bson.D{{Key: "a", Value: 20}})
	in := []bson.Raw{raw(t, bson.D{{Key: "a", Value: 15}})}
	out := []bson.Raw{raw(t, bson.D{{Key: "a", Value: 25}})}

	running, _, _, err := cs.BeginWrite(ctx, "db.c", nil)
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan *Section, 1)
	go func() {
		s, err := cs.Enter(ctx, r, 0)
		if err != nil {
			t.Error(err)
		}
		entered <- s
	}()
	// Enter blocks new writes at once but waits for the running one.
	waitFor(t, func() bool { return cs.Held("db.c") })
	select {
	case <-entered:
		t.Fatal("Enter returned while a write was running")
	default:
	}
	running()
	sec := <-entered

	for name, tc := range map[string]struct {
		ns   string
		docs []bson.Raw
	}{"outside": {"db.c", out}, "otherNS": {"db.d", in}, "otherNSUpdate": {"db.d", nil}} {
		done, waited, _, err := cs.BeginWrite(ctx, tc.ns, tc.docs)
		if err != nil || waited {
			t.Fatalf("%s: waited %v, %v", name, waited, err)
		}
		done()
	}
	if _, err := cs.Enter(ctx, mustRange(t, "db.c", bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 0}}, bson.D{{Key: "a", Value: 11}}), 0); mongoerr.CodeOf(err) != mongoerr.ConflictingOperationInProgress {
		t.Fatalf("overlapping Enter: %v", err)
	}
	for name, docs := range map[string][]bson.Raw{"insertInRange": in, "update": nil} {
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, waited, _, err := cs.BeginWrite(short, "db.c", docs)
		cancel()
		if !waited || mongoerr.CodeOf(err) != mongoerr.Interrupted {
			t.Fatalf("%s: waited %v, err %v; want a wait interrupted", name, waited, err)
		}
	}
	res := make(chan bool, 1)
	go func() {
		done, _, committed, err := cs.BeginWrite(ctx, "db.c", in)
		if err != nil {
			t.Error(err)
			res <- false
			return
		}
		done()
		res <- committed
	}()
	waitFor(t, func() bool { return cs.Waiting("db.c") == 1 })
	sec.Leave(true)
	sec.Leave(false) // idempotent: the first call decides
	if !<-res {
		t.Fatal("the released write did not learn of the commit")
	}
	// Timeout: the section ends by itself as aborted.
	s2, err := cs.Enter(ctx, r, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done, waited, committed, err := cs.BeginWrite(ctx, "db.c", in)
	if err != nil || !waited || committed {
		t.Fatalf("after timeout: waited %v committed %v %v", waited, committed, err)
	}
	done()
	done() // idempotent
	_ = s2
	if cs.Held("db.c") {
		t.Fatal("still held after the timeout")
	}
}

// Range deletion deletes exactly the range, in batches, with oplog
// entries; tasks are durable and resumed by a new deleter after a
// restart.
func TestRangeDeleter(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	e, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "db.c"
	for i := range 300 {
		insert(t, e, ns, raw(t, bson.D{{Key: "_id", Value: int32(i)}, {Key: "a", Value: int32(i)}}))
	}
	r := mustRange(t, ns, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 100}}, bson.D{{Key: "a", Value: 200}})
	// Recorded, not run: the store closes (a crash or a step-down).
	d := NewRangeDeleter(e, logging.Nop(), 7)
	id, err := d.Schedule(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := d.Pending(); err != nil || len(p) != 1 || p[0].String() != r.String() {
		t.Fatalf("pending: %v %v", p, err)
	}
	before := e.LastOpTime()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d = NewRangeDeleter(e, logging.Nop(), 7)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx, 10*time.Millisecond) }()
	n, err := d.Wait(ctx, id)
	if err != nil || n != 100 {
		t.Fatalf("wait: %d %v", n, err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if p, _ := d.Pending(); len(p) != 0 {
		t.Fatalf("tasks left: %v", p)
	}
	for i := range 300 {
		_, ok, err := e.Get(ns, bson.RawValue{Type: bson.TypeInt32, Value: raw(t, bson.D{{Key: "v", Value: int32(i)}}).Lookup("v").Value})
		if err != nil || ok != (i < 100 || i >= 200) {
			t.Fatalf("_id %d present %v (%v)", i, ok, err)
		}
	}
	entries, err := e.ReadOplog(before, 0)
	if err != nil {
		t.Fatal(err)
	}
	dels := 0
	for _, en := range entries {
		if en.NS == ns && en.Op == storage.OpDelete {
			dels++
		}
	}
	if dels != 100 {
		t.Fatalf("%d delete entries, want 100", dels)
	}
	if res, err := e.Validate(ctx, ns); err != nil || !res.Valid {
		t.Fatalf("validate: %+v %v", res, err)
	}
}

// A deleter whose member is not writable deletes nothing and keeps the
// task; once writable again (the next Run pass) it deletes the range.
func TestRangeDeleterNotWritable(t *testing.T) {
	ctx := ctxT(t)
	e := openEngine(t)
	const ns = "db.c"
	for i := range 20 {
		insert(t, e, ns, raw(t, bson.D{{Key: "_id", Value: int32(i)}, {Key: "a", Value: int32(i)}}))
	}
	r := mustRange(t, ns, bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 0}}, bson.D{{Key: "a", Value: 10}})
	d := NewRangeDeleter(e, logging.Nop(), 3)
	var mu sync.Mutex
	writable := false
	refusals := 0
	d.CheckWritable = func() error {
		mu.Lock()
		defer mu.Unlock()
		if !writable {
			refusals++
			return mongoerr.New(mongoerr.NotWritablePrimary, "not primary")
		}
		return nil
	}
	id, err := d.Schedule(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = d.Run(rctx, 5*time.Millisecond) }()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return refusals >= 2 })
	if st, _ := e.Stats(ns); st.Count != 20 {
		t.Fatalf("deleted while not writable: %d left", st.Count)
	}
	mu.Lock()
	writable = true
	mu.Unlock()
	if n, err := d.Wait(ctx, id); err != nil || n != 10 {
		t.Fatalf("wait: %d %v", n, err)
	}
	if st, _ := e.Stats(ns); st.Count != 10 {
		t.Fatalf("%d left, want 10", st.Count)
	}
}
