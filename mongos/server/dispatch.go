package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/keys"
	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/wire"
)

// ErrContract is wrapped by the error dispatch returns when a handler
// broke the handler contract by returning a reply and an error together.
var ErrContract = errors.New("handler returned a reply and an error")

// dispatch runs one command document through the command table. It is the
// single place where the cross-cutting work of a request happens:
//
//   - a legacy OP_QUERY may carry only the handshake commands;
//   - the command is looked up by its first field (unknown: CommandNotFound);
//   - $db is required and checked for OP_MSG (db comes from the namespace
//     for OP_QUERY);
//   - admin-only commands are refused elsewhere;
//   - maxTimeMS becomes the context's deadline;
//   - lsid is extracted;
//   - the handler runs with panics recovered into InternalError replies;
//   - the handler contract is enforced and the reply's size checked;
//   - the command is counted and logged once, with its duration.
//
// It returns a well-formed reply document, or a nil reply and an error that
// closes the connection. It never panics.
func (s *Server) dispatch(ci *ConnInfo, db string, doc bson.Raw, opQuery bool) (reply bson.Raw, closeErr error) {
	start := time.Now()
	name := ""
	if e, err := doc.IndexErr(0); err == nil {
		name = e.Key()
	}
	if !opQuery {
		// Best effort, for the log line; checked below.
		db, _ = doc.Lookup("$db").StringValueOK()
	}
	var (
		cmd *Command
		req *Request
	)
	defer func() {
		dur := time.Since(start)
		s.stats.count(cmd, reply)
		s.opts.OpStats.Record(opType(name), dur)
		ns := db
		if req != nil && req.NS != "" {
			ns = req.NS
		}
		s.logCommand(ci, name, ns, reply, closeErr, dur)
	}()

	if opQuery && !opQueryCommands[name] {
		return ErrorReply(mongoerr.New(mongoerr.UnsupportedOpQueryCommand,
			"Unsupported OP_QUERY command: %s. The client driver may require an upgrade. "+
				"For more details see https://dochub.mongodb.org/core/legacy-opcode-removal", name)), nil
	}
	cmd, found := s.table.lookup(name)
	if !found {
		cmd = nil
		return ErrorReply(mongoerr.New(mongoerr.CommandNotFound, "no such cmd: %s", name)), nil
	}
	if !opQuery {
		var rep bson.Raw
		if db, rep = commandDB(doc); rep != nil {
			return rep, nil
		}
	}
	if !validDBName(db) {
		return ErrorReply(mongoerr.New(mongoerr.InvalidNamespace, "Invalid database name: '%s'", db)), nil
	}
	if cmd.AdminOnly && db != "admin" {
		return ErrorReply(mongoerr.New(mongoerr.Unauthorized, "%s may only be run against the admin database.", name)), nil
	}

	ctx := s.base
	if !cmd.OwnMaxTimeMS {
		ms, err := maxTimeMS(doc)
		if err != nil {
			return ErrorReply(err), nil
		}
		if ms > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
			defer cancel()
		}
	}
	req = &Request{Name: name, DB: db, Doc: doc, Conn: ci, OpQuery: opQuery}
	if v, err := doc.LookupErr("lsid"); err == nil {
		if d, ok := v.DocumentOK(); ok {
			req.LSID = d
		}
	}

	reply, err := s.runHandler(ctx, cmd, req)
	switch {
	case err != nil && reply != nil:
		s.log.Error().Str(logging.FieldOp, name).Err(err).Msg("handler broke its contract: returned a reply and an error; closing the connection")
		return nil, fmt.Errorf("command %s: %w: %w", name, ErrContract, err)
	case err != nil:
		return nil, fmt.Errorf("command %s: %w", name, err)
	case !wellFormed(reply):
		s.log.Error().Str(logging.FieldOp, name).Int("len", len(reply)).Msg("handler broke its contract: returned no reply or a malformed one")
		return ErrorReply(mongoerr.New(mongoerr.InternalError, "command %s produced no valid reply", name)), nil
	case len(reply) > maxReplyBytes:
		return ErrorReply(mongoerr.New(mongoerr.BSONObjectTooLarge,
			"BSONObj size: %d (0x%X) is invalid. Size must be between 0 and 16793600(16MB)", len(reply), len(reply))), nil
	}
	return withRetryLabel(req, reply), nil
}

// opQueryCommands are the commands MongoDB still accepts in a legacy
// OP_QUERY (checked before the command is looked up): the handshake, and
// a few that old drivers send before switching to OP_MSG. Whether they
// exist is the command table's business (authentication commands do not).
var opQueryCommands = map[string]bool{
	"hello": true, "isMaster": true, "ismaster": true,
	"_isSelf": true, "authenticate": true, "buildinfo": true, "buildInfo": true,
	"saslContinue": true, "saslStart": true,
}

// runHandler calls the handler, turning a panic into an InternalError
// reply; the panic and its stack are logged.
func (s *Server) runHandler(ctx context.Context, cmd *Command, req *Request) (reply bson.Raw, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.stats.panics.Add(1)
			s.log.Error().Str(logging.FieldOp, req.Name).Int64("conn", req.Conn.ID).
				Interface("panic", p).Bytes("stack", debug.Stack()).Msg("command panicked")
			reply, err = ErrorReply(mongoerr.New(mongoerr.InternalError, "internal error while running %s", req.Name)), nil
		}
	}()
	return cmd.Handler(ctx, s, req)
}

// commandDB returns $db of an OP_MSG command, or an error reply.
func commandDB(doc bson.Raw) (string, bson.Raw) {
	v, err := doc.LookupErr("$db")
	if err != nil {
		return "", ErrorReply(mongoerr.New(40571, "OP_MSG requests require a $db argument"))
	}
	db, ok := v.StringValueOK()
	if !ok {
		return "", ErrorReply(mongoerr.New(mongoerr.TypeMismatch, "$db must be a string, not %s", typeName(v.Type)))
	}
	return db, nil
}

// validDBName applies MongoDB's database name rules (validDBName, Linux):
// 1 to 63 bytes, none of / \ . space " or NUL.
func validDBName(db string) bool {
	return db != "" && len(db) < 64 && !strings.ContainsAny(db, "/\\. \"\x00")
}

// maxTimeMS returns the command's maxTimeMS (0: none), checked as MongoDB
// does: a number, integral, between 0 and 2^31-1.
func maxTimeMS(doc bson.Raw) (int64, error) {
	v, err := doc.LookupErr("maxTimeMS")
	if err != nil {
		return 0, nil
	}
	var f float64
	switch v.Type {
	case bson.TypeInt32:
		f = float64(v.Int32())
	case bson.TypeInt64:
		f = float64(v.Int64())
	case bson.TypeDouble:
		f = v.Double()
	case bson.TypeDecimal128:
		pf, perr := strconv.ParseFloat(v.Decimal128().String(), 64)
		if perr != nil {
			return 0, mongoerr.New(mongoerr.BadValue, "maxTimeMS must be a number")
		}
		f = pf
	default:
		return 0, mongoerr.New(mongoerr.BadValue, "maxTimeMS must be a number")
	}
	if math.IsNaN(f) || f != math.Trunc(f) {
		return 0, mongoerr.New(mongoerr.BadValue, "maxTimeMS has non-integral value")
	}
	if f < 0 || f > math.MaxInt32 {
		return 0, mongoerr.New(mongoerr.BadValue, "%v value for maxTimeMS is out of range [0, 2147483647]", f)
	}
	return int64(f), nil
}

// wellFormed reports whether reply is a non-empty BSON document whose
// length prefix matches its size and that ends in a NUL byte; deeper
// validation is the encoder's (bson.Marshal) job.
func wellFormed(reply bson.Raw) bool {
	if len(reply) < 5 {
		return false
	}
	return int(binary.LittleEndian.Uint32(reply)) == len(reply) && reply[len(reply)-1] == 0
}

// logCommand writes the command's one line: debug normally, info when slow.
func (s *Server) logCommand(ci *ConnInfo, name, ns string, reply bson.Raw, closeErr error, dur time.Duration) {
	slow := s.opts.SlowThreshold > 0 && dur >= s.opts.SlowThreshold
	ev := s.log.Debug()
	msg := "command"
	if slow {
		ev = s.log.Info()
		msg = "slow operation"
	}
	if ev == nil {
		return
	}
	ev = ev.Str(logging.FieldOp, name).Str(logging.FieldNS, ns).Int64("conn", ci.ID).Dur(logging.FieldDur, dur)
	switch {
	case closeErr != nil:
		ev = ev.Bool("ok", false).Err(closeErr)
	default:
		ok, code := wire.ReplyStatus(reply)
		ev = ev.Bool("ok", ok)
		if !ok {
			ev = ev.Int32("code", int32(code)).Str("codeName", code.Name())
		}
	}
	ev.Msg(msg)
}

// typeName is MongoDB's name of a BSON type in error messages.
func typeName(t bson.Type) string { return keys.TypeName(t) }
