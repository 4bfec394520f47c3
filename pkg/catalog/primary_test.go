package catalog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/psdb/psdb/pkg/mongoerr"
)

const childEnv = "PSDB_CATALOG_LEASE_CHILD" // "endpoint|prefix|shard"

// childMain runs in a re-executed test binary: it takes the primary lease
// with TTL 1s, reports its term, and blocks until killed.
func childMain() int {
	parts := strings.Split(os.Getenv(childEnv), "|")
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{parts[0]}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	c := New(cli, WithPrefix(parts[1]))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	l, err := c.AcquirePrimary(ctx, parts[2], "child", time.Second)
	cancel()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Printf("acquired %d\n", l.Term)
	<-l.Done()
	fmt.Println("lost", l.Err())
	return 2
}

func TestAcquirePrimary(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0")
	_, err := c.AcquirePrimary(ctx, "nope", "m", time.Second)
	mustErr(t, err, ErrNotFound, mongoerr.ShardNotFound)
	_, err = c.GetPrimary(ctx, "rs0")
	mustErr(t, err, ErrNotFound, 0)

	obsCtx, stopObs := context.WithCancel(ctx)
	defer stopObs()
	obs := c.ObservePrimary(obsCtx, "rs0")
	if first := <-obs; first.Present {
		t.Fatalf("first observation %+v, want absent", first)
	}

	var last int64
	for i := 0; i < 3; i++ {
		l, err := c.AcquirePrimary(ctx, "rs0", fmt.Sprintf("m%d", i), 2*time.Second)
		mustOK(t, err)
		if l.Term <= last {
			t.Fatalf("term %d after %d: terms must grow", l.Term, last)
		}
		last = l.Term
		if !time.Now().Before(l.ValidUntil()) {
			t.Fatalf("ValidUntil %v already passed", l.ValidUntil())
		}
		p, err := c.GetPrimary(ctx, "rs0")
		mustOK(t, err)
		if p.Member != l.Member || p.Term != l.Term {
			t.Fatalf("GetPrimary = %+v, lease %s/%d", p, l.Member, l.Term)
		}
		// Held: nobody else, not even the holder, gets it again.
		_, err = c.AcquirePrimary(ctx, "rs0", "other", time.Second)
		mustErr(t, err, ErrPrimaryHeld, mongoerr.ElectionInProgress)
		expectObs(t, obs, true, l.Member, l.Term)

		lctx, lcancel := l.Context(ctx)
		mustOK(t, l.Revoke(ctx))
		select {
		case <-l.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done not closed after Revoke")
		}
		select {
		case <-lctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("leadership context not cancelled after Revoke")
		}
		lcancel()
		mustOK(t, l.Revoke(ctx)) // twice is fine
		expectObs(t, obs, false, "", 0)
	}
	if term, _ := c.CurrentTerm(ctx, "rs0"); term != last {
		t.Fatalf("CurrentTerm %d, want %d", term, last)
	}
}

func expectObs(t *testing.T, obs <-chan PrimaryChange, present bool, member string, term int64) {
	t.Helper()
	select {
	case ch := <-obs:
		if ch.Present != present || ch.Member != member || ch.Term != term {
			t.Fatalf("observed %+v, want present=%v %s/%d", ch, present, member, term)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no observation")
	}
}

// A deleted primary key (e.g. by an operator) ends the lease at once.
func TestPrimaryLeaseLostOnDelete(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0")
	l, err := c.AcquirePrimary(ctx, "rs0", "m", 5*time.Second)
	mustOK(t, err)
	defer l.Revoke(ctx)
	if _, err := testCli.Delete(ctx, c.primaryKey("rs0")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
		if l.Err() == nil {
			t.Fatal("Done closed with nil Err")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lease not reported lost after its key was deleted")
	}
}

// Many candidates at once: exactly one wins each round, terms only grow.
func TestAcquirePrimaryRace(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0")
	var last int64
	for round := 0; round < 10; round++ {
		const n = 5
		var wg sync.WaitGroup
		leases := make([]*PrimaryLease, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				leases[i], errs[i] = c.AcquirePrimary(ctx, "rs0", fmt.Sprintf("m%d", i), 2*time.Second)
			}()
		}
		close(start)
		wg.Wait()
		var winner *PrimaryLease
		for i := range leases {
			if errs[i] == nil {
				if winner != nil {
					t.Fatalf("round %d: two winners %s and %s", round, winner.Member, leases[i].Member)
				}
				winner = leases[i]
			} else if !errors.Is(errs[i], ErrPrimaryHeld) && !errors.Is(errs[i], ErrConflict) {
				t.Fatalf("round %d: unexpected error %v", round, errs[i])
			}
		}
		if winner == nil {
			t.Fatalf("round %d: no winner", round)
		}
		if winner.Term <= last {
			t.Fatalf("term %d after %d", winner.Term, last)
		}
		last = winner.Term
		mustOK(t, winner.Revoke(ctx))
	}
}

// The holder process is SIGKILLed: its key disappears within TTL + 1 s.
func TestPrimaryLeaseVanishesWhenHolderKilled(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0")
	prev, err := c.CurrentTerm(ctx, "rs0")
	mustOK(t, err)
	for run := 0; run < 2; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+testEtcd.Endpoint+"|"+c.Prefix()+"|rs0")
		out, err := cmd.StdoutPipe()
		mustOK(t, err)
		cmd.Stderr = os.Stderr
		mustOK(t, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "acquired ") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child said %q (%v)", line, err)
		}
		var term int64
		fmt.Sscanf(line, "acquired %d", &term)
		if term <= prev {
			t.Fatalf("child term %d after %d", term, prev)
		}
		prev = term
		if p, err := c.GetPrimary(ctx, "rs0"); err != nil || p.Member != "child" {
			t.Fatalf("primary %+v %v", p, err)
		}
		obs := c.ObservePrimary(ctx, "rs0")
		<-obs // current: the child
		killed := time.Now()
		mustOK(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()
		deadline := time.After(2 * time.Second) // TTL 1 s + 1 s
		select {
		case ch := <-obs:
			if ch.Present {
				t.Fatalf("observed %+v, want the key gone", ch)
			}
			t.Logf("run %d: primary key gone %v after SIGKILL (TTL 1s)", run, time.Since(killed).Round(time.Millisecond))
		case <-deadline:
			t.Fatalf("primary key still present %v after SIGKILL", time.Since(killed))
		}
	}
}

// A lease stays held well past its TTL (renewals keep ValidUntil ahead
// of now), and revoking it behind the holder's back ends it. TTL 2 s: with
// 1 s, a machine stalled for more than ~0.7 s (CI under load) would make
// the holder give up, which is the safe failure but not what this tests.
func TestPrimaryLeaseRenewal(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	addShards(t, c, "rs0")
	l, err := c.AcquirePrimary(ctx, "rs0", "m", 2*time.Second)
	mustOK(t, err)
	defer l.Revoke(ctx)
	first := l.ValidUntil()
	hold := time.NewTimer(5 * time.Second)
	defer hold.Stop()
	select {
	case <-l.Done():
		t.Fatalf("2s lease lost: %v", l.Err())
	case <-hold.C:
	}
	if !l.ValidUntil().After(first) || !time.Now().Before(l.ValidUntil()) {
		t.Fatalf("ValidUntil %v not renewed (first %v, now %v)", l.ValidUntil(), first, time.Now())
	}
	if _, err := testCli.Revoke(ctx, l.LeaseID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("lease not reported lost after it was revoked")
	}
}
