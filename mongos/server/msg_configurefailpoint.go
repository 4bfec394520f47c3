package server

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/failpoint"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// The router's fail points (package failpoint, process-wide) and the
// configureFailPoint test command that sets them.
const (
	// FailPointMoveChunkHangAfterPhase hangs a migration driven by this
	// router after the phase named by its data ({phase: "clone"}) has
	// succeeded, until the point is turned off or the migration's context
	// ends (docs/design/migrations.md, "Fail points").
	FailPointMoveChunkHangAfterPhase = "moveChunkHangAfterPhase"
)

func init() {
	failpoint.Default.Register(FailPointMoveChunkHangAfterPhase)
	register(Command{
		Name: "configureFailPoint",
		Help: "test command (--enable-test-commands): {configureFailPoint: <name>, mode: \"alwaysOn\"|\"off\"|{times: n}, " +
			"data: <document>}; without mode, reads the point; answers {count: <times entered>}",
		Handler:   handleConfigureFailPoint,
		AdminOnly: true,
	})
}

// hangAfterPhase wraps a migration's afterPhase hook with the
// moveChunkHangAfterPhase fail point, bounded by ctx.
func hangAfterPhase(ctx context.Context, next func(phase string)) func(phase string) {
	return func(phase string) {
		if next != nil {
			next(phase)
		}
		_, _ = failpoint.Default.Hang(ctx, FailPointMoveChunkHangAfterPhase, func(data bson.Raw) bool {
			p, ok := data.Lookup("phase").StringValueOK()
			return ok && p == phase
		})
	}
}

// handleConfigureFailPoint is MongoDB's configureFailPoint: it sets a fail
// point and answers {count: <times entered before>, ok: 1}. Without mode
// (a PSDB extension) it changes nothing and also reports the mode, so a
// test can poll for a point being entered. Refused as CommandNotFound
// unless the router runs with test commands enabled.
func handleConfigureFailPoint(_ context.Context, s *Server, req *Request) (bson.Raw, error) {
	if !s.opts.TestCommands {
		return errReply(mongoerr.CommandNotFound, "configureFailPoint is a test command and test commands are disabled on this router (start mongos with --enable-test-commands)")
	}
	v := req.Doc.Index(0).Value()
	name, ok := v.StringValueOK()
	if !ok {
		return errReply(mongoerr.TypeMismatch, "configureFailPoint: the fail point name must be a string, not %s", typeName(v.Type))
	}
	mv, err := req.Doc.LookupErr("mode")
	if err != nil {
		st, err := failpoint.Default.State(name)
		if err != nil {
			return failPointErr(name, err)
		}
		mode := any(st.Mode.String())
		if st.Mode == failpoint.Times {
			mode = bson.D{{Key: "times", Value: st.Times}}
		}
		fields := []bson.E{{Key: "count", Value: st.Entered}, {Key: "mode", Value: mode}}
		if st.Data != nil {
			fields = append(fields, bson.E{Key: "data", Value: st.Data})
		}
		return okReply(fields...)
	}
	var set failpoint.Setting
	switch mv.Type {
	case bson.TypeString:
		switch mv.StringValue() {
		case "off":
			set.Mode = failpoint.Off
		case "alwaysOn":
			set.Mode = failpoint.AlwaysOn
		default:
			return errReply(mongoerr.BadValue, "configureFailPoint: unknown mode %q (want \"alwaysOn\", \"off\" or {times: n})", mv.StringValue())
		}
	case bson.TypeEmbeddedDocument:
		tv, err := mv.Document().LookupErr("times")
		n, ok := tv.AsInt64OK()
		if err != nil || !ok || n < 0 {
			return errReply(mongoerr.BadValue, "configureFailPoint: mode must be \"alwaysOn\", \"off\" or {times: <non-negative integer>}, got %s", mv)
		}
		set.Mode, set.Times = failpoint.Times, n
	default:
		return errReply(mongoerr.TypeMismatch, "configureFailPoint: mode must be a string or a document, not %s", typeName(mv.Type))
	}
	if dv, err := req.Doc.LookupErr("data"); err == nil {
		d, ok := dv.DocumentOK()
		if !ok {
			return errReply(mongoerr.TypeMismatch, "configureFailPoint: data must be a document, not %s", typeName(dv.Type))
		}
		set.Data = d
	}
	count, err := failpoint.Default.Configure(name, set)
	if err != nil {
		return failPointErr(name, err)
	}
	s.opts.Logger.Info().Str("failPoint", name).Str("mode", set.Mode.String()).Int64("times", set.Times).
		Str("data", set.Data.String()).Msg("fail point configured")
	return okReply(bson.E{Key: "count", Value: count})
}

func failPointErr(name string, err error) (bson.Raw, error) {
	if errors.Is(err, failpoint.ErrUnknown) {
		return errReply(mongoerr.BadValue, "configureFailPoint: cannot find fail point %q", name)
	}
	return errReply(mongoerr.BadValue, "configureFailPoint %s: %v", name, err)
}
