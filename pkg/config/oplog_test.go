package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/psdb/psdb/pkg/config"
)

func TestShardOplogRetention(t *testing.T) {
	c, err := config.Parse(doc(
		section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001'}], oplog: {maxBytes: 64MiB, maxEntries: 5000}}, {name: rs1, members: [{name: b, addr: '127.0.0.1:1002'}]}]"},
		section{"replication", "{oplogRetention: 2h, oplogMaxBytes: 2GiB}"},
	))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.OplogRetentionOf("rs0"), (config.OplogRetention{MaxBytes: 64 * config.MiB, MaxEntries: 5000, MinRetention: 2 * time.Hour}); got != want {
		t.Errorf("rs0: %+v, want %+v", got, want)
	}
	if got, want := c.OplogRetentionOf("rs1"), (config.OplogRetention{MaxBytes: 2 * config.GiB, MinRetention: 2 * time.Hour}); got != want {
		t.Errorf("rs1 inherits: %+v, want %+v", got, want)
	}
	d := config.Default()
	if got := d.OplogRetentionOf("any"); got.MaxBytes != config.DefaultOplogMaxBytes || got.MinRetention != config.DefaultOplogRetention || got.MaxEntries != 0 {
		t.Errorf("defaults: %+v", got)
	}

	for _, tc := range []struct{ oplog, want string }{
		{"{maxBytes: 1KB}", "shards[0].oplog.maxBytes: 1KB is less than the minimum of 1MiB"},
		{"{maxEntries: 10}", "shards[0].oplog.maxEntries: 10 is less than the minimum of 1000 entries"},
		{"{maxEntries: -5}", "shards[0].oplog.maxEntries: -5 is less than the minimum"},
		{"{maxEntrys: 5000}", "shards[0].oplog.maxEntrys: unknown key"},
	} {
		_, err := config.Parse(doc(section{"shards", "[{name: rs0, members: [{name: a, addr: '127.0.0.1:1001'}], oplog: " + tc.oplog + "}]"}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("oplog %s: %v, want %q", tc.oplog, err, tc.want)
		}
	}
}
