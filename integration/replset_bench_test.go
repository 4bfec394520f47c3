package integration

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
)

// BenchmarkReplSetInsert measures single-document inserts into a real
// three-member replica set over gRPC with w:1 and w:"majority", at
// concurrency 1 and 64 (b.N inserts in all, spread over the clients).
// It samples the secondaries' replication lag as the primary reports it
// (the age of the oldest entry a secondary lacks) every 20 ms and reports
// its median, 99th percentile and maximum.
//
//	go test ./integration -run '^$' -bench ReplSetInsert -benchtime 5000x
func BenchmarkReplSetInsert(b *testing.B) {
	_, rs := newReplSetCluster(b)
	primary := rs.waitPrimary(20 * time.Second)
	cl := rs.client(primary)
	var seq atomic.Int64
	for _, wc := range []struct {
		name string
		wc   *shardpb.WriteConcern
	}{{"w1", &shardpb.WriteConcern{W: 1}}, {"majority", majority}} {
		for _, conc := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/c%d", wc.name, conc), func(b *testing.B) {
				ctx := context.Background()
				var (
					lagMu sync.Mutex
					lags  []int64
				)
				stopLag := make(chan struct{})
				lagDone := make(chan struct{})
				go func() {
					defer close(lagDone)
					for {
						select {
						case <-stopLag:
							return
						case <-time.After(20 * time.Millisecond):
						}
						st, err := rs.status(ctx, primary)
						if err != nil {
							continue
						}
						lagMu.Lock()
						for _, m := range st.GetMembers() {
							if m.GetName() != primary {
								lags = append(lags, m.GetLagMs())
							}
						}
						lagMu.Unlock()
					}
				}()
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range conc {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							id := "b" + strconv.FormatInt(seq.Add(1), 10)
							doc, _ := bson.Marshal(bson.D{{Key: "_id", Value: id}, {Key: "pad", Value: "0123456789abcdef0123456789abcdef"}})
							res, err := cl.Insert(ctx, "bench.ins", []bson.Raw{doc}, shardclient.WriteOptions{Ordered: true, WriteConcern: wc.wc})
							if err == nil {
								err = writeErr(res)
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				close(stopLag)
				<-lagDone
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
				lagMu.Lock()
				slices.Sort(lags)
				if n := len(lags); n > 0 {
					b.ReportMetric(float64(lags[n/2]), "lag-p50-ms")
					b.ReportMetric(float64(lags[n*99/100]), "lag-p99-ms")
					b.ReportMetric(float64(lags[n-1]), "lag-max-ms")
				}
				lagMu.Unlock()
			})
		}
	}
}
