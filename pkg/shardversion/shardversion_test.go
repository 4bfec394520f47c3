package shardversion

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/status"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
)

const (
	e1 = "65a000000000000000000001"
	e2 = "65a000000000000000000002"
)

func cv(epoch string, major, minor uint32) catalog.CollVersion {
	return catalog.CollVersion{Epoch: epoch, Version: catalog.Version{Major: major, Minor: minor}}
}

func sharded(epoch string, major, minor uint32) View {
	return View{Sharded: true, Version: cv(epoch, major, minor)}
}

var unsharded = View{}

// TestMatches is the comparison rule as data: what the router sent, what
// the shard's view is, and whether the request may run.
func TestMatches(t *testing.T) {
	tests := []struct {
		name     string
		received catalog.CollVersion
		view     View
		ok       bool
	}{
		{"unsharded both", catalog.CollVersion{}, unsharded, true},
		{"router thinks unsharded, collection sharded", catalog.CollVersion{}, sharded(e1, 1, 0), false},
		{"router thinks sharded, collection unsharded or dropped", cv(e1, 1, 0), unsharded, false},
		{"same version", cv(e1, 3, 2), sharded(e1, 3, 2), true},
		{"router missed a split (older minor)", cv(e1, 3, 1), sharded(e1, 3, 4), true},
		{"shard missed a split (newer minor)", cv(e1, 3, 4), sharded(e1, 3, 1), true},
		{"router missed a migration (older major)", cv(e1, 2, 7), sharded(e1, 3, 1), false},
		{"shard view older (newer major)", cv(e1, 4, 0), sharded(e1, 3, 1), false},
		{"different epoch (dropped and re-sharded)", cv(e1, 3, 1), sharded(e2, 3, 1), false},
		{"shard owns nothing, router agrees", cv(e1, 0, 0), sharded(e1, 0, 0), true},
		{"shard gave its last chunk away", cv(e1, 5, 0), sharded(e1, 0, 0), false},
		{"epoch without version vs unsharded", cv(e1, 0, 0), unsharded, false},
		{"version without epoch vs sharded", cv("", 1, 0), sharded(e1, 1, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Matches(tt.received, tt.view); got != tt.ok {
				t.Fatalf("Matches(%v, %+v) = %v, want %v", tt.received, tt.view, got, tt.ok)
			}
		})
	}
}

func TestProtoRoundTrip(t *testing.T) {
	for _, v := range []catalog.CollVersion{{}, cv(e1, 1, 0), cv(e2, 12, 345), cv("not-hex", 1, 1)} {
		p := Proto(v)
		if p == nil {
			t.Fatalf("Proto(%v) is nil", v)
		}
		if got := FromProto(p); got != v {
			t.Fatalf("FromProto(Proto(%v)) = %v", v, got)
		}
	}
	if !IsUnsharded(FromProto(Proto(catalog.CollVersion{}))) {
		t.Fatal("the zero version must travel as UNSHARDED")
	}
	if got := FromProto(nil); !IsUnsharded(got) {
		t.Fatalf("FromProto(nil) = %v", got)
	}
	p := Proto(cv(e1, 1, 1))
	p.Major = 1 << 40
	if got := FromProto(p); Matches(got, sharded(e1, 1, 1)) {
		t.Fatalf("an out-of-range major %v must not match", got)
	}
}

func TestStaleConfigError(t *testing.T) {
	info := StaleInfo{NS: "db.c", Received: cv(e1, 2, 3), Wanted: cv(e1, 3, 1), ShardID: "s1"}
	err := fmt.Errorf("find: %w", Stale(info))
	if mongoerr.CodeOf(err) != mongoerr.StaleConfig {
		t.Fatalf("code %v", mongoerr.CodeOf(err))
	}
	got, ok := InfoOf(err)
	if !ok || got != info {
		t.Fatalf("InfoOf = %+v %v, want %+v", got, ok, info)
	}
	// What the router sees: the status on the wire, decoded by rpcerr.
	st, ok := status.FromError(Stale(info))
	if !ok || st.Code() != rpcerr.GRPCCode(mongoerr.StaleConfig) {
		t.Fatalf("status %v %v", st, ok)
	}
	wire := rpcerr.Error(st.Err())
	if mongoerr.CodeOf(wire) != mongoerr.StaleConfig {
		t.Fatalf("router side code %v", mongoerr.CodeOf(wire))
	}
	if got, ok := InfoOf(wire); !ok || got != info {
		t.Fatalf("router side InfoOf = %+v %v, want %+v", got, ok, info)
	}
	// UNSHARDED round-trips as the zero ObjectId.
	u := StaleInfo{NS: "db.c", Received: catalog.CollVersion{}, Wanted: cv(e2, 1, 0), ShardID: "s2"}
	back, err := ParseStaleInfo(u.Doc())
	if err != nil || back != u {
		t.Fatalf("ParseStaleInfo = %+v %v, want %+v", back, err, u)
	}
	if _, ok := InfoOf(errors.New("other")); ok {
		t.Fatal("InfoOf of a plain error")
	}
}
