package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

const ns = "test.c"

type fixture struct {
	srv *Server
	cli *shardclient.Client
	eng *storage.Engine
}

// start serves a Server over a real store in a temporary directory on a
// real gRPC listener on 127.0.0.1:0, and returns a client of it.
func start(t *testing.T, opts Options) *fixture { return startTB(t, opts) }

func startB(b *testing.B) *fixture { return startTB(b, Options{}) }

func startTB(t testing.TB, opts Options) *fixture {
	t.Helper()
	m := servertest.Start(t, func(e *storage.Engine) (*Server, error) {
		opts.Engine = e
		return New(opts)
	}, servertest.Options{})
	return &fixture{srv: m.Server, cli: m.Client, eng: m.Engine}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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

func insertN(t *testing.T, f *fixture, n, pad int) {
	t.Helper()
	const chunk = 500
	for lo := 0; lo < n; lo += chunk {
		var docs []bson.Raw
		for i := lo; i < min(lo+chunk, n); i++ {
			docs = append(docs, raw(t, bson.D{{Key: "_id", Value: i}, {Key: "a", Value: i % 10}, {Key: "tag", Value: fmt.Sprintf("t%d", i%3)}, {Key: "pad", Value: strings.Repeat("x", pad)}}))
		}
		res, err := f.cli.Insert(ctxT(t), ns, docs, shardclient.WriteOptions{Ordered: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.N != int64(len(docs)) || len(res.WriteErrors) != 0 {
			t.Fatalf("insert: n=%d errors=%v", res.N, res.WriteErrors)
		}
	}
}

func ids(t *testing.T, docs []bson.Raw) []int32 {
	t.Helper()
	out := make([]int32, len(docs))
	for i, d := range docs {
		out[i] = d.Lookup("_id").Int32()
	}
	return out
}

func wantCode(t *testing.T, err error, code mongoerr.Code) {
	t.Helper()
	if got := mongoerr.CodeOf(err); got != code {
		t.Fatalf("error %v: code %s, want %s", err, got, code)
	}
}

func TestFindGetMoreBatches(t *testing.T) {
	f := start(t, Options{})
	ctx := ctxT(t)
	insertN(t, f, 1000, 10)

	b, err := f.cli.Find(ctx, ns, shardclient.Find{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Docs) != DefaultFirstBatch || b.CursorID == 0 {
		t.Fatalf("first batch: %d docs, cursor %d; want %d and an open cursor", len(b.Docs), b.CursorID, DefaultFirstBatch)
	}
	all := append([]bson.Raw(nil), b.Docs...)
	batches := 1
	for id := b.CursorID; id != 0; {
		nb, err := f.cli.GetMore(ctx, ns, id, 150)
		if err != nil {
			t.Fatal(err)
		}
		if len(nb.Docs) > 150 {
			t.Fatalf("getMore returned %d > batchSize 150", len(nb.Docs))
		}
		all = append(all, nb.Docs...)
		id = nb.CursorID
		batches++
	}
	if len(all) != 1000 || batches != 7 { // 101 + 6*150 >= 1000: the 6th getMore reads the end and closes
		t.Fatalf("got %d docs in %d batches", len(all), batches)
	}
	for i, id := range ids(t, all) {
		if id != int32(i) {
			t.Fatalf("doc %d has _id %d", i, id)
		}
	}
	if n := f.srv.OpenCursors(); n != 0 {
		t.Fatalf("%d cursors open after exhaustion", n)
	}

	tests := []struct {
		name      string
		find      shardclient.Find
		wantFirst int
		wantTotal int
		open      bool
	}{
		{"limit below batch", shardclient.Find{Limit: 5}, 5, 5, false},
		{"limit above batch", shardclient.Find{Limit: 300}, 101, 300, true},
		{"single batch with limit", shardclient.Find{Limit: 250, BatchSize: shardclient.BatchSize(250), SingleBatch: true}, 250, 250, false},
		{"batch size 0 opens empty", shardclient.Find{BatchSize: shardclient.BatchSize(0)}, 0, 1000, true},
		{"single batch", shardclient.Find{BatchSize: shardclient.BatchSize(10), SingleBatch: true}, 10, 10, false},
		{"filter sort skip", shardclient.Find{Filter: raw(t, bson.D{{Key: "a", Value: 3}}), Sort: raw(t, bson.D{{Key: "_id", Value: -1}}), Skip: 2, BatchSize: shardclient.BatchSize(7)}, 7, 98, true},
		{"exact fit closes", shardclient.Find{Filter: raw(t, bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: 20}}}}), BatchSize: shardclient.BatchSize(20)}, 20, 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := f.cli.Find(ctx, ns, tt.find)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Docs) != tt.wantFirst || (b.CursorID != 0) != tt.open {
				t.Fatalf("first batch %d docs cursor %d; want %d open=%v", len(b.Docs), b.CursorID, tt.wantFirst, tt.open)
			}
			docs, err := f.cli.Drain(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) != tt.wantTotal {
				t.Fatalf("total %d, want %d", len(docs), tt.wantTotal)
			}
		})
	}
	if n := f.srv.OpenCursors(); n != 0 {
		t.Fatalf("%d cursors open after draining", n)
	}
}

func TestBatchBytesLimit(t *testing.T) {
	f := start(t, Options{})
	ctx := ctxT(t)
	insertN(t, f, 24, 1<<20) // 24 documents of 1 MiB
	b, err := f.cli.Find(ctx, ns, shardclient.Find{})
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, d := range b.Docs {
		size += len(d)
	}
	if size > MaxBatchBytes || len(b.Docs) < 14 || len(b.Docs) >= 24 || b.CursorID == 0 {
		t.Fatalf("first batch: %d docs, %d bytes, cursor %d", len(b.Docs), size, b.CursorID)
	}
	docs, err := f.cli.Drain(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 24 {
		t.Fatalf("got %d docs, want 24", len(docs))
	}
}

func TestKillCursorsAndTimeout(t *testing.T) {
	f := start(t, Options{CursorTimeout: 250 * time.Millisecond})
	ctx := ctxT(t)
	insertN(t, f, 300, 0)

	b, err := f.cli.Find(ctx, ns, shardclient.Find{BatchSize: shardclient.BatchSize(10)})
	if err != nil {
		t.Fatal(err)
	}
	killed, notFound, err := f.cli.KillCursors(ctx, ns, b.CursorID, 12345)
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 1 || killed[0] != b.CursorID || len(notFound) != 1 || notFound[0] != 12345 {
		t.Fatalf("killed %v notFound %v", killed, notFound)
	}
	_, err = f.cli.GetMore(ctx, ns, b.CursorID, 0)
	wantCode(t, err, mongoerr.CursorNotFound)

	// Wrong namespace.
	b, err = f.cli.Find(ctx, ns, shardclient.Find{BatchSize: shardclient.BatchSize(10)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.cli.GetMore(ctx, "test.other", b.CursorID, 0)
	wantCode(t, err, mongoerr.Unauthorized)

	// The idle cursor is reaped.
	deadline := time.Now().Add(10 * time.Second)
	for f.srv.OpenCursors() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle cursor not reaped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err = f.cli.GetMore(ctx, ns, b.CursorID, 0)
	wantCode(t, err, mongoerr.CursorNotFound)

	// A cursor in steady use is not reaped.
	b, err = f.cli.Find(ctx, ns, shardclient.Find{BatchSize: shardclient.BatchSize(1)})
	if err != nil {
		t.Fatal(err)
	}
	// (25 x 15 ms outlasts the timeout; each getMore restarts the idle clock)
	for i := 0; i < 25; i++ {
		nb, err := f.cli.GetMore(ctx, ns, b.CursorID, 1)
		if err != nil {
			t.Fatalf("getMore %d: %v", i, err)
		}
		if nb.CursorID != b.CursorID {
			t.Fatal("cursor closed early")
		}
		time.Sleep(15 * time.Millisecond)
	}
}

func TestWrites(t *testing.T) {
	f := start(t, Options{})
	ctx := ctxT(t)
	insertN(t, f, 100, 0)

	// update many
	res, err := f.cli.Update(ctx, ns, []shardclient.UpdateStatement{
		{Filter: raw(t, bson.D{{Key: "a", Value: 1}}), Update: raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "b", Value: true}}}}), Multi: true},
		{Filter: raw(t, bson.D{{Key: "_id", Value: 1000}}), Update: raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 77}}}}), Upsert: true},
		{Filter: raw(t, bson.D{{Key: "_id", Value: 2}}), Update: raw(t, bson.D{{Key: "$inc", Value: bson.D{{Key: "a", Value: 0}}}})},
	}, shardclient.WriteOptions{Ordered: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.N != 12 || res.NModified != 10 || len(res.Upserted) != 1 || res.Upserted[0].Index != 1 || res.Upserted[0].ID.Int32() != 1000 {
		t.Fatalf("update: %+v", res)
	}
	if res.OpTime == nil || res.OpTime.GetIndex() == 0 {
		t.Fatalf("update: no optime: %+v", res.OpTime)
	}
	n, err := f.cli.Count(ctx, ns, raw(t, bson.D{{Key: "b", Value: true}}), 0, 0)
	if err != nil || n != 10 {
		t.Fatalf("count b=true: %d %v", n, err)
	}

	// delete one, delete many
	res, err = f.cli.Delete(ctx, ns, []shardclient.DeleteStatement{
		{Filter: raw(t, bson.D{{Key: "a", Value: 2}}), Limit: 1},
		{Filter: raw(t, bson.D{{Key: "a", Value: 3}}), Limit: 0},
	}, shardclient.WriteOptions{Ordered: true})
	if err != nil || res.N != 11 {
		t.Fatalf("delete: %+v %v", res, err)
	}
	n, err = f.cli.Count(ctx, ns, nil, 0, 0)
	if err != nil || n != 90 {
		t.Fatalf("count: %d %v", n, err)
	}
	n, err = f.cli.Count(ctx, ns, nil, 5, 10)
	if err != nil || n != 10 {
		t.Fatalf("count skip/limit: %d %v", n, err)
	}

	// findAndModify
	fm, err := f.cli.FindAndModify(ctx, ns, shardclient.FindAndModify{
		Filter: raw(t, bson.D{{Key: "a", Value: 4}}), Sort: raw(t, bson.D{{Key: "_id", Value: -1}}),
		Update: raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "seen", Value: 1}}}}), New: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !fm.Matched || !fm.UpdatedExisting || fm.Value.Lookup("_id").Int32() != 94 || fm.Value.Lookup("seen").Int32() != 1 {
		t.Fatalf("findAndModify: %+v %s", fm, fm.Value)
	}
	fm, err = f.cli.FindAndModify(ctx, ns, shardclient.FindAndModify{Filter: raw(t, bson.D{{Key: "a", Value: 999}}), Remove: true})
	if err != nil || fm.Matched || fm.Value != nil {
		t.Fatalf("findAndModify no match: %+v %v", fm, err)
	}

	// distinct
	vals, err := f.cli.Distinct(ctx, ns, "tag", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vals {
		got = append(got, v.StringValue())
	}
	if strings.Join(got, ",") != "t0,t1,t2" {
		t.Fatalf("distinct: %v", got)
	}

	// aggregate, through a cursor
	b, err := f.cli.Aggregate(ctx, ns, []bson.Raw{
		raw(t, bson.D{{Key: "$match", Value: bson.D{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}}}}}}),
		raw(t, bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$tag"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}}),
		raw(t, bson.D{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}}),
	}, shardclient.BatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Docs) != 2 || b.CursorID == 0 {
		t.Fatalf("aggregate first batch: %d docs cursor %d", len(b.Docs), b.CursorID)
	}
	docs, err := f.cli.Drain(ctx, b)
	// groups: null (the upserted document has no tag), t0, t1, t2
	if err != nil || len(docs) != 4 || docs[1].Lookup("_id").StringValue() != "t0" || docs[1].Lookup("n").Int32() != 30 {
		t.Fatalf("aggregate: %v %v", docs, err)
	}

	// aggregate's shard part: $skip stays on the router, $avg sends its
	// partial {sum, count}.
	skipAvg := []bson.Raw{
		raw(t, bson.D{{Key: "$match", Value: bson.D{{Key: "tag", Value: "t0"}}}}),
		raw(t, bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "avg", Value: bson.D{{Key: "$avg", Value: "$a"}}}}}}),
		raw(t, bson.D{{Key: "$skip", Value: 1}}),
	}
	if b, err = f.cli.Aggregate(ctx, ns, skipAvg, nil); err != nil || len(b.Docs) != 0 {
		t.Fatalf("whole pipeline: %v %v", b, err)
	}
	b, err = f.cli.AggregateShardPart(ctx, ns, skipAvg, nil)
	if err != nil || len(b.Docs) != 1 {
		t.Fatalf("shard part: %v %v", b, err)
	}
	if _, err := b.Docs[0].LookupErr("avg"); err != nil || b.Docs[0].Lookup("avg").Type == bson.TypeDouble {
		t.Fatalf("shard part of $avg: %v, want a partial", b.Docs[0])
	}
}

func TestOrderedUnorderedAndDuplicates(t *testing.T) {
	f := start(t, Options{})
	ctx := ctxT(t)
	if _, err := f.cli.CreateIndexes(ctx, ns, raw(t, bson.D{{Key: "key", Value: bson.D{{Key: "u", Value: 1}}}, {Key: "name", Value: "u_1"}, {Key: "unique", Value: true}})); err != nil {
		t.Fatal(err)
	}
	doc := func(id, u int) bson.Raw { return raw(t, bson.D{{Key: "_id", Value: id}, {Key: "u", Value: u}}) }
	garbage := bson.Raw{9, 0, 0, 0, 0x10, 'a', 0, 1, 0} // truncated
	tests := []struct {
		name    string
		ns      string
		docs    []bson.Raw
		ordered bool
		wantN   int64
		errIdx  []int
		errCode []mongoerr.Code
	}{
		{"ordered stops at duplicate _id", "test.o", []bson.Raw{doc(1, 1), doc(2, 2), doc(1, 3), doc(4, 4)}, true, 2, []int{2}, []mongoerr.Code{mongoerr.DuplicateKey}},
		{"unordered goes on", "test.u", []bson.Raw{doc(1, 1), doc(2, 2), doc(1, 3), doc(4, 4), doc(4, 5)}, false, 3, []int{2, 4}, []mongoerr.Code{mongoerr.DuplicateKey, mongoerr.DuplicateKey}},
		{"unique index", ns, []bson.Raw{doc(1, 1), doc(2, 1), doc(3, 3)}, false, 2, []int{1}, []mongoerr.Code{mongoerr.DuplicateKey}},
		{"invalid BSON document", "test.bad", []bson.Raw{doc(1, 1), garbage, doc(3, 3)}, false, 2, []int{1}, []mongoerr.Code{mongoerr.InvalidBSON}},
		{"invalid BSON ordered", "test.bad2", []bson.Raw{garbage, doc(3, 3)}, true, 0, []int{0}, []mongoerr.Code{mongoerr.InvalidBSON}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := f.cli.Insert(ctx, tt.ns, tt.docs, shardclient.WriteOptions{Ordered: tt.ordered})
			if err != nil {
				t.Fatal(err)
			}
			if res.N != tt.wantN || len(res.WriteErrors) != len(tt.errIdx) {
				t.Fatalf("n=%d errors=%+v", res.N, res.WriteErrors)
			}
			for i, we := range res.WriteErrors {
				if we.Index != tt.errIdx[i] || we.Err.Code != tt.errCode[i] {
					t.Errorf("write error %d: index %d code %s (%s)", i, we.Index, we.Err.Code, we.Err.Msg)
				}
				if we.Err.Code == mongoerr.DuplicateKey {
					if !strings.HasPrefix(we.Err.Msg, "E11000 duplicate key error collection: "+tt.ns) || we.Info == nil || we.Info.Lookup("keyPattern").Type != bson.TypeEmbeddedDocument {
						t.Errorf("duplicate key error: %q info %v", we.Err.Msg, we.Info)
					}
				}
			}
			n, err := f.cli.Count(ctx, tt.ns, nil, 0, 0)
			if err != nil || n != tt.wantN {
				t.Fatalf("count after insert: %d %v", n, err)
			}
		})
	}

	// An update that makes a duplicate: ordered stops, unordered goes on.
	upd := func(id, u int) shardclient.UpdateStatement {
		return shardclient.UpdateStatement{Filter: raw(t, bson.D{{Key: "_id", Value: id}}), Update: raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "u", Value: u}}}})}
	}
	res, err := f.cli.Update(ctx, ns, []shardclient.UpdateStatement{upd(3, 1), upd(3, 30)}, shardclient.WriteOptions{Ordered: true})
	if err != nil || len(res.WriteErrors) != 1 || res.WriteErrors[0].Err.Code != mongoerr.DuplicateKey || res.NModified != 0 {
		t.Fatalf("ordered update: %+v %v", res, err)
	}
	res, err = f.cli.Update(ctx, ns, []shardclient.UpdateStatement{upd(3, 1), upd(3, 30)}, shardclient.WriteOptions{Ordered: false})
	if err != nil || len(res.WriteErrors) != 1 || res.NModified != 1 {
		t.Fatalf("unordered update: %+v %v", res, err)
	}
}

func TestIndexesAndExplain(t *testing.T) {
	f := start(t, Options{})
	ctx := ctxT(t)
	insertN(t, f, 200, 0)
	spec := raw(t, bson.D{{Key: "v", Value: 2}, {Key: "key", Value: bson.D{{Key: "a", Value: 1}, {Key: "tag", Value: -1}}}, {Key: "name", Value: "a_1_tag_-1"}})
	r, err := f.cli.CreateIndexes(ctx, ns, spec)
	if err != nil {
		t.Fatal(err)
	}
	if r.NumIndexesBefore != 1 || r.NumIndexesAfter != 2 || r.CreatedCollectionAutomatically || r.Note != "" {
		t.Fatalf("createIndexes: %+v", r)
	}
	r, err = f.cli.CreateIndexes(ctx, ns, spec)
	if err != nil || r.Note != "all indexes already exist" || r.NumIndexesAfter != 2 {
		t.Fatalf("createIndexes again: %+v %v", r, err)
	}
	r, err = f.cli.CreateIndexes(ctx, "test.fresh", raw(t, bson.D{{Key: "key", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "name", Value: "x_1"}, {Key: "sparse", Value: true}}))
	if err != nil || !r.CreatedCollectionAutomatically || r.NumIndexesAfter != 2 {
		t.Fatalf("createIndexes on a new collection: %+v %v", r, err)
	}
	specs, err := f.cli.ListIndexes(ctx, ns)
	if err != nil || len(specs) != 2 || specs[0].Lookup("name").StringValue() != "_id_" || specs[1].Lookup("name").StringValue() != "a_1_tag_-1" {
		t.Fatalf("listIndexes: %v %v", specs, err)
	}
	qp, err := f.cli.Explain(ctx, ns, shardclient.Find{Filter: raw(t, bson.D{{Key: "a", Value: 5}})})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(qp.String(), "IXSCAN") || qp.Lookup("namespace").StringValue() != ns {
		t.Fatalf("explain: %s", qp)
	}
	docs, err := f.cli.FindAll(ctx, ns, shardclient.Find{Filter: raw(t, bson.D{{Key: "a", Value: 5}})})
	if err != nil || len(docs) != 20 {
		t.Fatalf("find by index: %d %v", len(docs), err)
	}
	if docs, err := f.cli.FindAll(ctx, "test.none", shardclient.Find{}); err != nil || len(docs) != 0 {
		t.Fatalf("find on a missing collection: %d %v", len(docs), err)
	}
	if n, err := f.cli.Count(ctx, "test.none", nil, 0, 0); err != nil || n != 0 {
		t.Fatalf("count on a missing collection: %d %v", n, err)
	}
	colls, err := f.cli.ListCollections(ctx, "test")
	if err != nil || strings.Join(colls, ",") != "test.c,test.fresh" {
		t.Fatalf("listCollections: %v %v", colls, err)
	}
	st, err := f.cli.CollStats(ctx, ns)
	if err != nil || st.GetCount() != 200 || st.GetNindexes() != 2 {
		t.Fatalf("collStats: %v %v", st, err)
	}
	v, err := f.cli.Validate(ctx, ns)
	if err != nil || !v.GetValid() || v.GetNRecords() != 200 {
		t.Fatalf("validate: %v %v", v, err)
	}
	was, err := f.cli.DropIndexByKey(ctx, ns, raw(t, bson.D{{Key: "a", Value: 1}, {Key: "tag", Value: -1}}))
	if err != nil || was != 2 {
		t.Fatalf("dropIndexes by key: %d %v", was, err)
	}
	_, err = f.cli.DropIndexes(ctx, ns, "nope")
	wantCode(t, err, mongoerr.IndexNotFound)
	if _, err := f.cli.DropIndexes(ctx, "test.fresh", "*"); err != nil {
		t.Fatal(err)
	}
	if specs, _ := f.cli.ListIndexes(ctx, "test.fresh"); len(specs) != 1 {
		t.Fatalf("after dropIndexes *: %d indexes", len(specs))
	}
	if was, err := f.cli.DropCollection(ctx, "test.fresh"); err != nil || was != 1 {
		t.Fatalf("drop: %d %v", was, err)
	}
	_, err = f.cli.DropCollection(ctx, "test.fresh")
	wantCode(t, err, mongoerr.NamespaceNotFound)
	if err := f.cli.CreateCollection(ctx, "test.empty"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.cli.CreateCollection(ctx, "test.empty"), mongoerr.NamespaceExists)
}

// TestBadInput sends malformed requests: each must fail with a clear
// MongoDB code, never a panic (the dispatcher would turn one into
// InternalError, which the table rejects) or a hang.
func TestBadInput(t *testing.T) {
	f := start(t, Options{})
	ctx := ctxT(t)
	insertN(t, f, 10, 0)
	garbage := []byte{0xff, 0xff, 0xff, 0x7f, 1, 2}
	short := []byte{5, 0, 0}
	pc := shardpb.NewShardClient(f.cli.Conn())
	tests := []struct {
		name string
		call func() error
		code mongoerr.Code
	}{
		{"find garbage filter", func() error { _, err := pc.Find(ctx, &shardpb.FindRequest{Ns: ns, Filter: garbage}); return err }, mongoerr.InvalidBSON},
		{"find short projection", func() error { _, err := pc.Find(ctx, &shardpb.FindRequest{Ns: ns, Projection: short}); return err }, mongoerr.InvalidBSON},
		{"find bad namespace", func() error { _, err := pc.Find(ctx, &shardpb.FindRequest{Ns: "nodot"}); return err }, mongoerr.InvalidNamespace},
		{"find negative skip", func() error { _, err := pc.Find(ctx, &shardpb.FindRequest{Ns: ns, Skip: -1}); return err }, mongoerr.BadValue},
		{"find negative limit", func() error { _, err := pc.Find(ctx, &shardpb.FindRequest{Ns: ns, Limit: -2}); return err }, 51024},
		{"find negative batch", func() error {
			n := int32(-1)
			_, err := pc.Find(ctx, &shardpb.FindRequest{Ns: ns, BatchSize: &n})
			return err
		}, mongoerr.BadValue},
		{"find unknown operator", func() error {
			_, err := pc.Find(ctx, &shardpb.FindRequest{Ns: ns, Filter: raw(t, bson.D{{Key: "a", Value: bson.D{{Key: "$nope", Value: 1}}}})})
			return err
		}, mongoerr.BadValue},
		{"count garbage", func() error { _, err := pc.Count(ctx, &shardpb.CountRequest{Ns: ns, Filter: garbage}); return err }, mongoerr.InvalidBSON},
		{"distinct garbage", func() error {
			_, err := pc.Distinct(ctx, &shardpb.DistinctRequest{Ns: ns, Key: "a", Filter: garbage})
			return err
		}, mongoerr.InvalidBSON},
		{"aggregate garbage stage", func() error {
			_, err := pc.Aggregate(ctx, &shardpb.AggregateRequest{Ns: ns, Pipeline: [][]byte{garbage}})
			return err
		}, mongoerr.InvalidBSON},
		{"explain without find", func() error { _, err := pc.Explain(ctx, &shardpb.ExplainRequest{}); return err }, mongoerr.FailedToParse},
		{"insert nothing", func() error { _, err := pc.Insert(ctx, &shardpb.InsertRequest{Ns: ns}); return err }, mongoerr.InvalidLength},
		{"getMore cursor 0", func() error { _, err := pc.GetMore(ctx, &shardpb.GetMoreRequest{}); return err }, mongoerr.BadValue},
		{"getMore unknown cursor", func() error { _, err := pc.GetMore(ctx, &shardpb.GetMoreRequest{CursorId: 42}); return err }, mongoerr.CursorNotFound},
		{"findAndModify garbage update", func() error {
			_, err := pc.FindAndModify(ctx, &shardpb.FindAndModifyRequest{Ns: ns, Update: garbage})
			return err
		}, mongoerr.InvalidBSON},
		{"createIndexes garbage", func() error {
			_, err := pc.CreateIndexes(ctx, &shardpb.CreateIndexesRequest{Ns: ns, Specs: [][]byte{garbage}})
			return err
		}, mongoerr.InvalidBSON},
		{"createIndexes no key", func() error {
			_, err := pc.CreateIndexes(ctx, &shardpb.CreateIndexesRequest{Ns: ns, Specs: [][]byte{raw(t, bson.D{{Key: "name", Value: "x"}})}})
			return err
		}, mongoerr.FailedToParse},
		{"createIndexes hashed", func() error {
			_, err := pc.CreateIndexes(ctx, &shardpb.CreateIndexesRequest{Ns: ns, Specs: [][]byte{raw(t, bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: "hashed"}}}, {Key: "name", Value: "a_hashed"}})}})
			return err
		}, mongoerr.CannotCreateIndex},
		{"createIndexes unknown option", func() error {
			_, err := pc.CreateIndexes(ctx, &shardpb.CreateIndexesRequest{Ns: ns, Specs: [][]byte{raw(t, bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "name", Value: "a_1"}, {Key: "expireAfterSeconds", Value: 5}})}})
			return err
		}, mongoerr.InvalidIndexSpecificationOption},
		{"dropIndexes nothing", func() error { _, err := pc.DropIndexes(ctx, &shardpb.DropIndexesRequest{Ns: ns}); return err }, mongoerr.FailedToParse},
		{"listIndexes missing", func() error { _, err := pc.ListIndexes(ctx, &shardpb.ListIndexesRequest{Ns: "test.none"}); return err }, mongoerr.NamespaceNotFound},
		{"replication not built", func() error {
			_, err := shardpb.NewReplicationClient(f.cli.Conn()).Status(ctx, &shardpb.StatusRequest{})
			return err
		}, mongoerr.CommandNotFound},
		{"replication stream not built", func() error {
			st, err := shardpb.NewReplicationClient(f.cli.Conn()).PullOplog(ctx, &shardpb.PullOplogRequest{})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}, mongoerr.CommandNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rpcerr.Error(tt.call())
			wantCode(t, err, tt.code)
		})
	}

	// Per-statement bad input is a write error, not a failed call.
	res, err := f.cli.Update(ctx, ns, []shardclient.UpdateStatement{
		{Filter: garbage, Update: raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})},
		{Filter: nil, Update: nil},
		{Filter: raw(t, bson.D{{Key: "_id", Value: 1}}), Update: raw(t, bson.D{{Key: "$bogus", Value: bson.D{{Key: "x", Value: 1}}}})},
		{Filter: raw(t, bson.D{{Key: "_id", Value: 1}}), Update: raw(t, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})},
	}, shardclient.WriteOptions{Ordered: false})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.WriteErrors) != 3 || res.NModified != 1 ||
		res.WriteErrors[0].Err.Code != mongoerr.InvalidBSON || res.WriteErrors[1].Err.Code != mongoerr.FailedToParse {
		t.Fatalf("update with bad statements: %+v", res)
	}
	for _, we := range res.WriteErrors {
		if we.Err.Code == mongoerr.InternalError {
			t.Fatalf("statement %d: InternalError %s", we.Index, we.Err.Msg)
		}
	}
	res, err = f.cli.Delete(ctx, ns, []shardclient.DeleteStatement{{Filter: garbage}, {Limit: 2}}, shardclient.WriteOptions{})
	if err != nil || len(res.WriteErrors) != 2 || res.WriteErrors[0].Err.Code != mongoerr.InvalidBSON || res.WriteErrors[1].Err.Code != mongoerr.FailedToParse {
		t.Fatalf("delete with bad statements: %+v %v", res, err)
	}
}

// TestConcurrent runs writers and cursor readers at once.
func TestConcurrent(t *testing.T) {
	f := start(t, Options{})
	ctx := ctxT(t)
	insertN(t, f, 500, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				id := 10000 + w*1000 + i
				if _, err := f.cli.Insert(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: id}})}, shardclient.WriteOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				docs, err := f.cli.FindAll(ctx, ns, shardclient.Find{BatchSize: shardclient.BatchSize(50), Filter: raw(t, bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: 500}}}})})
				if err != nil {
					errs <- err
					return
				}
				if len(docs) != 500 {
					errs <- fmt.Errorf("reader saw %d docs", len(docs))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, err := f.cli.Count(ctx, ns, nil, 0, 0); err != nil || n != 700 {
		t.Fatalf("count %d %v", n, err)
	}
}

func TestHealthAndClose(t *testing.T) {
	f := start(t, Options{})
	ctx := ctxT(t)
	if err := f.cli.Health(ctx); err != nil {
		t.Fatal(err)
	}
	f.srv.SetServing(false)
	if err := f.cli.Health(ctx); err == nil {
		t.Fatal("health passes while NOT_SERVING")
	}
	f.srv.SetServing(true)
	insertN(t, f, 50, 0)
	if _, err := f.cli.Find(ctx, ns, shardclient.Find{BatchSize: shardclient.BatchSize(1)}); err != nil {
		t.Fatal(err)
	}
	if f.srv.OpenCursors() != 1 {
		t.Fatal("cursor not open")
	}
	f.srv.Close()
	if f.srv.OpenCursors() != 0 {
		t.Fatal("Close left cursors open")
	}
	_, err := f.cli.Find(ctx, ns, shardclient.Find{BatchSize: shardclient.BatchSize(1)})
	wantCode(t, err, mongoerr.InterruptedAtShutdown)
}

// TestSlowOpLog checks the one line per slow operation.
func TestSlowOpLog(t *testing.T) {
	var buf syncBuffer
	log := zerolog.New(&buf)
	f := start(t, Options{Logger: log, SlowOp: time.Nanosecond})
	insertN(t, f, 3, 0)
	out := buf.String()
	if !strings.Contains(out, `"message":"slow operation"`) || !strings.Contains(out, `"op":"Insert"`) || !strings.Contains(out, `"ns":"test.c"`) || !strings.Contains(out, `"dur":`) {
		t.Fatalf("no slow operation line:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
