package launcher

import (
	"context"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/psdb/psdb/pkg/config"
)

// State is what Status says about a node.
type State string

// States of a node.
const (
	// StateRunning: the process is alive and passes its health check.
	StateRunning State = "running"
	// StateUnhealthy: the process is alive but fails its health check
	// (starting, paused, or without quorum).
	StateUnhealthy State = "unhealthy"
	// StateDown: no live process (never started, stopped, or killed).
	StateDown State = "down"
	// StateNotBuilt: the role's binary is not in the bin directory yet.
	StateNotBuilt State = "not-built"
)

// NodeStatus is one row of `psdb cluster status`.
type NodeStatus struct {
	Name  string
	Role  config.Role
	Shard string
	Addr  string
	PID   int // 0 when not running
	State State
	// Detail says why a node is unhealthy, or what is missing.
	Detail string
	// Info describes a running node (Options.Info), e.g. its replica set
	// state; empty when the role has no InfoFunc.
	Info string
}

// Status probes every node (in parallel, each with a short deadline) and
// returns their states in start order. It needs no launcher to have started
// the nodes: pid files and health checks are enough.
func (l *Launcher) Status(ctx context.Context) []NodeStatus {
	out := make([]NodeStatus, len(l.procs))
	var wg sync.WaitGroup
	for i, p := range l.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = p.Status(ctx)
		}()
	}
	wg.Wait()
	return out
}

// Status returns the node's current status.
func (p *Process) Status(ctx context.Context) NodeStatus {
	n := p.node
	st := NodeStatus{Name: n.Name, Role: n.Role, Shard: n.Shard, Addr: n.Addr, State: StateDown}
	if pid := p.PID(); pid > 0 {
		st.PID = pid
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.l.health(n.Role)(cctx, n)
		cancel()
		if err != nil {
			st.State, st.Detail = StateUnhealthy, err.Error()
			return st
		}
		st.State = StateRunning
		if info := p.l.info(n.Role); info != nil {
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if s, err := info(ictx, n); err == nil {
				st.Info = s
			}
			cancel()
		}
		return st
	}
	if !p.Built() {
		st.State = StateNotBuilt
		st.Detail = fmt.Sprintf("no %s binary in %s", BinaryName(n.Role), p.l.opts.BinDir)
	}
	return st
}

// WriteStatusTable prints statuses as the table of `psdb cluster status`:
// NODE ROLE SHARD ADDRESS PID STATE, and INFO when a node has one.
func WriteStatusTable(w io.Writer, statuses []NodeStatus) error {
	withInfo := false
	for _, s := range statuses {
		withInfo = withInfo || s.Info != ""
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if withInfo {
		fmt.Fprintln(tw, "NODE\tROLE\tSHARD\tADDRESS\tPID\tSTATE\tINFO")
	} else {
		fmt.Fprintln(tw, "NODE\tROLE\tSHARD\tADDRESS\tPID\tSTATE")
	}
	for _, s := range statuses {
		shard, pid := s.Shard, "-"
		if shard == "" {
			shard = "-"
		}
		if s.PID > 0 {
			pid = fmt.Sprint(s.PID)
		}
		if withInfo {
			info := s.Info
			if info == "" {
				info = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Role, shard, s.Addr, pid, s.State, info)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Role, shard, s.Addr, pid, s.State)
	}
	return tw.Flush()
}
