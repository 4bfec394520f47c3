package config

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *ValidationError: the cluster
// description is wrong and must be fixed by its author.
var ErrInvalid = errors.New("invalid cluster config")

// Problem is one thing wrong with a cluster description.
type Problem struct {
	// Field is the path of the offending field as written in cluster.yaml,
	// e.g. "shards[1].members[0].addr"; empty for the file as a whole.
	Field string
	// Reason says what is wrong, e.g. `"abc" is not a duration`.
	Reason string
}

// String returns "field: reason".
func (p Problem) String() string {
	if p.Field == "" {
		return p.Reason
	}
	return p.Field + ": " + p.Reason
}

// ValidationError lists every problem found in a cluster description, in
// schema order. It matches ErrInvalid with errors.Is.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems, one "field: reason" per line after the first.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalid.Error())
	switch len(e.Problems) {
	case 0:
	case 1:
		b.WriteString(": ")
		b.WriteString(e.Problems[0].String())
	default:
		b.WriteString(": ")
		b.WriteString(strconv.Itoa(len(e.Problems)))
		b.WriteString(" problems:")
		for _, p := range e.Problems {
			b.WriteString("\n  ")
			b.WriteString(p.String())
		}
	}
	return b.String()
}

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Fields returns the field paths of the problems, in order (for tests and
// tools that highlight fields).
func (e *ValidationError) Fields() []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.Field
	}
	return out
}

// problems collects Problems while decoding and validating.
type problems struct {
	list []Problem
}

func (ps *problems) add(field, reason string) {
	ps.list = append(ps.list, Problem{Field: field, Reason: reason})
}

// err returns nil when nothing was collected, else a *ValidationError.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: append([]Problem(nil), ps.list...)}
}

// joinField appends a key to a field path.
func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexField appends a list index to a field path.
func indexField(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
