package server

import (
	"sync/atomic"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zerologCore is a zapcore.Core that forwards embedded etcd's zap log
// entries to the config server's zerolog logger, so etcd's lines land in the
// node's log file with the same node/role fields as ours. Safe for
// concurrent use (zerolog loggers are).
type zerologCore struct {
	log    zerolog.Logger
	min    zapcore.Level
	fields []zapcore.Field
	// closing is set while etcd shuts down on purpose: its listeners then
	// report "server closed" errors that are no failure, logged at debug.
	closing *atomic.Bool
}

// newEtcdLogger returns a zap logger for embed.Config that writes through
// log. etcd is chatty at info level, so only entries at min or above pass.
func newEtcdLogger(log zerolog.Logger, min zapcore.Level, closing *atomic.Bool) *zap.Logger {
	return zap.New(&zerologCore{log: log.With().Str("component", "etcd").Logger(), min: min, closing: closing})
}

func (c *zerologCore) Enabled(l zapcore.Level) bool { return l >= c.min }

func (c *zerologCore) With(fields []zapcore.Field) zapcore.Core {
	all := make([]zapcore.Field, 0, len(c.fields)+len(fields))
	all = append(append(all, c.fields...), fields...)
	return &zerologCore{log: c.log, min: c.min, fields: all, closing: c.closing}
}

func (c *zerologCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zerologCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	lvl := zerologLevel(e.Level)
	if c.closing.Load() && e.Level < zapcore.DPanicLevel || benignWarnings[e.Message] {
		lvl = zerolog.DebugLevel
	}
	c.log.WithLevel(lvl).Fields(enc.Fields).Msg(e.Message)
	return nil
}

func (c *zerologCore) Sync() error { return nil }

// benignWarnings are etcd warnings about choices made on purpose for a
// local, plain-HTTP config server; they are logged at debug level so every
// start does not look like a problem.
var benignWarnings = map[string]bool{
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
}

func zerologLevel(l zapcore.Level) zerolog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return zerolog.DebugLevel
	case l == zapcore.InfoLevel:
		return zerolog.InfoLevel
	case l == zapcore.WarnLevel:
		return zerolog.WarnLevel
	default:
		// etcd's DPanic/Panic/Fatal: zap itself panics or exits after
		// writing; we only record the line at error level.
		return zerolog.ErrorLevel
	}
}
