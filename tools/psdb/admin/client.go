// Package admin holds the operator's commands of `psdb admin`: the
// cluster operations (shards, balancer, chunks, replica sets, summary),
// run against a router with the official Go driver, and their rendering
// as aligned tables or JSON.
//
// Every operation returns a result value that renders itself (Result), so
// rendering is tested on literal values without a cluster. The package
// talks to routers only, through MongoDB commands and the router's config
// database; it never reaches the catalog or a shard directly, and never
// writes to its caller's stdout or stderr itself.
package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/psdb/psdb/pkg/mongoerr"
)

// DefaultURI is the router a local `make run` cluster listens on.
const DefaultURI = "mongodb://127.0.0.1:27017"

// Client is a connection to a cluster's routers. It is safe for
// concurrent use (as mongo.Client is).
type Client struct {
	cli     *mongo.Client
	uri     string
	timeout time.Duration
}

// Connect connects to the routers of uri and checks with a ping that one
// answers within connectTimeout (server selection and dial): an
// unreachable cluster fails here, with one line naming the address and
// the last connection error. Each later operation is bounded by
// opTimeout unless its context has an earlier deadline.
func Connect(ctx context.Context, uri string, connectTimeout, opTimeout time.Duration) (*Client, error) {
	if uri == "" {
		uri = DefaultURI
	}
	o := options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(connectTimeout).
		SetConnectTimeout(connectTimeout).
		SetAppName("psdb admin")
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("invalid URI %q: %w", uri, err)
	}
	cli, err := mongo.Connect(o)
	if err != nil {
		return nil, fmt.Errorf("invalid URI %q: %w", uri, err)
	}
	c := &Client{cli: cli, uri: uri, timeout: opTimeout}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout+time.Second)
	defer cancel()
	if err := cli.Database("admin").RunCommand(pctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
		_ = c.Close(context.Background())
		return nil, c.unreachable(err, connectTimeout)
	}
	return c, nil
}

// unreachable words a failed first ping.
func (c *Client) unreachable(err error, d time.Duration) error {
	var sel topology.ServerSelectionError
	if errors.As(err, &sel) {
		var why []string
		for _, s := range sel.Desc.Servers {
			if s.LastError != nil {
				why = append(why, fmt.Sprintf("%s: %v", s.Addr, s.LastError))
			}
		}
		if len(why) == 0 {
			why = append(why, "no router answered")
		}
		return fmt.Errorf("cannot reach the cluster at %s within %s (%s)", redact(c.uri), d, strings.Join(why, "; "))
	}
	if se := serverError(err); se != nil {
		return se
	}
	return fmt.Errorf("cannot reach the cluster at %s: %w", redact(c.uri), err)
}

// redact hides a password in a URI.
func redact(uri string) string {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return uri
	}
	creds, host, ok := strings.Cut(rest, "@")
	if !ok {
		return uri
	}
	if user, _, hasPw := strings.Cut(creds, ":"); hasPw {
		creds = user + ":***"
	}
	return scheme + "://" + creds + "@" + host
}

// Close disconnects.
func (c *Client) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.cli.Disconnect(ctx)
}

// Driver returns the underlying driver client.
func (c *Client) Driver() *mongo.Client { return c.cli }

// bound applies the operation timeout to ctx.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// Run runs a command against the admin database and returns its reply;
// a server error comes back as *ServerError.
func (c *Client) Run(ctx context.Context, cmd bson.D) (bson.Raw, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	raw, err := c.cli.Database("admin").RunCommand(ctx, cmd).Raw()
	if err != nil {
		return nil, c.wrap(cmd[0].Key, err)
	}
	return raw, nil
}

// findAll reads a whole collection of the config database (sorted).
func (c *Client) findAll(ctx context.Context, coll string, filter, sort bson.D) ([]bson.Raw, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if filter == nil {
		filter = bson.D{}
	}
	o := options.Find()
	if sort != nil {
		o.SetSort(sort)
	}
	cur, err := c.cli.Database("config").Collection(coll).Find(ctx, filter, o)
	if err != nil {
		return nil, c.wrap("find config."+coll, err)
	}
	defer cur.Close(context.Background())
	var out []bson.Raw
	for cur.Next(ctx) {
		out = append(out, append(bson.Raw(nil), cur.Current...))
	}
	if err := cur.Err(); err != nil {
		return nil, c.wrap("find config."+coll, err)
	}
	return out, nil
}

// wrap turns a driver error into a ServerError when the server answered,
// and otherwise says which operation failed.
func (c *Client) wrap(op string, err error) error {
	if se := serverError(err); se != nil {
		return se
	}
	if errors.Is(err, context.DeadlineExceeded) || mongo.IsTimeout(err) {
		return fmt.Errorf("%s: no answer from %s within %s: %w", op, redact(c.uri), c.timeout, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// ServerError is an error reply of the server: its code, code name and
// message. Error() is one line: "<CodeName> (<code>): <message>".
type ServerError struct {
	Code    int32  `json:"code"`
	Name    string `json:"codeName"`
	Message string `json:"errmsg"`
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("%s (%d): %s", e.Name, e.Code, e.Message)
}

// serverError extracts the server's error reply from a driver error, or
// returns nil. A reply without a code name gets the name of pkg/mongoerr's
// table.
func serverError(err error) *ServerError {
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code == 0 && ce.Name == "" {
		return nil
	}
	name := ce.Name
	if name == "" {
		name = mongoerr.Code(ce.Code).Name()
	}
	return &ServerError{Code: ce.Code, Name: name, Message: ce.Message}
}

// AsServerError reports whether err carries a server's error reply.
func AsServerError(err error) (*ServerError, bool) {
	var se *ServerError
	if errors.As(err, &se) {
		return se, true
	}
	return nil, false
}
