package server

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Handler runs one command. It returns a reply document (which may be a
// MongoDB error document made with ErrorReply) and a nil error, or a nil
// reply and an error that closes the client's connection — never both.
// ctx ends when the command's maxTimeMS passes or the server force-closes
// connections; the handler must then return promptly (Shutdown waits for
// it). A Handler must be safe for concurrent use.
type Handler func(ctx context.Context, s *Server, req *Request) (bson.Raw, error)

// Command is one entry of the command table. It is immutable once
// registered and shared by every connection.
type Command struct {
	// Name is the command name, matched case-sensitively as MongoDB does.
	Name string
	// Aliases are other names of the same command ("ismaster" for
	// "isMaster", "buildinfo" for "buildInfo"). The handler sees the name
	// the client used in Request.Name.
	Aliases []string
	// Help is the text listCommands shows.
	Help string
	// Handler runs the command.
	Handler Handler
	// AdminOnly commands run only against the admin database; elsewhere
	// they get Unauthorized (13), as in MongoDB.
	AdminOnly bool
	// OwnMaxTimeMS: the command gives maxTimeMS its own meaning (getMore's
	// await time), so the dispatcher does not turn it into a deadline.
	OwnMaxTimeMS bool
}

// Request is one command as the dispatcher hands it to a handler. It is
// owned by the goroutine running the command.
type Request struct {
	// Name is the command name as the client sent it (the first field).
	Name string
	// DB is the database the command runs against: $db of an OP_MSG, the
	// namespace's database of an OP_QUERY.
	DB string
	// Doc is the whole command document, with OP_MSG document sequences
	// merged in as arrays. It stays valid after the handler returns.
	Doc bson.Raw
	// Conn describes the client connection.
	Conn *ConnInfo
	// OpQuery is true for a legacy OP_QUERY command (the first handshake).
	OpQuery bool
	// LSID is the logical session id (the lsid field) or nil.
	LSID bson.Raw
	// NS may be set by a handler that acts on a collection ("db.coll");
	// the dispatcher's log line then names it instead of the database.
	NS string
}

// registry holds every command registered by the msg_*.go files' init
// functions, by name. It is written only during package initialization
// and read-only afterwards.
var registry = map[string]*Command{}

// register adds c to the registry under its name and aliases. It is called
// from init functions only; a duplicate name is a programming error caught
// at start-up.
func register(c Command) {
	if c.Name == "" || c.Handler == nil || c.Help == "" {
		panic(fmt.Sprintf("server: command %q registered without name, handler or help", c.Name))
	}
	cp := c
	for _, n := range append([]string{c.Name}, c.Aliases...) {
		if _, dup := registry[n]; dup {
			panic(fmt.Sprintf("server: command %q registered twice", n))
		}
		registry[n] = &cp
	}
}

// commandTable is a Server's immutable view of the registry: lookup by
// name and the names in sorted order (for listCommands). Safe for
// concurrent reads.
type commandTable struct {
	byName map[string]*Command
	names  []string
}

func newCommandTable(extra ...Command) *commandTable {
	t := &commandTable{byName: make(map[string]*Command, len(registry)+len(extra))}
	for n, c := range registry {
		t.byName[n] = c
	}
	for _, c := range extra {
		cp := c
		for _, n := range append([]string{c.Name}, c.Aliases...) {
			t.byName[n] = &cp
		}
	}
	for n := range t.byName {
		t.names = append(t.names, n)
	}
	slices.SortFunc(t.names, strings.Compare)
	return t
}

func (t *commandTable) lookup(name string) (*Command, bool) {
	c, ok := t.byName[name]
	return c, ok
}
