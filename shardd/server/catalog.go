package server

import (
	"context"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/proto/shardpb"
	"github.com/psdb/psdb/shardd/storage"
)

// CreateCollection creates an empty collection (NamespaceExists if it is
// there).
func (s *Server) CreateCollection(ctx context.Context, req *shardpb.CreateCollectionRequest) (*shardpb.CreateCollectionReply, error) {
	if err := s.checkWritable(); err != nil { // a secondary's oplog must stay a copy of its primary's
		return nil, err
	}
	if err := s.eng.CreateCollection(ctx, req.GetNs()); err != nil {
		return nil, err
	}
	return &shardpb.CreateCollectionReply{}, nil
}

// DropCollection drops a collection with its indexes. A missing
// collection is NamespaceNotFound; the router decides whether to report it
// (MongoDB 7 answers ok).
func (s *Server) DropCollection(ctx context.Context, req *shardpb.DropCollectionRequest) (*shardpb.DropCollectionReply, error) {
	if err := s.checkWritable(); err != nil { // a secondary's oplog must stay a copy of its primary's
		return nil, err
	}
	// A drop precedes a catalog change (the record's removal, perhaps a
	// re-creation under a new epoch) that this shard's writes must see:
	// they catch up with the catalog again before trusting the view.
	if inv, ok := s.versions.(viewInvalidator); ok {
		defer inv.Invalidate()
	}
	specs, err := s.eng.ListIndexes(req.GetNs())
	if err != nil {
		return nil, err
	}
	if err := s.eng.DropCollection(ctx, req.GetNs()); err != nil {
		return nil, err
	}
	return &shardpb.DropCollectionReply{NIndexesWas: int32(len(specs))}, nil
}

// CreateIndexes builds indexes from MongoDB index specifications, creating
// the collection if needed. Specs are all parsed before anything is built.
func (s *Server) CreateIndexes(ctx context.Context, req *shardpb.CreateIndexesRequest) (*shardpb.CreateIndexesReply, error) {
	if err := s.checkWritable(); err != nil { // a secondary's oplog must stay a copy of its primary's
		return nil, err
	}
	if err := checkNS(req.GetNs()); err != nil {
		return nil, err
	}
	if err := s.checkVersion(ctx, req.GetNs(), req.GetShardVersion(), true); err != nil {
		return nil, err
	}
	raw, err := docs("indexes", req.GetSpecs())
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "Must specify at least one index to create")
	}
	specs := make([]storage.IndexSpec, len(raw))
	for i, r := range raw {
		if specs[i], err = parseIndexSpec(r); err != nil {
			return nil, err
		}
	}
	reply := &shardpb.CreateIndexesReply{}
	before, err := s.eng.ListIndexes(req.GetNs())
	switch {
	case mongoerr.HasCode(err, mongoerr.NamespaceNotFound):
		reply.CreatedCollectionAutomatically = true
		if err := s.eng.CreateCollection(ctx, req.GetNs()); err != nil && !mongoerr.HasCode(err, mongoerr.NamespaceExists) {
			return nil, err
		}
		reply.NumIndexesBefore = 1
	case err != nil:
		return nil, err
	default:
		reply.NumIndexesBefore = int32(len(before))
	}
	createdAny := false
	for _, spec := range specs {
		created, err := s.eng.CreateIndex(ctx, req.GetNs(), spec)
		if err != nil {
			return nil, err
		}
		createdAny = createdAny || created
	}
	after, err := s.eng.ListIndexes(req.GetNs())
	if err != nil {
		return nil, err
	}
	reply.NumIndexesAfter = int32(len(after))
	if !createdAny {
		reply.Note = "all indexes already exist"
	}
	return reply, nil
}

// parseIndexSpec reads {key, name, unique, sparse, v, background} as
// MongoDB's createIndexes does. Other index kinds and options are refused
// with a clear error rather than ignored.
func parseIndexSpec(d bson.Raw) (storage.IndexSpec, error) {
	var spec storage.IndexSpec
	elems, err := d.Elements()
	if err != nil {
		return spec, mongoerr.New(mongoerr.InvalidBSON, "index specification: %v", err)
	}
	hasKey := false
	for _, el := range elems {
		v := el.Value()
		switch k := el.Key(); k {
		case "key":
			if v.Type != bson.TypeEmbeddedDocument {
				return spec, mongoerr.New(mongoerr.TypeMismatch, "The field 'key' must be an object, but got %s", v.Type)
			}
			if spec.Key, err = parseKeyPattern(v.Document()); err != nil {
				return spec, err
			}
			hasKey = true
		case "name":
			if v.Type != bson.TypeString {
				return spec, mongoerr.New(mongoerr.TypeMismatch, "The field 'name' must be a string, but got %s", v.Type)
			}
			spec.Name = v.StringValue()
			if spec.Name == "" {
				return spec, mongoerr.New(mongoerr.CannotCreateIndex, "index name cannot be empty")
			}
		case "unique", "sparse", "background":
			b, ok := truthy(v)
			if !ok {
				return spec, mongoerr.New(mongoerr.TypeMismatch, "The field '%s' must be a boolean or a number, but got %s", k, v.Type)
			}
			switch k {
			case "unique":
				spec.Unique = b
			case "sparse":
				spec.Sparse = b
			}
		case "v", "ns":
			// index version and legacy namespace: accepted, not stored
		default:
			return spec, mongoerr.New(mongoerr.InvalidIndexSpecificationOption, "The field '%s' is not valid for an index specification (PSDB supports key, name, unique, sparse). Specification: %s", k, d)
		}
	}
	if !hasKey {
		return spec, mongoerr.New(mongoerr.FailedToParse, "The 'key' field is a required property of an index specification")
	}
	if spec.Name == "" {
		return spec, mongoerr.New(mongoerr.FailedToParse, "The 'name' field is a required property of an index specification")
	}
	return spec, nil
}

// parseKeyPattern reads {field: 1 | -1, ...}.
func parseKeyPattern(d bson.Raw) ([]storage.IndexKeyPart, error) {
	elems, err := d.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "index key pattern: %v", err)
	}
	if len(elems) == 0 {
		return nil, mongoerr.New(mongoerr.CannotCreateIndex, "Index keys cannot be an empty field")
	}
	out := make([]storage.IndexKeyPart, 0, len(elems))
	for _, el := range elems {
		v := el.Value()
		dir, ok := numberOf(v)
		if v.Type == bson.TypeString {
			return nil, mongoerr.New(mongoerr.CannotCreateIndex, "index type %q of field %q is not supported (only ascending 1 and descending -1 indexes)", v.StringValue(), el.Key())
		}
		if !ok || dir == 0 || math.IsNaN(dir) {
			return nil, mongoerr.New(mongoerr.CannotCreateIndex, "Values in the index key pattern must be 1 or -1; field %q has %s", el.Key(), v)
		}
		out = append(out, storage.IndexKeyPart{Field: el.Key(), Desc: dir < 0})
	}
	return out, nil
}

func numberOf(v bson.RawValue) (float64, bool) {
	switch v.Type {
	case bson.TypeInt32:
		return float64(v.Int32()), true
	case bson.TypeInt64:
		return float64(v.Int64()), true
	case bson.TypeDouble:
		return v.Double(), true
	case bson.TypeDecimal128:
		f, err := strconv.ParseFloat(v.Decimal128().String(), 64)
		if err != nil {
			return 0, false
		}
		return f, true
	}
	return 0, false
}

// truthy reads a boolean option given as a boolean or a number.
func truthy(v bson.RawValue) (bool, bool) {
	if v.Type == bson.TypeBoolean {
		return v.Boolean(), true
	}
	if f, ok := numberOf(v); ok {
		return f != 0, true
	}
	return false, false
}

// indexDoc is MongoDB's listIndexes document of spec.
func indexDoc(spec storage.IndexSpec) ([]byte, error) {
	d := bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: spec.KeyPattern()}, {Key: "name", Value: spec.Name}}
	if spec.Unique {
		d = append(d, bson.E{Key: "unique", Value: true})
	}
	if spec.Sparse {
		d = append(d, bson.E{Key: "sparse", Value: true})
	}
	return bson.Marshal(d)
}

// DropIndexes drops indexes by name ("*": every index but _id_) or by key
// pattern.
func (s *Server) DropIndexes(ctx context.Context, req *shardpb.DropIndexesRequest) (*shardpb.DropIndexesReply, error) {
	if err := s.checkWritable(); err != nil { // a secondary's oplog must stay a copy of its primary's
		return nil, err
	}
	if err := s.checkVersion(ctx, req.GetNs(), req.GetShardVersion(), true); err != nil {
		return nil, err
	}
	specs, err := s.eng.ListIndexes(req.GetNs())
	if err != nil {
		return nil, err
	}
	reply := &shardpb.DropIndexesReply{NIndexesWas: int32(len(specs))}
	var names []string
	switch {
	case len(req.GetKeyPattern()) > 0:
		kp, err := doc("index", req.GetKeyPattern())
		if err != nil {
			return nil, err
		}
		key, err := parseKeyPattern(kp)
		if err != nil {
			return nil, err
		}
		for _, sp := range specs {
			if sameKey(sp.Key, key) {
				names = append(names, sp.Name)
			}
		}
		if len(names) == 0 {
			return nil, mongoerr.New(mongoerr.IndexNotFound, "can't find index with key: %s", kp)
		}
	case len(req.GetNames()) == 1 && req.GetNames()[0] == "*":
		for _, sp := range specs {
			if sp.Name != storage.IDIndexName {
				names = append(names, sp.Name)
			}
		}
	case len(req.GetNames()) == 0:
		return nil, mongoerr.New(mongoerr.FailedToParse, "dropIndexes needs index names, \"*\" or a key pattern")
	default:
		names = req.GetNames()
		for _, n := range names {
			if n == "*" {
				return nil, mongoerr.New(mongoerr.BadValue, "'*' cannot be combined with other index names: %s", strings.Join(names, ", "))
			}
		}
	}
	for _, n := range names {
		if err := s.eng.DropIndex(ctx, req.GetNs(), n); err != nil {
			return nil, err
		}
	}
	return reply, nil
}

func sameKey(a, b []storage.IndexKeyPart) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ListIndexes returns the collection's index documents, _id_ first.
func (s *Server) ListIndexes(_ context.Context, req *shardpb.ListIndexesRequest) (*shardpb.ListIndexesReply, error) {
	specs, err := s.eng.ListIndexes(req.GetNs())
	if err != nil {
		return nil, err
	}
	reply := &shardpb.ListIndexesReply{}
	for _, sp := range specs {
		b, err := indexDoc(sp)
		if err != nil {
			return nil, mongoerr.Wrap(err, mongoerr.InternalError, "encode index %s: %v", sp.Name, err)
		}
		reply.Specs = append(reply.Specs, b)
	}
	return reply, nil
}

// ListCollections lists collections, of one database or all.
func (s *Server) ListCollections(_ context.Context, req *shardpb.ListCollectionsRequest) (*shardpb.ListCollectionsReply, error) {
	reply := &shardpb.ListCollectionsReply{}
	for _, c := range s.eng.ListCollections() {
		if db, _, _ := strings.Cut(c.NS, "."); req.GetDb() != "" && db != req.GetDb() {
			continue
		}
		reply.Collections = append(reply.Collections, &shardpb.CollectionInfo{Ns: c.NS})
	}
	return reply, nil
}

// CollStats returns a collection's statistics.
func (s *Server) CollStats(_ context.Context, req *shardpb.CollStatsRequest) (*shardpb.CollStatsReply, error) {
	st, err := s.eng.Stats(req.GetNs())
	if err != nil {
		return nil, err
	}
	return &shardpb.CollStatsReply{
		Ns:             st.NS,
		Count:          st.Count,
		Size:           st.DataSize,
		AvgObjSize:     st.AvgObjSize,
		StorageSize:    st.StorageSize,
		Nindexes:       int32(st.NIndexes),
		IndexSizes:     st.IndexSizes,
		TotalIndexSize: st.TotalIndexSize,
	}, nil
}

// Validate checks a collection's documents, indexes and statistics.
func (s *Server) Validate(ctx context.Context, req *shardpb.ValidateRequest) (*shardpb.ValidateReply, error) {
	r, err := s.eng.Validate(ctx, req.GetNs())
	if err != nil {
		return nil, err
	}
	return &shardpb.ValidateReply{
		Ns:           r.NS,
		Valid:        r.Valid,
		Errors:       r.Errors,
		Warnings:     r.Warnings,
		NRecords:     r.NRecords,
		NIndexes:     int32(r.NIndexes),
		KeysPerIndex: r.KeysPerIndex,
	}, nil
}
