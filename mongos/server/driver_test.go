package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// connectDriver connects the official Go driver to addr.
func connectDriver(t testing.TB, addr string, opts ...*options.ClientOptions) *mongo.Client {
	t.Helper()
	o := options.Client().ApplyURI("mongodb://" + addr + "/").
		SetServerSelectionTimeout(10 * time.Second).
		SetConnectTimeout(5 * time.Second)
	c, err := mongo.Connect(append([]*options.ClientOptions{o}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Disconnect(ctx)
	})
	return c
}

func wantCommandError(t *testing.T, err error, code int32) {
	t.Helper()
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("got %v (%T), want a CommandError with code %d", err, err, code)
	}
}

func TestDriver(t *testing.T) {
	log, logs := testLogger()
	_, addr := startServer(t, Options{Logger: log})
	c := connectDriver(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := c.Database("admin")

	if err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	var bi struct {
		Version      string  `bson:"version"`
		VersionArray []int32 `bson:"versionArray"`
		Bits         int32   `bson:"bits"`
		OK           float64 `bson:"ok"`
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&bi); err != nil {
		t.Fatalf("buildInfo: %v", err)
	}
	if bi.Version != ServerVersion || len(bi.VersionArray) != 4 || bi.Bits != 64 || bi.OK != 1 {
		t.Errorf("buildInfo: %+v", bi)
	}
	hello, err := admin.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Raw()
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	if hello.Lookup("msg").StringValue() != "isdbgrid" || !hello.Lookup("isWritablePrimary").Boolean() {
		t.Errorf("hello: %s", hello)
	}
	me, err := admin.RunCommand(ctx, bson.D{{Key: "whatsmyuri", Value: 1}}).Raw()
	if err != nil {
		t.Fatalf("whatsmyuri: %v", err)
	}
	if _, _, err := net.SplitHostPort(me.Lookup("you").StringValue()); err != nil {
		t.Errorf("whatsmyuri: %s", me)
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "connectionStatus", Value: 1}}).Err(); err != nil {
		t.Errorf("connectionStatus: %v", err)
	}
	fcv, err := admin.RunCommand(ctx, bson.D{{Key: "getParameter", Value: 1}, {Key: "featureCompatibilityVersion", Value: 1}}).Raw()
	if err != nil || fcv.Lookup("featureCompatibilityVersion", "version").StringValue() != "7.0" {
		t.Errorf("getParameter: %s, %v", fcv, err)
	}

	wantCommandError(t, admin.RunCommand(ctx, bson.D{{Key: "foo", Value: 1}}).Err(), 59)
	wantCommandError(t, admin.RunCommand(ctx, bson.D{{Key: "atlasVersion", Value: 1}}).Err(), 59)
	_, err = c.ListDatabaseNames(ctx, bson.D{})
	wantCommandError(t, err, 94) // no Backend: not connected to a cluster
	wantCommandError(t, c.Database("test").RunCommand(ctx, bson.D{{Key: "getParameter", Value: "*"}}).Err(), 13)

	// The connection survives errors: ping again.
	if err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("Ping after errors: %v", err)
	}
	// The driver's first message is a legacy OP_QUERY isMaster (or hello);
	// it was answered, then OP_MSG was used.
	if l := logs.lines(`"message":"command"`, `"ok":true`); len(l) < 5 {
		t.Errorf("too few command lines logged:\n%s", logs)
	}
	if l := logs.lines(`"level":"warn"`); len(l) != 0 {
		t.Errorf("warnings logged for a well-behaved driver:\n%s", l)
	}
}

func TestDriverConcurrentClients(t *testing.T) {
	s, addr := startServer(t, Options{})
	const clients, pings = 12, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := connectDriver(t, addr, options.Client().SetMaxPoolSize(4))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for j := range pings {
				var err error
				if j%2 == 0 {
					err = c.Ping(ctx, nil)
				} else {
					err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Err()
				}
				if err != nil {
					errs <- fmt.Errorf("client %d op %d: %w", i, j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.stats.totalCreated.Load(); n < clients {
		t.Errorf("%d connections created for %d clients", n, clients)
	}
	if n := s.stats.commands["ping"].total.Load(); n < clients*pings/2 {
		t.Errorf("ping counted %d times", n)
	}
}

func TestShutdownFinishesInFlightRequest(t *testing.T) {
	started, release := make(chan struct{}, 1), make(chan struct{})
	s, addr := startServer(t, Options{}, blockingCommand("testBlock", started, release))
	c := connectDriver(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Ping(ctx, nil); err != nil {
		t.Fatal(err)
	}
	idle := dialRaw(t, addr) // an idle connection: closed at once by Shutdown

	result := make(chan error, 1)
	var reply bson.Raw
	go func() {
		var err error
		reply, err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "testBlock", Value: 1}}).Raw()
		result <- err
	}()
	<-started

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()

	// The idle connection is closed while the request is still running.
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection got data instead of being closed")
	}
	// No new connections are accepted.
	waitFor(t, "listener closed", 10*time.Second, func() bool {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		nc.Close()
		return false
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a request was in flight", err)
	default:
	}
	close(release)
	if err := <-result; err != nil {
		t.Fatalf("in-flight request failed: %v", err)
	}
	if !reply.Lookup("waited").Boolean() {
		t.Errorf("reply %s", reply)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := s.currentConns(); n != 0 {
		t.Errorf("%d connections left after Shutdown", n)
	}
}

func TestShutdownDeadlineForceCloses(t *testing.T) {
	started, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	s, addr := startServer(t, Options{}, blockingCommand("testBlock", started, release))
	nc := dialRaw(t, addr)
	sendMsg(t, nc, 1, 0, bson.D{{Key: "testBlock", Value: 1}, {Key: "$db", Value: "admin"}})
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Shutdown took %s", d)
	}
	if n := s.currentConns(); n != 0 {
		t.Errorf("%d connections left", n)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after a forced shutdown")
	}
}
