package server

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
	"github.com/psdb/psdb/pkg/shardclient"
)

// fakeRouting describes database "db" (primary s0) and collection "db.c"
// sharded on {k: 1}: k < 0 lives on s0, k >= 0 on s1.
type fakeRouting struct{}

var fakeColl = catalog.Collection{NS: "db.c", UUID: "u", Epoch: "e", Sharded: true, Key: catalog.ShardKey{{Field: "k"}}}

func (fakeRouting) Collection(ns string) (catalog.Collection, bool) {
	return fakeColl, ns == fakeColl.NS
}
func (fakeRouting) Database(name string) (catalog.Database, bool) {
	return catalog.Database{Name: "db", PrimaryShard: "s0"}, name == "db"
}
func (fakeRouting) ChunkFor(_ string, vals []bson.RawValue) (catalog.Chunk, error) {
	if n, ok := vals[0].AsInt64OK(); ok && n < 0 {
		return catalog.Chunk{Shard: "s0"}, nil
	}
	return catalog.Chunk{Shard: "s1"}, nil
}
func (fakeRouting) ChunksOverlapping(string, []byte, []byte) ([]catalog.Chunk, error) {
	return []catalog.Chunk{{Shard: "s0"}, {Shard: "s1"}}, nil
}
func (fakeRouting) ShardsFor(string) ([]string, error) { return []string{"s0", "s1"}, nil }
func (fakeRouting) ShardVersion(string, string) (catalog.CollVersion, error) {
	return catalog.CollVersion{}, nil
}
func (fakeRouting) Databases() []catalog.Database {
	return []catalog.Database{{Name: "db", PrimaryShard: "s0"}}
}
func (fakeRouting) Collections(string) []catalog.Collection {
	return []catalog.Collection{fakeColl}
}
func (fakeRouting) Shards() []catalog.Shard { return []catalog.Shard{{Name: "s0"}, {Name: "s1"}} }

// fakeShard keeps documents in memory and serves cursors in small pages
// (pageSize documents per getMore) so the router reads many batches.
type fakeShard struct {
	mu       sync.Mutex
	docs     []bson.Raw
	cursors  map[int64][]bson.Raw
	nextID   int64
	pageSize int
	killed   int
	// shardParts and wholePipelines count the aggregate calls.
	shardParts, wholePipelines int
}

func (f *fakeShard) Insert(_ context.Context, _ string, docs []bson.Raw, o shardclient.WriteOptions) (*shardclient.WriteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &shardclient.WriteResult{}
	for i, d := range docs {
		id := d.Lookup("_id")
		if slices.ContainsFunc(f.docs, func(x bson.Raw) bool { return x.Lookup("_id").Equal(id) }) {
			r.WriteErrors = append(r.WriteErrors, shardclient.WriteError{Index: i, Err: mongoerr.New(mongoerr.DuplicateKey, "E11000 duplicate key")})
			if o.Ordered {
				break
			}
			continue
		}
		f.docs = append(f.docs, d)
		r.N++
	}
	return r, nil
}

func (f *fakeShard) Update(context.Context, string, []shardclient.UpdateStatement, shardclient.WriteOptions) (*shardclient.WriteResult, error) {
	return nil, mongoerr.New(mongoerr.IllegalOperation, "not in the fake")
}

func (f *fakeShard) Delete(_ context.Context, _ string, stmts []shardclient.DeleteStatement, _ shardclient.WriteOptions) (*shardclient.WriteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &shardclient.WriteResult{}
	for _, st := range stmts {
		flt, err := query.ParseFilter(st.Filter)
		if err != nil {
			return nil, err
		}
		for i := 0; i < len(f.docs); i++ {
			if flt.Match(f.docs[i]) {
				f.docs = slices.Delete(f.docs, i, i+1)
				i--
				r.N++
				if st.Limit == 1 {
					break
				}
			}
		}
	}
	return r, nil
}

func (f *fakeShard) Find(_ context.Context, _ string, q shardclient.Find) (*shardclient.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []bson.Raw
	flt, err := query.ParseFilter(q.Filter)
	if err != nil {
		return nil, err
	}
	for _, d := range f.docs {
		if flt.Match(d) {
			out = append(out, d)
		}
	}
	if len(q.Sort) > 5 {
		s, err := query.ParseSort(q.Sort)
		if err != nil {
			return nil, err
		}
		slices.SortStableFunc(out, s.Compare)
	}
	out = out[min(int(q.Skip), len(out)):]
	if q.Limit > 0 {
		out = out[:min(int(q.Limit), len(out))]
	}
	n := len(out)
	if q.BatchSize != nil {
		n = min(n, int(*q.BatchSize))
	}
	return f.page(out, n), nil
}

// page returns the first n docs and keeps the rest under a cursor.
func (f *fakeShard) page(docs []bson.Raw, n int) *shardclient.Batch {
	b := &shardclient.Batch{NS: "db.c", Docs: docs[:n]}
	if n < len(docs) {
		f.nextID++
		f.cursors[f.nextID] = docs[n:]
		b.CursorID = f.nextID
	}
	return b
}

func (f *fakeShard) GetMore(_ context.Context, _ string, id int64, _ int32) (*shardclient.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rest, ok := f.cursors[id]
	if !ok {
		return nil, mongoerr.New(mongoerr.CursorNotFound, "cursor id %d not found", id)
	}
	delete(f.cursors, id)
	return f.page(rest, min(f.pageSize, len(rest))), nil
}

func (f *fakeShard) KillCursors(_ context.Context, _ string, ids ...int64) ([]int64, []int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if _, ok := f.cursors[id]; ok {
			delete(f.cursors, id)
			f.killed++
		}
	}
	return ids, nil, nil
}

func (f *fakeShard) Count(context.Context, string, bson.Raw, int64, int64) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.docs)), nil
}
func (f *fakeShard) ListCollections(context.Context, string) ([]string, error) { return nil, nil }
func (f *fakeShard) CreateCollection(context.Context, string) error            { return nil }
func (f *fakeShard) DropCollection(context.Context, string) (int, error)       { return 1, nil }

// fakeBackend is a Backend over fakeRouting and two fake shards.
type fakeBackend struct{ shards map[string]*fakeShard }

func newFakeBackend() *fakeBackend {
	return &fakeBackend{shards: map[string]*fakeShard{
		"s0": {cursors: map[int64][]bson.Raw{}, pageSize: 3},
		"s1": {cursors: map[int64][]bson.Raw{}, pageSize: 2},
	}}
}

func (b *fakeBackend) Routing() (Routing, error)                          { return fakeRouting{}, nil }
func (b *fakeBackend) Shard(name string) (ShardConn, error)               { return b.shards[name], nil }
func (b *fakeBackend) EnsureDatabase(context.Context, string) error       { return nil }
func (b *fakeBackend) DropCollectionRecord(context.Context, string) error { return nil }

func (b *fakeBackend) openCursors() int {
	n := 0
	for _, s := range b.shards {
		s.mu.Lock()
		n += len(s.cursors)
		s.mu.Unlock()
	}
	return n
}

// drain runs find and getMore until the cursor is exhausted and returns
// the n fields in order and the number of batches.
func drain(t *testing.T, s *Server, find bson.D, getMoreBatch int32) ([]int64, int) {
	t.Helper()
	r := run(t, s, "db", find)
	if ok, code, msg := replyCode(t, r); !ok {
		t.Fatalf("find: %d %s", code, msg)
	}
	var out []int64
	batches := 0
	key := "firstBatch"
	for {
		batches++
		vals, _ := r.Lookup("cursor", key).Array().Values()
		for _, v := range vals {
			// n, or _id (equal to n) when a projection removed n.
			f, err := v.Document().LookupErr("n")
			if err != nil {
				f = v.Document().Lookup("_id")
			}
			out = append(out, f.AsInt64())
		}
		id := r.Lookup("cursor", "id").Int64()
		if id == 0 {
			return out, batches
		}
		key = "nextBatch"
		r = run(t, s, "db", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: getMoreBatch}})
		if ok, code, msg := replyCode(t, r); !ok {
			t.Fatalf("getMore: %d %s", code, msg)
		}
	}
}

// The router merges the shards' sorted streams with the query library's
// order and applies skip and limit after the merge, over many batches.
func TestFindMergesSortedStreams(t *testing.T) {
	cases := []struct {
		name               string
		sort, proj         bson.D
		skip, limit, batch int64
		want               func() []int64
	}{
		{name: "ascending", sort: bson.D{{Key: "n", Value: 1}}, batch: 4, want: func() []int64 { return seq(0, 40, 1) }},
		{name: "descending skip limit", sort: bson.D{{Key: "n", Value: -1}}, skip: 5, limit: 12, batch: 5, want: func() []int64 { return seq(34, 22, -1) }},
		{name: "skip past the end", sort: bson.D{{Key: "n", Value: 1}}, skip: 50, batch: 3, want: func() []int64 { return nil }},
		{name: "limit inside the first batch", sort: bson.D{{Key: "n", Value: 1}}, skip: 1, limit: 3, batch: 10, want: func() []int64 { return seq(1, 4, 1) }},
		{name: "unsorted, all", batch: 7, want: func() []int64 { return seq(0, 40, 1) }},
		{name: "projection without the sort key", sort: bson.D{{Key: "n", Value: -1}}, proj: bson.D{{Key: "_id", Value: 1}},
			limit: 9, batch: 4, want: func() []int64 { return seq(39, 30, -1) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBackend()
			// n even on s0 (k < 0), odd on s1.
			for n := range 40 {
				k := n
				sh := b.shards["s1"]
				if n%2 == 0 {
					k, sh = -n-1, b.shards["s0"]
				}
				sh.docs = append(sh.docs, doc(t, bson.D{{Key: "_id", Value: n}, {Key: "k", Value: k}, {Key: "n", Value: n}}))
			}
			s := newServer(Options{Backend: b})
			defer s.Close()
			find := bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: tc.batch}}
			if tc.sort != nil {
				find = append(find, bson.E{Key: "sort", Value: tc.sort})
			}
			if tc.proj != nil {
				find = append(find, bson.E{Key: "projection", Value: tc.proj})
			}
			if tc.skip > 0 {
				find = append(find, bson.E{Key: "skip", Value: tc.skip})
			}
			if tc.limit > 0 {
				find = append(find, bson.E{Key: "limit", Value: tc.limit})
			}
			got, batches := drain(t, s, find, int32(tc.batch))
			want := tc.want()
			if tc.sort == nil {
				slices.Sort(got)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			if len(want) > int(tc.batch) && batches < 2 {
				t.Fatalf("%d batches", batches)
			}
			if n := b.openCursors(); n != 0 {
				t.Fatalf("%d shard cursors left open", n)
			}
		})
	}
}

func seq(from, to, step int64) []int64 {
	var out []int64
	for n := from; n != to; n += step {
		out = append(out, n)
	}
	return out
}

// killCursors and Close close the shard cursors of router cursors.
func TestKillCursorsClosesShardCursors(t *testing.T) {
	b := newFakeBackend()
	for n := range 20 {
		b.shards["s1"].docs = append(b.shards["s1"].docs, doc(t, bson.D{{Key: "_id", Value: n}, {Key: "k", Value: n}, {Key: "n", Value: n}}))
		b.shards["s0"].docs = append(b.shards["s0"].docs, doc(t, bson.D{{Key: "_id", Value: -n - 1}, {Key: "k", Value: -n - 1}, {Key: "n", Value: n}}))
	}
	s := newServer(Options{Backend: b})
	r := run(t, s, "db", bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: 2}})
	id := r.Lookup("cursor", "id").Int64()
	if id == 0 || b.openCursors() != 2 {
		t.Fatalf("cursor %d, %d shard cursors", id, b.openCursors())
	}
	r = run(t, s, "db", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{id, int64(12345)}}})
	if k, _ := r.Lookup("cursorsKilled").Array().Values(); len(k) != 1 || b.openCursors() != 0 {
		t.Fatalf("killCursors: %s; %d shard cursors open", r, b.openCursors())
	}
	r = run(t, s, "db", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
	if _, code, _ := replyCode(t, r); code != int32(mongoerr.CursorNotFound) {
		t.Fatalf("getMore after kill: %s", r)
	}
	run(t, s, "db", bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: 2}})
	s.Close()
	if n := b.openCursors(); n != 0 {
		t.Fatalf("Close left %d shard cursors open", n)
	}
}

// Ordered inserts stop at the first error across shards, in document
// order; unordered inserts report every error and insert the rest.
func TestInsertOrderedAndUnordered(t *testing.T) {
	cases := []struct {
		name      string
		ordered   bool
		wantN     int32
		wantIdx   []int32
		wantCodes []int32
		stored    int
	}{
		// docs: k=-1 (s0), k=1 (s1, duplicate), k=-2 (s0), no key, k=2 (s1)
		{name: "ordered", ordered: true, wantN: 1, wantIdx: []int32{1}, wantCodes: []int32{11000}, stored: 1},
		{name: "unordered", ordered: false, wantN: 3, wantIdx: []int32{1, 3}, wantCodes: []int32{11000, 61}, stored: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBackend()
			b.shards["s1"].docs = []bson.Raw{doc(t, bson.D{{Key: "_id", Value: "dup"}, {Key: "k", Value: 1}})}
			s := newServer(Options{Backend: b})
			defer s.Close()
			r := run(t, s, "db", bson.D{{Key: "insert", Value: "c"}, {Key: "ordered", Value: tc.ordered}, {Key: "documents", Value: bson.A{
				bson.D{{Key: "_id", Value: "a"}, {Key: "k", Value: -1}},
				bson.D{{Key: "_id", Value: "dup"}, {Key: "k", Value: 1}},
				bson.D{{Key: "_id", Value: "b"}, {Key: "k", Value: -2}},
				bson.D{{Key: "_id", Value: "c"}},
				bson.D{{Key: "_id", Value: "d"}, {Key: "k", Value: 2}},
			}}})
			if n := r.Lookup("n").Int32(); n != tc.wantN {
				t.Fatalf("n = %d, want %d: %s", n, tc.wantN, r)
			}
			errs, _ := r.Lookup("writeErrors").Array().Values()
			var idx, codes []int32
			for _, e := range errs {
				idx = append(idx, e.Document().Lookup("index").Int32())
				codes = append(codes, e.Document().Lookup("code").Int32())
			}
			if !slices.Equal(idx, tc.wantIdx) || !slices.Equal(codes, tc.wantCodes) {
				t.Fatalf("writeErrors %s", r)
			}
			stored := len(b.shards["s0"].docs) + len(b.shards["s1"].docs) - 1
			if stored != tc.stored {
				t.Fatalf("%d documents stored, want %d", stored, tc.stored)
			}
		})
	}
}

// A limit-1 delete without the shard key tries the shards one at a time
// and deletes exactly one document.
func TestDeleteOneWithoutShardKey(t *testing.T) {
	b := newFakeBackend()
	b.shards["s0"].docs = []bson.Raw{doc(t, bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: -1}, {Key: "x", Value: 1}})}
	b.shards["s1"].docs = []bson.Raw{doc(t, bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: 1}, {Key: "x", Value: 1}})}
	s := newServer(Options{Backend: b})
	defer s.Close()
	r := run(t, s, "db", bson.D{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "limit", Value: 1}}}}})
	if n := r.Lookup("n").Int32(); n != 1 || len(b.shards["s0"].docs)+len(b.shards["s1"].docs) != 1 {
		t.Fatalf("delete: %s", r)
	}
	r = run(t, s, "db", bson.D{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{}}, {Key: "limit", Value: 0}}}}})
	if n := r.Lookup("n").Int32(); n != 1 {
		t.Fatalf("delete many: %s", r)
	}
}

// An idle cursor is reaped after CursorTimeout and its shard cursors are
// closed; a cursor in use is not.
func TestIdleCursorReaped(t *testing.T) {
	b := newFakeBackend()
	for n := range 10 {
		b.shards["s1"].docs = append(b.shards["s1"].docs, doc(t, bson.D{{Key: "_id", Value: n}, {Key: "k", Value: n}, {Key: "n", Value: n}}))
	}
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := newServer(Options{Backend: b, CursorTimeout: time.Minute, Now: clock})
	defer s.Close()
	r := run(t, s, "db", bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: 2}})
	id := r.Lookup("cursor", "id").Int64()
	mu.Lock()
	now = now.Add(30 * time.Second)
	mu.Unlock()
	s.cursors.reapOnce()
	if _, ok := s.cursors.get(id); !ok {
		t.Fatal("cursor reaped before its timeout")
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	s.cursors.reapOnce()
	if _, ok := s.cursors.get(id); ok || b.openCursors() != 0 {
		t.Fatalf("idle cursor not reaped (%d shard cursors open)", b.openCursors())
	}
}

// BenchmarkFindSortedMerge measures the router's side of a sorted
// scatter-gather find (2 fake shards x 5000 documents, batches of 1000):
// dispatch, merge, skip/limit and reply encoding, without the network.
func BenchmarkFindSortedMerge(b *testing.B) {
	be := newFakeBackend()
	be.shards["s0"].pageSize, be.shards["s1"].pageSize = 1000, 1000
	for n := range 10000 {
		k, sh := n, be.shards["s1"]
		if n%2 == 0 {
			k, sh = -n-1, be.shards["s0"]
		}
		raw, _ := bson.Marshal(bson.D{{Key: "_id", Value: n}, {Key: "k", Value: k}, {Key: "n", Value: n}})
		sh.docs = append(sh.docs, raw)
	}
	s := newServer(Options{Backend: be})
	defer s.Close()
	ci := &ConnInfo{ID: 1}
	find, _ := bson.Marshal(bson.D{{Key: "find", Value: "c"}, {Key: "sort", Value: bson.D{{Key: "n", Value: 1}}},
		{Key: "batchSize", Value: 1000}, {Key: "$db", Value: "db"}})
	b.ReportAllocs()
	for b.Loop() {
		r, _ := s.dispatch(ci, "", find, false)
		for id := r.Lookup("cursor", "id").Int64(); id != 0; id = r.Lookup("cursor", "id").Int64() {
			gm, _ := bson.Marshal(bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: 1000}, {Key: "$db", Value: "db"}})
			r, _ = s.dispatch(ci, "", gm, false)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/doc")
}
