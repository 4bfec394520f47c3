package admin

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// SummaryShard is a shard in the summary: its state and its members'
// health.
type SummaryShard struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Primary string `json:"primary"`
	Healthy int    `json:"healthyMembers"`
	Members int    `json:"members"`
	Term    int64  `json:"term"`
}

// SummaryDatabase is a database and its primary shard.
type SummaryDatabase struct {
	Name        string `json:"name"`
	Primary     string `json:"primary"`
	Partitioned bool   `json:"partitioned"`
}

// SummaryCollection is a sharded collection: its key and its chunks per
// shard.
type SummaryCollection struct {
	NS       string         `json:"ns"`
	Key      Doc            `json:"key"`
	Unique   bool           `json:"unique"`
	Chunks   int            `json:"chunks"`
	PerShard map[string]int `json:"perShard"`
}

// SummaryRouter is a registered router (config.mongos).
type SummaryRouter struct {
	Addr string `json:"addr"`
	ID   string `json:"routerId,omitempty"`
	Ping string `json:"ping,omitempty"`
}

// Summary is the cluster-wide answer of `summary`.
type Summary struct {
	Shards      []SummaryShard      `json:"shards"`
	Databases   []SummaryDatabase   `json:"databases"`
	Collections []SummaryCollection `json:"collections"`
	Balancer    BalancerStatus      `json:"balancer"`
	Routers     []SummaryRouter     `json:"routers"`
}

// WriteTable implements Result: one section per part.
func (s Summary) WriteTable(w io.Writer) error {
	sections := []func(io.Writer) error{
		func(w io.Writer) error {
			tw := table(w)
			row(tw, "SHARD", "STATE", "PRIMARY", "HEALTHY", "TERM")
			for _, sh := range s.Shards {
				row(tw, sh.Name, sh.State, orDash(sh.Primary), fmt.Sprintf("%d/%d", sh.Healthy, sh.Members), sh.Term)
			}
			return tw.Flush()
		},
		func(w io.Writer) error {
			tw := table(w)
			row(tw, "DATABASE", "PRIMARY SHARD", "PARTITIONED")
			for _, d := range s.Databases {
				row(tw, d.Name, d.Primary, d.Partitioned)
			}
			return tw.Flush()
		},
		func(w io.Writer) error {
			tw := table(w)
			row(tw, "COLLECTION", "SHARD KEY", "CHUNKS", "PER SHARD")
			for _, c := range s.Collections {
				per := make([]string, 0, len(c.PerShard))
				for _, sh := range sortedKeys(c.PerShard) {
					per = append(per, fmt.Sprintf("%s=%d", sh, c.PerShard[sh]))
				}
				row(tw, c.NS, c.Key, c.Chunks, orDash(strings.Join(per, " ")))
			}
			return tw.Flush()
		},
		func(w io.Writer) error {
			if _, err := fmt.Fprintln(w, "BALANCER"); err != nil {
				return err
			}
			return s.Balancer.WriteTable(w)
		},
		func(w io.Writer) error {
			tw := table(w)
			row(tw, "ROUTER", "ID", "PING")
			for _, r := range s.Routers {
				row(tw, r.Addr, orDash(r.ID), orDash(r.Ping))
			}
			return tw.Flush()
		},
	}
	for i, sec := range sections {
		if i > 0 {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
		}
		if err := sec(w); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Summary reads the cluster's state through the router: listShards,
// replSetGetStatus, config.databases, config.collections, config.chunks,
// balancerStatus and config.mongos.
func (c *Client) Summary(ctx context.Context) (Summary, error) {
	s := Summary{Shards: []SummaryShard{}, Databases: []SummaryDatabase{}, Collections: []SummaryCollection{}, Routers: []SummaryRouter{}}
	shards, err := c.ListShards(ctx)
	if err != nil {
		return s, err
	}
	rs, err := c.ReplStatus(ctx, "")
	if err != nil {
		return s, err
	}
	for _, sh := range shards.Shards {
		ss := SummaryShard{Name: sh.Name, State: sh.State, Members: len(sh.Members)}
		if st, ok := rs.Shard(sh.Name); ok {
			ss.Primary, ss.Healthy, ss.Term, ss.Members = st.Primary(), st.Healthy(), st.Term, len(st.Members)
		}
		s.Shards = append(s.Shards, ss)
	}
	dbs, err := c.findAll(ctx, "databases", nil, bson.D{{Key: "_id", Value: 1}})
	if err != nil {
		return s, err
	}
	for _, d := range dbs {
		sd := SummaryDatabase{}
		sd.Name, _ = d.Lookup("_id").StringValueOK()
		sd.Primary, _ = d.Lookup("primary").StringValueOK()
		sd.Partitioned, _ = d.Lookup("partitioned").BooleanOK()
		s.Databases = append(s.Databases, sd)
	}
	colls, err := c.findAll(ctx, "collections", nil, bson.D{{Key: "_id", Value: 1}})
	if err != nil {
		return s, err
	}
	chunks, err := c.Chunks(ctx, "", "")
	if err != nil {
		return s, err
	}
	for _, d := range colls {
		sc := SummaryCollection{PerShard: map[string]int{}}
		sc.NS, _ = d.Lookup("_id").StringValueOK()
		if k, ok := d.Lookup("key").DocumentOK(); ok {
			sc.Key = Doc(k)
		}
		sc.Unique, _ = d.Lookup("unique").BooleanOK()
		for _, n := range chunks.PerShard {
			if n.NS == sc.NS {
				sc.PerShard[n.Shard] = n.Chunks
				sc.Chunks += n.Chunks
			}
		}
		s.Collections = append(s.Collections, sc)
	}
	if s.Balancer, err = c.BalancerStatus(ctx); err != nil {
		return s, err
	}
	routers, err := c.findAll(ctx, "mongos", nil, bson.D{{Key: "_id", Value: 1}})
	if err != nil {
		return s, err
	}
	for _, r := range routers {
		sr := SummaryRouter{}
		sr.Addr, _ = r.Lookup("_id").StringValueOK()
		sr.ID, _ = r.Lookup("routerId").StringValueOK()
		if v := r.Lookup("ping"); v.Type == bson.TypeDateTime {
			sr.Ping = Format(v)
		}
		s.Routers = append(s.Routers, sr)
	}
	return s, nil
}
