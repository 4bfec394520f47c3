package admin

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// OpTime is PSDB's optime: the term and index of an oplog entry.
type OpTime struct {
	T int64 `json:"t"`
	I int64 `json:"i"`
}

func (o OpTime) String() string { return fmt.Sprintf("%d:%d", o.T, o.I) }

// RSMember is one member of a shard's replica set as replSetGetStatus
// reports it.
type RSMember struct {
	ID         int32   `json:"_id"`
	Member     string  `json:"member"` // the node name of cluster.yaml
	Host       string  `json:"name"`   // its address, as MongoDB's name field
	State      string  `json:"stateStr"`
	Health     float64 `json:"health"`
	Optime     *OpTime `json:"optime,omitempty"`
	LagMillis  int64   `json:"lagMillis"`
	SyncSource string  `json:"syncSourceHost,omitempty"`
	Message    string  `json:"lastHeartbeatMessage,omitempty"`
}

// ShardRS is one shard's replica-set status.
type ShardRS struct {
	Shard       string     `json:"shard"`
	Set         string     `json:"set"`
	Term        int64      `json:"term"`
	CommitPoint *OpTime    `json:"lastCommittedOpTime,omitempty"`
	Members     []RSMember `json:"members"`
}

// Primary returns the member reported PRIMARY ("" when none).
func (s ShardRS) Primary() string {
	for _, m := range s.Members {
		if m.State == "PRIMARY" {
			return m.Member
		}
	}
	return ""
}

// Healthy returns how many members are healthy.
func (s ShardRS) Healthy() int {
	n := 0
	for _, m := range s.Members {
		if m.Health > 0 {
			n++
		}
	}
	return n
}

// RSStatus is the answer of `rs status`.
type RSStatus struct {
	Shards []ShardRS `json:"shards"`
}

// Shard returns the status of one shard.
func (s RSStatus) Shard(name string) (ShardRS, bool) {
	for _, sh := range s.Shards {
		if sh.Shard == name {
			return sh, true
		}
	}
	return ShardRS{}, false
}

// WriteTable implements Result: per shard a header line, then one row
// per member. TERM is the term of the member's last applied entry.
func (s RSStatus) WriteTable(w io.Writer) error {
	for i, sh := range s.Shards {
		if i > 0 {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
		}
		commit := "-"
		if sh.CommitPoint != nil {
			commit = sh.CommitPoint.String()
		}
		if _, err := fmt.Fprintf(w, "shard %s  set %s  term %d  commit point %s\n", sh.Shard, sh.Set, sh.Term, commit); err != nil {
			return err
		}
		tw := table(w)
		row(tw, "MEMBER", "NAME", "STATE", "HEALTH", "TERM", "OPTIME", "LAG", "SYNC SOURCE")
		for _, m := range sh.Members {
			term, opt, lag := "-", "-", "-"
			if m.Optime != nil {
				term, opt = fmt.Sprint(m.Optime.T), m.Optime.String()
				lag = (time.Duration(m.LagMillis) * time.Millisecond).String()
			}
			src := orDash(m.SyncSource)
			if m.Message != "" {
				src = m.Message
			}
			row(tw, m.Member, m.Host, m.State, m.Health, term, opt, lag, src)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// opTimeOf reads {t, i}.
func opTimeOf(v bson.RawValue) *OpTime {
	d, ok := v.DocumentOK()
	if !ok {
		return nil
	}
	o := &OpTime{}
	o.T, _ = d.Lookup("t").AsInt64OK()
	o.I, _ = d.Lookup("i").AsInt64OK()
	return o
}

// parseShardRS reads one shard's replSetGetStatus document.
func parseShardRS(shard string, d bson.Raw) ShardRS {
	s := ShardRS{Shard: shard, Members: []RSMember{}}
	s.Set, _ = d.Lookup("set").StringValueOK()
	s.Term, _ = d.Lookup("term").AsInt64OK()
	if ops, ok := d.Lookup("optimes").DocumentOK(); ok {
		s.CommitPoint = opTimeOf(ops.Lookup("lastCommittedOpTime"))
	}
	arr, _ := d.Lookup("members").ArrayOK()
	vals, _ := arr.Values()
	for _, v := range vals {
		md, ok := v.DocumentOK()
		if !ok {
			continue
		}
		m := RSMember{}
		if id, ok := md.Lookup("_id").AsInt64OK(); ok {
			m.ID = int32(id)
		}
		m.Host, _ = md.Lookup("name").StringValueOK()
		m.Member, _ = md.Lookup("member").StringValueOK()
		m.State, _ = md.Lookup("stateStr").StringValueOK()
		if h, ok := md.Lookup("health").AsFloat64OK(); ok {
			m.Health = h
		}
		m.Optime = opTimeOf(md.Lookup("optime"))
		m.LagMillis, _ = md.Lookup("lagMillis").AsInt64OK()
		m.SyncSource, _ = md.Lookup("syncSourceHost").StringValueOK()
		m.Message, _ = md.Lookup("lastHeartbeatMessage").StringValueOK()
		s.Members = append(s.Members, m)
	}
	return s
}

// ReplStatus runs the router's replSetGetStatus, of every shard or of
// one.
func (c *Client) ReplStatus(ctx context.Context, shard string) (RSStatus, error) {
	cmd := bson.D{{Key: "replSetGetStatus", Value: 1}}
	if shard != "" {
		cmd = append(cmd, bson.E{Key: "shard", Value: shard})
	}
	raw, err := c.Run(ctx, cmd)
	if err != nil {
		return RSStatus{}, err
	}
	st := RSStatus{Shards: []ShardRS{}}
	shards, ok := raw.Lookup("shards").DocumentOK()
	if !ok {
		return st, fmt.Errorf("replSetGetStatus: reply without shards: %s", raw)
	}
	elems, _ := shards.Elements()
	for _, e := range elems {
		if d, ok := e.Value().DocumentOK(); ok {
			st.Shards = append(st.Shards, parseShardRS(e.Key(), d))
		}
	}
	return st, nil
}

// StepDownResult is the answer of `rs stepdown`: the member that stepped
// down and, when one was elected within the wait, the new primary.
type StepDownResult struct {
	Shard       string `json:"shard"`
	SteppedDown string `json:"steppedDown"`
	Host        string `json:"host"`
	NewPrimary  string `json:"newPrimary"`
}

// WriteTable implements Result.
func (r StepDownResult) WriteTable(w io.Writer) error {
	next := "no new primary yet"
	if r.NewPrimary != "" {
		next = "new primary " + r.NewPrimary
	}
	_, err := fmt.Fprintf(w, "shard %s: %s (%s) stepped down; %s\n", r.Shard, r.SteppedDown, r.Host, next)
	return err
}

// StepDown runs the router's replSetStepDown for a shard (secs 0: the
// member's default of 60; force: step down without a caught-up
// secondary), then polls replSetGetStatus until another member is
// PRIMARY or wait passes (wait 0: no polling).
func (c *Client) StepDown(ctx context.Context, shard string, secs int64, force bool, wait time.Duration) (StepDownResult, error) {
	cmd := bson.D{{Key: "replSetStepDown", Value: secs}, {Key: "shard", Value: shard}, {Key: "force", Value: force}}
	raw, err := c.Run(ctx, cmd)
	if err != nil {
		return StepDownResult{}, err
	}
	r := StepDownResult{Shard: shard}
	r.SteppedDown, _ = raw.Lookup("member").StringValueOK()
	r.Host, _ = raw.Lookup("host").StringValueOK()
	if wait <= 0 {
		return r, nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if st, err := c.ReplStatus(ctx, shard); err == nil {
			if sh, ok := st.Shard(shard); ok {
				if p := sh.Primary(); p != "" && p != r.SteppedDown {
					r.NewPrimary = p
					return r, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return r, nil
		case <-t.C:
		}
	}
}
