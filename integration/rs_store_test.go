package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
)

// rsStore is the history checker's Store over one replica set's gRPC API:
// writes go to the primary with w:"majority" and follow it through
// failovers (replSet.onPrimary); each insert is a retryable write (a
// session taken from a pool, as a driver does, with its next transaction
// number), so a retry on the new primary after an ambiguous failure
// returns the first result instead of inserting twice. ScanIDs reads one member, chosen with
// member (empty: the primary).
type rsStore struct {
	rs     *replSet
	ns     string
	member string
	// sessions is the pool of logical sessions: one operation at a time
	// uses a session, so its transaction numbers only grow.
	sessions chan *session
	// acked counts acknowledged inserts; acks records when and by whom.
	acked atomic.Int64
	mu    sync.Mutex
	acks  []ack
}

type session struct {
	lsid []byte
	txn  int64
}

// next takes a session from the pool and returns the SessionInfo of its
// next transaction, and the function that gives the session back.
func (s *rsStore) next() (*shardpb.SessionInfo, func()) {
	var se *session
	select {
	case se = <-s.sessions:
	default:
		var id [16]byte
		_, _ = rand.Read(id[:])
		lsid, _ := bson.Marshal(bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: id[:]}}})
		se = &session{lsid: lsid}
	}
	se.txn++
	return &shardpb.SessionInfo{Lsid: se.lsid, TxnNumber: se.txn}, func() {
		select {
		case s.sessions <- se:
		default:
		}
	}
}

type ack struct {
	at     time.Time
	member string
}

// firstAckAfter returns when the first insert acknowledged after t0 by a
// member other than the one primary before t0 was acknowledged (zero if
// none yet): the end of a failover.
func (s *rsStore) firstAckAfter(t0 time.Time, killed string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.acks {
		if a.at.After(t0) && a.member != killed {
			return a.at
		}
	}
	return time.Time{}
}

func newRSStore(rs *replSet, ns string) *rsStore {
	return &rsStore{rs: rs, ns: ns, sessions: make(chan *session, 64)}
}

// on returns a store whose scans read member.
func (s *rsStore) on(member string) *rsStore {
	return &rsStore{rs: s.rs, ns: s.ns, member: member, sessions: s.sessions}
}

func (s *rsStore) InsertOne(ctx context.Context, doc bson.D) error {
	raw, err := bson.Marshal(doc)
	if err != nil {
		return err
	}
	session, done := s.next()
	defer done()
	member, err := s.rs.onPrimary(ctx, func(ctx context.Context, cl *shardclient.Client) error {
		res, err := cl.Insert(ctx, s.ns, []bson.Raw{raw}, shardclient.WriteOptions{Ordered: true, WriteConcern: majority, Session: session})
		if err != nil {
			return err
		}
		return writeErr(res)
	})
	if err == nil {
		now := time.Now()
		s.mu.Lock()
		s.acks = append(s.acks, ack{now, member})
		s.mu.Unlock()
		s.acked.Add(1)
	}
	return err
}

// writeErr is a write's first statement error, else its write concern
// error, else nil.
func writeErr(res *shardclient.WriteResult) error {
	if len(res.WriteErrors) > 0 {
		return res.WriteErrors[0].Err
	}
	if res.WriteConcernError != nil {
		return res.WriteConcernError
	}
	return nil
}

func (s *rsStore) UpdateCounter(ctx context.Context, id string, inc int64) (int64, error) {
	var n int64
	session, done := s.next()
	defer done()
	_, err := s.rs.onPrimary(ctx, func(ctx context.Context, cl *shardclient.Client) error {
		res, err := cl.FindAndModify(ctx, s.ns, shardclient.FindAndModify{
			Filter: docOf(s.rs.t, bson.D{{Key: "_id", Value: id}}),
			Update: docOf(s.rs.t, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: inc}}}}),
			New:    true, Upsert: true,
			WriteOptions: shardclient.WriteOptions{WriteConcern: majority, Session: session},
		})
		if err != nil {
			return err
		}
		if res.WriteConcernError != nil {
			return res.WriteConcernError
		}
		n = res.Value.Lookup("n").AsInt64()
		return nil
	})
	return n, err
}

func (s *rsStore) ReadCounter(ctx context.Context, id string) (int64, bool, error) {
	var (
		n     int64
		found bool
	)
	_, err := s.rs.onPrimary(ctx, func(ctx context.Context, cl *shardclient.Client) error {
		docs, err := cl.FindAll(ctx, s.ns, shardclient.Find{Filter: docOf(s.rs.t, bson.D{{Key: "_id", Value: id}}),
			ReadOptions: &shardpb.ReadOptions{ReadConcernLevel: "majority"}})
		if err != nil {
			return err
		}
		found = len(docs) > 0
		if found {
			n = docs[0].Lookup("n").AsInt64()
		}
		return nil
	})
	return n, found, err
}

func (s *rsStore) ScanIDs(ctx context.Context) ([]string, error) {
	if s.member != "" {
		return s.rs.idsOn(ctx, s.member, s.ns)
	}
	var ids []string
	_, err := s.rs.onPrimary(ctx, func(ctx context.Context, cl *shardclient.Client) error {
		var err error
		ids, err = s.rs.idsOn(ctx, s.rs.primary.Load().(string), s.ns)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", s.ns, err)
	}
	return ids, nil
}
