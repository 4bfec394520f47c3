// Package logging builds the zerolog loggers of PSDB's processes: JSON lines
// to a per-node file, plus an optional console copy (human-readable or
// JSON) for development, every line carrying the node and its role.
//
// It owns the stable field names below; every package logs with them so
// log lines of all nodes can be searched and joined the same way:
//
//	time   RFC 3339 UTC timestamp with microseconds (set by this package)
//	level  debug | info | warn | error
//	node   node name from cluster.yaml ("rs0a")        — set by New
//	role   configsvr | shardd | mongos | psdb           — set by New
//	shard  shard name ("rs0"), where it applies          — WithShard
//	ns     namespace "db.collection"
//	op     operation or command name ("insert", "moveChunk")
//	dur    duration of the operation: Dur(FieldDur, d), a number of
//	       milliseconds (zerolog's default unit)
//	error  the error: Err(err) (zerolog's default field name, kept rather
//	       than renaming zerolog's globals)
//	message  lower case, no trailing period, says what happened; slow
//	       operations say "slow operation" and carry op, ns and dur
//
// This package must never keep a global logger or change zerolog's global
// settings (zerolog/log, zerolog.TimeFieldFormat, ...): a logger is built
// by New and passed explicitly to whatever logs.
package logging

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Stable field names (see the package comment).
const (
	FieldTime  = "time"
	FieldNode  = "node"
	FieldRole  = "role"
	FieldShard = "shard"
	FieldNS    = "ns"
	FieldOp    = "op"
	FieldDur   = "dur"
	// FieldErr is where Err(err) writes the error.
	FieldErr = "error"
)

// timeFormat is the timestamp of every line: RFC 3339, UTC, microseconds.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

// Options says where a logger writes and what it keeps.
type Options struct {
	// Level is the minimum level written: debug, info, warn or error
	// (empty means info).
	Level string
	// Format is the form written to Console: "console" (human-readable,
	// the default) or "json" (the same JSON lines as File).
	Format string
	// File receives JSON lines, appended; its directory is created. Empty
	// means no file.
	File string
	// Console receives a copy of every line in Format; nil means none.
	Console io.Writer
}

// ErrBadOptions is wrapped by New's errors about Options values.
var ErrBadOptions = errors.New("bad logging options")

// ParseLevel parses a level name: debug, info, warn or error; empty means
// info.
func ParseLevel(s string) (zerolog.Level, error) {
	switch s {
	case "debug":
		return zerolog.DebugLevel, nil
	case "", "info":
		return zerolog.InfoLevel, nil
	case "warn":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.NoLevel, fmt.Errorf("%w: level %q (debug, info, warn or error)", ErrBadOptions, s)
}

// New returns a logger for the node called node with the given role
// (config.Role values: configsvr, shardd, mongos; tools use "psdb"), and a
// Closer that closes the log file. The logger is safe for concurrent use;
// lines are written whole, one Write each, under a lock. Close it after
// the last line; logging after Close loses the file's copy of the line.
func New(opts Options, node, role string) (zerolog.Logger, io.Closer, error) {
	level, err := ParseLevel(opts.Level)
	if err != nil {
		return zerolog.Nop(), nopCloser{}, err
	}
	var writers []io.Writer
	closer := io.Closer(nopCloser{})
	if opts.File != "" {
		if err := os.MkdirAll(filepath.Dir(opts.File), 0o755); err != nil {
			return zerolog.Nop(), nopCloser{}, fmt.Errorf("create log directory for %s: %w", opts.File, err)
		}
		f, err := os.OpenFile(opts.File, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return zerolog.Nop(), nopCloser{}, fmt.Errorf("open log file: %w", err)
		}
		writers = append(writers, f)
		closer = &fileCloser{f: f}
	}
	if opts.Console != nil {
		switch opts.Format {
		case "", "console":
			writers = append(writers, ConsoleWriter(opts.Console))
		case "json":
			writers = append(writers, opts.Console)
		default:
			closer.Close()
			return zerolog.Nop(), nopCloser{}, fmt.Errorf("%w: format %q (console or json)", ErrBadOptions, opts.Format)
		}
	}
	var w io.Writer
	switch len(writers) {
	case 0:
		return zerolog.Nop(), closer, nil
	case 1:
		w = writers[0]
	default:
		w = zerolog.MultiLevelWriter(writers...)
	}
	l := zerolog.New(&lockedWriter{w: w}).
		Level(level).
		Hook(timeHook{}).
		With().
		Str(FieldNode, node).
		Str(FieldRole, role).
		Logger()
	return l, closer, nil
}

// ConsoleWriter returns the human-readable form used for the console:
// "15:04:05.000 INF message node=rs0a role=shardd ...", without colors.
func ConsoleWriter(out io.Writer) io.Writer {
	return zerolog.ConsoleWriter{
		Out:        out,
		NoColor:    true,
		TimeFormat: "15:04:05.000",
		PartsOrder: []string{
			zerolog.TimestampFieldName,
			zerolog.LevelFieldName,
			zerolog.MessageFieldName,
		},
	}
}

// WithShard returns l with the shard field set.
func WithShard(l zerolog.Logger, shard string) zerolog.Logger {
	return l.With().Str(FieldShard, shard).Logger()
}

// Nop returns a logger that writes nothing (for tests and tools).
func Nop() zerolog.Logger {
	return zerolog.Nop()
}

// timeHook stamps every line with the current UTC time in timeFormat,
// without relying on zerolog's global TimeFieldFormat.
type timeHook struct{}

func (timeHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(FieldTime, time.Now().UTC().Format(timeFormat))
}

// lockedWriter serializes writes so a line is never interleaved with
// another, whatever the underlying writers are.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// fileCloser closes the log file once; later calls return nil.
type fileCloser struct {
	once sync.Once
	f    *os.File
	err  error
}

func (c *fileCloser) Close() error {
	c.once.Do(func() {
		if err := c.f.Sync(); err != nil {
			c.err = fmt.Errorf("sync log file %s: %w", c.f.Name(), err)
		}
		if err := c.f.Close(); err != nil && c.err == nil {
			c.err = fmt.Errorf("close log file %s: %w", c.f.Name(), err)
		}
	})
	return c.err
}
