package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/aggregate"
	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/query"
)

// The config database: read-only views of the catalog, generated on each
// read from the router's chunk map (and, for version, mongos and settings,
// one catalog read), in the shapes MongoDB's config servers store, so that
// mongosh's sh.status() and tools reading config.* work. find, count and
// aggregate run over the generated documents with pkg/query and
// pkg/aggregate; every write is refused.

// configDBName is the name of the config database.
const configDBName = "config"

// configCollections are the collections the config database lists. Those
// PSDB has no data for (locks, tags, actionlog) are served empty, as a fresh MongoDB cluster has them; any other name reads as an
// empty collection, as a missing collection does in MongoDB.
var configCollections = []string{"actionlog", "changelog", "chunks", "collections", "databases", "locks", "mongos", "settings", "shards", "tags", "version"}

// AdminBackend is a Backend that also exposes the catalog, for the admin
// commands (enableSharding, shardCollection, addShard, removeShard, ...)
// and the config database. ClusterBackend implements it. Implementations
// must be safe for concurrent use.
type AdminBackend interface {
	Backend
	// Catalog returns the catalog (NotYetInitialized while connecting).
	Catalog() (*catalog.Catalog, error)
	// Refresh returns once Routing reflects every catalog change committed
	// before the call (flushRouterConfig, and after each admin change).
	Refresh(ctx context.Context) error
}

var _ AdminBackend = (*ClusterBackend)(nil)

// Catalog implements AdminBackend.
func (b *ClusterBackend) Catalog() (*catalog.Catalog, error) {
	cat, _, err := b.state()
	return cat, err
}

// Refresh implements AdminBackend.
func (b *ClusterBackend) Refresh(ctx context.Context) error {
	_, cm, err := b.state()
	if err != nil {
		return err
	}
	return b.waitFor(ctx, cm, func() bool { return true })
}

// admin returns the server's backend as an AdminBackend with its routing
// and catalog, or an error reply.
func (s *Server) admin() (AdminBackend, Routing, *catalog.Catalog, bson.Raw) {
	b, rep := s.backend()
	if rep != nil {
		return nil, nil, nil, rep
	}
	ab, ok := b.(AdminBackend)
	if !ok {
		return nil, nil, nil, ErrorReply(mongoerr.New(mongoerr.CommandNotSupported, "this router's backend has no catalog access"))
	}
	rt, err := ab.Routing()
	if err != nil {
		return nil, nil, nil, ErrorReply(err)
	}
	cat, err := ab.Catalog()
	if err != nil {
		return nil, nil, nil, ErrorReply(err)
	}
	return ab, rt, cat, nil
}

// errConfigReadOnly is the answer to a write into the config database.
func errConfigReadOnly(ns string) error {
	return mongoerr.New(mongoerr.InvalidNamespace, "cannot write to '%s': the config database is a read-only view of the PSDB catalog; use the admin commands (enableSharding, shardCollection, addShard, removeShard)", ns)
}

// ---- document generation ----

// findShard returns the shard named name from the routing metadata.
func findShard(rt Routing, name string) (catalog.Shard, bool) {
	for _, sh := range rt.Shards() {
		if sh.Name == name {
			return sh, true
		}
	}
	return catalog.Shard{}, false
}

// shardHost is MongoDB's shard host string "<set>/<host:port>,...": the
// shard's name and its members' gRPC addresses.
func shardHost(sh catalog.Shard) string {
	addrs := make([]string, len(sh.Members))
	for i, m := range sh.Members {
		addrs[i] = m.Addr
	}
	return sh.Name + "/" + strings.Join(addrs, ",")
}

// shardDoc is a config.shards / listShards entry.
func shardDoc(sh catalog.Shard) bson.D {
	d := bson.D{{Key: "_id", Value: sh.Name}, {Key: "host", Value: shardHost(sh)}, {Key: "state", Value: int32(1)}}
	if sh.State == catalog.ShardDraining {
		d = append(d, bson.E{Key: "draining", Value: true})
	}
	return d
}

// uuidValue turns a catalog uuid ("8-4-4-4-12" hex) into a BSON UUID
// (binary subtype 4), or keeps the string if it is not one.
func uuidValue(s string) any {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return s
	}
	return bson.Binary{Subtype: bson.TypeBinaryUUID, Data: b}
}

// objectID parses a hex ObjectID (collection epochs are ones); anything
// else gets a stable ObjectID derived from it.
func objectID(s string) bson.ObjectID {
	if id, err := bson.ObjectIDFromHex(s); err == nil {
		return id
	}
	return derivedID(s)
}

// derivedID is a stable ObjectID for a generated document's _id.
func derivedID(parts ...string) bson.ObjectID {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var id bson.ObjectID
	copy(id[:], h.Sum(nil))
	return id
}

func databaseDoc(d catalog.Database, partitioned bool) bson.D {
	return bson.D{
		{Key: "_id", Value: d.Name},
		{Key: "primary", Value: d.PrimaryShard},
		{Key: "partitioned", Value: partitioned},
		{Key: "version", Value: bson.D{{Key: "uuid", Value: uuidValue(d.Version.UUID)}, {Key: "lastMod", Value: int32(d.Version.LastMod)}}},
	}
}

func collectionDoc(c catalog.Collection) bson.D {
	epoch := objectID(c.Epoch)
	return bson.D{
		{Key: "_id", Value: c.NS},
		{Key: "lastmodEpoch", Value: epoch},
		// The epoch's ObjectID carries when the collection was sharded.
		{Key: "lastmod", Value: bson.NewDateTimeFromTime(epoch.Timestamp())},
		{Key: "timestamp", Value: bson.Timestamp{T: uint32(epoch.Timestamp().Unix()), I: 1}},
		{Key: "uuid", Value: uuidValue(c.UUID)},
		{Key: "key", Value: c.Key.Doc()},
		{Key: "unique", Value: c.Unique},
		{Key: "noBalance", Value: false},
	}
}

func chunkDoc(c catalog.Collection, ch catalog.Chunk) bson.D {
	return bson.D{
		{Key: "_id", Value: derivedID(c.UUID, string(ch.MinKey))},
		{Key: "uuid", Value: uuidValue(c.UUID)},
		{Key: "ns", Value: c.NS},
		{Key: "min", Value: ch.Min},
		{Key: "max", Value: ch.Max},
		{Key: "shard", Value: ch.Shard},
		{Key: "lastmod", Value: bson.Timestamp{T: ch.Version.Major, I: ch.Version.Minor}},
		{Key: "lastmodEpoch", Value: objectID(c.Epoch)},
	}
}

// configDocs generates the documents of config.<coll>.
func configDocs(ctx context.Context, rt Routing, cat *catalog.Catalog, coll string, now time.Time) ([]bson.D, error) {
	var out []bson.D
	switch coll {
	case "shards":
		for _, sh := range rt.Shards() {
			out = append(out, shardDoc(sh))
		}
	case "databases":
		sharded := map[string]bool{}
		for _, c := range rt.Collections("") {
			if c.Sharded {
				sharded[c.DB()] = true
			}
		}
		for _, d := range rt.Databases() {
			out = append(out, databaseDoc(d, sharded[d.Name]))
		}
	case "collections":
		for _, c := range rt.Collections("") {
			if c.Sharded {
				out = append(out, collectionDoc(c))
			}
		}
	case "chunks":
		for _, c := range rt.Collections("") {
			if !c.Sharded {
				continue
			}
			chunks, err := chunksOf(rt, c.NS)
			if errors.Is(err, catalog.ErrNotFound) {
				continue // dropped or unsharded since Collections
			}
			if err != nil {
				return nil, err
			}
			for _, ch := range chunks {
				out = append(out, chunkDoc(c, ch))
			}
		}
	case "version":
		info, err := cat.GetCluster(ctx)
		if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return nil, mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the cluster record: %v", err)
		}
		out = append(out, bson.D{
			{Key: "_id", Value: int32(1)},
			{Key: "minCompatibleVersion", Value: int32(5)},
			{Key: "currentVersion", Value: int32(6)},
			{Key: "clusterId", Value: derivedID(info.ID)},
		})
	case "mongos":
		routers, err := cat.ListRouters(ctx)
		if err != nil {
			return nil, mongoerr.Wrap(err, mongoerr.HostUnreachable, "list the routers: %v", err)
		}
		// A registration is leased: a listed router is alive now.
		for _, r := range routers {
			out = append(out, bson.D{
				{Key: "_id", Value: r.Addr},
				{Key: "advisoryHostFQDNs", Value: bson.A{}},
				{Key: "mongoVersion", Value: ServerVersion},
				{Key: "ping", Value: bson.NewDateTimeFromTime(now)},
				{Key: "up", Value: int64(0)},
				{Key: "waiting", Value: true},
				{Key: "routerId", Value: r.ID},
			})
		}
	case "changelog":
		entries, err := cat.ListChangelog(ctx)
		if err != nil {
			return nil, mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the changelog: %v", err)
		}
		for _, e := range entries {
			out = append(out, changelogDoc(e))
		}
	case "settings":
		bs, err := cat.GetBalancerSettings(ctx)
		if err != nil {
			return nil, mongoerr.Wrap(err, mongoerr.HostUnreachable, "read the balancer settings: %v", err)
		}
		bal := bson.D{{Key: "_id", Value: "balancer"}, {Key: "mode", Value: balancerMode(bs)}, {Key: "stopped", Value: !bs.Enabled}}
		if bs.WindowStart != "" {
			bal = append(bal, bson.E{Key: "activeWindow", Value: bson.D{{Key: "start", Value: bs.WindowStart}, {Key: "stop", Value: bs.WindowEnd}}})
		}
		out = append(out, bal, bson.D{{Key: "_id", Value: "chunksize"}, {Key: "value", Value: bs.ChunkSizeBytes >> 20}})
	}
	return out, nil
}

// chunksOf returns the chunks of a sharded collection. It is split out
// because Routing only promises targeting.Metadata's ChunksOverlapping.
func chunksOf(rt Routing, ns string) ([]catalog.Chunk, error) {
	return rt.ChunksOverlapping(ns, nil, nil)
}

func balancerMode(bs catalog.BalancerSettings) string {
	if bs.Enabled {
		return "full"
	}
	return "off"
}

// configRaw generates config.<coll> as raw documents.
func (s *Server) configRaw(ctx context.Context, coll string) ([]bson.Raw, bson.Raw) {
	_, rt, cat, rep := s.admin()
	if rep != nil {
		return nil, rep
	}
	docs, err := configDocs(ctx, rt, cat, coll, s.opts.Now())
	if err != nil {
		return nil, ErrorReply(err)
	}
	out := make([]bson.Raw, len(docs))
	for i, d := range docs {
		raw, err := bson.Marshal(d)
		if err != nil {
			return nil, ErrorReply(mongoerr.Wrap(err, mongoerr.InternalError, "encode %s.%s document: %v", configDBName, coll, err))
		}
		out[i] = raw
	}
	return out, nil
}

// configFind answers find on config.<coll> from the catalog.
func (s *Server) configFind(ctx context.Context, req *Request, ns string) (bson.Raw, error) {
	a, err := parseFind(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	docs, rep := s.configRaw(ctx, strings.TrimPrefix(ns, configDBName+"."))
	if rep != nil {
		return rep, nil
	}
	res, err := query.Find(docs, query.FindSpec{Filter: a.filter, Projection: a.projection, Sort: a.sort, Skip: a.skip, Limit: a.limit})
	if err != nil {
		return ErrorReply(err), nil
	}
	return s.firstBatch(ctx, &routerCursor{ns: ns, src: aggregate.FromSlice(res)}, a)
}

// configCount answers count on config.<coll> from the catalog.
func (s *Server) configCount(ctx context.Context, req *Request, ns string) (bson.Raw, error) {
	filter, err := docArg(req.Doc, "query")
	if err != nil {
		return ErrorReply(err), nil
	}
	skip, err := intArg(req.Doc, "skip", 0)
	if err != nil {
		return ErrorReply(err), nil
	}
	limit, err := intArg(req.Doc, "limit", 0)
	if err != nil {
		return ErrorReply(err), nil
	}
	docs, rep := s.configRaw(ctx, strings.TrimPrefix(ns, configDBName+"."))
	if rep != nil {
		return rep, nil
	}
	n, err := query.Count(docs, filter, skip, limit)
	if err != nil {
		return ErrorReply(err), nil
	}
	return okReply(bson.E{Key: "n", Value: number(n)})
}

// configAggregate answers aggregate on config.<coll> from the catalog.
func (s *Server) configAggregate(ctx context.Context, req *Request, ns string) (bson.Raw, error) {
	a, err := parseAggregate(req.Doc)
	if err != nil {
		return ErrorReply(err), nil
	}
	p, err := aggregate.Parse(a.pipeline)
	if err != nil {
		return ErrorReply(err), nil
	}
	docs, rep := s.configRaw(ctx, strings.TrimPrefix(ns, configDBName+"."))
	if rep != nil {
		return rep, nil
	}
	return s.firstBatch(ctx, &routerCursor{ns: ns, src: p.Stream(aggregate.FromSlice(docs))}, findArgs{batchSize: a.batchSize})
}

// withConfigDB returns dbs with the config database added in name order
// (listDatabases shows it, as MongoDB's routers do).
func withConfigDB(dbs []catalog.Database) []catalog.Database {
	i, found := slices.BinarySearchFunc(dbs, configDBName, func(d catalog.Database, n string) int { return strings.Compare(d.Name, n) })
	if found {
		return dbs
	}
	return slices.Insert(slices.Clone(dbs), i, catalog.Database{Name: configDBName})
}

// configListCollections answers listCollections on the config database.
func configListCollections(filter *query.Filter, nameOnly bool) (bson.Raw, error) {
	ns := configDBName + ".$cmd.listCollections"
	var docs []bson.Raw
	for _, name := range configCollections {
		entry := bson.D{{Key: "name", Value: name}, {Key: "type", Value: "collection"}}
		if !nameOnly {
			entry = append(entry, bson.E{Key: "options", Value: bson.D{}}, bson.E{Key: "info", Value: bson.D{{Key: "readOnly", Value: true}}},
				bson.E{Key: "idIndex", Value: bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "name", Value: "_id_"}}})
		}
		raw, err := bson.Marshal(entry)
		if err != nil {
			return ErrorReply(err), nil
		}
		if filter != nil && !filter.Match(raw) {
			continue
		}
		docs = append(docs, raw)
	}
	return cursorReply(0, ns, "firstBatch", docs)
}
