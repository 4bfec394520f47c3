package server

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// FuzzDataCommands runs arbitrary data commands against the fake two-shard
// Backend: parsing, targeting, merging and cursors must never panic and
// must always answer with a valid reply carrying ok.
func FuzzDataCommands(f *testing.F) {
	seeds := []bson.D{
		{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "k", Value: 1}}, bson.D{{Key: "k", Value: -1}}}}, {Key: "ordered", Value: false}},
		{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "k", Value: bson.A{1}}}, 3}}},
		{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "k", Value: bson.D{{Key: "$gt", Value: 0}}}}}, {Key: "sort", Value: bson.D{{Key: "n", Value: -1}}}, {Key: "skip", Value: 2}, {Key: "limit", Value: 3}, {Key: "batchSize", Value: 1}},
		{{Key: "find", Value: "c"}, {Key: "projection", Value: bson.D{{Key: "a.$", Value: 1}}}, {Key: "sort", Value: bson.D{{Key: "n", Value: 1}}}},
		{{Key: "find", Value: "c"}, {Key: "sort", Value: bson.D{{Key: "n", Value: "x"}}}, {Key: "limit", Value: -1.5}},
		{{Key: "getMore", Value: int64(1)}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: 2}},
		{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{int64(1), "x"}}},
		{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}}, {Key: "upsert", Value: true}}}}},
		{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "k", Value: 1}}}, {Key: "limit", Value: 1}}}}},
		{{Key: "count", Value: "c"}, {Key: "query", Value: bson.D{}}, {Key: "skip", Value: 1}, {Key: "limit", Value: 2}},
		{{Key: "listDatabases", Value: 1}, {Key: "filter", Value: bson.D{{Key: "name", Value: bson.D{{Key: "$regex", Value: "^d"}}}}}},
		{{Key: "listCollections", Value: 1}, {Key: "nameOnly", Value: true}, {Key: "filter", Value: bson.D{{Key: "name", Value: "c"}}}},
		{{Key: "create", Value: "x"}},
		{{Key: "drop", Value: "c"}},
		{{Key: "find", Value: 1}},
	}
	for _, d := range seeds {
		raw, err := bson.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(raw))
	}
	ci := &ConnInfo{ID: 1}
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd := bson.Raw(data)
		if cmd.Validate() != nil {
			return
		}
		e, err := cmd.IndexErr(0)
		if err != nil {
			return
		}
		db := "db"
		if e.Key() == "listDatabases" {
			db = "admin"
		}
		d := bson.D{}
		elems, _ := cmd.Elements()
		for _, el := range elems {
			if el.Key() != "$db" {
				d = append(d, bson.E{Key: el.Key(), Value: el.Value()})
			}
		}
		d = append(d, bson.E{Key: "$db", Value: db})
		full, err := bson.Marshal(d)
		if err != nil {
			return
		}
		b := newFakeBackend()
		for n := range 6 {
			raw, _ := bson.Marshal(bson.D{{Key: "_id", Value: n}, {Key: "k", Value: n - 3}, {Key: "n", Value: n}})
			if n < 3 {
				b.shards["s0"].docs = append(b.shards["s0"].docs, raw)
			} else {
				b.shards["s1"].docs = append(b.shards["s1"].docs, raw)
			}
		}
		s := newServer(Options{Backend: b})
		defer s.Close()
		reply, err := s.dispatch(ci, "", full, false)
		if err != nil {
			t.Fatalf("connection closed: %v", err)
		}
		if s.stats.panics.Load() != 0 {
			t.Fatalf("handler panicked on %s", bson.Raw(full))
		}
		if _, err := bson.Raw(reply).LookupErr("ok"); err != nil || !wellFormed(reply) {
			t.Fatalf("bad reply %v", reply)
		}
	})
}
