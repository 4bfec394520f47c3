package catalog

import (
	"errors"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func specs() []ShardSpec {
	return []ShardSpec{
		{Name: "rs0", Members: []MemberSpec{{Name: "rs0-a", Addr: "127.0.0.1:27100"}, {Name: "rs0-b", Addr: "127.0.0.1:27101"}}},
		{Name: "rs1", Members: []MemberSpec{{Name: "rs1-a", Addr: "127.0.0.1:27200"}}},
	}
}

func revOf(t *testing.T, c *Catalog) int64 {
	resp, err := testCli.Get(testCtx(t), c.Prefix()+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	mustOK(t, err)
	// The highest ModRevision under the prefix tells whether anything changed.
	r, err := testCli.Get(testCtx(t), c.Prefix()+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	mustOK(t, err)
	if resp.Count == 0 {
		return 0
	}
	return r.Kvs[0].ModRevision
}

func TestBootstrap(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	opt := WithPrefix(c.Prefix())
	mustOK(t, Bootstrap(ctx, testCli, "dev", specs(), opt))
	info, err := c.GetCluster(ctx)
	mustOK(t, err)
	if info.Name != "dev" || info.ID == "" || info.CreatedAt.IsZero() {
		t.Fatalf("cluster %+v", info)
	}
	shards, _, err := c.ListShards(ctx)
	mustOK(t, err)
	if len(shards) != 2 || shards[0].State != ShardActive || len(shards[0].Members) != 2 {
		t.Fatalf("shards %+v", shards)
	}
	before := revOf(t, c)
	// Same description, members in another order: a no-op.
	again := specs()
	again[0].Members[0], again[0].Members[1] = again[0].Members[1], again[0].Members[0]
	mustOK(t, Bootstrap(ctx, testCli, "dev", again, opt))
	if after := revOf(t, c); after != before {
		t.Fatalf("idempotent bootstrap wrote something: rev %d -> %d", before, after)
	}
	// A shard added later with addShard is not a conflict.
	addShards(t, c, "rs9")
	before = revOf(t, c)
	mustOK(t, Bootstrap(ctx, testCli, "dev", specs(), opt))
	if after := revOf(t, c); after != before {
		t.Fatalf("idempotent bootstrap wrote something: rev %d -> %d", before, after)
	}

	conflicts := []struct {
		name    string
		cluster string
		edit    func([]ShardSpec) []ShardSpec
		says    []string
	}{
		{"cluster name", "prod", func(s []ShardSpec) []ShardSpec { return s }, []string{`"dev"`, `"prod"`}},
		{"member address", "dev", func(s []ShardSpec) []ShardSpec { s[0].Members[1].Addr = "127.0.0.1:1"; return s }, []string{`"rs0-b"`, "127.0.0.1:27101", "127.0.0.1:1"}},
		{"member added", "dev", func(s []ShardSpec) []ShardSpec {
			s[1].Members = append(s[1].Members, MemberSpec{Name: "rs1-b", Addr: "127.0.0.1:27201"})
			return s
		}, []string{`"rs1-b"`, "not in the catalog"}},
		{"member removed", "dev", func(s []ShardSpec) []ShardSpec { s[0].Members = s[0].Members[:1]; return s }, []string{`"rs0-b"`, "not in the description"}},
		{"new shard", "dev", func(s []ShardSpec) []ShardSpec {
			return append(s, ShardSpec{Name: "rs2", Members: []MemberSpec{{Name: "rs2-a", Addr: "127.0.0.1:27300"}}})
		}, []string{`"rs2"`, "addShard"}},
	}
	for _, tc := range conflicts {
		t.Run(tc.name, func(t *testing.T) {
			before := revOf(t, c)
			err := Bootstrap(ctx, testCli, tc.cluster, tc.edit(specs()), opt)
			if !errors.Is(err, ErrClusterMismatch) {
				t.Fatalf("want ErrClusterMismatch, got %v", err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not mention %s", err, s)
				}
			}
			if after := revOf(t, c); after != before {
				t.Fatalf("conflicting bootstrap changed the catalog")
			}
		})
	}

	bad := []struct {
		name    string
		cluster string
		shards  []ShardSpec
	}{
		{"no shards", "x", nil},
		{"empty cluster", "", specs()},
		{"dup shard", "x", append(specs(), specs()[0])},
		{"no members", "x", []ShardSpec{{Name: "rs0"}}},
		{"bad shard name", "x", []ShardSpec{{Name: "a/b", Members: specs()[0].Members}}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			mustErr(t, Bootstrap(ctx, testCli, tc.cluster, tc.shards, WithPrefix(c.Prefix()+"x")), ErrInvalid, 0)
		})
	}
}

// Three config servers bootstrapping at once: all succeed, one cluster.
func TestBootstrapConcurrent(t *testing.T) {
	ctx := testCtx(t)
	for round := 0; round < 5; round++ {
		c := newTestCatalog(t)
		errs := race(3, func(int) error { return Bootstrap(ctx, testCli, "dev", specs(), WithPrefix(c.Prefix())) })
		for _, err := range errs {
			mustOK(t, err)
		}
		shards, _, err := c.ListShards(ctx)
		mustOK(t, err)
		if len(shards) != 2 {
			t.Fatalf("%d shards", len(shards))
		}
	}
}
