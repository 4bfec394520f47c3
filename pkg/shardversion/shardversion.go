// Package shardversion owns what a router and a shard must agree on about
// shard versions (DESIGN §6, docs/design/shard-versions.md): the wire form
// of a version (shardpb.ShardVersion), the rule that decides whether a
// request's version matches a shard's view, and the StaleConfig error a
// shard answers with, including MongoDB's errInfo {ns, vReceived, vWanted,
// shardId}.
//
// It is pure: it keeps no state and never talks to etcd or a shard; the
// shard's view comes from its caller (shardd/versions reads it from the
// catalog's chunk map).
package shardversion

import (
	"errors"
	"fmt"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"
	"google.golang.org/grpc/status"

	"github.com/psdb/psdb/pkg/catalog"
	"github.com/psdb/psdb/pkg/mongoerr"
	"github.com/psdb/psdb/pkg/rpcerr"
	"github.com/psdb/psdb/proto/shardpb"
)

// Proto returns the wire form of a version a router targeted a shard
// with. It is never nil: the zero version becomes an empty ShardVersion,
// MongoDB's UNSHARDED, which the shard checks ("the router thinks this
// collection is unsharded"). A request without any ShardVersion (nil) is
// an unversioned request from a direct client and is not checked.
func Proto(v catalog.CollVersion) *shardpb.ShardVersion {
	p := &shardpb.ShardVersion{Major: uint64(v.Major), Minor: uint64(v.Minor)}
	if v.Epoch != "" {
		p.Epoch = []byte(v.Epoch)
	}
	return p
}

// FromProto returns the version a request carries. The epoch travels as
// the bytes of the catalog's epoch string. A major or minor version that
// does not fit a catalog version (32 bits) is saturated, which no shard
// version equals.
func FromProto(p *shardpb.ShardVersion) catalog.CollVersion {
	return catalog.CollVersion{Epoch: string(p.GetEpoch()), Version: catalog.Version{
		Major: uint32(min(p.GetMajor(), math.MaxUint32)), Minor: uint32(min(p.GetMinor(), math.MaxUint32))}}
}

// IsUnsharded reports whether v is UNSHARDED (no epoch, 0|0).
func IsUnsharded(v catalog.CollVersion) bool { return v == catalog.CollVersion{} }

// View is a shard's view of one namespace.
type View struct {
	// Sharded is false for an unsharded, unknown or dropped collection.
	Sharded bool
	// Version is, for a sharded collection, the shard version: the
	// collection's epoch and the highest version of the chunks this shard
	// owns (0|0 when it owns none).
	Version catalog.CollVersion
}

// Wanted returns the version the shard wants to receive: its shard
// version, or UNSHARDED.
func (v View) Wanted() catalog.CollVersion {
	if !v.Sharded {
		return catalog.CollVersion{}
	}
	return v.Version
}

// Matches is MongoDB's rule for a versioned request: received (what the
// router targeted with) matches the shard's view when
//
//   - both say unsharded (UNSHARDED received, the collection unsharded or
//     unknown to the catalog: it would be created unsharded), or
//   - both say sharded with the same epoch and the same major version.
//
// The minor version is not compared: a split changes it without moving
// data, so a router that missed a split still targets correctly. Every
// other combination is StaleConfig: an older router (the shard's major or
// epoch moved on), a router that thinks the collection unsharded while it
// is sharded, or sharded while it was dropped or never was.
func Matches(received catalog.CollVersion, view View) bool {
	if IsUnsharded(received) {
		return !view.Sharded
	}
	return view.Sharded && received.Epoch == view.Version.Epoch && received.Major == view.Version.Major
}

// StaleInfo is the errInfo of a StaleConfig error (MongoDB's
// StaleConfigInfo).
type StaleInfo struct {
	NS string
	// Received is the version the request carried.
	Received catalog.CollVersion
	// Wanted is the shard's version (UNSHARDED when the shard has the
	// collection unsharded or unknown).
	Wanted catalog.CollVersion
	// ShardID is the name of the answering shard.
	ShardID string
}

// Doc returns the errInfo document {ns, vReceived, vWanted, shardId}
// where each version is {e: epoch, v: Timestamp(major, minor)} (MongoDB's
// ChunkVersion form; the epoch is an ObjectId when it is one, which
// catalog epochs are, and the zero ObjectId for UNSHARDED).
func (i StaleInfo) Doc() bson.Raw {
	b, err := bson.Marshal(bson.D{
		{Key: "ns", Value: i.NS},
		{Key: "vReceived", Value: versionDoc(i.Received)},
		{Key: "vWanted", Value: versionDoc(i.Wanted)},
		{Key: "shardId", Value: i.ShardID},
	})
	if err != nil {
		// Strings, ObjectIds and timestamps always marshal.
		panic(fmt.Sprintf("shardversion: encode errInfo: %v", err))
	}
	return b
}

func versionDoc(v catalog.CollVersion) bson.D {
	var e any = bson.ObjectID{}
	if v.Epoch != "" {
		if oid, err := bson.ObjectIDFromHex(v.Epoch); err == nil {
			e = oid
		} else {
			e = v.Epoch
		}
	}
	return bson.D{{Key: "e", Value: e}, {Key: "v", Value: bson.Timestamp{T: v.Major, I: v.Minor}}}
}

// ParseStaleInfo reads an errInfo document written by StaleInfo.Doc.
func ParseStaleInfo(doc bson.Raw) (StaleInfo, error) {
	if err := doc.Validate(); err != nil {
		return StaleInfo{}, fmt.Errorf("decode StaleConfig errInfo: %w", err)
	}
	ns, _ := doc.Lookup("ns").StringValueOK()
	shard, _ := doc.Lookup("shardId").StringValueOK()
	i := StaleInfo{NS: ns, ShardID: shard}
	var err error
	if i.Received, err = parseVersion(doc.Lookup("vReceived")); err != nil {
		return StaleInfo{}, fmt.Errorf("decode StaleConfig errInfo vReceived: %w", err)
	}
	if i.Wanted, err = parseVersion(doc.Lookup("vWanted")); err != nil {
		return StaleInfo{}, fmt.Errorf("decode StaleConfig errInfo vWanted: %w", err)
	}
	return i, nil
}

func parseVersion(v bson.RawValue) (catalog.CollVersion, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return catalog.CollVersion{}, fmt.Errorf("not a document but %s", v.Type)
	}
	var out catalog.CollVersion
	switch e := d.Lookup("e"); e.Type {
	case bson.TypeObjectID:
		if oid := e.ObjectID(); !oid.IsZero() {
			out.Epoch = oid.Hex()
		}
	case bson.TypeString:
		out.Epoch = e.StringValue()
	default:
		return catalog.CollVersion{}, fmt.Errorf("epoch e is %s", e.Type)
	}
	t, i, ok := d.Lookup("v").TimestampOK()
	if !ok {
		return catalog.CollVersion{}, errors.New("version v is not a timestamp")
	}
	out.Major, out.Minor = t, i
	return out, nil
}

// StaleConfigError is a shard's StaleConfig (13388) answer with its
// errInfo. It unwraps to a *mongoerr.Error (mongoerr.CodeOf works), and
// carries its own gRPC status (GRPCStatus) whose MongoError detail holds
// Info.Doc() in its info bytes, so the router can read what the shard
// wanted (InfoOf).
type StaleConfigError struct {
	Info StaleInfo
	err  *mongoerr.Error
}

// Stale returns the StaleConfig error of info.
func Stale(info StaleInfo) *StaleConfigError {
	wanted := info.Wanted.String()
	if IsUnsharded(info.Wanted) {
		wanted = "UNSHARDED"
	}
	received := info.Received.String()
	if IsUnsharded(info.Received) {
		received = "UNSHARDED"
	}
	return &StaleConfigError{Info: info, err: mongoerr.New(mongoerr.StaleConfig,
		"shard version mismatch for %s on shard %s: the router sent %s, the shard's version is %s; refresh the routing table and retry",
		info.NS, info.ShardID, received, wanted)}
}

func (e *StaleConfigError) Error() string { return e.err.Error() }

// Unwrap returns the *mongoerr.Error with code StaleConfig.
func (e *StaleConfigError) Unwrap() error { return e.err }

// GRPCStatus is the status a shard sends: FailedPrecondition with one
// MongoError detail carrying the errInfo (see pkg/rpcerr for the rest of
// the convention).
func (e *StaleConfigError) GRPCStatus() *status.Status {
	m := rpcerr.Proto(e.err, e.Info.Doc())
	st := status.New(rpcerr.GRPCCode(mongoerr.StaleConfig), m.GetMessage())
	if d, err := st.WithDetails(m); err == nil {
		return d
	}
	return st
}

// InfoOf returns the errInfo of a StaleConfig error: from a
// *StaleConfigError in err's chain, or from the MongoError detail of a
// gRPC status in it (what a router gets back from pkg/shardclient).
func InfoOf(err error) (StaleInfo, bool) {
	var se *StaleConfigError
	if errors.As(err, &se) {
		return se.Info, true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		st, ok := e.(interface{ GRPCStatus() *status.Status })
		if !ok {
			continue
		}
		for _, d := range st.GRPCStatus().Details() {
			m, ok := d.(*shardpb.MongoError)
			if !ok || mongoerr.Code(m.GetCode()) != mongoerr.StaleConfig || len(m.GetInfo()) == 0 {
				continue
			}
			if info, err := ParseStaleInfo(m.GetInfo()); err == nil {
				return info, true
			}
		}
	}
	return StaleInfo{}, false
}
