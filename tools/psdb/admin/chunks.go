package admin

import (
	"context"
	"fmt"
	"io"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Chunk is one config.chunks entry.
type Chunk struct {
	NS      string `json:"ns"`
	Min     Doc    `json:"min"`
	Max     Doc    `json:"max"`
	Shard   string `json:"shard"`
	Version string `json:"version"` // lastmod as major|minor
}

// ShardCount is how many chunks of a collection a shard owns.
type ShardCount struct {
	NS     string `json:"ns"`
	Shard  string `json:"shard"`
	Chunks int    `json:"chunks"`
}

// ChunkList is the answer of `chunks list`: the chunks in key order per
// collection, and the number each shard owns per collection.
type ChunkList struct {
	Chunks   []Chunk      `json:"chunks"`
	PerShard []ShardCount `json:"perShard"`
}

// WriteTable implements Result.
func (l ChunkList) WriteTable(w io.Writer) error {
	tw := table(w)
	row(tw, "NS", "MIN", "MAX", "SHARD", "VERSION")
	for _, c := range l.Chunks {
		row(tw, c.NS, c.Min, c.Max, c.Shard, c.Version)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	tw = table(w)
	row(tw, "NS", "SHARD", "CHUNKS")
	for _, c := range l.PerShard {
		row(tw, c.NS, c.Shard, c.Chunks)
	}
	return tw.Flush()
}

// countChunks counts chunks per collection and shard, sorted by both.
func countChunks(chunks []Chunk) []ShardCount {
	n := map[[2]string]int{}
	for _, c := range chunks {
		n[[2]string{c.NS, c.Shard}]++
	}
	out := make([]ShardCount, 0, len(n))
	for k, v := range n {
		out = append(out, ShardCount{NS: k[0], Shard: k[1], Chunks: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].NS != out[j].NS {
			return out[i].NS < out[j].NS
		}
		return out[i].Shard < out[j].Shard
	})
	return out
}

// parseChunk reads a config.chunks document.
func parseChunk(raw bson.Raw) Chunk {
	c := Chunk{}
	c.NS, _ = raw.Lookup("ns").StringValueOK()
	c.Shard, _ = raw.Lookup("shard").StringValueOK()
	if d, ok := raw.Lookup("min").DocumentOK(); ok {
		c.Min = Doc(d)
	}
	if d, ok := raw.Lookup("max").DocumentOK(); ok {
		c.Max = Doc(d)
	}
	if t, i, ok := raw.Lookup("lastmod").TimestampOK(); ok {
		c.Version = fmt.Sprintf("%d|%d", t, i)
	}
	return c
}

// Chunks reads config.chunks, optionally of one collection and of one
// shard, in key order per collection. The per-shard counts cover the
// chunks listed.
func (c *Client) Chunks(ctx context.Context, ns, shard string) (ChunkList, error) {
	filter := bson.D{}
	if ns != "" {
		filter = append(filter, bson.E{Key: "ns", Value: ns})
	}
	if shard != "" {
		filter = append(filter, bson.E{Key: "shard", Value: shard})
	}
	docs, err := c.findAll(ctx, "chunks", filter, bson.D{{Key: "ns", Value: 1}, {Key: "min", Value: 1}})
	if err != nil {
		return ChunkList{}, err
	}
	l := ChunkList{Chunks: []Chunk{}}
	for _, d := range docs {
		l.Chunks = append(l.Chunks, parseChunk(d))
	}
	l.PerShard = countChunks(l.Chunks)
	return l, nil
}

// MoveResult is the answer of `chunks move`.
type MoveResult struct {
	NS            string `json:"ns"`
	Find          Doc    `json:"find"`
	To            string `json:"to"`
	WaitForDelete bool   `json:"waitForDelete"`
	Millis        int64  `json:"millis"`
}

// WriteTable implements Result.
func (r MoveResult) WriteTable(w io.Writer) error {
	_, err := fmt.Fprintf(w, "moved the chunk of %s holding %s to %s in %d ms\n", r.NS, r.Find, r.To, r.Millis)
	return err
}

// MoveChunk runs moveChunk for the chunk holding the shard key find.
func (c *Client) MoveChunk(ctx context.Context, ns string, find bson.Raw, to string, waitForDelete bool) (MoveResult, error) {
	cmd := bson.D{{Key: "moveChunk", Value: ns}, {Key: "find", Value: find}, {Key: "to", Value: to}}
	if waitForDelete {
		cmd = append(cmd, bson.E{Key: "_waitForDelete", Value: true})
	}
	raw, err := c.Run(ctx, cmd)
	if err != nil {
		return MoveResult{}, err
	}
	r := MoveResult{NS: ns, Find: Doc(find), To: to, WaitForDelete: waitForDelete}
	r.Millis, _ = raw.Lookup("millis").AsInt64OK()
	return r, nil
}

// SplitResult is the answer of `chunks split`: the split point given
// (middle) or the document whose chunk was split at its median (find),
// and the collection's chunks afterwards.
type SplitResult struct {
	NS     string `json:"ns"`
	Middle Doc    `json:"middle,omitempty"`
	Find   Doc    `json:"find,omitempty"`
	Chunks int    `json:"chunks"`
}

// WriteTable implements Result.
func (r SplitResult) WriteTable(w io.Writer) error {
	how := fmt.Sprintf("at %s", r.Middle)
	if len(r.Find) > 0 {
		how = fmt.Sprintf("holding %s at its median", r.Find)
	}
	_, err := fmt.Fprintf(w, "split the chunk of %s %s; %s has %d chunks\n", r.NS, how, r.NS, r.Chunks)
	return err
}

// Split runs split with middle (a split point) or find (a document whose
// chunk is split at its median); exactly one is set.
func (c *Client) Split(ctx context.Context, ns string, middle, find bson.Raw) (SplitResult, error) {
	if (middle == nil) == (find == nil) {
		return SplitResult{}, fmt.Errorf("split needs exactly one of middle and find")
	}
	cmd := bson.D{{Key: "split", Value: ns}}
	r := SplitResult{NS: ns}
	if middle != nil {
		cmd = append(cmd, bson.E{Key: "middle", Value: middle})
		r.Middle = Doc(middle)
	} else {
		cmd = append(cmd, bson.E{Key: "find", Value: find})
		r.Find = Doc(find)
	}
	if _, err := c.Run(ctx, cmd); err != nil {
		return SplitResult{}, err
	}
	l, err := c.Chunks(ctx, ns, "")
	if err != nil {
		return SplitResult{}, err
	}
	r.Chunks = len(l.Chunks)
	return r, nil
}
