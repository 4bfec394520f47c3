package chaos

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/integration/checker"
)

// watchedStore is the checker's Store with an acknowledgement counter, so
// a scenario can wait for the load to make progress ("the cluster accepts
// writes again") without reading the history, and a scan filter that
// leaves out the documents a scenario loaded itself (the checker reports
// every _id it did not write as unexpected).
type watchedStore struct {
	checker.Store
	acks    atomic.Int64
	lastAck atomic.Int64 // unix nanoseconds of the last acknowledged insert
	exclude string       // _id prefix left out of ScanIDs; "" for none
}

func (s *watchedStore) InsertOne(ctx context.Context, doc bson.D) error {
	err := s.Store.InsertOne(ctx, doc)
	if err == nil {
		s.acks.Add(1)
		s.lastAck.Store(time.Now().UnixNano())
	}
	return err
}

func (s *watchedStore) ScanIDs(ctx context.Context) ([]string, error) {
	ids, err := s.Store.ScanIDs(ctx)
	if err != nil || s.exclude == "" {
		return ids, err
	}
	out := ids[:0]
	for _, id := range ids {
		if !strings.HasPrefix(id, s.exclude) {
			out = append(out, id)
		}
	}
	return out, nil
}

// Acks returns the number of acknowledged inserts so far.
func (s *watchedStore) Acks() int64 { return s.acks.Load() }

// waitAcks waits until n more inserts than at the call are acknowledged,
// or ctx ends.
func (s *watchedStore) waitAcks(ctx context.Context, n int64) error {
	return s.waitAckCount(ctx, s.acks.Load()+n)
}

// waitAckCount waits until target inserts in all are acknowledged.
func (s *watchedStore) waitAckCount(ctx context.Context, target int64) error {
	for s.acks.Load() < target {
		if err := wait(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}
