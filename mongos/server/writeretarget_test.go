package server

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

// resplitCall is one request of the re-split batch: a shard and the
// client's statement indexes it carried.
type resplitCall struct {
	shard string
	idx   []int
}

// resplitOnce re-splits the client's statements idx (documents with k:
// fakeRouting sends k < 0 to s0, k >= 0 to s1) as writeRoute.resplit
// does, with send standing for the shards: failAt (a client index) is a
// duplicate-key write error, upsertAt an upsert. It returns the outcome
// in the client's indexes (what the outer runBatched sees) and the
// requests sent.
func resplitOnce(t *testing.T, ks []int, idx []int, ordered bool, failAt, upsertAt int) (*writeOutcome, []resplitCall) {
	t.Helper()
	docs := make([]bson.Raw, len(ks))
	for i, k := range ks {
		docs[i] = doc(t, bson.D{{Key: "_id", Value: i}, {Key: "k", Value: k}})
	}
	targets, errs := retargetStatements(fakeRouting{}, idx, func(rt Routing, i int) (targeting.Target, error) {
		return insertTarget(rt, "db.c", docs[i])
	})
	var mu sync.Mutex
	var calls []resplitCall
	inner := runTargeted(targets, errs, ordered, func(shard string, pos []int, ordered bool) (*shardclient.WriteResult, error) {
		client := pick(idx, pos)
		mu.Lock()
		calls = append(calls, resplitCall{shard, client})
		mu.Unlock()
		r := &shardclient.WriteResult{}
		for k, i := range client {
			switch i {
			case failAt:
				r.WriteErrors = append(r.WriteErrors, shardclient.WriteError{Index: k, Err: mongoerr.New(mongoerr.DuplicateKey, "dup")})
				if ordered {
					return r, nil
				}
			case upsertAt:
				r.N++
				r.Upserted = append(r.Upserted, shardclient.Upserted{Index: k, ID: bson.RawValue{Type: bson.TypeInt32, Value: bsoncoreInt32(int32(i))}})
			default:
				r.N++
				r.NModified++
			}
		}
		return r, nil
	})
	outer := &writeOutcome{}
	outer.add(inner.result(), idx)
	slices.SortFunc(calls, func(a, b resplitCall) int { return slices.Compare(a.idx, b.idx) })
	return outer, calls
}

func bsoncoreInt32(n int32) []byte {
	return []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}
}

// TestResplitByNewRouting: statements refused together by one shard are
// split by the refreshed routing; indexes stay the client's, ordered
// batches stop at the first error in client order, unordered ones send
// every shard its part, counts and upserts add up.
func TestResplitByNewRouting(t *testing.T) {
	// The client's batch has 10 statements; 2, 4, 5, 7, 9 were refused
	// together (they all went to one shard before the refresh).
	ks := []int{-1, -2, -3, 4, -5, 6, 7, -8, 9, 10}
	idx := []int{2, 4, 5, 7, 9}

	// Ordered, no error: runs in client order, s0 {2,4}, s1 {5}, s0 {7}, s1 {9}.
	o, calls := resplitOnce(t, ks, idx, true, -1, -1)
	want := []resplitCall{{"s0", []int{2, 4}}, {"s1", []int{5}}, {"s0", []int{7}}, {"s1", []int{9}}}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("ordered requests %v, want %v", calls, want)
	}
	if o.n != 5 || o.nModified != 5 || len(o.errs) != 0 {
		t.Fatalf("ordered outcome n %d nModified %d errs %v", o.n, o.nModified, o.errs)
	}

	// Ordered, statement 5 fails: 2 and 4 ran, 7 and 9 never sent.
	o, calls = resplitOnce(t, ks, idx, true, 5, -1)
	want = []resplitCall{{"s0", []int{2, 4}}, {"s1", []int{5}}}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("ordered with error: requests %v, want %v", calls, want)
	}
	if o.n != 2 || len(o.errs) != 1 || o.errs[0].Index != 5 || o.errs[0].Err.Code != mongoerr.DuplicateKey {
		t.Fatalf("ordered with error: n %d errs %+v", o.n, o.errs)
	}

	// Unordered, statement 7 fails: one request per shard, the rest run.
	o, calls = resplitOnce(t, ks, idx, false, 7, 9)
	want = []resplitCall{{"s0", []int{2, 4, 7}}, {"s1", []int{5, 9}}}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("unordered requests %v, want %v", calls, want)
	}
	if o.n != 4 || o.nModified != 3 || len(o.errs) != 1 || o.errs[0].Index != 7 {
		t.Fatalf("unordered outcome n %d nModified %d errs %+v", o.n, o.nModified, o.errs)
	}
	if len(o.upserted) != 1 || o.upserted[0].Index != 9 || o.upserted[0].ID.Int32() != 9 {
		t.Fatalf("upserted %+v, want client index 9", o.upserted)
	}
}

// TestResplitTargetingError: a statement that no longer targets (here:
// no shard key) is a write error at its client index; ordered stops
// there.
func TestResplitTargetingError(t *testing.T) {
	docs := []bson.Raw{doc(t, bson.D{{Key: "k", Value: -1}}), doc(t, bson.D{{Key: "x", Value: 1}}), doc(t, bson.D{{Key: "k", Value: 1}})}
	idx := []int{0, 1, 2}
	targets, errs := retargetStatements(fakeRouting{}, idx, func(rt Routing, i int) (targeting.Target, error) {
		coll, _ := rt.Collection("db.c")
		if err := targeting.RequireShardKey(coll.Key, docs[i]); err != nil {
			return targeting.Target{}, err
		}
		return insertTarget(rt, "db.c", docs[i])
	})
	if errs[0] != nil || errs[2] != nil || mongoerr.CodeOf(errs[1]) != mongoerr.ShardKeyNotFound {
		t.Fatalf("targeting errors %v", errs)
	}
	if targets[0].Shards[0] != "s0" || targets[2].Shards[0] != "s1" {
		t.Fatalf("targets %v", targets)
	}
	var sent [][]int
	o := runTargeted(targets, errs, true, func(shard string, pos []int, ordered bool) (*shardclient.WriteResult, error) {
		sent = append(sent, pick(idx, pos))
		return &shardclient.WriteResult{N: int64(len(pos))}, nil
	})
	r := o.result()
	if fmt.Sprint(sent) != "[[0]]" || r.N != 1 || len(r.WriteErrors) != 1 || r.WriteErrors[0].Index != 1 {
		t.Fatalf("sent %v, result %+v", sent, r)
	}
}

// TestPieceStillCovered: one shard's part of a broadcast statement is
// re-sent only while the statement's shards stay within the original
// ones and include that shard.
func TestPieceStillCovered(t *testing.T) {
	orig := []string{"s0", "s1"}
	cases := []struct {
		now   []string
		shard string
		want  bool
	}{
		{[]string{"s0", "s1"}, "s0", true},
		{[]string{"s0"}, "s0", true},
		{[]string{"s1"}, "s0", false},
		{[]string{"s0", "s2"}, "s0", false},
		{[]string{"s0", "s1", "s2"}, "s1", false},
	}
	for _, c := range cases {
		if got := pieceStillCovered(c.now, orig, c.shard); got != c.want {
			t.Errorf("pieceStillCovered(%v, %v, %s) = %v, want %v", c.now, orig, c.shard, got, c.want)
		}
	}
}

// TestFirstStaleOrError: a broadcast with a StaleConfig anywhere is
// retried (the stale one wins over other errors).
func TestFirstStaleOrError(t *testing.T) {
	other := mongoerr.New(mongoerr.IndexNotFound, "no index")
	stale := mongoerr.New(mongoerr.StaleConfig, "stale")
	if err := firstStaleOrError([]error{nil, other, stale}); err != stale {
		t.Fatalf("got %v, want the StaleConfig", err)
	}
	if err := firstStaleOrError([]error{nil, other}); err != other {
		t.Fatalf("got %v, want the first error", err)
	}
	if err := firstStaleOrError([]error{nil, nil}); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
}
