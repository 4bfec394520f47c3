package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
)

func init() {
	register(Command{
		Name:      "addShard",
		Aliases:   []string{"addshard"},
		Help:      "register a shard in the catalog: {addShard: \"<set>/<host:port>,...\", name?, memberNames?}; its shardd processes are started from cluster.yaml, not by this command",
		Handler:   handleAddShard,
		AdminOnly: true,
	})
}

// addShardArgs is a parsed addShard command.
type addShardArgs struct {
	name    string
	members []catalog.Member
}

// parseAddShard reads {addShard: "<set>/<h:p>,<h:p>" | "<h:p>", name?,
// memberNames?}. The shard is named name, else the set name, else the
// first unused "shardNNNN". Members are named memberNames[i] (PSDB: the
// node names of cluster.yaml, which the shardd processes use for their
// primary lease), else <shard><a, b, c...> as cluster.yaml names them.
func parseAddShard(doc bson.Raw, taken func(string) bool) (addShardArgs, error) {
	var a addShardArgs
	v := doc.Index(0).Value()
	spec, ok := v.StringValueOK()
	if !ok {
		return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'addShard.addShard' is the wrong type '%s', expected type 'string'", typeName(v.Type))
	}
	set, hosts, hasSet := strings.Cut(spec, "/")
	if !hasSet {
		set, hosts = "", spec
	}
	var addrs []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			addrs = append(addrs, h)
		}
	}
	if len(addrs) == 0 || hasSet && set == "" {
		return a, mongoerr.New(mongoerr.FailedToParse, "invalid connection string %q: expected <setName>/<host:port>[,<host:port>...]", spec)
	}
	for _, h := range addrs {
		if _, port, ok := strings.Cut(h, ":"); !ok || port == "" {
			return a, mongoerr.New(mongoerr.FailedToParse, "invalid host %q in %q: expected host:port (the shardd gRPC address)", h, spec)
		}
	}
	if nv, err := doc.LookupErr("name"); err == nil && nv.Type != bson.TypeNull {
		if a.name, ok = nv.StringValueOK(); !ok {
			return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'addShard.name' is the wrong type '%s', expected type 'string'", typeName(nv.Type))
		}
		if a.name == "" {
			return a, mongoerr.New(mongoerr.BadValue, "shard name cannot be empty")
		}
	}
	if a.name == "" {
		a.name = set
	}
	for i := 0; a.name == ""; i++ {
		if n := fmt.Sprintf("shard%04d", i); !taken(n) {
			a.name = n
		}
	}
	var names []string
	if mv, err := doc.LookupErr("memberNames"); err == nil && mv.Type != bson.TypeNull {
		arr, ok := mv.ArrayOK()
		if !ok {
			return a, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'addShard.memberNames' is the wrong type '%s', expected type 'array'", typeName(mv.Type))
		}
		vals, _ := arr.Values()
		for _, e := range vals {
			s, ok := e.StringValueOK()
			if !ok {
				return a, mongoerr.New(mongoerr.TypeMismatch, "addShard.memberNames must hold strings, got %s", typeName(e.Type))
			}
			names = append(names, s)
		}
		if len(names) != len(addrs) {
			return a, mongoerr.New(mongoerr.BadValue, "addShard.memberNames has %d names for %d hosts", len(names), len(addrs))
		}
	}
	for i, h := range addrs {
		m := catalog.Member{Addr: h}
		if names != nil {
			m.Name = names[i]
		} else if i < 26 {
			m.Name = a.name + string(rune('a'+i))
		} else {
			m.Name = fmt.Sprintf("%s-%d", a.name, i)
		}
		a.members = append(a.members, m)
	}
	return a, nil
}

func handleAddShard(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	ab, rt, cat, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	a, err := parseAddShard(req.Doc, func(n string) bool { _, ok := findShard(rt, n); return ok })
	if err != nil {
		return ErrorReply(err), nil
	}
	if _, err := cat.AddShard(ctx, a.name, a.members, catalog.ShardActive); err != nil {
		if !errors.Is(err, catalog.ErrExists) {
			return ErrorReply(err), nil
		}
		// addShard of a registered shard with the same hosts succeeds, as
		// in MongoDB; other hosts under a taken name do not.
		cur, gerr := cat.GetShard(ctx, a.name)
		if gerr != nil || !sameAddrs(cur.Members, a.members) {
			return ErrorReply(err), nil
		}
	}
	if err := ab.Refresh(ctx); err != nil {
		return ErrorReply(err), nil
	}
	recordChange(ctx, ab, s.opts.Name, "addShard", "", s.opts.Logger, bson.E{Key: "name", Value: a.name})
	s.wakeBalancer()
	return okReply(bson.E{Key: "shardAdded", Value: a.name})
}

func sameAddrs(x, y []catalog.Member) bool {
	ax := make([]string, len(x))
	for i, m := range x {
		ax[i] = m.Addr
	}
	ay := make([]string, len(y))
	for i, m := range y {
		ay[i] = m.Addr
	}
	slices.Sort(ax)
	slices.Sort(ay)
	return slices.Equal(ax, ay)
}
