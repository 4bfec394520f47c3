package targeting

import (
	"math"
	"math/rand/v2"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/query"
)

// randValue draws a shard-key value (never an array) from a pool that
// crosses type brackets and chunk bounds.
func randValue(r *rand.Rand) any {
	switch r.IntN(12) {
	case 0:
		return nil
	case 1:
		return bson.MinKey{}
	case 2:
		return bson.MaxKey{}
	case 3:
		return []string{"a", "l", "m", "n", "x", "zz", ""}[r.IntN(7)]
	case 4:
		return r.Float64()*50 - 10
	case 5:
		return math.NaN()
	case 6:
		return bson.D{{Key: "z", Value: r.IntN(3)}}
	case 7:
		return r.IntN(2) == 0
	case 8:
		return int64(r.IntN(50) - 10)
	case 9:
		return bson.Undefined{}
	default:
		return int32(r.IntN(45) - 5)
	}
}

var (
	cmpOps   = []string{"$gt", "$gte", "$lt", "$lte", "$eq", "$ne"}
	keyPaths = []string{"a", "b", "a", "b", "c"}
)

// randClause draws one condition of a filter.
func randClause(r *rand.Rand, depth int) bson.D {
	path := keyPaths[r.IntN(len(keyPaths))]
	switch r.IntN(9) {
	case 0, 1:
		return bson.D{{Key: path, Value: randValue(r)}}
	case 2, 3:
		return bson.D{{Key: path, Value: bson.D{{Key: cmpOps[r.IntN(len(cmpOps))], Value: randValue(r)}}}}
	case 4:
		return bson.D{{Key: path, Value: bson.D{{Key: "$gte", Value: randValue(r)}, {Key: "$lt", Value: randValue(r)}}}}
	case 5:
		in := bson.A{}
		for range r.IntN(5) {
			in = append(in, randValue(r))
		}
		return bson.D{{Key: path, Value: bson.D{{Key: "$in", Value: in}}}}
	case 6:
		return bson.D{{Key: path, Value: bson.D{{Key: "$exists", Value: r.IntN(2) == 0}}}}
	case 7:
		if depth < 2 {
			return bson.D{{Key: "$or", Value: bson.A{randFilter(r, depth+1), randFilter(r, depth+1)}}}
		}
	}
	if depth < 2 {
		return bson.D{{Key: "$and", Value: bson.A{randFilter(r, depth+1), randFilter(r, depth+1)}}}
	}
	return bson.D{{Key: path, Value: randValue(r)}}
}

func randFilter(r *rand.Rand, depth int) bson.D {
	n := 1 + r.IntN(3)
	clauses := bson.A{}
	for range n {
		clauses = append(clauses, randClause(r, depth))
	}
	if n == 1 {
		return clauses[0].(bson.D)
	}
	return bson.D{{Key: "$and", Value: clauses}}
}

func randDoc(r *rand.Rand, id int) bson.D {
	d := bson.D{{Key: "_id", Value: id}}
	for _, f := range []string{"a", "b", "c"} {
		if r.IntN(8) != 0 { // sometimes missing
			d = append(d, bson.E{Key: f, Value: randValue(r)})
		}
	}
	return d
}

// TestSupersetProperty: for random documents and random filters, every
// document the filter matches lives on a shard ForQuery targets.
func TestSupersetProperty(t *testing.T) {
	f := testMeta(t)
	r := rand.New(rand.NewPCG(6, 4))
	namespaces := []string{"db.ranged", "db.compound", "db.hashed"}
	docs := make([]bson.Raw, 300)
	for i := range docs {
		d := randDoc(r, i)
		d = append(d, bson.E{Key: "h", Value: randValue(r)})
		docs[i] = raw(t, d)
	}
	owners := map[string][]string{}
	for _, ns := range namespaces {
		for _, doc := range docs {
			s, _, err := ForInsert(f, ns, doc)
			if err != nil {
				t.Fatal(err)
			}
			owners[ns] = append(owners[ns], s)
		}
	}
	narrowed, matched := 0, 0
	for i := range 3000 {
		fd := randFilter(r, 0)
		if r.IntN(4) == 0 { // the hashed key's field
			fd = bson.D{{Key: "$and", Value: bson.A{fd, bson.D{{Key: "h", Value: randValue(r)}}}}}
		}
		filter := raw(t, fd)
		qf, err := query.ParseFilter(filter)
		if err != nil {
			continue // e.g. $in of a nested $or-only shape; the filter itself is invalid
		}
		for _, ns := range namespaces {
			tg, err := ForQuery(f, ns, filter)
			if err != nil {
				t.Fatalf("filter %d %v on %s: %v", i, fd, ns, err)
			}
			if tg.Kind != AllShards {
				narrowed++
			}
			for j, doc := range docs {
				if qf.Match(doc) {
					matched++
					if !tg.Has(owners[ns][j]) {
						t.Fatalf("filter %v on %s: target %s misses doc %s on %s", fd, ns, tg, doc, owners[ns][j])
					}
				}
			}
		}
	}
	if narrowed < 1000 || matched < 10000 {
		t.Fatalf("generator too weak: %d narrowed targets, %d matches", narrowed, matched)
	}
	t.Logf("%d narrowed targets, %d matching (doc, filter) pairs checked", narrowed, matched)
}

// FuzzForQuery: no filter panics targeting, and the superset invariant
// holds for a fixed set of documents.
func FuzzForQuery(f *testing.F) {
	seeds := []bson.D{
		{{Key: "a", Value: 5}},
		{{Key: "a", Value: bson.D{{Key: "$gte", Value: 0}, {Key: "$lt", Value: 10}}}, {Key: "b", Value: 1}},
		{{Key: "a", Value: bson.D{{Key: "$in", Value: bson.A{nil, 5, "x"}}}}},
		{{Key: "a", Value: 1}, {Key: "b", Value: bson.D{{Key: "$gt", Value: 0}}}},
		{{Key: "h", Value: 5}},
		{{Key: "$or", Value: bson.A{bson.D{{Key: "a", Value: 1}}}}},
	}
	for _, s := range seeds {
		b, err := bson.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(b))
	}
	meta := testMeta(f)
	r := rand.New(rand.NewPCG(1, 2))
	var docs []bson.Raw
	for i := range 100 {
		d := randDoc(r, i)
		d = append(d, bson.E{Key: "h", Value: randValue(r)})
		docs = append(docs, raw(f, d))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		filter := bson.Raw(b)
		if filter.Validate() != nil {
			return
		}
		qf, err := query.ParseFilter(filter)
		if err != nil {
			return
		}
		for _, ns := range []string{"db.ranged", "db.compound", "db.hashed", "db.dotted", "db.hcomp"} {
			tg, err := ForQuery(meta, ns, filter)
			if err != nil {
				t.Fatalf("%s: %v", ns, err)
			}
			for _, doc := range docs {
				if !qf.Match(doc) {
					continue
				}
				s, _, err := ForInsert(meta, ns, doc)
				if err != nil {
					t.Fatal(err)
				}
				if !tg.Has(s) {
					t.Fatalf("filter %s on %s: target %s misses %s on %s", filter, ns, tg, doc, s)
				}
			}
		}
	})
}
