package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// ErrPingFailed is wrapped by Ping's errors when the server answered but
// not with {ok: 1}, or answered something that is not a reply.
var ErrPingFailed = errors.New("ping failed")

// pingTimeout bounds Ping when ctx has no deadline.
const pingTimeout = 5 * time.Second

// Ping connects to the server (a router) at addr, sends OP_MSG {ping: 1, $db:
// "admin"} and waits for {ok: 1}. It is the router's health check for the
// launcher and test harnesses: a nil error means the wire protocol is
// served on addr. It returns by ctx's deadline (or after 5 s without one).
// It is safe for concurrent use.
func Ping(ctx context.Context, addr string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pingTimeout)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := nc.SetDeadline(dl); err != nil {
			return fmt.Errorf("ping %s: %w", addr, err)
		}
	}
	// Unblock the exchange if ctx is cancelled before its deadline.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()

	cmd, err := bson.Marshal(bson.D{{Key: "ping", Value: int32(1)}, {Key: "$db", Value: "admin"}})
	if err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	const requestID = 1
	if err := WriteMessage(bufio.NewWriter(nc), &MsgHeader{RequestID: requestID}, NewOpMsgReply(cmd)); err != nil {
		return pingIOError(ctx, addr, "send", err)
	}
	h, body, err := ReadMessage(bufio.NewReader(nc), 0)
	if err != nil {
		return pingIOError(ctx, addr, "read reply", err)
	}
	msg, ok := body.(*OpMsg)
	if !ok || h.ResponseTo != requestID {
		return fmt.Errorf("ping %s: %w: unexpected reply %s", addr, ErrPingFailed, h)
	}
	if ok, code := ReplyStatus(msg.Body); !ok {
		errmsg, _ := msg.Body.Lookup("errmsg").StringValueOK()
		return fmt.Errorf("ping %s: %w: code %d: %s", addr, ErrPingFailed, int32(code), errmsg)
	}
	return nil
}

// pingIOError names the context's error when the socket failed because
// ctx ended (its deadline is the socket's).
func pingIOError(ctx context.Context, addr, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("ping %s: %w", addr, cerr)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("ping %s: %s: %w", addr, what, context.DeadlineExceeded)
	}
	return fmt.Errorf("ping %s: %s: %w", addr, what, err)
}

// ReplyStatus reports whether a command reply is a success ({ok: 1}) and, if not,
// its code (0 when it has none).
func ReplyStatus(reply bson.Raw) (ok bool, code mongoerr.Code) {
	v, err := reply.LookupErr("ok")
	if err != nil {
		return false, 0
	}
	if f, isNum := v.AsFloat64OK(); isNum {
		ok = f == 1
	} else if b, isBool := v.BooleanOK(); isBool {
		ok = b
	}
	if !ok {
		if c, err := reply.LookupErr("code"); err == nil {
			if n, isNum := c.AsInt64OK(); isNum {
				code = mongoerr.Code(n)
			}
		}
	}
	return ok, code
}
