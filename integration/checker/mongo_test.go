package checker

import (
	"bufio"
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/psdb/psdb/pkg/wire"
)

// wireFault is what the test wire server does with one insert.
type wireFault int

const (
	wireOK              wireFault = iota
	wireCloseAfterApply           // apply, then drop the connection: a network error
	wireNotPrimary                // {ok: 0, code: 10107}, not applied
	wireValidation                // writeErrors [{code: 121}], not applied
	wireWCETimeout                // applied, writeConcernError {code: 64}
)

// wireServer speaks just enough of the wire protocol (hello, insert,
// findAndModify, find, endSessions) in front of a memStore for MongoStore
// to be exercised through the real driver: no PSDB router exists yet to
// run it against. It injects one fault on the faultAt-th insert.
type wireServer struct {
	t       *testing.T
	store   *memStore
	faultAt int64
	fault   wireFault
	inserts atomic.Int64
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
}

func startWireServer(t *testing.T, store *memStore, faultAt int64, fault wireFault) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &wireServer{t: t, store: store, faultAt: faultAt, fault: fault, ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Go(s.accept)
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return ln.Addr().String()
}

func (s *wireServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			s.serve(c)
		})
	}
}

func (s *wireServer) serve(c net.Conn) {
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for id := int32(1); ; id++ {
		h, body, err := wire.ReadMessage(r, 0)
		if err != nil {
			return
		}
		var cmd bson.Raw
		switch b := body.(type) {
		case *wire.OpMsg:
			cmd, err = b.Command()
		case *wire.OpQuery:
			_, cmd, err = b.Command()
		default:
			return
		}
		if err != nil {
			return
		}
		reply, drop := s.handle(cmd)
		if drop {
			return
		}
		raw, err := bson.Marshal(reply)
		if err != nil {
			s.t.Errorf("marshal reply: %v", err)
			return
		}
		var out wire.Body = wire.NewOpMsgReply(raw)
		if _, ok := body.(*wire.OpQuery); ok {
			out = wire.NewOpReply(raw)
		}
		if err := wire.WriteMessage(w, &wire.MsgHeader{RequestID: id, ResponseTo: h.RequestID}, out); err != nil {
			return
		}
	}
}

// handle answers one command; drop closes the connection instead.
func (s *wireServer) handle(cmd bson.Raw) (reply bson.D, drop bool) {
	ctx := context.Background()
	name := cmd.Index(0).Key()
	switch name {
	case "hello", "isMaster", "ismaster":
		return bson.D{{Key: "isWritablePrimary", Value: true}, {Key: "ismaster", Value: true},
			{Key: "maxWireVersion", Value: int32(21)}, {Key: "minWireVersion", Value: int32(0)},
			{Key: "maxBsonObjectSize", Value: int32(16 << 20)}, {Key: "maxMessageSizeBytes", Value: int32(48_000_000)},
			{Key: "maxWriteBatchSize", Value: int32(100_000)}, {Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
			{Key: "ok", Value: 1.0}}, false
	case "ping", "endSessions", "killCursors":
		return bson.D{{Key: "ok", Value: 1.0}}, false
	case "insert":
		n := s.inserts.Add(1)
		fault := wireOK
		if n == s.faultAt {
			fault = s.fault
		}
		switch fault {
		case wireNotPrimary:
			return bson.D{{Key: "ok", Value: 0.0}, {Key: "code", Value: int32(10107)},
				{Key: "codeName", Value: "NotWritablePrimary"}, {Key: "errmsg", Value: "not primary"}}, false
		case wireValidation:
			return bson.D{{Key: "ok", Value: 1.0}, {Key: "n", Value: int32(0)}, {Key: "writeErrors", Value: bson.A{
				bson.D{{Key: "index", Value: int32(0)}, {Key: "code", Value: int32(121)}, {Key: "errmsg", Value: "Document failed validation"}}}}}, false
		}
		docs := cmd.Lookup("documents").Array()
		vals, _ := docs.Values()
		for _, v := range vals {
			var d bson.D
			if err := bson.Unmarshal(v.Document(), &d); err != nil {
				s.t.Errorf("insert: %v", err)
			}
			if err := s.store.InsertOne(ctx, d); err != nil {
				s.t.Errorf("insert: %v", err)
			}
		}
		switch fault {
		case wireCloseAfterApply:
			return nil, true
		case wireWCETimeout:
			return bson.D{{Key: "ok", Value: 1.0}, {Key: "n", Value: int32(len(vals))}, {Key: "writeConcernError",
				Value: bson.D{{Key: "code", Value: int32(64)}, {Key: "codeName", Value: "WriteConcernTimeout"}, {Key: "errmsg", Value: "waiting for replication timed out"}}}}, false
		}
		return bson.D{{Key: "ok", Value: 1.0}, {Key: "n", Value: int32(len(vals))}}, false
	case "findAndModify":
		id := cmd.Lookup("query").Document().Lookup("_id").StringValue()
		inc := cmd.Lookup("update").Document().Lookup("$inc").Document().Lookup("n").AsInt64()
		if !cmd.Lookup("new").Boolean() || !cmd.Lookup("upsert").Boolean() {
			s.t.Errorf("findAndModify without new and upsert: %v", cmd)
		}
		after, err := s.store.UpdateCounter(ctx, id, inc)
		if err != nil {
			s.t.Errorf("findAndModify: %v", err)
		}
		return bson.D{{Key: "ok", Value: 1.0}, {Key: "value", Value: bson.D{{Key: "_id", Value: id}, {Key: "n", Value: after}}}}, false
	case "find":
		var batch bson.A
		if f := cmd.Lookup("filter").Document(); len(f) > 5 {
			id := f.Lookup("_id").StringValue()
			if n, ok, err := s.store.ReadCounter(ctx, id); err != nil {
				s.t.Errorf("find: %v", err)
			} else if ok {
				batch = append(batch, bson.D{{Key: "_id", Value: id}, {Key: "n", Value: int32(n)}})
			}
		} else {
			ids, err := s.store.ScanIDs(ctx)
			if err != nil {
				s.t.Errorf("find: %v", err)
			}
			for _, id := range ids {
				batch = append(batch, bson.D{{Key: "_id", Value: id}})
			}
		}
		ns := cmd.Lookup("$db").StringValue() + "." + cmd.Lookup("find").StringValue()
		return bson.D{{Key: "ok", Value: 1.0}, {Key: "cursor", Value: bson.D{{Key: "id", Value: int64(0)},
			{Key: "ns", Value: ns}, {Key: "firstBatch", Value: batch}}}}, false
	}
	return bson.D{{Key: "ok", Value: 0.0}, {Key: "code", Value: int32(59)}, {Key: "codeName", Value: "CommandNotFound"},
		{Key: "errmsg", Value: "no such command: '" + name + "'"}}, false
}

// TestMongoStoreThroughDriver runs the workload through MongoStore and the
// real driver, and checks that the driver's errors get the right outcome
// and error key.
func TestMongoStoreThroughDriver(t *testing.T) {
	tests := []struct {
		name    string
		fault   wireFault
		outcome Outcome
		key     string
		present bool
	}{
		{"clean", wireOK, Acked, "", true},
		{"connection dropped after apply", wireCloseAfterApply, Indeterminate, ClassNetwork, true},
		{"not writable primary", wireNotPrimary, Indeterminate, "10107 NotWritablePrimary", false},
		{"document validation", wireValidation, Failed, "121 DocumentValidationFailure", false},
		{"write concern timeout", wireWCETimeout, Indeterminate, "64 WriteConcernTimeout", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMemStore(faults{})
			addr := startWireServer(t, mem, 5, tc.fault)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			client, err := mongo.Connect(options.Client().SetHosts([]string{addr}).SetDirect(true).
				SetServerSelectionTimeout(5 * time.Second).SetHeartbeatInterval(500 * time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := client.Disconnect(context.Background()); err != nil {
					t.Errorf("disconnect: %v", err)
				}
			}()
			coll := client.Database("chk").Collection("h", options.Collection().SetWriteConcern(writeconcern.Majority()))
			store := NewMongoStore(coll)

			// One writer makes the faulted insert deterministic: its 5th.
			h := runFor(t, ctx, store, Workload{Writers: 1, Readers: 2, MaxOps: 30, OpTimeout: 5 * time.Second, ErrorBackoff: time.Millisecond})
			view, err := Collect(ctx, "wire", store, h)
			if err != nil {
				t.Fatal(err)
			}
			r := VerifyViews(ctx, h, view)
			if !r.OK() || r.Ops != 30 {
				t.Fatalf("report:\n%s", r)
			}
			ops := h.Ops()
			i := slices.IndexFunc(ops, func(op Op) bool { return op.ID == "chk-w0-4" })
			if i < 0 {
				t.Fatal("insert chk-w0-4 not recorded")
			}
			op := ops[i]
			if op.Outcome != tc.outcome || op.ErrKey != tc.key {
				t.Errorf("insert 5: outcome %v key %q (err %v), want %v %q", op.Outcome, op.ErrKey, op.Err, tc.outcome, tc.key)
			}
			if got := slices.Contains(view.IDs, op.ID); got != tc.present {
				t.Errorf("insert 5 present = %v, want %v", got, tc.present)
			}
			if tc.fault != wireOK {
				var se mongo.ServerError
				if tc.key != ClassNetwork && !errors.As(op.Err, &se) {
					t.Errorf("error %T %v is not a mongo.ServerError", op.Err, op.Err)
				}
			}
			wantAcked := 9 // the writer's quota is 10 of the 30 operations
			if tc.outcome == Acked {
				wantAcked = 10
			}
			if len(r.Acked) != wantAcked || len(h.Counters()) != 4 || len(view.Counters) != 4 {
				t.Errorf("acked %d, counters %v:\n%s", len(r.Acked), view.Counters, r)
			}
		})
	}
}
