package server

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

func TestSelectMember(t *testing.T) {
	members := []string{"a", "b", "c"}
	cases := []struct {
		name, mode, primary string
		exclude             []string
		want                []string // acceptable answers over rr = 0..5
		code                mongoerr.Code
	}{
		{name: "primary", mode: "", primary: "b", want: []string{"b"}},
		{name: "primary explicit", mode: prefPrimary, primary: "b", want: []string{"b"}},
		{name: "primary unknown", mode: prefPrimary, code: mongoerr.FailedToSatisfyReadPreference},
		{name: "primary failed", mode: prefPrimary, primary: "b", exclude: []string{"b"}, code: mongoerr.FailedToSatisfyReadPreference},
		{name: "primary not a member", mode: prefPrimary, primary: "z", code: mongoerr.FailedToSatisfyReadPreference},
		{name: "primaryPreferred", mode: prefPrimaryPreferred, primary: "b", want: []string{"b"}},
		{name: "primaryPreferred no primary", mode: prefPrimaryPreferred, want: []string{"a", "b", "c"}},
		{name: "primaryPreferred primary failed", mode: prefPrimaryPreferred, primary: "b", exclude: []string{"b"}, want: []string{"a", "c"}},
		{name: "secondary", mode: prefSecondary, primary: "b", want: []string{"a", "c"}},
		{name: "secondary one left", mode: prefSecondary, primary: "b", exclude: []string{"a"}, want: []string{"c"}},
		{name: "secondary none left", mode: prefSecondary, primary: "b", exclude: []string{"a", "c"}, code: mongoerr.FailedToSatisfyReadPreference},
		{name: "secondary no primary", mode: prefSecondary, want: []string{"a", "b", "c"}},
		{name: "secondaryPreferred", mode: prefSecondaryPreferred, primary: "a", want: []string{"b", "c"}},
		{name: "secondaryPreferred falls back", mode: prefSecondaryPreferred, primary: "a", exclude: []string{"b", "c"}, want: []string{"a"}},
		{name: "secondaryPreferred nothing", mode: prefSecondaryPreferred, primary: "a", exclude: []string{"a", "b", "c"}, code: mongoerr.FailedToSatisfyReadPreference},
		{name: "nearest", mode: prefNearest, primary: "a", want: []string{"a", "b", "c"}},
		{name: "nearest excluded", mode: prefNearest, primary: "a", exclude: []string{"a"}, want: []string{"b", "c"}},
		{name: "bad mode", mode: "closest", primary: "a", code: mongoerr.FailedToParse},
	}
	single := []string{"a"}
	if got, err := selectMember(prefPrimary, single, "", nil, 0); err != nil || got != "a" {
		t.Errorf("standalone: got %q, %v", got, err)
	}
	if _, err := selectMember(prefPrimary, single, "", []string{"a"}, 0); mongoerr.CodeOf(err) != mongoerr.FailedToSatisfyReadPreference {
		t.Errorf("standalone failed: got %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			for rr := uint64(0); rr < 6; rr++ {
				got, err := selectMember(tc.mode, members, tc.primary, tc.exclude, rr)
				if tc.code != 0 {
					if mongoerr.CodeOf(err) != tc.code {
						t.Fatalf("rr %d: got %q, %v; want code %s", rr, got, err, tc.code)
					}
					continue
				}
				if err != nil {
					t.Fatalf("rr %d: %v", rr, err)
				}
				seen[got] = true
			}
			if tc.code != 0 {
				return
			}
			// Every acceptable member is chosen in turn, and nothing else.
			if len(seen) != len(tc.want) {
				t.Fatalf("chose %v over six turns, want each of %v", seen, tc.want)
			}
			for _, w := range tc.want {
				if !seen[w] {
					t.Fatalf("chose %v over six turns, want each of %v", seen, tc.want)
				}
			}
		})
	}
}

func TestValidReadPref(t *testing.T) {
	for _, m := range []string{prefPrimary, prefPrimaryPreferred, prefSecondary, prefSecondaryPreferred, prefNearest} {
		if !validReadPref(m) {
			t.Errorf("%q refused", m)
		}
	}
	for _, m := range []string{"", "Primary", "any"} {
		if validReadPref(m) {
			t.Errorf("%q accepted", m)
		}
	}
}

// TestClusterBackendFollowsPrimary runs a router over real etcd and two
// real (standalone) shardds that are the members a and b of one shard,
// and moves the shard's primary lease by hand: writes go to the member
// the catalog names, a secondary read goes to the other one, and a write
// sent while no member holds the lease waits for the next primary and
// lands there.
func TestClusterBackendFollowsPrimary(t *testing.T) {
	ctx := testCtx(t)
	etcd, cat := startCatalog(t)
	addrs, direct := serveShards(t, "a", "b")
	if _, err := cat.AddShard(ctx, "s0", []catalog.Member{{Name: "a", Addr: addrs["a"]}, {Name: "b", Addr: addrs["b"]}}, catalog.ShardActive); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.CreateDatabase(ctx, "db", nil); err != nil {
		t.Fatal(err)
	}
	lease, err := cat.AcquirePrimary(ctx, "s0", "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if lease.Err() == nil {
			_ = lease.Revoke(context.Background())
		}
	})

	log, logs := testLogger()
	b, cli := startRouter(t, etcd, log)
	coll := cli.Database("db").Collection("c")
	waitFor(t, "the router's routing metadata", 20*time.Second, func() bool {
		rt, err := b.Routing()
		if err != nil {
			return false
		}
		_, ok := rt.Database("db")
		return ok
	})
	// on returns the _ids stored on a member, read straight from it.
	on := func(member string) []int32 {
		t.Helper()
		docs, err := direct[member].FindAll(ctx, "db.c", shardclient.Find{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int32
		for _, d := range docs {
			ids = append(ids, d.Lookup("_id").Int32())
		}
		return ids
	}

	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}); err != nil {
		t.Fatal(err)
	}
	if a, bb := on("a"), on("b"); len(a) != 1 || len(bb) != 0 {
		t.Fatalf("insert with primary a: a holds %v, b holds %v", a, bb)
	}
	// b holds nothing (standalones do not replicate): a secondary read
	// that finds nothing went to b; a primary read finds the document.
	sec := coll.Database().Collection("c", options.Collection().SetReadPreference(readpref.Secondary()))
	if n, err := sec.CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
		t.Fatalf("secondary count: %d, %v", n, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("primary count: %d, %v", n, err)
	}
	secPref := coll.Database().Collection("c", options.Collection().SetReadPreference(readpref.SecondaryPreferred()))
	if n, err := secPref.CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
		t.Fatalf("secondaryPreferred count: %d, %v", n, err)
	}

	// The primary goes away; once the router has seen it, an insert waits.
	if err := lease.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the router to see no primary", 10*time.Second, func() bool {
		v, _, err := b.Primary("s0")
		return err == nil && v.Member == ""
	})
	done := make(chan error, 1)
	go func() {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(2)}})
		done <- err
	}()
	waitFor(t, "the insert to wait for a primary", 10*time.Second, func() bool {
		return len(logs.lines("retrying after the failover", "s0")) > 0
	})
	select {
	case err := <-done:
		t.Fatalf("insert finished without a primary: %v", err)
	default:
	}
	lease2, err := cat.AcquirePrimary(ctx, "s0", "b", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lease2.Revoke(context.Background()) })
	if err := <-done; err != nil {
		t.Fatalf("insert across the failover: %v", err)
	}
	if a, bb := on("a"), on("b"); len(a) != 1 || len(bb) != 1 || bb[0] != 2 {
		t.Fatalf("insert with primary b: a holds %v, b holds %v", a, bb)
	}
	// Now a is the secondary.
	if n, err := sec.CountDocuments(ctx, bson.D{{Key: "_id", Value: int32(1)}}); err != nil || n != 1 {
		t.Fatalf("secondary count after the failover: %d, %v", n, err)
	}
}
