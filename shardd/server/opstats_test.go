package server

import (
	"testing"

	"github.com/psdb/psdb/pkg/opstats"
)

func TestRPCOpType(t *testing.T) {
	for _, c := range []struct{ method, want string }{
		{"/psdb.shard.v1.Shard/Insert", opstats.OpInsert},
		{"/psdb.shard.v1.Shard/Update", opstats.OpUpdate},
		{"/psdb.shard.v1.Shard/Delete", opstats.OpDelete},
		{"/psdb.shard.v1.Shard/Find", opstats.OpQuery},
		{"/psdb.shard.v1.Shard/GetMore", opstats.OpGetMore},
		{"/psdb.shard.v1.Shard/FindAndModify", opstats.OpCommand},
		{"/psdb.shard.v1.Shard/Aggregate", opstats.OpCommand},
		{"/psdb.shard.v1.Replication/ReportProgress", opstats.OpRepl},
		{"/psdb.shard.v1.Migration/StartMigration", opstats.OpMigration},
		{"/grpc.health.v1.Health/Check", ""},
		{"nonsense", ""},
	} {
		if got := rpcOpType(c.method); got != c.want {
			t.Errorf("rpcOpType(%q) = %q, want %q", c.method, got, c.want)
		}
	}
}
