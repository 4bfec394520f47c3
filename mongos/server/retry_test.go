package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/pkg/shardclient"
)

func TestRetryTable(t *testing.T) {
	unavailable := rpcerr.Error(status.Error(codes.Unavailable, "connection refused"))
	cases := []struct {
		err                       error
		read, write, retryableOne retryAction
	}{
		{mongoerr.New(mongoerr.NotWritablePrimary, "x"), actRetry, actRetry, actRetry},
		{mongoerr.New(mongoerr.NotPrimaryNoSecondaryOk, "x"), actRetry, actRetry, actRetry},
		{mongoerr.New(mongoerr.NotPrimaryOrSecondary, "x"), actRetry, actRetry, actRetry},
		{mongoerr.New(mongoerr.FailedToSatisfyReadPreference, "x"), actRetry, actRetry, actRetry},
		{mongoerr.New(mongoerr.PrimarySteppedDown, "x"), actRetry, actFail, actRetry},
		{mongoerr.New(mongoerr.InterruptedDueToReplStateChange, "x"), actRetry, actFail, actRetry},
		{mongoerr.New(mongoerr.HostUnreachable, "x"), actRetry, actFail, actRetry},
		{unavailable, actRetry, actFail, actRetry},
		{mongoerr.New(mongoerr.ShutdownInProgress, "x"), actRetry, actFail, actRetry},
		{mongoerr.New(mongoerr.InterruptedAtShutdown, "x"), actRetry, actFail, actRetry},
		{mongoerr.New(mongoerr.StaleConfig, "x"), actRefresh, actRefresh, actRefresh},
		{mongoerr.New(mongoerr.StaleEpoch, "x"), actRefresh, actRefresh, actRefresh},
		{mongoerr.New(mongoerr.DuplicateKey, "x"), actFail, actFail, actFail},
		{mongoerr.New(mongoerr.MaxTimeMSExpired, "x"), actFail, actFail, actFail},
		{errors.New("plain"), actFail, actFail, actFail},
	}
	for _, tc := range cases {
		got := [3]retryAction{decide(opRead, tc.err), decide(opWrite, tc.err), decide(opRetryableWrite, tc.err)}
		want := [3]retryAction{tc.read, tc.write, tc.retryableOne}
		if got != want {
			t.Errorf("%v: got %v, want %v", tc.err, got, want)
		}
	}
	// Every class has a row.
	for c := classOther; c <= classStale; c++ {
		if _, ok := retryTable[c]; !ok {
			t.Errorf("class %d has no row", c)
		}
	}
}

func TestFailoverInResult(t *testing.T) {
	stepped := mongoerr.New(mongoerr.PrimarySteppedDown, "stepped down")
	for _, tc := range []struct {
		name string
		r    shardclient.WriteResult
		want mongoerr.Code
	}{
		{"clean", shardclient.WriteResult{N: 1}, 0},
		{"wce stepped down", shardclient.WriteResult{N: 1, WriteConcernError: stepped}, mongoerr.PrimarySteppedDown},
		{"wce timeout", shardclient.WriteResult{N: 1, WriteConcernError: mongoerr.New(mongoerr.WriteConcernTimeout, "t")}, 0},
		{"duplicate", shardclient.WriteResult{WriteErrors: []shardclient.WriteError{{Err: mongoerr.New(mongoerr.DuplicateKey, "d")}}}, 0},
		{"not primary statement", shardclient.WriteResult{N: 1, WriteErrors: []shardclient.WriteError{{Index: 1, Err: mongoerr.New(mongoerr.NotWritablePrimary, "n")}}}, mongoerr.NotWritablePrimary},
	} {
		err := failoverInResult(&tc.r)
		if mongoerr.CodeOf(err) != tc.want {
			t.Errorf("%s: got %v, want code %d", tc.name, err, tc.want)
		}
	}
}

func TestParseCmdOptions(t *testing.T) {
	lsid := doc(t, bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}})
	req := &Request{DB: "db", LSID: lsid, Doc: doc(t, bson.D{
		{Key: "insert", Value: "c"},
		{Key: "writeConcern", Value: bson.D{{Key: "w", Value: "majority"}, {Key: "wtimeout", Value: 500}, {Key: "j", Value: true}}},
		{Key: "readConcern", Value: bson.D{{Key: "level", Value: "majority"}}},
		{Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "secondaryPreferred"}}},
		{Key: "lsid", Value: lsid},
		{Key: "txnNumber", Value: int64(7)},
	})}
	o, err := parseCmdOptions(req)
	if err != nil {
		t.Fatal(err)
	}
	if o.wc.GetWMode() != "majority" || o.wc.GetWtimeoutMs() != 500 || !o.wc.GetJ() {
		t.Errorf("write concern %v", o.wc)
	}
	if o.ro.GetReadPreference() != prefSecondaryPreferred || o.ro.GetReadConcernLevel() != "majority" || o.mode != prefSecondaryPreferred {
		t.Errorf("read options %v mode %q", o.ro, o.mode)
	}
	if !o.retryable() || o.writeKind() != opRetryableWrite {
		t.Errorf("not retryable: %+v", o)
	}
	s := o.session([]int{3, 5})
	if string(s.GetLsid()) != string(lsid) || s.GetTxnNumber() != 7 || len(s.GetStmtIds()) != 2 || s.GetStmtIds()[0] != 3 || s.GetStmtIds()[1] != 5 {
		t.Errorf("session %v", s)
	}
	wo := o.writeOptions(false, []int{1})
	if wo.Ordered || wo.WriteConcern != o.wc || wo.Session.GetStmtIds()[0] != 1 {
		t.Errorf("write options %+v", wo)
	}
	if got := readOptionsFrom(o.readContext(context.Background())); got != o.ro {
		t.Errorf("read context carries %v", got)
	}

	// No options: nothing is sent, and the write is not retryable.
	o, err = parseCmdOptions(&Request{DB: "db", Doc: doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "primary"}}}})})
	if err != nil || o.wc != nil || o.ro != nil || o.retryable() || o.session([]int{0}) != nil || o.writeKind() != opWrite {
		t.Errorf("plain command: %+v, %v", o, err)
	}
	wc, err := parseWriteConcern(doc(t, bson.D{{Key: "w", Value: 2}}))
	if err != nil || wc.GetW() != 2 || wc.GetWMode() != "" {
		t.Errorf("w: 2 gives %v, %v", wc, err)
	}

	for _, tc := range []struct {
		name string
		d    bson.D
		lsid bson.Raw
		code mongoerr.Code
	}{
		{"txnNumber without lsid", bson.D{{Key: "insert", Value: "c"}, {Key: "txnNumber", Value: int64(1)}}, nil, mongoerr.InvalidOptions},
		{"txnNumber type", bson.D{{Key: "insert", Value: "c"}, {Key: "txnNumber", Value: "1"}}, lsid, mongoerr.TypeMismatch},
		{"bad mode", bson.D{{Key: "find", Value: "c"}, {Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "fastest"}}}}, nil, mongoerr.FailedToParse},
		{"tag w", bson.D{{Key: "insert", Value: "c"}, {Key: "writeConcern", Value: bson.D{{Key: "w", Value: "dc1"}}}}, nil, mongoerr.UnknownReplWriteConcern},
		{"w type", bson.D{{Key: "insert", Value: "c"}, {Key: "writeConcern", Value: bson.D{{Key: "w", Value: true}}}}, nil, mongoerr.FailedToParse},
		{"readConcern type", bson.D{{Key: "find", Value: "c"}, {Key: "readConcern", Value: 1}}, nil, mongoerr.TypeMismatch},
		{"level type", bson.D{{Key: "find", Value: "c"}, {Key: "readConcern", Value: bson.D{{Key: "level", Value: 1}}}}, nil, mongoerr.TypeMismatch},
	} {
		_, err := parseCmdOptions(&Request{DB: "db", LSID: tc.lsid, Doc: doc(t, tc.d)})
		if mongoerr.CodeOf(err) != tc.code {
			t.Errorf("%s: got %v, want code %d", tc.name, err, tc.code)
		}
	}
}

// TestWaitChange checks the retry wait: it ends at a change, at the
// backoff, and reports false once the deadline or the context is done.
func TestWaitChange(t *testing.T) {
	ctx := context.Background()
	ch := make(chan struct{})
	close(ch)
	if !waitChange(ctx, ch, time.Hour, time.Now().Add(time.Hour)) {
		t.Fatal("closed channel: want true")
	}
	start := time.Now()
	if !waitChange(ctx, make(chan struct{}), 20*time.Millisecond, time.Now().Add(time.Hour)) {
		t.Fatal("backoff: want true")
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("returned before the backoff")
	}
	if waitChange(ctx, make(chan struct{}), time.Hour, time.Now().Add(10*time.Millisecond)) {
		t.Fatal("deadline: want false")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if waitChange(cctx, make(chan struct{}), time.Hour, time.Now().Add(time.Hour)) {
		t.Fatal("cancelled: want false")
	}
}
