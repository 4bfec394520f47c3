package admin

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Shard is one entry of listShards.
type Shard struct {
	Name    string   `json:"name"`
	Host    string   `json:"host"`
	State   string   `json:"state"` // active or draining
	Members []string `json:"members"`
}

// ShardList is the answer of `shards list`.
type ShardList struct {
	Shards []Shard `json:"shards"`
}

// WriteTable implements Result.
func (l ShardList) WriteTable(w io.Writer) error {
	tw := table(w)
	row(tw, "SHARD", "STATE", "MEMBERS")
	for _, s := range l.Shards {
		row(tw, s.Name, s.State, strings.Join(s.Members, ","))
	}
	return tw.Flush()
}

// parseShard reads a listShards / config.shards entry.
func parseShard(raw bson.Raw) Shard {
	s := Shard{State: "active"}
	s.Name, _ = raw.Lookup("_id").StringValueOK()
	s.Host, _ = raw.Lookup("host").StringValueOK()
	if d, ok := raw.Lookup("draining").BooleanOK(); ok && d {
		s.State = "draining"
	}
	hosts := s.Host
	if _, after, ok := strings.Cut(hosts, "/"); ok {
		hosts = after
	}
	for _, h := range strings.Split(hosts, ",") {
		if h != "" {
			s.Members = append(s.Members, h)
		}
	}
	return s
}

// ListShards runs listShards.
func (c *Client) ListShards(ctx context.Context) (ShardList, error) {
	raw, err := c.Run(ctx, bson.D{{Key: "listShards", Value: 1}})
	if err != nil {
		return ShardList{}, err
	}
	l := ShardList{Shards: []Shard{}}
	arr, ok := raw.Lookup("shards").ArrayOK()
	if !ok {
		return l, fmt.Errorf("listShards: reply without a shards array: %s", raw)
	}
	vals, _ := arr.Values()
	for _, v := range vals {
		if d, ok := v.DocumentOK(); ok {
			l.Shards = append(l.Shards, parseShard(d))
		}
	}
	return l, nil
}

// AddShardResult is the answer of `shards add`.
type AddShardResult struct {
	Shard string `json:"shardAdded"`
}

// WriteTable implements Result.
func (r AddShardResult) WriteTable(w io.Writer) error {
	_, err := fmt.Fprintf(w, "shard %s added\n", r.Shard)
	return err
}

// AddShard runs addShard with a connection string "<set>/<host:port>,..."
// (or a single host:port); name, when set, names the shard.
func (c *Client) AddShard(ctx context.Context, spec, name string) (AddShardResult, error) {
	cmd := bson.D{{Key: "addShard", Value: spec}}
	if name != "" {
		cmd = append(cmd, bson.E{Key: "name", Value: name})
	}
	raw, err := c.Run(ctx, cmd)
	if err != nil {
		return AddShardResult{}, err
	}
	r := AddShardResult{}
	r.Shard, _ = raw.Lookup("shardAdded").StringValueOK()
	return r, nil
}

// RemoveProgress is one answer of removeShard: state started, ongoing or
// completed; what remains on the shard while it drains.
type RemoveProgress struct {
	Shard             string   `json:"shard"`
	State             string   `json:"state"`
	Msg               string   `json:"msg"`
	RemainingChunks   int64    `json:"remainingChunks"`
	RemainingDBs      int64    `json:"remainingDBs"`
	JumboChunks       int64    `json:"jumboChunks"`
	DBsToMove         []string `json:"dbsToMove"`
	CollectionsToMove []string `json:"collectionsToMove"`
	Note              string   `json:"note,omitempty"`
}

// Completed reports whether the shard record is gone.
func (p RemoveProgress) Completed() bool { return p.State == "completed" }

// Line is the one-line progress report of --wait.
func (p RemoveProgress) Line() string {
	switch p.State {
	case "completed":
		return fmt.Sprintf("removeShard %s: completed", p.Shard)
	case "started":
		return fmt.Sprintf("removeShard %s: started; dbsToMove=[%s] collectionsToMove=[%s]", p.Shard,
			strings.Join(p.DBsToMove, ","), strings.Join(p.CollectionsToMove, ","))
	}
	return fmt.Sprintf("removeShard %s: %s; remaining chunks=%d dbs=%d jumbo=%d dbsToMove=[%s]", p.Shard, p.State,
		p.RemainingChunks, p.RemainingDBs, p.JumboChunks, strings.Join(p.DBsToMove, ","))
}

// WriteTable implements Result.
func (p RemoveProgress) WriteTable(w io.Writer) error {
	tw := table(w)
	row(tw, "SHARD", p.Shard)
	row(tw, "STATE", p.State)
	row(tw, "MSG", p.Msg)
	if p.State != "completed" {
		if p.State == "ongoing" {
			row(tw, "REMAINING CHUNKS", p.RemainingChunks)
			row(tw, "REMAINING DBS", p.RemainingDBs)
			row(tw, "JUMBO CHUNKS", p.JumboChunks)
		}
		row(tw, "DBS TO MOVE", orDash(strings.Join(p.DBsToMove, ",")))
		row(tw, "COLLECTIONS TO MOVE", orDash(strings.Join(p.CollectionsToMove, ",")))
		if p.Note != "" {
			row(tw, "NOTE", p.Note)
		}
	}
	return tw.Flush()
}

// parseRemove reads a removeShard reply.
func parseRemove(name string, raw bson.Raw) RemoveProgress {
	p := RemoveProgress{Shard: name, DBsToMove: []string{}, CollectionsToMove: []string{}}
	if s, ok := raw.Lookup("shard").StringValueOK(); ok {
		p.Shard = s
	}
	p.State, _ = raw.Lookup("state").StringValueOK()
	p.Msg, _ = raw.Lookup("msg").StringValueOK()
	p.Note, _ = raw.Lookup("note").StringValueOK()
	if rem, ok := raw.Lookup("remaining").DocumentOK(); ok {
		p.RemainingChunks, _ = rem.Lookup("chunks").AsInt64OK()
		p.RemainingDBs, _ = rem.Lookup("dbs").AsInt64OK()
		p.JumboChunks, _ = rem.Lookup("jumboChunks").AsInt64OK()
	}
	p.DBsToMove = stringsOf(raw.Lookup("dbsToMove"))
	p.CollectionsToMove = stringsOf(raw.Lookup("collectionsToMove"))
	return p
}

// stringsOf returns the strings of an array value (empty otherwise).
func stringsOf(v bson.RawValue) []string {
	out := []string{}
	arr, ok := v.ArrayOK()
	if !ok {
		return out
	}
	vals, _ := arr.Values()
	for _, e := range vals {
		if s, ok := e.StringValueOK(); ok {
			out = append(out, s)
		}
	}
	return out
}

// RemoveShard runs removeShard once.
func (c *Client) RemoveShard(ctx context.Context, name string) (RemoveProgress, error) {
	raw, err := c.Run(ctx, bson.D{{Key: "removeShard", Value: name}})
	if err != nil {
		return RemoveProgress{}, err
	}
	return parseRemove(name, raw), nil
}

// WaitRemoved calls removeShard every interval until it answers
// completed, handing each answer to progress, or until timeout passes
// (an error saying what remained) or ctx ends.
func (c *Client) WaitRemoved(ctx context.Context, name string, interval, timeout time.Duration, progress func(RemoveProgress)) (RemoveProgress, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p, err := c.RemoveShard(ctx, name)
		if err != nil {
			return p, err
		}
		if progress != nil {
			progress(p)
		}
		if p.Completed() {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("removeShard %s not completed within %s: %s", name, timeout, p.Line())
		case <-t.C:
		}
	}
}

// MovePrimaryResult is the answer of `shards move-primary`.
type MovePrimaryResult struct {
	DB          string `json:"db"`
	To          string `json:"to"`
	Collections int64  `json:"collections"`
	Millis      int64  `json:"millis"`
}

// WriteTable implements Result.
func (r MovePrimaryResult) WriteTable(w io.Writer) error {
	_, err := fmt.Fprintf(w, "database %s now has primary shard %s (%d unsharded collections moved in %d ms)\n", r.DB, r.To, r.Collections, r.Millis)
	return err
}

// MovePrimary runs movePrimary: db's unsharded collections move to shard
// to, which becomes its primary (what removeShard's dbsToMove asks for).
func (c *Client) MovePrimary(ctx context.Context, db, to string) (MovePrimaryResult, error) {
	raw, err := c.Run(ctx, bson.D{{Key: "movePrimary", Value: db}, {Key: "to", Value: to}})
	if err != nil {
		return MovePrimaryResult{}, err
	}
	r := MovePrimaryResult{DB: db, To: to}
	r.Collections, _ = raw.Lookup("collections").AsInt64OK()
	r.Millis, _ = raw.Lookup("millis").AsInt64OK()
	return r, nil
}
