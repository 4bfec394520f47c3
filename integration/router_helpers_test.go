package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

// routerCluster is the cluster the router tests share: one config server,
// two shards of three members and two routers, real processes, with one
// driver client per router (directConnection, so a test decides which
// router a request goes through) and the catalog for the changes no
// router command makes (chunk splits and moves).
type routerCluster struct {
	c       *harness.Cluster
	cat     *catalog.Catalog
	routers []*harness.Process
	shards  []string
	clients []*mongo.Client // clients[i] talks to routers[i] only
}

// newRouterCluster boots the cluster and waits until both routers serve
// writes on both shards.
func newRouterCluster(t *testing.T, opts ...harness.Option) *routerCluster {
	t.Helper()
	c := harness.NewCluster(t, append([]harness.Option{harness.WithShards(2), harness.WithMembers(3), harness.WithRouters(2)}, opts...)...)
	rc := &routerCluster{c: c, cat: catalog.New(c.EtcdClient(t)), routers: c.ByRole(config.RoleRouter, "")}
	for _, s := range c.Config().Shards {
		rc.shards = append(rc.shards, s.Name)
	}
	if len(rc.routers) != 2 || len(rc.shards) != 2 {
		t.Fatalf("want 2 routers and 2 shards, got %d and %d", len(rc.routers), len(rc.shards))
	}
	for _, r := range rc.routers {
		rc.clients = append(rc.clients, rc.connect(t, r.Addr()))
	}
	rc.waitReady(t)
	return rc
}

// connect returns a driver client of the routers at addrs (one address:
// a direct connection; several: the driver picks among them, as with a
// mongos list), with the driver's defaults otherwise (retryable writes
// and reads on), disconnected when the test ends.
func (rc *routerCluster) connect(t testing.TB, addrs ...string) *mongo.Client {
	t.Helper()
	o := options.Client().SetHosts(addrs).SetTimeout(30 * time.Second).
		SetServerSelectionTimeout(15 * time.Second)
	if len(addrs) == 1 {
		o.SetDirect(true)
	}
	cli, err := mongo.Connect(o)
	if err != nil {
		t.Fatalf("connect to %v: %v", addrs, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cli.Disconnect(ctx)
	})
	return cli
}

// waitReady waits until every shard has a primary and a write and a
// read on each shard succeed through every router: the routers have
// loaded the routing metadata and reach the primaries.
func (rc *routerCluster) waitReady(t testing.TB) {
	t.Helper()
	for _, s := range rc.shards {
		rc.primaryOf(t, s)
	}
	// One database per shard, pinned with enableSharding's primaryShard,
	// so an insert into each proves that shard writable.
	for _, s := range rc.shards {
		db := "ready_" + s
		harness.Eventually(t, 60*time.Second, func() error {
			return rc.clients[0].Database("admin").RunCommand(t.Context(), bson.D{
				{Key: "enableSharding", Value: db}, {Key: "primaryShard", Value: s}}).Err()
		})
		for i, cli := range rc.clients {
			coll := cli.Database(db).Collection("ping")
			harness.Eventually(t, 60*time.Second, func() error {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				id := fmt.Sprintf("router%d", i)
				if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
					options.UpdateOne().SetUpsert(true)); err != nil {
					return fmt.Errorf("write on %s through %s: %w", s, rc.routers[i].Name(), err)
				}
				if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Err(); err != nil {
					return fmt.Errorf("read on %s through %s: %w", s, rc.routers[i].Name(), err)
				}
				return nil
			})
		}
	}
}

// primaryOf waits for the shard's primary lease and returns the member
// holding it.
func (rc *routerCluster) primaryOf(t testing.TB, shard string) string {
	t.Helper()
	var member string
	harness.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		p, err := rc.cat.GetPrimary(ctx, shard)
		if err != nil {
			return err
		}
		member = p.Member
		return nil
	})
	return member
}

// admin runs an admin command through cli and fails the test on error.
func runAdmin(t testing.TB, ctx context.Context, cli *mongo.Client, cmd bson.D) bson.Raw {
	t.Helper()
	raw, err := cli.Database("admin").RunCommand(ctx, cmd).Raw()
	if err != nil {
		t.Fatalf("%s: %v", cmd[0].Key, err)
	}
	return raw
}

// flush makes every router catch up with the catalog (flushRouterConfig).
func (rc *routerCluster) flush(t testing.TB, ctx context.Context) {
	t.Helper()
	for _, cli := range rc.clients {
		runAdmin(t, ctx, cli, bson.D{{Key: "flushRouterConfig", Value: 1}})
	}
}

// shardCollectionVia shards ns by key through cli (enableSharding first).
func shardCollectionVia(t testing.TB, ctx context.Context, cli *mongo.Client, ns string, key bson.D, extra ...bson.E) {
	t.Helper()
	db, _, err := catalog.SplitNS(ns)
	if err != nil {
		t.Fatal(err)
	}
	runAdmin(t, ctx, cli, bson.D{{Key: "enableSharding", Value: db}})
	cmd := append(bson.D{{Key: "shardCollection", Value: ns}, {Key: "key", Value: key}}, extra...)
	runAdmin(t, ctx, cli, cmd)
}

// chunkAt returns the chunk of ns holding the shard-key point, read from
// the catalog (not from a router's cache).
func (rc *routerCluster) chunkAt(t testing.TB, ctx context.Context, ns string, point bson.D) (catalog.Collection, catalog.Chunk) {
	t.Helper()
	coll, err := rc.cat.GetCollection(ctx, ns)
	if err != nil {
		t.Fatalf("collection %s: %v", ns, err)
	}
	enc, err := coll.Key.EncodeDoc(mustRaw(t, point))
	if err != nil {
		t.Fatalf("encode %v: %v", point, err)
	}
	chunks, _, err := rc.cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatalf("chunks of %s: %v", ns, err)
	}
	for _, ch := range chunks {
		if bytes.Compare(ch.MinKey, enc) <= 0 && bytes.Compare(enc, ch.MaxKey) < 0 {
			return coll, ch
		}
	}
	t.Fatalf("no chunk of %s holds %v", ns, point)
	return catalog.Collection{}, catalog.Chunk{}
}

// split splits the chunk of ns holding point at point, in the catalog.
func (rc *routerCluster) split(t testing.TB, ctx context.Context, ns string, point bson.D) {
	t.Helper()
	_, ch := rc.chunkAt(t, ctx, ns, point)
	if _, err := rc.cat.SplitChunk(ctx, ns, ch, mustRaw(t, point)); err != nil {
		t.Fatalf("split %s at %v: %v", ns, point, err)
	}
}

// moveChunk gives the chunk of ns holding point to shard to with the
// moveChunk command through router A (a real migration: documents, the
// donor's critical section, the commit), waiting for the donor's range
// deletion.
func (rc *routerCluster) moveChunk(t testing.TB, ctx context.Context, ns string, point bson.D, to string) {
	t.Helper()
	_, ch := rc.chunkAt(t, ctx, ns, point)
	if ch.Shard == to {
		return
	}
	runAdmin(t, ctx, rc.clients[0], bson.D{{Key: "moveChunk", Value: ns}, {Key: "bounds", Value: bson.A{ch.Min, ch.Max}},
		{Key: "to", Value: to}, {Key: "_waitForDelete", Value: true}})
}

// chunkShards returns the number of chunks of ns on each shard, from the
// catalog.
func (rc *routerCluster) chunkShards(t testing.TB, ctx context.Context, ns string) map[string]int {
	t.Helper()
	coll, err := rc.cat.GetCollection(ctx, ns)
	if err != nil {
		t.Fatalf("collection %s: %v", ns, err)
	}
	chunks, _, err := rc.cat.ListChunks(ctx, coll.UUID)
	if err != nil {
		t.Fatalf("chunks of %s: %v", ns, err)
	}
	out := map[string]int{}
	for _, ch := range chunks {
		out[ch.Shard]++
	}
	return out
}

// countOnShard counts the documents of ns matching filter on the
// shard's primary, straight over its gRPC API (bypassing the routers).
func (rc *routerCluster) countOnShard(t testing.TB, ctx context.Context, shard, ns string, filter bson.D) int64 {
	t.Helper()
	addr := rc.c.Process(rc.primaryOf(t, shard)).Addr()
	cl, err := shardclient.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer cl.Close()
	var n int64
	harness.Eventually(t, 10*time.Second, func() error {
		n, err = cl.Count(ctx, ns, mustRaw(t, filter), 0, 0)
		if mongoerr.HasCode(err, mongoerr.NamespaceNotFound) {
			n, err = 0, nil
		}
		return err
	})
	return n
}

// mustRaw marshals a document.
func mustRaw(t testing.TB, d any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatalf("marshal %v: %v", d, err)
	}
	return b
}

// intDocs returns n documents {_id: from+i, k: from+i, g: (from+i)%7,
// s: "s<from+i>"}: _id and k equal, so either can be the shard key.
func intDocs(from, n int) []any {
	docs := make([]any, n)
	for i := range n {
		v := from + i
		docs[i] = bson.D{{Key: "_id", Value: v}, {Key: "k", Value: v}, {Key: "g", Value: v % 7}, {Key: "s", Value: fmt.Sprintf("s%05d", v)}}
	}
	return docs
}

// ints reads field f (an int32) of every document of cur, in order.
func intField(t testing.TB, ctx context.Context, cur *mongo.Cursor, f string) []int {
	t.Helper()
	defer cur.Close(ctx)
	var out []int
	for cur.Next(ctx) {
		v, err := cur.Current.LookupErr(f)
		if err != nil {
			t.Fatalf("document %s has no %s", cur.Current, f)
		}
		out = append(out, int(v.AsInt64()))
	}
	if err := cur.Err(); err != nil {
		t.Fatalf("cursor: %v", err)
	}
	return out
}

// serverCode returns the MongoDB code of a driver error (a command error
// or the first write error), or 0.
func serverCode(err error) int {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return int(ce.Code)
	}
	var we mongo.WriteException
	if errors.As(err, &we) && len(we.WriteErrors) > 0 {
		return we.WriteErrors[0].Code
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
		return bwe.WriteErrors[0].Code
	}
	return 0
}

// writeErrorIndexes returns the indexes and codes of a bulk write's
// errors.
func writeErrorIndexes(err error) (idx []int, codes []int) {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) {
		return nil, nil
	}
	for _, we := range bwe.WriteErrors {
		idx = append(idx, we.Index)
		codes = append(codes, we.Code)
	}
	return idx, codes
}

// seq returns [from, from+n) stepping by step.
func intSeq(from, n, step int) []int {
	out := make([]int, 0, n)
	for i := range n {
		out = append(out, from+i*step)
	}
	return out
}

// sortedInts returns a sorted copy.
func sortedInts(v []int) []int {
	out := slices.Clone(v)
	slices.Sort(out)
	return out
}

// unorderedInsert makes InsertMany send one request per shard: an ordered
// batch into a hashed collection goes out as one request per run of
// consecutive documents on the same shard, one run at a time (about
// 1 ms a document), which bulk loads do not need.
var unorderedInsert = options.InsertMany().SetOrdered(false)

// tcpSockets reads the IPv4 TCP sockets of this network namespace from
// /proc/net/tcp (Linux): for each, its local and remote ports, whether it
// is established, and whether data waits in its receive queue. ok is
// false where the file cannot be read.
func tcpSockets() (socks []tcpSocket, ok bool) {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, false
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		local, remote, queues := f[1], f[2], f[4]
		lp, err1 := strconv.ParseUint(local[strings.LastIndexByte(local, ':')+1:], 16, 32)
		rp, err2 := strconv.ParseUint(remote[strings.LastIndexByte(remote, ':')+1:], 16, 32)
		rx, err3 := strconv.ParseUint(queues[strings.LastIndexByte(queues, ':')+1:], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		socks = append(socks, tcpSocket{local: int(lp), remote: int(rp), established: f[3] == "01", rx: rx})
	}
	return socks, true
}

type tcpSocket struct {
	local, remote int
	established   bool
	rx            uint64
}

// portOf returns the port of a host:port address.
func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// queuedAt counts the established connections of the server listening on
// port that hold unread bytes: requests a frozen server has not read.
func queuedAt(port int) int {
	socks, _ := tcpSockets()
	n := 0
	for _, s := range socks {
		if s.established && s.local == port && s.rx > 0 {
			n++
		}
	}
	return n
}

// connectionsTo counts the established client connections to port.
func connectionsTo(port int) int {
	socks, _ := tcpSockets()
	n := 0
	for _, s := range socks {
		if s.established && s.remote == port {
			n++
		}
	}
	return n
}
