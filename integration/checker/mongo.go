package checker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
)

var _ Store = (*MongoStore)(nil)

// MongoStore is the Store of a real cluster: one collection of the official
// Go driver. Write concern, read preference and retryable writes are those
// of the collection and its client, which the caller configures (the
// checker's guarantees assume w:"majority", retryable writes and primary
// reads). Point it at a collection used by nothing else: every _id a scan
// returns that the history did not write is reported as unexpected. It is
// safe for concurrent use, as *mongo.Collection is.
type MongoStore struct {
	coll *mongo.Collection
	// reads is coll with readConcern "majority": a "local" read on a
	// primary may return a write that a failover then rolls back
	// (MongoDB allows it, and so does PSDB), after which a later read
	// goes back in time. The promise checked, that no read goes back in
	// time for one client, is the one majority reads carry.
	reads *mongo.Collection
}

// NewMongoStore returns the Store over coll.
func NewMongoStore(coll *mongo.Collection) *MongoStore {
	return &MongoStore{coll: coll, reads: coll.Clone(options.Collection().SetReadConcern(readconcern.Majority()))}
}

// InsertOne inserts doc.
func (s *MongoStore) InsertOne(ctx context.Context, doc bson.D) error {
	if _, err := s.coll.InsertOne(ctx, doc); err != nil {
		return fmt.Errorf("insert into %s: %w", s.coll.Name(), err)
	}
	return nil
}

type counterDoc struct {
	N int64 `bson:"n"`
}

// UpdateCounter runs findAndModify {$inc: {n: inc}} with upsert and
// returnDocument "after".
func (s *MongoStore) UpdateCounter(ctx context.Context, id string, inc int64) (int64, error) {
	var d counterDoc
	err := s.coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: inc}}}},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After),
	).Decode(&d)
	if err != nil {
		return 0, fmt.Errorf("increment counter %s: %w", id, err)
	}
	return d.N, nil
}

// ReadCounter reads counter id with the collection's read preference and
// readConcern "majority".
func (s *MongoStore) ReadCounter(ctx context.Context, id string) (int64, bool, error) {
	var d counterDoc
	err := s.reads.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read counter %s: %w", id, err)
	}
	return d.N, true, nil
}

// ScanIDs returns every _id of the collection from one find with a
// projection on _id. A non-string _id is returned in its extended-JSON
// form, so it shows up as unexpected rather than being dropped.
func (s *MongoStore) ScanIDs(ctx context.Context) ([]string, error) {
	cur, err := s.coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.coll.Name(), err)
	}
	defer func() {
		// Closing kills the cursor on the server; bounded even if ctx is done.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = cur.Close(cctx)
	}()
	var ids []string
	for cur.Next(ctx) {
		v, err := cur.Current.LookupErr("_id")
		if err != nil {
			return nil, fmt.Errorf("scan %s: document without _id: %w", s.coll.Name(), err)
		}
		if str, ok := v.StringValueOK(); ok {
			ids = append(ids, str)
		} else {
			ids = append(ids, v.String())
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.coll.Name(), err)
	}
	return ids, nil
}
