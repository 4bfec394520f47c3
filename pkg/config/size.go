package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes. In cluster.yaml it is written as a plain
// integer (bytes) or as an integer with a unit: B, KB, MB, GB, TB (powers of
// 1000) or KiB, MiB, GiB, TiB (powers of 1024), case-insensitive, with an
// optional space: "128MiB", "64KB", "48 MB", "1048576".
type Size int64

// Units of Size.
const (
	B   Size = 1
	KB  Size = 1000
	MB  Size = 1000 * KB
	GB  Size = 1000 * MB
	TB  Size = 1000 * GB
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

// sizeUnits is a read-only table: never modified after initialization.
var sizeUnits = []struct {
	name string
	size Size
}{
	// ParseSize matches names case-insensitively; String picks the largest
	// unit that divides a size exactly.
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"TB", TB}, {"GB", GB}, {"MB", MB}, {"KB", KB},
	{"B", B},
}

// errBadSize is wrapped by every ParseSize error.
var errBadSize = errors.New("not a size")

// ParseSize parses a size such as "128MiB", "64KB" or "1048576" (bytes).
// Negative sizes and sizes that overflow int64 are refused.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is %w (use bytes or a unit, e.g. \"128MiB\", \"64KB\")", s, errBadSize)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is %w (too large)", s, errBadSize)
	}
	unit := strings.TrimSpace(t[i:])
	mult := B
	if unit != "" {
		found := false
		for _, u := range sizeUnits {
			if strings.EqualFold(unit, u.name) {
				mult, found = u.size, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("%q is %w: unknown unit %q (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s, errBadSize, unit)
		}
	}
	if n > math.MaxInt64/int64(mult) {
		return 0, fmt.Errorf("%q is %w (too large)", s, errBadSize)
	}
	return Size(n) * mult, nil
}

// String formats s with the largest unit that divides it exactly
// ("128MiB", "48MB"), or as plain bytes; ParseSize reads it back.
func (s Size) String() string {
	if s <= 0 {
		return strconv.FormatInt(int64(s), 10)
	}
	best := B
	name := ""
	for _, u := range sizeUnits {
		if u.size > best && s%u.size == 0 {
			best, name = u.size, u.name
		}
	}
	return strconv.FormatInt(int64(s/best), 10) + name
}

// Bytes returns s as an int64 number of bytes.
func (s Size) Bytes() int64 { return int64(s) }

// MarshalText implements encoding.TextMarshaler (used by YAML and JSON
// encoders): the String form.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseSize.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
