package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/psdb/psdb/pkg/config"
)

// PeakConfig describes a peak-load search.
type PeakConfig struct {
	Base         Config   `json:"base"`
	StartThreads int      `json:"start_threads"`
	MaxThreads   int      `json:"max_threads"`
	StepDuration Duration `json:"step_duration"`
	P99Bound     Duration `json:"p99_bound"`
	// ClusterFile, if set, is the cluster.yaml whose nodes' memory is
	// reported (pid files under its runDir).
	ClusterFile string `json:"cluster_file,omitempty"`
}

// PeakStep is one concurrency level.
type PeakStep struct {
	Threads     int              `json:"threads"`
	StartS      float64          `json:"start_s"`
	DurationS   float64          `json:"duration_s"`
	Ops         int64            `json:"ops"`
	OpsPerSec   float64          `json:"ops_per_sec"`
	Latency     Latency          `json:"latency"`
	Errors      int64            `json:"errors"`
	Timeouts    int64            `json:"timeouts"`
	ErrorCodes  map[string]int64 `json:"error_codes"`
	WithinBound bool             `json:"within_bound"`
	Memory      []ProcessMemory  `json:"memory"`
}

// ProcessMemory is one process's resident memory after a step.
type ProcessMemory struct {
	Name         string `json:"name"`
	Role         string `json:"role"`
	PID          int    `json:"pid"`
	RSSBytes     int64  `json:"rss_bytes"`
	PeakRSSBytes int64  `json:"peak_rss_bytes"`
	Error        string `json:"error,omitempty"`
}

// PeakReport is the JSON result of `psdb bench peak`.
type PeakReport struct {
	Tool    string     `json:"tool"`
	Version int        `json:"version"`
	Command string     `json:"command"` // "peak"
	Config  PeakConfig `json:"config"`
	Start   time.Time  `json:"start"`
	End     time.Time  `json:"end"`
	Steps   []PeakStep `json:"steps"`
	// Knee is the highest concurrency whose p99 stayed within the bound
	// (nil if even the first step passed it); Best is the step of highest
	// throughput.
	Knee *PeakStep `json:"knee"`
	Best *PeakStep `json:"best"`
	// NonTimeoutErrors counts errors other than timeouts (must be 0).
	NonTimeoutErrors int64      `json:"non_timeout_errors"`
	Intervals        []Interval `json:"intervals"`
	Summary          Summary    `json:"summary"`
}

// Markers returns chart markers at the start of each step.
func (r *PeakReport) Markers() []Marker {
	var ms []Marker
	for _, s := range r.Steps {
		ms = append(ms, Marker{AtS: s.StartS, Label: fmt.Sprintf("%d thr", s.Threads)})
	}
	return ms
}

// Peak runs the workload at StartThreads, StartThreads*2, ... up to
// MaxThreads, StepDuration each, and stops after the first step whose p99
// passes P99Bound. The records must have been loaded.
func Peak(ctx context.Context, cli *mongo.Client, pc PeakConfig, progress *Progress) (*PeakReport, error) {
	if pc.StartThreads < 1 || pc.MaxThreads < pc.StartThreads {
		return nil, fmt.Errorf("want 1 <= --start-threads <= --max-threads, got %d and %d", pc.StartThreads, pc.MaxThreads)
	}
	if pc.StepDuration <= 0 || pc.P99Bound <= 0 {
		return nil, fmt.Errorf("--step-duration and --p99-bound must be positive")
	}
	var nodes []config.Node
	if pc.ClusterFile != "" {
		cl, err := config.Load(pc.ClusterFile, nil)
		if err != nil {
			return nil, fmt.Errorf("cluster description: %w", err)
		}
		nodes = cl.Nodes()
	}
	rep := &PeakReport{Tool: "psdb bench", Version: ReportVersion, Command: "peak", Config: pc, Start: time.Now().UTC()}
	all := newWindow()
	start := time.Now()
	var sm *ShardMap
	for threads := pc.StartThreads; threads <= pc.MaxThreads; threads *= 2 {
		cfg := pc.Base
		cfg.Threads = threads
		e := newEngine(cli, cfg, progress)
		e.label = fmt.Sprintf("%3d threads ", threads)
		e.offset = time.Since(start).Seconds()
		err := e.runWorkload(ctx, threads, time.Duration(pc.StepDuration), 0)
		r := e.report("run")
		rep.Intervals = append(rep.Intervals, r.Intervals...)
		all.merge(e.total)
		sm = e.shards.Load()
		step := PeakStep{
			Threads: threads, StartS: e.offset, DurationS: r.Summary.DurationS, Ops: r.Summary.Ops,
			OpsPerSec: r.Summary.OpsPerSec, Latency: r.Summary.Latency, Errors: r.Summary.Errors,
			ErrorCodes: r.Summary.ErrorCodes,
		}
		for c, n := range step.ErrorCodes {
			if IsTimeoutCode(c) {
				step.Timeouts += n
			} else {
				rep.NonTimeoutErrors += n
			}
		}
		step.WithinBound = step.Latency.P99Ms <= float64(time.Duration(pc.P99Bound))/float64(time.Millisecond)
		step.Memory = Memory(nodes)
		rep.Steps = append(rep.Steps, step)
		if err != nil {
			rep.finish(all, start, sm)
			return rep, err
		}
		if !step.WithinBound {
			break
		}
	}
	rep.finish(all, start, sm)
	return rep, nil
}

func (r *PeakReport) finish(all *window, start time.Time, sm *ShardMap) {
	r.End = time.Now().UTC()
	r.Summary = summaryOf(all, time.Since(start).Seconds(), sm)
	for i := range r.Steps {
		s := &r.Steps[i]
		if s.WithinBound && (r.Knee == nil || s.Threads > r.Knee.Threads) {
			r.Knee = s
		}
		if r.Best == nil || s.OpsPerSec > r.Best.OpsPerSec {
			r.Best = s
		}
	}
}

// PrintPeak writes a table of the steps, the knee and the memory.
func PrintPeak(w io.Writer, r *PeakReport) {
	fmt.Fprintf(w, "%8s %10s %9s %9s %9s %8s %9s\n", "threads", "ops/s", "p50 ms", "p99 ms", "max ms", "errors", "timeouts")
	for _, s := range r.Steps {
		mark := ""
		if !s.WithinBound {
			mark = "  > bound"
		}
		fmt.Fprintf(w, "%8d %10.0f %9.2f %9.2f %9.2f %8d %9d%s\n", s.Threads, s.OpsPerSec, s.Latency.P50Ms, s.Latency.P99Ms, s.Latency.MaxMs, s.Errors, s.Timeouts, mark)
	}
	if r.Knee != nil {
		fmt.Fprintf(w, "knee: %d threads, %.0f ops/s at p99 %.2f ms (bound %s)\n", r.Knee.Threads, r.Knee.OpsPerSec, r.Knee.Latency.P99Ms, time.Duration(r.Config.P99Bound))
	} else {
		fmt.Fprintf(w, "knee: none (p99 above %s from the first step)\n", time.Duration(r.Config.P99Bound))
	}
	fmt.Fprintf(w, "errors other than timeouts: %d\n", r.NonTimeoutErrors)
	if len(r.Steps) > 0 {
		last := r.Steps[len(r.Steps)-1]
		if len(last.Memory) > 0 {
			fmt.Fprintln(w, "memory after the last step:")
			for _, m := range last.Memory {
				if m.Error != "" {
					fmt.Fprintf(w, "  %-10s %-9s %s\n", m.Name, m.Role, m.Error)
					continue
				}
				fmt.Fprintf(w, "  %-10s %-9s pid %-7d rss %7.1f MiB  peak %7.1f MiB\n", m.Name, m.Role, m.PID, float64(m.RSSBytes)/(1<<20), float64(m.PeakRSSBytes)/(1<<20))
			}
		}
	}
}

// Memory reads the resident memory of every node (from the pid files the
// launcher writes) and of this process, from /proc/<pid>/status.
func Memory(nodes []config.Node) []ProcessMemory {
	var out []ProcessMemory
	for _, n := range nodes {
		pm := ProcessMemory{Name: n.Name, Role: string(n.Role)}
		data, err := os.ReadFile(n.PidFile)
		if err == nil {
			pm.PID, err = strconv.Atoi(strings.TrimSpace(string(data)))
		}
		if err == nil {
			pm.RSSBytes, pm.PeakRSSBytes, err = ReadRSS(pm.PID)
		}
		if err != nil {
			pm.Error = err.Error()
		}
		out = append(out, pm)
	}
	self := ProcessMemory{Name: "psdb-bench", Role: "client", PID: os.Getpid()}
	var err error
	if self.RSSBytes, self.PeakRSSBytes, err = ReadRSS(self.PID); err != nil {
		self.Error = err.Error()
	}
	return append(out, self)
}

// ReadRSS returns VmRSS and VmHWM of a process, in bytes.
func ReadRSS(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		fields := strings.Fields(v) // "123456 kB"
		if len(fields) == 0 {
			continue
		}
		kb, perr := strconv.ParseInt(fields[0], 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("parse %s of pid %d: %w", k, pid, perr)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	return rss, peak, nil
}
