package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/integration/checker"
	"github.com/psdb/psdb/integration/harness"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/config"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
)

// newReplSetCluster boots one config server and one shard of three
// members (no router): the replica-set tests talk to the members' gRPC API.
func newReplSetCluster(t testing.TB, opts ...harness.Option) (*harness.Cluster, *replSet) {
	t.Helper()
	opts = append([]harness.Option{harness.WithShards(1), harness.WithMembers(3), harness.WithOnly(config.RoleConfigServer, config.RoleShard)}, opts...)
	c := harness.NewCluster(t, opts...)
	rs := newReplSet(t, c, c.Config().Shards[0].Name)
	return c, rs
}

// termWatch records every holder of the shard's primary lease, to check
// that no term ever had two primaries.
type termWatch struct {
	mu      sync.Mutex
	holders map[int64][]string
	changes []catalog.PrimaryChange
}

func watchTerms(t *testing.T, c *harness.Cluster, shard string) *termWatch {
	w := &termWatch{holders: map[int64][]string{}}
	cat := catalog.New(c.EtcdClient(t))
	ctx, cancel := context.WithCancel(context.Background())
	ch := cat.ObservePrimary(ctx, shard)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for pc := range ch {
			if !pc.Present {
				continue
			}
			w.mu.Lock()
			w.changes = append(w.changes, pc)
			if !slices.Contains(w.holders[pc.Term], pc.Member) {
				w.holders[pc.Term] = append(w.holders[pc.Term], pc.Member)
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// check fails the test if a term had two primaries; it returns the
// number of terms seen.
func (w *termWatch) check(t *testing.T) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for term, members := range w.holders {
		if len(members) > 1 {
			t.Errorf("term %d had %d primaries: %v", term, len(members), members)
		}
	}
	return len(w.holders)
}

// TestReplSetElectsAndReplicates: a fresh set elects one primary; majority
// writes reach every member; a secondary refuses writes with
// NotWritablePrimary and primary reads with NotPrimaryNoSecondaryOk, and
// serves reads that allow a secondary; the status names every member.
func TestReplSetElectsAndReplicates(t *testing.T) {
	t.Parallel()
	_, rs := newReplSetCluster(t)
	primary := rs.waitPrimary(20 * time.Second)
	ctx := t.Context()
	const ns = "app.people"
	docs := make([]bson.Raw, 50)
	for i := range docs {
		docs[i] = docOf(t, bson.D{{Key: "_id", Value: "p" + strconv.Itoa(i)}, {Key: "n", Value: i}})
	}
	res, err := rs.client(primary).Insert(ctx, ns, docs, shardclient.WriteOptions{Ordered: true, WriteConcern: majority})
	if err != nil || writeErr(res) != nil || res.N != 50 {
		t.Fatalf("majority insert: %v %+v", err, res)
	}
	// Acknowledged with w:"majority": on at least one secondary now, on
	// all of them soon.
	rs.waitConverged(10 * time.Second)
	for _, n := range rs.names {
		ids, err := rs.idsOn(ctx, n, ns)
		if err != nil || len(ids) != 50 {
			t.Fatalf("%s: %d ids, %v", n, len(ids), err)
		}
	}
	for _, n := range rs.names {
		if n == primary {
			continue
		}
		_, err := rs.client(n).Insert(ctx, ns, []bson.Raw{docOf(t, bson.D{{Key: "_id", Value: "x"}})}, shardclient.WriteOptions{})
		if !mongoerr.HasCode(err, mongoerr.NotWritablePrimary) {
			t.Fatalf("write on secondary %s: %v, want NotWritablePrimary", n, err)
		}
		_, err = rs.client(n).FindAll(ctx, ns, shardclient.Find{})
		if !mongoerr.HasCode(err, mongoerr.NotPrimaryNoSecondaryOk) {
			t.Fatalf("primary read on secondary %s: %v, want NotPrimaryNoSecondaryOk", n, err)
		}
		st, err := rs.status(ctx, n)
		if err != nil || st.GetState() != "SECONDARY" || st.GetSyncSource() != primary {
			t.Fatalf("status of %s: %v %v", n, st, err)
		}
	}
	// Every member reports its progress to the primary (a secondary that
	// started pulling before the election finished reports after a short
	// backoff).
	harness.Eventually(t, 10*time.Second, func() error {
		st, err := rs.status(ctx, primary)
		if err != nil {
			return err
		}
		if len(st.GetMembers()) != 3 || st.GetLeaseExpiryUnixMs() == 0 || st.GetTerm() == 0 {
			return fmt.Errorf("primary status: %v", st)
		}
		for _, m := range st.GetMembers() {
			if !m.GetHealthy() {
				return fmt.Errorf("member %s not healthy in %v", m.GetName(), st)
			}
		}
		return nil
	})
}

// failoverRun is one SIGKILL of the primary under load.
type failoverRun struct {
	Killed    string        `json:"killed"`
	Elected   string        `json:"elected"`
	Failover  time.Duration `json:"failoverNs"`
	TermAfter uint64        `json:"termAfter"`
}

// TestReplSetPrimaryKillUnderLoad kills the primary with SIGKILL ten
// times while eight clients insert with w:"majority" (retryable writes),
// restarting the killed member each time. Afterwards every acknowledged
// insert is on every member exactly once, and no term had two primaries.
// Each kill's failover time (SIGKILL to the first majority write
// acknowledged by the new primary) is logged, and written as JSON to
// $PSDB_FAILOVER_REPORT when set (docs/BENCHMARKS.md).
func TestReplSetPrimaryKillUnderLoad(t *testing.T) {
	t.Parallel()
	kills := 10
	if v, err := strconv.Atoi(os.Getenv("PSDB_KILLS")); err == nil && v > 0 {
		kills = v
	}
	c, rs := newReplSetCluster(t)
	terms := watchTerms(t, c, rs.shard)
	rs.waitPrimary(20 * time.Second)
	const ns = "chk.kill"
	store := newRSStore(rs, ns)
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(kills)*20*time.Second+30*time.Second)
	defer cancel()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var (
		hist    *checker.History
		runErr  error
		loadEnd = make(chan struct{})
	)
	go func() {
		defer close(loadEnd)
		hist, runErr = checker.Run(loadCtx, store, checker.Workload{Writers: 8, KeyPrefix: "kill", Duration: time.Hour, OpTimeout: 15 * time.Second})
	}()
	var runs []failoverRun
	for i := range kills {
		primary := rs.waitPrimary(20 * time.Second)
		waitAcks(t, store, 20)
		p := c.Process(primary)
		killed := time.Now()
		p.Kill()
		rs.primary.CompareAndSwap(primary, "")
		first := waitFirstAck(t, store, killed, primary, 20*time.Second)
		elected := rs.waitPrimary(20 * time.Second)
		st, _ := rs.status(ctx, elected)
		runs = append(runs, failoverRun{Killed: primary, Elected: elected, Failover: first.Sub(killed), TermAfter: st.GetTerm()})
		t.Logf("kill %d: %s killed, %s elected in term %d, first majority write acknowledged %s after the SIGKILL",
			i+1, primary, elected, st.GetTerm(), first.Sub(killed).Round(time.Millisecond))
		if elected == primary {
			t.Fatalf("the killed member %s is primary", primary)
		}
		p.Start()
	}
	waitAcks(t, store, 20)
	stopLoad()
	<-loadEnd
	if runErr != nil {
		t.Fatal(runErr)
	}
	rs.waitConverged(30 * time.Second)
	verifyMembers(t, rs, store, hist, "primary SIGKILL under load", fmt.Sprintf("%d kills", kills))
	if n := terms.check(t); n < kills+1 {
		t.Errorf("%d terms observed for %d kills", n, kills)
	}
	reportFailovers(t, runs)
}

// waitAcks waits until n more inserts than now were acknowledged.
func waitAcks(t *testing.T, s *rsStore, n int64) {
	t.Helper()
	start := s.acked.Load()
	harness.Eventually(t, 30*time.Second, func() error {
		if got := s.acked.Load() - start; got < n {
			return fmt.Errorf("%d of %d acknowledgements", got, n)
		}
		return nil
	})
}

// waitFirstAck returns when the first insert issued after t0 was
// acknowledged.
func waitFirstAck(t *testing.T, s *rsStore, t0 time.Time, killed string, d time.Duration) time.Time {
	t.Helper()
	var at time.Time
	harness.Eventually(t, d, func() error {
		if v := s.firstAckAfter(t0, killed); !v.IsZero() {
			at = v
			return nil
		}
		return fmt.Errorf("no acknowledgement since the kill")
	})
	return at
}

// verifyMembers collects a view from every member and checks the history.
func verifyMembers(t *testing.T, rs *replSet, store *rsStore, hist *checker.History, scenario, faults string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var views []checker.View
	for _, n := range rs.names {
		v, err := checker.Collect(ctx, n, store.on(n), hist)
		if err != nil {
			t.Fatal(err)
		}
		views = append(views, v)
	}
	rep := checker.VerifyViews(ctx, hist, views...)
	rep.Scenario, rep.Faults = scenario, faults
	t.Log(rep.String())
	if !rep.OK() {
		t.Fatalf("history check failed:\n%s", rep)
	}
}

func reportFailovers(t *testing.T, runs []failoverRun) {
	if len(runs) == 0 {
		return
	}
	ds := make([]time.Duration, len(runs))
	for i, r := range runs {
		ds[i] = r.Failover
	}
	slices.Sort(ds)
	t.Logf("failover over %d kills: median %s, max %s", len(ds), ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	if path := os.Getenv("PSDB_FAILOVER_REPORT"); path != "" {
		b, _ := json.MarshalIndent(runs, "", "  ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Errorf("write failover report: %v", err)
		}
	}
}

// TestReplSetPausedPrimary: the primary takes w:1 writes its secondaries
// never see (they are down), then hangs (SIGSTOP) for longer than its
// lease while they come back. The secondaries elect a new primary, which takes majority
// writes. When the old primary resumes it must not acknowledge the
// majority write it had in flight, must step down, and must roll its w:1
// writes back (into a rollback file); afterwards all members agree.
func TestReplSetPausedPrimary(t *testing.T) {
	t.Parallel()
	c, rs := newReplSetCluster(t)
	terms := watchTerms(t, c, rs.shard)
	old := rs.waitPrimary(20 * time.Second)
	ctx := t.Context()
	const ns = "app.pause"
	cl := rs.client(old)
	if _, err := cl.Insert(ctx, ns, []bson.Raw{docOf(t, bson.D{{Key: "_id", Value: "base"}})}, shardclient.WriteOptions{WriteConcern: majority}); err != nil {
		t.Fatal(err)
	}
	rs.waitConverged(10 * time.Second)
	var secondaries []*harness.Process
	for _, n := range rs.names {
		if n != old {
			secondaries = append(secondaries, c.Process(n))
		}
	}
	for _, p := range secondaries {
		p.Kill()
	}
	// w:1 writes only the old primary will ever have.
	var lost []bson.Raw
	for i := range 5 {
		lost = append(lost, docOf(t, bson.D{{Key: "_id", Value: "w1-" + strconv.Itoa(i)}}))
	}
	if res, err := cl.Insert(ctx, ns, lost, shardclient.WriteOptions{Ordered: true, WriteConcern: &shardpb.WriteConcern{W: 1}}); err != nil || res.N != 5 {
		t.Fatalf("w:1 inserts: %v %+v", err, res)
	}
	// readConcern "majority" does not see them (the read waits for the
	// commit point and gives up at its deadline); "local" does.
	w1 := docOf(t, bson.D{{Key: "_id", Value: "w1-0"}})
	rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := cl.FindAll(rctx, ns, shardclient.Find{Filter: w1, ReadOptions: &shardpb.ReadOptions{ReadConcernLevel: "majority"}})
	rcancel()
	if err == nil {
		t.Fatal("a majority read saw an uncommitted w:1 write")
	}
	if docs, err := cl.FindAll(ctx, ns, shardclient.Find{Filter: w1, ReadOptions: &shardpb.ReadOptions{ReadConcernLevel: "local"}}); err != nil || len(docs) != 1 {
		t.Fatalf("local read of the w:1 write: %v %v", docs, err)
	}
	// A majority write that cannot be acknowledged while the secondaries
	// are down; it is still waiting when the primary hangs.
	// One plain, one retryable (the session path records the statement
	// and must wait all the same).
	inflight := make(chan error, 2)
	lsid := docOf(t, bson.D{{Key: "id", Value: "paused-session"}})
	for _, w := range []struct {
		id      string
		session *shardpb.SessionInfo
	}{{"inflight", nil}, {"inflight-retryable", &shardpb.SessionInfo{Lsid: lsid, TxnNumber: 1}}} {
		go func() {
			res, err := cl.Insert(context.Background(), ns, []bson.Raw{docOf(t, bson.D{{Key: "_id", Value: w.id}})}, shardclient.WriteOptions{WriteConcern: majority, Session: w.session})
			if err == nil {
				err = writeErr(res)
			}
			inflight <- err
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the write reach the primary; not a correctness wait
	pold := c.Process(old)
	pold.Pause()
	for _, p := range secondaries {
		p.Start()
	}
	// Lease (1 s) expires; one of the secondaries wins.
	var elected string
	harness.Eventually(t, 20*time.Second, func() error {
		for n := range rs.primaries(ctx) {
			if n != old {
				elected = n
				return nil
			}
		}
		return fmt.Errorf("no new primary")
	})
	rs.primary.Store(elected)
	if res, err := rs.client(elected).Insert(ctx, ns, []bson.Raw{docOf(t, bson.D{{Key: "_id", Value: "after"}})}, shardclient.WriteOptions{WriteConcern: majority}); err != nil || writeErr(res) != nil {
		t.Fatalf("majority write on the new primary %s: %v %+v", elected, err, res)
	}
	pold.Resume()
	for range 2 {
		select {
		case err := <-inflight:
			if err == nil {
				t.Fatal("the stale primary acknowledged a majority write")
			}
			t.Logf("in-flight majority write on the stale primary: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("an in-flight majority write never answered")
		}
	}
	rs.waitConverged(30 * time.Second)
	for _, n := range rs.names {
		ids, err := rs.idsOn(ctx, n, ns)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		if !slices.Contains(ids, "base") || !slices.Contains(ids, "after") || slices.Contains(ids, "inflight") || slices.Contains(ids, "inflight-retryable") ||
			slices.ContainsFunc(ids, func(s string) bool { return len(s) > 3 && s[:3] == "w1-" }) {
			t.Fatalf("%s holds %v", n, ids)
		}
	}
	files := rollbackFiles(t, c.Process(old).Node())
	if len(files) == 0 {
		t.Fatalf("no rollback file under %s", c.Process(old).Node().DataDir)
	}
	var rolled []string
	for _, f := range files {
		rolled = append(rolled, idsInBSONFile(t, f)...)
	}
	for i := range 5 {
		if !slices.Contains(rolled, "w1-"+strconv.Itoa(i)) {
			t.Fatalf("rollback files hold %v, missing w1-%d", rolled, i)
		}
	}
	terms.check(t)
}

// TestReplSetRestarts: a secondary killed and restarted catches up; the
// whole set killed at once comes back with every majority-acknowledged
// write; a member whose data directory was lost resyncs from scratch.
func TestReplSetRestarts(t *testing.T) {
	t.Parallel()
	c, rs := newReplSetCluster(t)
	rs.waitPrimary(20 * time.Second)
	ctx := t.Context()
	const ns = "app.restart"
	var acked []string
	insert := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			id := fmt.Sprintf("%s-%d", prefix, i)
			_, err := rs.onPrimary(ctx, func(ctx context.Context, cl *shardclient.Client) error {
				res, err := cl.Insert(ctx, ns, []bson.Raw{docOf(t, bson.D{{Key: "_id", Value: id}})}, shardclient.WriteOptions{WriteConcern: majority})
				if err != nil {
					return err
				}
				return writeErr(res)
			})
			if err != nil && !mongoerr.HasCode(err, mongoerr.DuplicateKey) {
				t.Fatalf("insert %s: %v", id, err)
			}
			acked = append(acked, id)
		}
	}
	expect := func(what string) {
		t.Helper()
		rs.waitConverged(30 * time.Second)
		for _, n := range rs.names {
			ids, err := rs.idsOn(ctx, n, ns)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(ids)
			want := slices.Clone(acked)
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Fatalf("%s: %s holds %d ids, want %d", what, n, len(ids), len(want))
			}
		}
	}
	insert("a", 30)
	// One secondary down and back.
	primary := rs.waitPrimary(10 * time.Second)
	var sec *harness.Process
	for _, n := range rs.names {
		if n != primary {
			sec = c.Process(n)
			break
		}
	}
	sec.Kill()
	insert("b", 30) // a majority is still up
	sec.Start()
	expect("secondary restarted")

	// The whole set at once.
	for _, n := range rs.names {
		c.Process(n).Kill()
	}
	for _, n := range rs.names {
		c.Process(n).StartNoWait()
	}
	for _, n := range rs.names {
		c.Process(n).WaitHealthy(30 * time.Second)
	}
	rs.primary.Store("")
	rs.waitPrimary(20 * time.Second)
	expect("whole set restarted")
	insert("c", 10)

	// A member whose data directory is gone starts empty and resyncs.
	primary = rs.waitPrimary(10 * time.Second)
	for _, n := range rs.names {
		if n != primary {
			sec = c.Process(n)
			break
		}
	}
	sec.Stop()
	if err := os.RemoveAll(sec.Node().DataDir); err != nil {
		t.Fatal(err)
	}
	insert("d", 10)
	sec.Start()
	expect("empty member")
	if !strings.Contains(sec.LogTail(400), "initial sync done") {
		t.Fatalf("%s caught up without an initial sync:\n%s", sec.Name(), sec.LogTail(40))
	}
}

// TestReplSetStepDown: replSetStepDown hands the primary role to a
// caught-up secondary; the old primary does not stand again during its
// step-down period; a secondary refuses to step down.
func TestReplSetStepDown(t *testing.T) {
	t.Parallel()
	_, rs := newReplSetCluster(t)
	old := rs.waitPrimary(20 * time.Second)
	ctx := t.Context()
	for _, n := range rs.names {
		if n == old {
			continue
		}
		_, err := rs.repl(n).StepDown(ctx, &shardpb.StepDownRequest{StepDownSecs: 30})
		if !mongoerr.HasCode(rpcerr.Error(err), mongoerr.NotWritablePrimary) {
			t.Fatalf("step-down of secondary %s: %v", n, err)
		}
		break
	}
	if _, err := rs.repl(old).StepDown(ctx, &shardpb.StepDownRequest{StepDownSecs: 30, SecondaryCatchUpPeriodSecs: 5}); err != nil {
		t.Fatalf("step-down: %v", err)
	}
	rs.primary.Store("")
	var elected string
	harness.Eventually(t, 20*time.Second, func() error {
		ps := rs.primaries(ctx)
		if _, ok := ps[old]; ok {
			return fmt.Errorf("%s is primary again", old)
		}
		for n := range ps {
			elected = n
			return nil
		}
		return fmt.Errorf("no primary yet")
	})
	t.Logf("%s stepped down, %s elected", old, elected)
}

// rollbackFiles lists the rollback files of a member.
func rollbackFiles(t *testing.T, n config.Node) []string {
	t.Helper()
	dir := n.DataDir + "/rollback"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		out = append(out, dir+"/"+e.Name())
	}
	return out
}

// idsInBSONFile returns the string _ids of a file of concatenated BSON
// documents.
func idsInBSONFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for len(b) >= 5 {
		n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16 | int(b[3])<<24
		if n < 5 || n > len(b) {
			t.Fatalf("%s: bad document length %d", path, n)
		}
		if s, ok := bson.Raw(b[:n]).Lookup("_id").StringValueOK(); ok {
			ids = append(ids, s)
		}
		b = b[n:]
	}
	return ids
}
