package server

import (
	"slices"
	"strings"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/wire"
)

// stats are the server's counters for serverStatus. The map is built once
// in New and never changes; the counters are atomics, so stats are safe
// for concurrent use without a lock.
type stats struct {
	totalCreated atomic.Int64 // connections accepted
	requests     atomic.Int64 // messages handled
	unknown      atomic.Int64 // commands not in the table
	panics       atomic.Int64 // handler panics recovered
	commands     map[string]*commandCounters
}

// commandCounters count one command (aliases share the counters).
type commandCounters struct {
	total, failed atomic.Int64
}

func newStats(t *commandTable) *stats {
	st := &stats{commands: map[string]*commandCounters{}}
	for _, c := range t.byName {
		if st.commands[c.Name] == nil {
			st.commands[c.Name] = &commandCounters{}
		}
	}
	return st
}

// count records one run of cmd (nil: unknown command) with its reply (nil:
// the connection was closed).
func (st *stats) count(cmd *Command, reply bson.Raw) {
	if cmd == nil {
		st.unknown.Add(1)
		return
	}
	cc := st.commands[cmd.Name]
	if cc == nil {
		return
	}
	cc.total.Add(1)
	if ok, _ := wire.ReplyStatus(reply); !ok {
		cc.failed.Add(1)
	}
}

// commandsDoc renders the counters as serverStatus's metrics.commands:
// {<name>: {failed, total}, ..., "<UNKNOWN>": n}, names sorted.
func (st *stats) commandsDoc() bson.D {
	names := make([]string, 0, len(st.commands))
	for n := range st.commands {
		names = append(names, n)
	}
	slices.SortFunc(names, strings.Compare)
	d := bson.D{{Key: "<UNKNOWN>", Value: st.unknown.Load()}}
	for _, n := range names {
		c := st.commands[n]
		d = append(d, bson.E{Key: n, Value: bson.D{
			{Key: "failed", Value: c.failed.Load()},
			{Key: "total", Value: c.total.Load()},
		}})
	}
	return d
}
