package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/psdb/psdb/pkg/logging"
	"go.yaml.in/yaml/v3"
)

// StampFile is the file in every data directory that names the cluster the
// directory belongs to.
const StampFile = "PSDB_CLUSTER"

// ErrForeignDataDir is wrapped by ClaimDataDir when a data directory belongs
// to another cluster.
var ErrForeignDataDir = errors.New("data directory belongs to another cluster")

// ClaimDataDir makes sure dir belongs to this cluster: it creates dir if
// needed and stamps it with the cluster's name (StampFile, written and
// synced before it returns), or, when dir is already stamped, checks that
// the stamp names this cluster. A directory stamped by another cluster is
// refused with an error wrapping ErrForeignDataDir; a node must call this
// before opening its store. An existing directory without a stamp is
// claimed.
func (c *Cluster) ClaimDataDir(dir string) error {
	if c.Name == "" {
		return fmt.Errorf("claim data directory %s: cluster has no name", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("claim data directory: %w", err)
	}
	path := filepath.Join(dir, StampFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		got := strings.TrimSpace(string(b))
		if got != c.Name {
			return fmt.Errorf("%w: %s is stamped %q, this cluster is %q", ErrForeignDataDir, dir, got, c.Name)
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("claim data directory: %w", err)
	}
	// Write the stamp atomically: temp file, sync, rename, sync the dir.
	tmp, err := os.CreateTemp(dir, StampFile+".tmp*")
	if err != nil {
		return fmt.Errorf("claim data directory: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.WriteString(tmp, c.Name+"\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("claim data directory %s: %w", dir, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("claim data directory %s: %w", dir, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("claim data directory %s: %w", dir, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("claim data directory: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("claim data directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("claim data directory %s: sync: %w", dir, err)
	}
	return nil
}

// LogOptions returns the logging options of node n: the level and console
// format from the log section, JSON lines to n.LogFile, and the console
// copy to console (nil for none).
func (c *Cluster) LogOptions(n Node, console io.Writer) logging.Options {
	return logging.Options{
		Level:   c.Log.Level,
		Format:  c.Log.Format,
		File:    n.LogFile,
		Console: console,
	}
}

// Encode returns c as cluster.yaml text that Parse and Load read back to an
// equal Cluster (durations and sizes in their readable forms). A harness
// uses it to write the cluster.yaml of a generated cluster.
func (c *Cluster) Encode() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# PSDB cluster description (schema: docs/design/config.md)\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode cluster config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode cluster config: %w", err)
	}
	return buf.Bytes(), nil
}
