package server

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/mongos/targeting"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
)

// This file is the router's side of failover (issue 6 item 6): what a
// shard call that failed is retried on, and the client options passed
// through to the shards. docs/design/mongos.md, "Following primaries and
// retries".

// opKind is what a shard call does, as far as retrying it is concerned.
type opKind int

const (
	// opRead changes nothing: retrying it is always safe.
	opRead opKind = iota
	// opWrite is a write without a session: a retry after an unknown
	// outcome could apply it twice.
	opWrite
	// opRetryableWrite carries lsid and txnNumber: the shard answers a
	// retry with the first execution's recorded result.
	opRetryableWrite
)

// errClass groups the errors of a shard call by what they say about the
// call's outcome.
type errClass int

const (
	// classOther: anything else (a user error, a bug): not retried.
	classOther errClass = iota
	// classRefused: the member refused before doing anything because it is
	// not primary (NotWritablePrimary 10107) or cannot serve the read
	// (NotPrimaryNoSecondaryOk 13435, NotPrimaryOrSecondary 13436).
	classRefused
	// classNoCandidate: the router knows no member matching the read
	// preference (FailedToSatisfyReadPreference 133, the router's own
	// answer); nothing was sent.
	classNoCandidate
	// classSteppedDown: the member stopped being primary while the call
	// ran (PrimarySteppedDown 189, InterruptedDueToReplStateChange 11602):
	// a write may or may not have been applied.
	classSteppedDown
	// classUnreachable: the member did not answer (HostUnreachable 6,
	// HostNotFound 7, NetworkTimeout 89, SocketException 9001, gRPC
	// Unavailable) or is shutting down (ShutdownInProgress 91,
	// InterruptedAtShutdown 11600): outcome unknown.
	classUnreachable
	// classStale: the shard's routing metadata is newer than the router's
	// (StaleConfig 13388, StaleEpoch 150): refused before anything ran.
	classStale
)

// retryAction is what the router does after a failed shard call.
type retryAction int

const (
	// actFail returns the error to the client.
	actFail retryAction = iota
	// actRetry waits for the catalog to name a (new) primary, or picks
	// another member for a non-primary read, and sends the call again.
	actRetry
	// actRefresh refreshes the routing table and re-targets.
	actRefresh
)

// retryTable is the decision, as data: retryTable[class][kind].
var retryTable = map[errClass][3]retryAction{
	//                  opRead     opWrite    opRetryableWrite
	classOther:       {actFail, actFail, actFail},
	classRefused:     {actRetry, actRetry, actRetry},
	classNoCandidate: {actRetry, actRetry, actRetry},
	classSteppedDown: {actRetry, actFail, actRetry},
	classUnreachable: {actRetry, actFail, actRetry},
	classStale:       {actRefresh, actRefresh, actRefresh},
}

// classify returns err's class (classOther for nil).
func classify(err error) errClass {
	if err == nil {
		return classOther
	}
	switch mongoerr.CodeOf(err) {
	case mongoerr.NotWritablePrimary, mongoerr.NotPrimaryNoSecondaryOk, mongoerr.NotPrimaryOrSecondary:
		return classRefused
	case mongoerr.FailedToSatisfyReadPreference:
		return classNoCandidate
	case mongoerr.PrimarySteppedDown, mongoerr.InterruptedDueToReplStateChange:
		return classSteppedDown
	case mongoerr.HostUnreachable, mongoerr.HostNotFound, mongoerr.NetworkTimeout, mongoerr.SocketException,
		mongoerr.ShutdownInProgress, mongoerr.InterruptedAtShutdown:
		return classUnreachable
	case mongoerr.StaleConfig, mongoerr.StaleEpoch:
		return classStale
	}
	return classOther
}

// decide returns the action for a failed call of kind.
func decide(kind opKind, err error) retryAction {
	return retryTable[classify(err)][kind]
}

// Retry timing: how long a call may wait for a failover when the command
// has no maxTimeMS, and the bounds of the re-check interval used when the
// catalog names the same primary that just failed (it may have restarted,
// or the router's connection may have been reset).
const (
	defaultRetryWindow = 15 * time.Second
	minRetryBackoff    = 100 * time.Millisecond
	maxRetryBackoff    = time.Second
	// maxStaleRetries bounds the refresh-and-retarget rounds of one
	// command on StaleConfig.
	maxStaleRetries = 3
)

// callShard runs call against the member of shard chosen for the read
// preference mode ("" for writes: the primary) and retries it by
// retryTable until it succeeds, fails for good, ctx ends or the retry
// window passes (the command's maxTimeMS, else defaultRetryWindow). It
// returns the result, the connection that produced it (a cursor stays on
// that member) and the last error.
//
// A retry that needs a new primary waits for the shard watcher's change
// notification (or a re-check interval growing from minRetryBackoff to
// maxRetryBackoff): no busy loop. A non-primary read first tries the
// other members matching its preference.
//
// check, when not nil, looks at a successful answer (a write's
// writeConcernError or write errors) and returns the error that makes it
// a failure to retry; when the retries run out the last such answer is
// returned (rather than a later attempt's transport error: it says more
// about what happened). StaleConfig is returned to the caller, which
// re-targets (retryStale, writeRoute.sendWrite).
//
// A Backend that is not a MemberBackend gets one call through Shard.
func callShard[T any](ctx context.Context, b Backend, shard string, kind opKind, mode string, call func(ShardConn) (T, error), check func(T) error) (T, ShardConn, error) {
	var zero T
	mb, ok := b.(MemberBackend)
	if !ok {
		conn, err := b.Shard(shard)
		if err != nil {
			return zero, nil, err
		}
		r, err := call(conn)
		return r, conn, err
	}
	deadline := time.Now().Add(defaultRetryWindow)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	nonPrimaryRead := kind == opRead && mode != "" && mode != prefPrimary
	log := zerolog.Nop()
	if l, ok := b.(interface{ retryLog() zerolog.Logger }); ok {
		log = l.retryLog()
	}
	var exclude []string
	backoff := minRetryBackoff
	var last T // the last answer check refused
	var lastConn ShardConn
	answered := false
	giveUp := func(res T, conn ShardConn, err error) (T, ShardConn, error) {
		if answered {
			return last, lastConn, nil
		}
		return res, conn, err
	}
	for attempt := 1; ; attempt++ {
		_, changed, err := mb.Primary(shard)
		if err != nil {
			return zero, nil, err
		}
		conn, member, err := mb.Member(ctx, shard, mode, exclude)
		var res T
		if err == nil {
			res, err = call(conn)
			if err == nil {
				if check == nil {
					return res, conn, nil
				}
				if err = check(res); err == nil {
					return res, conn, nil
				}
				last, lastConn, answered = res, conn, true
			}
		}
		act := decide(kind, err)
		if act != actRetry || ctx.Err() != nil || !time.Now().Before(deadline) {
			if attempt > 1 {
				log.Warn().Err(err).Str("shard", shard).Str("member", member).Int("attempts", attempt).Msg("shard call failed after retries")
			}
			if act != actRetry {
				return res, conn, err // a definitive answer of this attempt
			}
			return giveUp(res, conn, err)
		}
		log.Info().Err(err).Str("shard", shard).Str("member", member).Int("attempt", attempt).Msg("shard call failed; retrying after the failover")
		if nonPrimaryRead && member != "" {
			// Another member may serve the read at once.
			exclude = append(exclude, member)
			continue
		}
		exclude = nil
		if !waitChange(ctx, changed, backoff, deadline) {
			return giveUp(res, conn, err)
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// waitChange waits until changed is closed, backoff passes, the deadline
// passes or ctx ends; false when there is no time left.
func waitChange(ctx context.Context, changed <-chan struct{}, backoff time.Duration, deadline time.Time) bool {
	left := time.Until(deadline)
	if left <= 0 {
		return false
	}
	t := time.NewTimer(min(backoff, left))
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return ctx.Err() == nil && time.Now().Before(deadline)
}

// refreshRouting makes the backend's routing table catch up with the
// catalog (AdminBackend.Refresh); a backend without it is left as is.
func refreshRouting(ctx context.Context, b Backend) error {
	if ab, ok := b.(AdminBackend); ok {
		return ab.Refresh(ctx)
	}
	return nil
}

// retryStale runs fn (target and call the shards) and, while it fails
// with StaleConfig, refreshes the routing table and runs it again, at most
// maxStaleRetries more times. For reads, which can be re-targeted whole.
func retryStale(ctx context.Context, b Backend, fn func() error) error {
	err := fn()
	for i := 0; i < maxStaleRetries && classify(err) == classStale; i++ {
		if rerr := refreshRouting(ctx, b); rerr != nil {
			return err
		}
		err = fn()
	}
	return err
}

// failoverInResult returns the writeConcernError or write error of a
// write's answer that says the primary changed under it (nil if none):
// a retryable write is then retried on the new primary.
func failoverInResult(r *shardclient.WriteResult) error {
	if r.WriteConcernError != nil && classify(r.WriteConcernError) != classOther && classify(r.WriteConcernError) != classStale {
		return r.WriteConcernError
	}
	for _, we := range r.WriteErrors {
		switch classify(we.Err) {
		case classRefused, classSteppedDown, classUnreachable:
			return we.Err
		}
	}
	return nil
}

// cmdOptions are the client's options a data command passes to the
// shards: write concern, read concern and preference, session.
type cmdOptions struct {
	wc   *shardpb.WriteConcern // nil: the shard's default (w: "majority")
	ro   *shardpb.ReadOptions  // nil: primary, the shard's default level
	mode string                // the read preference mode; "" is primary
	lsid bson.Raw              // the session id, nil without a session
	txn  int64                 // txnNumber; 0 without one
}

// parseCmdOptions reads writeConcern, readConcern, $readPreference, lsid
// and txnNumber from the command (MongoDB's shapes and errors).
func parseCmdOptions(req *Request) (cmdOptions, error) {
	var o cmdOptions
	doc := req.Doc
	wc, err := docArg(doc, "writeConcern")
	if err != nil {
		return o, err
	}
	if len(wc) > 5 {
		if o.wc, err = parseWriteConcern(wc); err != nil {
			return o, err
		}
	}
	rc, err := docArg(doc, "readConcern")
	if err != nil {
		return o, err
	}
	level := ""
	if rc != nil {
		if v, lerr := rc.LookupErr("level"); lerr == nil {
			s, ok := v.StringValueOK()
			if !ok {
				return o, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'readConcern.level' is the wrong type '%s', expected type 'string'", typeName(v.Type))
			}
			level = s
		}
	}
	rp, err := docArg(doc, "$readPreference")
	if err != nil {
		return o, err
	}
	if rp != nil {
		v, lerr := rp.LookupErr("mode")
		s, ok := v.StringValueOK()
		if lerr != nil || !ok || !validReadPref(s) {
			return o, mongoerr.New(mongoerr.FailedToParse, "Could not parse $readPreference: mode must be one of primary, primaryPreferred, secondary, secondaryPreferred, nearest")
		}
		if s != prefPrimary {
			o.mode = s
		}
	}
	if level != "" || o.mode != "" {
		o.ro = &shardpb.ReadOptions{ReadPreference: o.mode, ReadConcernLevel: level}
	}
	o.lsid = req.LSID
	if v, lerr := doc.LookupErr("txnNumber"); lerr == nil {
		n, ok := v.AsInt64OK()
		if !ok {
			return o, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'txnNumber' is the wrong type '%s', expected type 'long'", typeName(v.Type))
		}
		if len(o.lsid) == 0 {
			return o, mongoerr.New(mongoerr.InvalidOptions, "Transaction number requires a session ID to also be specified")
		}
		if n < 0 {
			return o, mongoerr.New(mongoerr.BadValue, "txnNumber must be non-negative, got %d", n)
		}
		o.txn = n
	}
	return o, nil
}

// parseWriteConcern converts {w, wtimeout, j, fsync}.
func parseWriteConcern(wc bson.Raw) (*shardpb.WriteConcern, error) {
	out := &shardpb.WriteConcern{}
	if v, err := wc.LookupErr("w"); err == nil {
		switch v.Type {
		case bson.TypeString:
			if v.StringValue() != "majority" {
				return nil, mongoerr.New(mongoerr.UnknownReplWriteConcern, "No write concern mode named '%s' found in replica set configuration", v.StringValue())
			}
			out.WMode = "majority"
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
			n, ok := v.AsInt64OK()
			if !ok || n < 0 || n > 50 {
				return nil, mongoerr.New(mongoerr.FailedToParse, "w has to be a non-negative number not greater than 50 or a string")
			}
			out.W = int32(n)
		default:
			return nil, mongoerr.New(mongoerr.FailedToParse, "w has to be a number or a string")
		}
	}
	wt, err := intArg(wc, "wtimeout", 0)
	if err != nil {
		return nil, err
	}
	out.WtimeoutMs = max(wt, 0)
	if out.J, err = boolArg(wc, "j", false); err != nil {
		return nil, err
	}
	fsync, err := boolArg(wc, "fsync", false)
	if err != nil {
		return nil, err
	}
	out.J = out.J || fsync
	return out, nil
}

// retryable reports whether writes of the command are retryable writes.
func (o cmdOptions) retryable() bool { return len(o.lsid) > 0 && o.txn > 0 }

// writeKind is the opKind of the command's writes.
func (o cmdOptions) writeKind() opKind {
	if o.retryable() {
		return opRetryableWrite
	}
	return opWrite
}

// session returns the SessionInfo of a write of the client's statements
// idx (nil idx: findAndModify, one statement 0), or nil without a
// retryable session.
func (o cmdOptions) session(idx []int) *shardpb.SessionInfo {
	if !o.retryable() {
		return nil
	}
	s := &shardpb.SessionInfo{Lsid: o.lsid, TxnNumber: o.txn}
	for _, i := range idx {
		s.StmtIds = append(s.StmtIds, int32(i))
	}
	return s
}

// writeOptions are the WriteOptions of the statements idx.
func (o cmdOptions) writeOptions(ordered bool, idx []int) shardclient.WriteOptions {
	return shardclient.WriteOptions{Ordered: ordered, WriteConcern: o.wc, Session: o.session(idx)}
}

// readContext returns ctx carrying the command's ReadOptions to the shard
// reads (see memberConn).
func (o cmdOptions) readContext(ctx context.Context) context.Context {
	return withReadOptions(ctx, o.ro)
}

// readShard runs a read on the member of shard that the read preference
// carried by ctx (cmdOptions.readContext) selects, with callShard's
// retries; it returns the connection that answered, for a cursor's
// getMores.
func readShard[T any](ctx context.Context, b Backend, shard string, call func(ShardConn) (T, error)) (T, ShardConn, error) {
	return callShard(ctx, b, shard, opRead, readOptionsFrom(ctx).GetReadPreference(), call, nil)
}

// retryStaleQuery runs fn on the shards a query targets and, after a
// StaleConfig, refreshes the routing table, re-targets the query and runs
// fn again (retryStale's bound).
func retryStaleQuery(ctx context.Context, b Backend, ns string, filter bson.Raw, shards []string, fn func(shards []string) error) error {
	first := true
	return retryStale(ctx, b, func() error {
		if !first {
			rt, err := b.Routing()
			if err != nil {
				return err
			}
			t, err := targeting.ForQuery(rt, ns, filter)
			if err != nil {
				return err
			}
			shards = t.Shards
		}
		first = false
		return fn(shards)
	})
}

// readOptions parses the command's options for a read and returns ctx
// carrying its ReadOptions.
func readOptions(ctx context.Context, req *Request) (context.Context, error) {
	o, err := parseCmdOptions(req)
	if err != nil {
		return ctx, err
	}
	return o.readContext(ctx), nil
}

// famShard runs a findAndModify on the shard's primary with callShard's
// retries (a retryable one also on a writeConcernError that says the
// primary changed). StaleConfig is returned to the handler, which
// refreshes, re-targets and sends it again (retryStale).
func famShard(ctx context.Context, b Backend, shard string, o cmdOptions, call func(ShardConn) (*shardclient.FindAndModifyResult, error)) (*shardclient.FindAndModifyResult, error) {
	var check func(*shardclient.FindAndModifyResult) error
	if o.retryable() {
		check = func(r *shardclient.FindAndModifyResult) error {
			if r.WriteConcernError != nil && classify(r.WriteConcernError) != classOther && classify(r.WriteConcernError) != classStale {
				return r.WriteConcernError
			}
			return nil
		}
	}
	r, _, err := callShard(ctx, b, shard, o.writeKind(), "", call, check)
	return r, err
}
