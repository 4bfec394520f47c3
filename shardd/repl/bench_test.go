package repl_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/psdb/psdb/pkg/shardclient"
	"github.com/psdb/psdb/proto/shardpb"
)

// BenchmarkInsertWriteConcern measures one-document inserts through gRPC
// on an in-process primary with one in-process secondary (3-member set:
// majority = primary + the secondary), with w:1 and w:"majority". All on
// one machine: the figure is the replication path's cost (stream, apply
// with its own fsync, progress report), not a network's.
func BenchmarkInsertWriteConcern(b *testing.B) {
	for _, tc := range []struct {
		name string
		wc   *shardpb.WriteConcern
	}{
		{"w1", &shardpb.WriteConcern{W: 1}},
		{"majority", &shardpb.WriteConcern{WMode: "majority", WtimeoutMs: 10000}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			pe, se := openEngine(b), openEngine(b)
			p := startPrimary(b, pe, []string{"p", "s1", "s2"})
			runPuller(b, "s1", p.addr, se)
			c, err := shardclient.Dial(context.Background(), p.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if r := insert(b, c, i, 1, tc.wc); r.WriteConcernError != nil {
					b.Fatal(fmt.Sprint(r.WriteConcernError))
				}
			}
		})
	}
}
