//go:build unix

package aggregate

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user+system) this process has used, so
// benchmarks can report CPU cost per document, which stays meaningful on a
// machine shared with other work (wall time does not).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
