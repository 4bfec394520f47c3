package catalog

import (
	"context"
	"testing"
	"time"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func TestRouters(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	_, err := c.RegisterRouter(ctx, "", "h:1", time.Second)
	mustErr(t, err, ErrInvalid, mongoerr.BadValue)
	_, err = c.RegisterRouter(ctx, "r0", "", time.Second)
	mustErr(t, err, ErrInvalid, mongoerr.BadValue)
	r0, err := c.RegisterRouter(ctx, "r0", "127.0.0.1:27017", time.Second)
	mustOK(t, err)
	r1, err := c.RegisterRouter(ctx, "r1", "127.0.0.1:27018", time.Second)
	mustOK(t, err)
	// Kept alive past the TTL.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		rs, err := c.ListRouters(ctx)
		mustOK(t, err)
		if len(rs) != 2 || rs[0].ID != "r0" || rs[1].Addr != "127.0.0.1:27018" {
			t.Fatalf("routers %+v", rs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustOK(t, r0.Close(ctx))
	select {
	case <-r0.Done():
	default:
		t.Fatal("Done open after Close")
	}
	rs, err := c.ListRouters(ctx)
	mustOK(t, err)
	if len(rs) != 1 || rs[0].ID != "r1" {
		t.Fatalf("routers after close %+v", rs)
	}
	// Revoking the lease behind its back ends the registration.
	if _, err := testCli.Revoke(ctx, r1.LeaseID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r1.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("registration not reported lost")
	}
	mustOK(t, r1.Close(ctx))
}

func TestBalancerSettings(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	s, err := c.GetBalancerSettings(ctx)
	mustOK(t, err)
	if s != DefaultBalancerSettings() {
		t.Fatalf("defaults %+v", s)
	}
	tests := []struct {
		name string
		edit func(*BalancerSettings)
		ok   bool
	}{
		{"disable", func(s *BalancerSettings) { s.Enabled = false }, true},
		{"window", func(s *BalancerSettings) { s.WindowStart, s.WindowEnd = "23:00", "06:00" }, true},
		{"half window", func(s *BalancerSettings) { s.WindowStart = "23:00" }, false},
		{"bad window", func(s *BalancerSettings) { s.WindowStart, s.WindowEnd = "25:00", "06:00" }, false},
		{"zero threshold", func(s *BalancerSettings) { s.Threshold = 0 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultBalancerSettings()
			tc.edit(&s)
			err := c.SetBalancerSettings(ctx, s)
			if !tc.ok {
				mustErr(t, err, ErrInvalid, mongoerr.BadValue)
				return
			}
			mustOK(t, err)
			got, err := c.GetBalancerSettings(ctx)
			mustOK(t, err)
			if got != s {
				t.Fatalf("got %+v want %+v", got, s)
			}
		})
	}
}

func TestBalancerLeadership(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	l1, err := c.CampaignBalancer(ctx, "router-1", time.Second)
	mustOK(t, err)
	if id, _ := c.BalancerLeader(ctx); id != "router-1" {
		t.Fatalf("leader %q", id)
	}
	// A second candidate waits while the first leads.
	waitCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = c.CampaignBalancer(waitCtx, "router-2", time.Second)
	cancel()
	if err == nil {
		t.Fatal("second candidate became leader while the first leads")
	}
	got := make(chan *Leadership, 1)
	go func() {
		l2, err := c.CampaignBalancer(ctx, "router-2", time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	mustOK(t, l1.Resign(ctx))
	select {
	case <-l1.Ctx.Done():
	default:
		t.Fatal("leadership context alive after Resign")
	}
	var l2 *Leadership
	select {
	case l2 = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("second candidate never elected")
	}
	if id, _ := c.BalancerLeader(ctx); id != "router-2" {
		t.Fatalf("leader %q", id)
	}
	// Losing the session lease cancels the leadership context.
	if _, err := testCli.Revoke(ctx, l2.sess.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l2.Ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("leadership context alive after the lease was lost")
	}
}

func TestUsers(t *testing.T) {
	ctx := testCtx(t)
	c := newTestCatalog(t)
	u := User{User: "alice/x@y", DB: "admin", Credentials: []byte{1, 2, 3}, Roles: []Role{{Role: "root", DB: "admin"}}}
	mustOK(t, c.CreateUser(ctx, u))
	mustErr(t, c.CreateUser(ctx, u), ErrExists, 51003)
	mustErr(t, c.CreateUser(ctx, User{DB: "admin"}), ErrInvalid, mongoerr.BadValue)
	mustErr(t, c.CreateUser(ctx, User{User: "b", DB: "a.b"}), ErrInvalid, mongoerr.InvalidNamespace)
	got, err := c.GetUser(ctx, "admin", "alice/x@y")
	mustOK(t, err)
	if got.User != u.User || string(got.Credentials) != string(u.Credentials) || len(got.Roles) != 1 || got.Roles[0] != u.Roles[0] {
		t.Fatalf("got %+v", got)
	}
	us, err := c.ListUsers(ctx, "admin")
	mustOK(t, err)
	if len(us) != 1 {
		t.Fatalf("list %+v", us)
	}
	_, err = c.GetUser(ctx, "other", "alice/x@y")
	mustErr(t, err, ErrNotFound, mongoerr.UserNotFound)
	mustOK(t, c.DeleteUser(ctx, "admin", "alice/x@y"))
	mustErr(t, c.DeleteUser(ctx, "admin", "alice/x@y"), ErrNotFound, mongoerr.UserNotFound)
}
