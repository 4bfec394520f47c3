package config

import (
	"fmt"
	"time"
)

// ShardOplog overrides the oplog retention of one shard's members
// (cluster.yaml `shards[].oplog`). A zero field inherits the
// replication-wide setting.
type ShardOplog struct {
	// MaxBytes is this shard's oplog target size; 0 inherits
	// replication.oplogMaxBytes. At least 1MiB when set.
	MaxBytes Size `yaml:"maxBytes,omitempty"`
	// MaxEntries also bounds the oplog by entry count (0: no count bound,
	// the size alone decides). At least 1000 when set.
	MaxEntries int64 `yaml:"maxEntries,omitempty"`
}

// MinOplogEntries is the smallest shards[].oplog.maxEntries accepted: fewer
// would make every short hiccup of a secondary a full resync.
const MinOplogEntries = 1000

// OplogRetention is the resolved retention of a shard's oplogs: entries
// beyond MaxBytes (Pebble's on-disk estimate) or MaxEntries (when > 0)
// are truncated oldest first, never one younger than MinRetention, never
// the newest one.
type OplogRetention struct {
	MaxBytes     Size
	MaxEntries   int64
	MinRetention time.Duration
}

// OplogRetentionOf returns the oplog retention of the named shard's
// members: the shard's overrides over replication.oplogMaxBytes and
// replication.oplogRetention. An unknown shard gets the replication-wide
// settings.
func (c *Cluster) OplogRetentionOf(shard string) OplogRetention {
	r := OplogRetention{MaxBytes: c.Replication.OplogMaxBytes, MinRetention: c.Replication.OplogRetention}
	for _, sh := range c.Shards {
		if sh.Name != shard {
			continue
		}
		if sh.Oplog.MaxBytes > 0 {
			r.MaxBytes = sh.Oplog.MaxBytes
		}
		r.MaxEntries = sh.Oplog.MaxEntries
	}
	return r
}

func (o ShardOplog) validate(ps *problems, field string) {
	if o.MaxBytes != 0 && o.MaxBytes < MiB {
		ps.add(joinField(field, "maxBytes"), fmt.Sprintf("%s is less than the minimum of 1MiB", o.MaxBytes))
	}
	if o.MaxEntries != 0 && o.MaxEntries < MinOplogEntries {
		ps.add(joinField(field, "maxEntries"), fmt.Sprintf("%d is less than the minimum of %d entries", o.MaxEntries, MinOplogEntries))
	}
}
