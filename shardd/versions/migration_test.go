package versions

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/pkg/shardversion"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/migrate"
	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

// The shard side of a migration with the catalog: s1 (a real shardd with
// a Checker) gives [100, MaxKey) of db.c to a recipient store. A
// versioned insert into the range during the critical section is refused
// with StaleConfig once the commit is released (it never lands on the
// donor), one outside the range runs; after the commit the donor's
// versioned reads hide the moved range (orphans) until range deletion
// removes it; the recipient holds exactly the range.
func TestMigrationCommitReleasesWithStaleConfig(t *testing.T) {
	ctx := ctxT(t)
	c := newCluster(t)
	var docs []bson.Raw
	for i := range 200 {
		docs = append(docs, raw(t, bson.D{{Key: "_id", Value: i}, {Key: "k", Value: i}}))
	}
	if _, err := c.cli.Insert(ctx, ns, docs, shardclient.WriteOptions{Ordered: true}); err != nil {
		t.Fatal(err)
	}
	chs := c.chunks(t)
	if _, err := c.cat.SplitChunk(ctx, ns, chs[0], raw(t, bson.D{{Key: "k", Value: 100}})); err != nil {
		t.Fatal(err)
	}
	if err := c.chk.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	v1 := c.shardVersion(t, "s1")
	chs = c.chunks(t)
	moving := chs[1]
	r, err := migrate.NewRange(ns, raw(t, bson.D{{Key: "k", Value: 1}}), moving.Min, moving.Max)
	if err != nil {
		t.Fatal(err)
	}
	rec := servertest.OpenStore(t, "", storage.Options{})
	mig := shardpb.NewMigrationClient(c.cli.Conn())
	rc := migrate.NewRecipient(rec, mig, r)
	if err := rc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc.Clone(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc.CatchUp(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := mig.EnterCriticalSection(ctx, &shardpb.CriticalSectionRequest{SessionId: rc.Session()}); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := c.cli.Insert(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: 1150}, {Key: "k", Value: 150}})},
			shardclient.WriteOptions{Ordered: true, ShardVersion: shardversion.Proto(v1)})
		blocked <- err
	}()
	if _, err := c.cli.Insert(ctx, ns, []bson.Raw{raw(t, bson.D{{Key: "_id", Value: 1050}, {Key: "k", Value: 50}})},
		shardclient.WriteOptions{Ordered: true, ShardVersion: shardversion.Proto(v1)}); err != nil {
		t.Fatalf("insert outside the range during the critical section: %v", err)
	}
	if err := rc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	coll, err := c.cat.GetCollection(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.cat.CommitMigration(ctx, ns, moving, "s1", "s2", coll.CollVersion()); err != nil {
		t.Fatal(err)
	}
	_, rev, err := c.cat.ListShards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mig.LeaveCriticalSection(ctx, &shardpb.LeaveCriticalSectionRequest{SessionId: rc.Session(), Committed: true, CommitRevision: rev}); err != nil {
		t.Fatal(rpcerr.Error(err))
	}
	if err := <-blocked; mongoerr.CodeOf(err) != mongoerr.StaleConfig {
		t.Fatalf("the blocked insert into the moved range: %v, want StaleConfig", err)
	}
	if err := rc.End(ctx); err != nil {
		t.Fatal(err)
	}
	idOf := func(i int32) bson.RawValue {
		return bson.RawValue{Type: bson.TypeInt32, Value: raw(t, bson.D{{Key: "v", Value: i}}).Lookup("v").Value}
	}
	if d, ok, _ := rec.Get(ns, idOf(1150)); ok {
		t.Fatalf("the refused insert is on the recipient: %s", d)
	}
	all, err := c.cli.FindAll(ctx, ns, shardclient.Find{})
	if err != nil || len(all) != 201 {
		t.Fatalf("donor unversioned: %d docs, %v; want 201 (orphans included)", len(all), err)
	}
	v2 := shardversion.Proto(c.shardVersion(t, "s1"))
	owned, err := c.cli.FindAll(ctx, ns, shardclient.Find{ShardVersion: v2})
	if err != nil || len(owned) != 101 {
		t.Fatalf("donor versioned after the commit: %d docs, %v; want 101", len(owned), err)
	}
	// The recipient holds exactly the range as the donor had it.
	snap, err := rec.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	n := 0
	if _, err := r.Scan(ctx, snap, func(d bson.Raw) error {
		n++
		if k := d.Lookup("k").Int32(); k < 100 || k >= 200 {
			t.Errorf("recipient holds k=%d", k)
		}
		return nil
	}); err != nil || n != 100 {
		t.Fatalf("recipient range: %d docs, %v; want 100", n, err)
	}
	rep, err := mig.DeleteRange(ctx, &shardpb.DeleteRangeRequest{Range: r.Proto(), Wait: true})
	if err != nil || rep.GetDeleted() != 100 {
		t.Fatalf("range deletion: %d, %v", rep.GetDeleted(), err)
	}
	all, err = c.cli.FindAll(ctx, ns, shardclient.Find{})
	if err != nil || len(all) != 101 {
		t.Fatalf("donor after range deletion: %d docs, %v; want 101", len(all), err)
	}
}
