// Package shardclient is the typed client of one shardd's Shard service
// (proto/shard.proto), used by the router and the tools. Methods take and
// return Go values (bson.Raw documents) and fail with *mongoerr.Error:
// command errors keep the shard's MongoDB code, transport failures map to
// the codes drivers retry on (pkg/rpcerr).
//
// It must never retry on its own, pick a replica set member, or cache
// anything: the caller decides where to send what.
package shardclient

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// MaxMessageSize is the gRPC message limit of the client (as the server's):
// a 16 MiB batch plus framing, or 48 MiB of documents to insert.
const MaxMessageSize = 64 << 20

// StreamWindow and ConnWindow are the gRPC flow-control windows of every
// connection between PSDB processes, per stream and per connection, on
// both sides (shardd's server uses the same values). Setting them fixes
// the windows instead of letting gRPC probe the link with pings; on
// loopback and LAN links these sizes keep the largest batches flowing.
const (
	StreamWindow = 8 << 20
	ConnWindow   = 32 << 20
)

// Client talks to one shardd. It is safe for concurrent use; gRPC
// multiplexes the calls on one connection.
type Client struct {
	addr   string
	conn   *grpc.ClientConn
	shard  shardpb.ShardClient
	health healthpb.HealthClient
}

// Dial returns a client for the shardd at addr ("127.0.0.1:27018"). The
// connection is made lazily: Dial does not fail for a server that is
// down; the first call does (HostUnreachable). ctx is not used for the
// connection, which lives until Close.
func Dial(_ context.Context, addr string) (*Client, error) {
	conn, err := grpc.NewClient(addr, DialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("shardclient: dial %s: %w", addr, err)
	}
	return &Client{addr: addr, conn: conn, shard: shardpb.NewShardClient(conn), health: healthpb.NewHealthClient(conn)}, nil
}

// DialOptions are the gRPC options of every connection to a shardd
// (routers and replica-set members alike): no TLS, message limits of
// MaxMessageSize, and a reconnect backoff capped at one second instead of
// gRPC's two minutes, because a member that restarts after a crash must be
// reachable again within a failover's time.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		grpc.WithChainUnaryInterceptor(attachShardVersion), // version.go
		// Fixed flow-control windows, as on the server (StreamWindow):
		// they turn off gRPC's bandwidth-delay estimation, whose pings
		// (and the acks and window updates around them) cost a write and
		// a wake-up on both sides for every few small messages.
		grpc.WithInitialWindowSize(StreamWindow),
		grpc.WithInitialConnWindowSize(ConnWindow),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
	}
}

// Close closes the connection; calls in flight fail.
func (c *Client) Close() error { return c.conn.Close() }

// Addr returns the address the client talks to.
func (c *Client) Addr() string { return c.addr }

// Conn returns the gRPC connection, for the other services of the same
// process (Replication).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Health returns nil when the shardd reports SERVING on the gRPC health
// service, else why not.
func (c *Client) Health(ctx context.Context) error {
	r, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return rpcerr.Error(err)
	}
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return mongoerr.New(mongoerr.ShutdownInProgress, "shardd at %s is %s", c.addr, r.GetStatus())
	}
	return nil
}

// CheckHealth dials addr, asks the health service once and closes: the
// check a launcher or harness runs to see whether a shardd serves.
func CheckHealth(ctx context.Context, addr string) error {
	c, err := Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Health(ctx)
}

// WaitHealthy polls Health until it succeeds or ctx ends (then it returns
// the last error).
func (c *Client) WaitHealthy(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		err := c.Health(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("shardd at %s not healthy: %w (last: %v)", c.addr, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// WriteOptions are the per-request options of a write.
type WriteOptions struct {
	// Ordered stops at the first failed statement.
	Ordered      bool
	WriteConcern *shardpb.WriteConcern
	ShardVersion *shardpb.ShardVersion
	Session      *shardpb.SessionInfo
}

// Upserted is a document inserted by an upsert statement.
type Upserted struct {
	Index int
	ID    bson.RawValue
}

// WriteError is the failure of statement Index. Info holds extra fields
// for the client (a duplicate key's keyPattern and keyValue), or nil.
type WriteError struct {
	Index int
	Err   *mongoerr.Error
	Info  bson.Raw
}

// WriteResult is the answer to Insert, Update and Delete.
type WriteResult struct {
	N, NModified      int64
	Upserted          []Upserted
	WriteErrors       []WriteError
	WriteConcernError *mongoerr.Error
	OpTime            *shardpb.OpTime
}

func writeResult(r *shardpb.WriteReply) (*WriteResult, error) {
	out := &WriteResult{N: r.GetN(), NModified: r.GetNModified(), OpTime: r.GetOpTime(), WriteConcernError: rpcerr.FromProto(r.GetWriteConcernError())}
	for _, u := range r.GetUpserted() {
		id, err := value(u.GetId())
		if err != nil {
			return nil, err
		}
		out.Upserted = append(out.Upserted, Upserted{Index: int(u.GetIndex()), ID: id})
	}
	for _, we := range r.GetWriteErrors() {
		e := rpcerr.FromProto(we.GetError())
		if e == nil {
			e = mongoerr.New(mongoerr.InternalError, "write error without an error")
		}
		out.WriteErrors = append(out.WriteErrors, WriteError{Index: int(we.GetIndex()), Err: e, Info: bson.Raw(we.GetError().GetInfo())})
	}
	return out, nil
}

// value decodes the {v: value} wire form of one value; empty is the zero
// RawValue.
func value(b []byte) (bson.RawValue, error) {
	if len(b) == 0 {
		return bson.RawValue{}, nil
	}
	v, err := bson.Raw(b).LookupErr("v")
	if err != nil {
		return bson.RawValue{}, mongoerr.New(mongoerr.InvalidBSON, "shard sent a malformed value: %v", err)
	}
	return v, nil
}

func raws(docs []bson.Raw) [][]byte {
	out := make([][]byte, len(docs))
	for i, d := range docs {
		out[i] = d
	}
	return out
}

// Insert inserts documents into ns (the collection is created if needed).
func (c *Client) Insert(ctx context.Context, ns string, docs []bson.Raw, o WriteOptions) (*WriteResult, error) {
	r, err := c.shard.Insert(ctx, &shardpb.InsertRequest{Ns: ns, Documents: raws(docs), Ordered: o.Ordered,
		WriteConcern: o.WriteConcern, ShardVersion: o.ShardVersion, Session: o.Session})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	return writeResult(r)
}

// UpdateStatement is one statement of an update.
type UpdateStatement struct {
	Filter, Update bson.Raw
	ArrayFilters   []bson.Raw
	Multi, Upsert  bool
}

// Update runs update statements.
func (c *Client) Update(ctx context.Context, ns string, stmts []UpdateStatement, o WriteOptions) (*WriteResult, error) {
	req := &shardpb.UpdateRequest{Ns: ns, Ordered: o.Ordered, WriteConcern: o.WriteConcern, ShardVersion: o.ShardVersion, Session: o.Session}
	for _, s := range stmts {
		req.Updates = append(req.Updates, &shardpb.UpdateStatement{Filter: s.Filter, Update: s.Update,
			ArrayFilters: raws(s.ArrayFilters), Multi: s.Multi, Upsert: s.Upsert})
	}
	r, err := c.shard.Update(ctx, req)
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	return writeResult(r)
}

// DeleteStatement is one statement of a delete: Limit 0 deletes every
// match, 1 the first.
type DeleteStatement struct {
	Filter bson.Raw
	Limit  int64
}

// Delete runs delete statements.
func (c *Client) Delete(ctx context.Context, ns string, stmts []DeleteStatement, o WriteOptions) (*WriteResult, error) {
	req := &shardpb.DeleteRequest{Ns: ns, Ordered: o.Ordered, WriteConcern: o.WriteConcern, ShardVersion: o.ShardVersion, Session: o.Session}
	for _, s := range stmts {
		req.Deletes = append(req.Deletes, &shardpb.DeleteStatement{Filter: s.Filter, Limit: s.Limit})
	}
	r, err := c.shard.Delete(ctx, req)
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	return writeResult(r)
}

// FindAndModify is a findAndModify command.
type FindAndModify struct {
	Filter, Sort, Update, Fields bson.Raw
	ArrayFilters                 []bson.Raw
	Remove, New, Upsert          bool
	WriteOptions
}

// FindAndModifyResult is its answer: Value is nil when no document
// matched (and none was upserted).
type FindAndModifyResult struct {
	Value             bson.Raw
	Matched           bool
	UpdatedExisting   bool
	UpsertedID        bson.RawValue
	WriteConcernError *mongoerr.Error
}

// FindAndModify changes or removes one document and returns it.
func (c *Client) FindAndModify(ctx context.Context, ns string, f FindAndModify) (*FindAndModifyResult, error) {
	r, err := c.shard.FindAndModify(ctx, &shardpb.FindAndModifyRequest{Ns: ns, Filter: f.Filter, Sort: f.Sort,
		Update: f.Update, Fields: f.Fields, Remove: f.Remove, New: f.New, Upsert: f.Upsert, ArrayFilters: raws(f.ArrayFilters),
		WriteConcern: f.WriteConcern, ShardVersion: f.ShardVersion, Session: f.Session})
	if err != nil {
		return nil, rpcerr.Error(err)
	}
	id, err := value(r.GetUpsertedId())
	if err != nil {
		return nil, err
	}
	out := &FindAndModifyResult{Matched: r.GetMatched(), UpdatedExisting: r.GetUpdatedExisting(), UpsertedID: id,
		WriteConcernError: rpcerr.FromProto(r.GetWriteConcernError())}
	if len(r.GetValue()) > 0 {
		out.Value = r.GetValue()
	}
	return out, nil
}
