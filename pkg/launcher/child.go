package launcher

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/psdb/psdb/pkg/config"
)

// The child side of the launcher contract: functions the node binaries call
// about themselves. They touch only the node's own files.

// ReadyFile is the file a node writes once it serves (after its start-up
// work, e.g. the config server's bootstrap): <runDir>/pids/<node>.ready,
// holding the node's pid. Health checks require it, so a node is healthy
// only after its own start-up finished, not merely when its port answers.
func ReadyFile(node config.Node) string {
	return strings.TrimSuffix(node.PidFile, ".pid") + ".ready"
}

// MarkReady writes the node's ready file with the calling process's pid.
func MarkReady(node config.Node) error {
	path := ReadyFile(node)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	return nil
}

// ClearReady removes the node's ready file (on a clean shutdown).
func ClearReady(node config.Node) {
	if pid, err := readPidFile(ReadyFile(node)); err == nil && pid == os.Getpid() {
		_ = os.Remove(ReadyFile(node))
	}
}

// checkReady fails unless the node's ready file names a live process of the
// node (a stale file of a killed node does not count).
func checkReady(node config.Node) error {
	pid, err := readPidFile(ReadyFile(node))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s has not finished starting (no %s)", node.Name, ReadyFile(node))
	}
	if err != nil {
		return err
	}
	if !processOf(pid, node.Name) {
		return fmt.Errorf("%s: ready file names pid %d, which is not running", node.Name, pid)
	}
	return nil
}

// ChildConsole returns the writer a node should use for console logging:
// os.Stderr, or nil when stderr already is the node's log file (the
// launcher redirects it there), so that no line is written twice.
func ChildConsole(node config.Node) io.Writer {
	se, err := os.Stderr.Stat()
	if err != nil {
		return os.Stderr
	}
	lf, err := os.Stat(node.LogFile)
	if err == nil && os.SameFile(se, lf) {
		return nil
	}
	return os.Stderr
}
