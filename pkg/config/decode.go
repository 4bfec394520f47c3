package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The decoder turns a YAML tree (nested map[string]any, lists as []any,
// scalars as the YAML library produced them, or strings from the
// environment and flags) into a Cluster. It is driven by the `yaml` tags of
// the Cluster types, which are the canonical lowerCamelCase key names: keys
// match case-insensitively (as viper matches them), every problem is
// reported with the full path (canonical spelling for known keys, the
// file's spelling for unknown ones), and every problem is collected rather
// than stopping at the first.

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

// decoder carries the problems found so far.
type decoder struct {
	*problems
}

// fieldInfo is one struct field known to the schema.
type fieldInfo struct {
	name  string // canonical key, from the yaml tag
	index int
}

// schemaFields returns the keyed fields of struct type t, in declaration
// order.
func schemaFields(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, fieldInfo{name: name, index: i})
	}
	return out
}

// decodeInto decodes raw into v (addressable) at field path path. Values
// absent from raw leave v as it is (the defaults).
func decodeInto(path string, raw any, v reflect.Value, ps *decoder) {
	switch {
	case v.Type() == durationType:
		d, ok := decodeDuration(path, raw, ps)
		if ok {
			v.SetInt(int64(d))
		}
		return
	case v.Type() == sizeType:
		s, ok := decodeSize(path, raw, ps)
		if ok {
			v.SetInt(int64(s))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		decodeStruct(path, raw, v, ps)
	case reflect.Slice:
		decodeSlice(path, raw, v, ps)
	case reflect.String:
		if s, ok := decodeString(path, raw, ps); ok {
			v.SetString(s)
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n, ok := decodeInt(path, raw, ps); ok {
			v.SetInt(n)
		}
	case reflect.Bool:
		if b, ok := decodeBool(path, raw, ps); ok {
			v.SetBool(b)
		}
	default:
		// The schema only uses the kinds above; reaching this is a bug in
		// this package, reported rather than panicking.
		ps.add(path, fmt.Sprintf("internal error: cannot decode into %s", v.Type()))
	}
}

// asMap returns raw as a string-keyed map, if it is one.
func asMap(raw any) (map[string]any, bool) {
	switch m := raw.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, val := range m {
			out[fmt.Sprint(k)] = val
		}
		return out, true
	}
	return nil, false
}

func decodeStruct(path string, raw any, v reflect.Value, ps *decoder) {
	if raw == nil {
		return // an empty section keeps its defaults
	}
	m, ok := asMap(raw)
	if !ok {
		ps.add(path, fmt.Sprintf("must be a mapping of keys to values, not %s", describe(raw)))
		return
	}
	fields := schemaFields(v.Type())
	known := func(k string) bool {
		for _, f := range fields {
			if strings.EqualFold(k, f.name) {
				return true
			}
		}
		return false
	}
	// Report unknown keys in a stable (sorted) order.
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if known(k) {
			continue
		}
		reason := "unknown key"
		if s := suggest(k, fields); s != "" {
			reason += fmt.Sprintf(" (did you mean %q?)", s)
		}
		ps.add(joinField(path, displayKey(k)), reason)
	}
	// Decode known keys in schema order, so problems come out in the order
	// of the documentation.
	for _, f := range fields {
		first := ""
		for _, k := range keys {
			if !strings.EqualFold(k, f.name) {
				continue
			}
			if first != "" {
				ps.add(joinField(path, displayKey(k)), fmt.Sprintf("duplicate of key %q (keys are case-insensitive)", first))
				continue
			}
			first = k
			decodeInto(joinField(path, f.name), m[k], v.Field(f.index), ps)
		}
	}
}

func decodeSlice(path string, raw any, v reflect.Value, ps *decoder) {
	if raw == nil {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	list, ok := raw.([]any)
	if !ok {
		ps.add(path, fmt.Sprintf("must be a list, not %s", describe(raw)))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(list), len(list))
	for i, item := range list {
		decodeInto(indexField(path, i), item, out.Index(i), ps)
	}
	v.Set(out)
}

func decodeString(path string, raw any, ps *decoder) (string, bool) {
	switch x := raw.(type) {
	case string:
		return x, true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	}
	ps.add(path, fmt.Sprintf("must be a string, not %s", describe(raw)))
	return "", false
}

func decodeInt(path string, raw any, ps *decoder) (int64, bool) {
	switch x := raw.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err == nil {
			return n, true
		}
	}
	ps.add(path, fmt.Sprintf("%s is not an integer", describe(raw)))
	return 0, false
}

func decodeBool(path string, raw any, ps *decoder) (bool, bool) {
	switch x := raw.(type) {
	case bool:
		return x, true
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err == nil {
			return b, true
		}
	}
	ps.add(path, fmt.Sprintf("%s is not a boolean (true or false)", describe(raw)))
	return false, false
}

func decodeDuration(path string, raw any, ps *decoder) (time.Duration, bool) {
	if s, ok := raw.(string); ok {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err == nil {
			return d, true
		}
	}
	ps.add(path, fmt.Sprintf("%s is not a duration (write it with a unit, e.g. \"1s\", \"250ms\", \"10m\")", describe(raw)))
	return 0, false
}

func decodeSize(path string, raw any, ps *decoder) (Size, bool) {
	switch x := raw.(type) {
	case int:
		if x >= 0 {
			return Size(x), true
		}
	case int64:
		if x >= 0 {
			return Size(x), true
		}
	case uint64:
		if x <= math.MaxInt64 {
			return Size(x), true
		}
	case string:
		s, err := ParseSize(x)
		if err == nil {
			return s, true
		}
	}
	ps.add(path, fmt.Sprintf("%s is not a size (bytes, or a number with a unit: \"128MiB\", \"64KB\")", describe(raw)))
	return 0, false
}

// describe renders a raw value for an error message.
func describe(raw any) string {
	switch x := raw.(type) {
	case nil:
		return "an empty value"
	case string:
		if len(x) > 64 {
			x = x[:64] + "..."
		}
		return strconv.Quote(x)
	case bool, int, int64, uint64:
		return fmt.Sprint(x)
	case float64:
		f := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(f, ".eEn") { // integral: show it is a float
			f += ".0"
		}
		return f
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	}
	return fmt.Sprintf("a %T", raw)
}

// displayKey quotes keys that would be unreadable or ambiguous in a field
// path, and shortens very long ones.
func displayKey(k string) string {
	if len(k) > 64 {
		return strconv.Quote(k[:64] + "...")
	}
	if k == "" || strings.ContainsAny(k, " \t\n\"'[]:.") || strings.ContainsFunc(k, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return strconv.Quote(k)
	}
	return k
}

// suggest returns the known key closest to an unknown one, if it is close
// enough to be a likely typo.
func suggest(k string, fields []fieldInfo) string {
	lk := strings.ToLower(k)
	if len(lk) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, f := range fields {
		d := editDistance(lk, strings.ToLower(f.name))
		if d < bestDist {
			best, bestDist = f.name, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance between a and b, counted in bytes.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
