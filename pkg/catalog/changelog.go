package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The changelog: a bounded history of the catalog's sharding events
// (migrations, splits, shards added and removed, database primaries
// moved), kept under <root>/changelog/<unix-nanos>-<server> and served as
// the router's config.changelog, in MongoDB's shape. It is a record for
// people and tools, never an input to a decision: nothing reads it back
// to decide ownership.

// MaxChangelogEntries bounds the changelog; the oldest entries beyond it
// are deleted by the append that passes it.
const MaxChangelogEntries = 5000

// ChangelogEntry is one event.
type ChangelogEntry struct {
	// ID is assigned by AppendChangelog (the key's last element).
	ID string `json:"id"`
	// Server names the router (or node) that recorded the event.
	Server string    `json:"server"`
	Time   time.Time `json:"time"`
	// What is MongoDB's event name: "moveChunk.start",
	// "moveChunk.commit", "moveChunk.error", "split", "multi-split",
	// "addShard", "removeShard", "movePrimary".
	What string `json:"what"`
	NS   string `json:"ns"`
	// Details is a BSON document in canonical extended JSON (so types
	// survive the JSON record).
	Details string `json:"details,omitempty"`
}

func (c *Catalog) changelogPrefix() string { return c.root + "/changelog/" }

// AppendChangelog records e (ID and, if zero, Time are set here) and
// trims the changelog to MaxChangelogEntries.
func (c *Catalog) AppendChangelog(ctx context.Context, e ChangelogEntry) error {
	return c.appendChangelog(ctx, e, MaxChangelogEntries)
}

func (c *Catalog) appendChangelog(ctx context.Context, e ChangelogEntry, max int64) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.ID = fmt.Sprintf("%020d-%s", e.Time.UnixNano(), e.Server)
	if _, err := c.cli.Put(ctx, c.changelogPrefix()+e.ID, mustJSON(e)); err != nil {
		return fmt.Errorf("etcd put changelog %s: %w", e.What, err)
	}
	pfx := c.changelogPrefix()
	cnt, err := c.cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("etcd count changelog: %w", err)
	}
	if extra := cnt.Count - max; extra > 0 {
		old, err := c.cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(extra))
		if err != nil {
			return fmt.Errorf("etcd list old changelog entries: %w", err)
		}
		if n := len(old.Kvs); n > 0 {
			last := string(old.Kvs[n-1].Key)
			if _, err := c.cli.Delete(ctx, pfx, clientv3.WithRange(last+"\x00")); err != nil {
				return fmt.Errorf("etcd trim changelog: %w", err)
			}
		}
	}
	return nil
}

// ListChangelog returns the changelog, oldest first.
func (c *Catalog) ListChangelog(ctx context.Context) ([]ChangelogEntry, error) {
	resp, err := c.cli.Get(ctx, c.changelogPrefix(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("etcd get changelog: %w", err)
	}
	out := make([]ChangelogEntry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e ChangelogEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("decode changelog %s: %w: %w", kv.Key, ErrCorrupt, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// balancerStatusKey holds the balancer leader's last published status.
func (c *Catalog) balancerStatusKey() string { return c.root + "/balancer/status" }

// PutBalancerStatus stores the leader's status document (JSON, owned by
// the balancer package), so every router answers balancerStatus alike.
func (c *Catalog) PutBalancerStatus(ctx context.Context, doc []byte) error {
	if _, err := c.cli.Put(ctx, c.balancerStatusKey(), string(doc)); err != nil {
		return fmt.Errorf("etcd put balancer status: %w", err)
	}
	return nil
}

// GetBalancerStatus returns the last published status (nil if none).
func (c *Catalog) GetBalancerStatus(ctx context.Context) ([]byte, error) {
	resp, err := c.cli.Get(ctx, c.balancerStatusKey())
	if err != nil {
		return nil, fmt.Errorf("etcd get balancer status: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}
