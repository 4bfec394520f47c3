package server

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
)

func init() {
	register(Command{
		Name: "dbStats",
		Help: "a database's collection, object, data and index totals over every shard " +
			"(MongoDB's dbStats fields; scale divides the sizes)",
		Handler: handleDBStats,
	})
}

// handleDBStats sums the shards' collStats of every collection of the
// request's database.
func handleDBStats(ctx context.Context, s *Server, req *Request) (bson.Raw, error) {
	scale := int64(1)
	if v, err := req.Doc.LookupErr("scale"); err == nil {
		n, ok := v.AsInt64OK()
		if !ok || n < 1 {
			return errReply(mongoerr.BadValue, "scale has to be a number >= 1")
		}
		scale = n
	}
	ab, rt, _, rep := s.admin()
	if rep != nil {
		return rep, nil
	}
	var colls, objects, dataSize, storageSize, indexes, indexSize int64
	if _, ok := rt.Database(req.DB); ok {
		names, err := databaseCollections(ctx, ab, rt, req.DB)
		if err != nil {
			return ErrorReply(err), nil
		}
		colls = int64(len(names))
		for _, ns := range names {
			nIdx := int64(0)
			for _, sh := range rt.Shards() {
				st, err := collStatsOn(ctx, ab, sh.Name, ns)
				if err != nil {
					continue // not on this shard
				}
				objects += st.GetCount()
				dataSize += st.GetSize()
				storageSize += st.GetStorageSize()
				indexSize += st.GetTotalIndexSize()
				nIdx = max(nIdx, int64(st.GetNindexes()))
			}
			indexes += nIdx
		}
	}
	avg := float64(0)
	if objects > 0 {
		avg = float64(dataSize) / float64(objects)
	}
	// MongoDB's types: counts as int32 (objects as int64 only when
	// large), sizes as doubles.
	return okReply(
		bson.E{Key: "db", Value: req.DB},
		bson.E{Key: "collections", Value: number(colls)},
		bson.E{Key: "views", Value: int32(0)},
		bson.E{Key: "objects", Value: number(objects)},
		bson.E{Key: "avgObjSize", Value: avg},
		bson.E{Key: "dataSize", Value: float64(dataSize / scale)},
		bson.E{Key: "storageSize", Value: float64(storageSize / scale)},
		bson.E{Key: "indexes", Value: number(indexes)},
		bson.E{Key: "indexSize", Value: float64(indexSize / scale)},
		bson.E{Key: "totalSize", Value: float64((storageSize + indexSize) / scale)},
		bson.E{Key: "scaleFactor", Value: number(scale)},
	)
}

// collStatsConn is the part of a shard connection that answers collStats;
// *shardclient.Client has it.
type collStatsConn interface {
	CollStats(ctx context.Context, ns string) (*shardpb.CollStatsReply, error)
}

// collStatsOn asks the primary of shard for ns's statistics.
func collStatsOn(ctx context.Context, b Backend, shard, ns string) (*shardpb.CollStatsReply, error) {
	st, _, err := callShard(ctx, b, shard, opRead, "", func(c ShardConn) (*shardpb.CollStatsReply, error) {
		cs, ok := c.(collStatsConn)
		if !ok {
			return nil, mongoerr.New(mongoerr.CommandNotSupported, "the connection to shard %s cannot answer collStats", shard)
		}
		return cs.CollStats(ctx, ns)
	}, nil)
	return st, err
}
