package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that overrides a field:
// field "replication.leaseTTL" is PSDB_REPLICATION_LEASETTL (the field path
// upper-cased, dots turned into underscores). Only scalar fields (not the
// lists of nodes) can be overridden this way.
const EnvPrefix = "PSDB"

// maxFileBytes bounds the size of a cluster.yaml Load accepts; a real one
// is a few kilobytes.
const maxFileBytes = 4 << 20

// flagSpec maps a command-line flag to the field it overrides.
type flagSpec struct {
	name  string
	field string
	usage string
}

// flagSpecs are the flags BindFlags registers, in help order. A read-only
// table: never modified after initialization.
var flagSpecs = []flagSpec{
	{"run-dir", "runDir", "base directory for data, logs and pid files (overrides runDir)"},
	{"log-level", "log.level", "log level: debug, info, warn or error (overrides log.level)"},
	{"log-format", "log.format", "console output: console or json (overrides log.format)"},
	{"log-dir", "log.dir", "directory of the per-node JSON log files (overrides log.dir)"},
	{"lease-ttl", "replication.leaseTTL", "primary lease TTL, whole seconds, e.g. 2s (overrides replication.leaseTTL)"},
	{"chunk-size", "sharding.chunkSize", "maximum chunk size, e.g. 64MiB (overrides sharding.chunkSize)"},
	{"balancer-interval", "sharding.balancerInterval", "pause between balancer rounds, e.g. 10s (overrides sharding.balancerInterval)"},
}

// BindFlags registers on fs the flags Load applies over the file and the
// environment: --run-dir, --log-level, --log-format, --log-dir, --lease-ttl,
// --chunk-size and --balancer-interval. A flag overrides only when it is
// given on the command line. Call it once per FlagSet (pflag refuses to
// define a flag twice).
func BindFlags(fs *pflag.FlagSet) {
	for _, f := range flagSpecs {
		fs.String(f.name, "", f.usage)
	}
}

// Parse reads a cluster description from YAML bytes, over the defaults,
// and validates it. It reads neither the environment nor flags and leaves
// relative paths as they are (relative to the current directory). Errors
// are *ValidationError (errors.Is(err, ErrInvalid)).
func Parse(data []byte) (*Cluster, error) {
	c, ps, ok := decode(data, false, nil)
	if ok {
		c.validate(ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads the cluster.yaml at path, applies PSDB_* environment
// variables and then the flags of fs that were set (fs may be nil, and need
// not hold the flags of BindFlags), resolves relative paths, and validates.
// Precedence: flags > environment > file > defaults.
//
// Relative paths (runDir, log.dir, dataDir) from the file or the
// environment resolve against the directory holding the file; those from
// flags against the current directory. Validation problems are returned as
// a *ValidationError (errors.Is(err, ErrInvalid)); a file that cannot be
// read is an error wrapping the os error.
func Load(path string, fs *pflag.FlagSet) (*Cluster, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load cluster config %s: %w", path, err)
	}
	c, ps, ok := decode(data, true, fs)
	if ok {
		if err := c.resolvePaths(filepath.Dir(abs), fs); err != nil {
			return nil, err
		}
		c.validate(ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load cluster config: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxFileBytes+1)); err != nil {
		return nil, fmt.Errorf("load cluster config %s: %w", path, err)
	}
	if buf.Len() > maxFileBytes {
		return nil, &ValidationError{Problems: []Problem{{Reason: fmt.Sprintf("%s is larger than %s", path, Size(maxFileBytes))}}}
	}
	return buf.Bytes(), nil
}

// decode decodes the YAML over the defaults, then, if useEnv, the PSDB_*
// environment, then the set flags of fs. It checks keys and the types of
// values, nothing more. ok is false when the input is not a YAML mapping at
// all (validating the defaults would only add noise).
//
// The file is decoded from yaml.v3's tree, the library viper itself uses
// for YAML, rather than from viper's AllSettings: viper drops keys whose
// value is empty (a stray `shrads:` would pass unnoticed) and lower-cases
// every key (messages could not quote the file's spelling). The overrides
// come from a viper instance holding only the environment (BindEnv for
// every scalar field, prefix PSDB, "." -> "_") and the given flags (Set,
// which viper ranks above the environment); each scalar it has a value for
// is decoded over the file's value. Keeping the layers apart also means an
// override never silently replaces a malformed file section
// (`replication: 5`).
func decode(data []byte, useEnv bool, fs *pflag.FlagSet) (c *Cluster, ps *problems, ok bool) {
	ps = &problems{}
	c = Default()
	d := &decoder{problems: ps}
	var tree map[string]any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		ps.add("", "not a valid YAML mapping: "+oneLine(err.Error()))
		return c, ps, false
	}
	root := reflect.ValueOf(c).Elem()
	decodeInto("", tree, root, d)

	over := viper.New()
	if useEnv {
		over.SetEnvPrefix(EnvPrefix)
		over.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
		for _, key := range EnvFields() {
			if err := over.BindEnv(key); err != nil {
				ps.add(key, "cannot bind environment variable "+EnvVar(key)+": "+err.Error())
			}
		}
	}
	if fs != nil {
		for _, f := range flagSpecs {
			fl := fs.Lookup(f.name)
			if fl != nil && fl.Changed {
				over.Set(f.field, fl.Value.String())
			}
		}
	}
	for _, key := range EnvFields() {
		val := over.Get(key)
		if val == nil {
			continue
		}
		if field, found := fieldByPath(root, key); found {
			decodeInto(key, val, field, d)
		}
	}
	return c, ps, true
}

// fieldByPath returns the struct field at a dotted path of canonical keys.
func fieldByPath(v reflect.Value, path string) (reflect.Value, bool) {
	for _, key := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		found := false
		for _, f := range schemaFields(v.Type()) {
			if f.name == key {
				v, found = v.Field(f.index), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	return v, true
}

// scalarFields lists the field paths of every scalar (non-list) field
// reachable from struct type t through structs.
func scalarFields(t reflect.Type, prefix string) []string {
	var out []string
	for _, f := range schemaFields(t) {
		ft := t.Field(f.index).Type
		path := joinField(prefix, f.name)
		switch {
		case ft == durationType || ft == sizeType:
			out = append(out, path)
		case ft.Kind() == reflect.Struct:
			out = append(out, scalarFields(ft, path)...)
		case ft.Kind() == reflect.Slice:
			// Lists of nodes are not overridable from the environment.
		default:
			out = append(out, path)
		}
	}
	return out
}

// EnvVar returns the environment variable that overrides a scalar field
// given by its path ("replication.leaseTTL" -> "PSDB_REPLICATION_LEASETTL").
func EnvVar(field string) string {
	return strings.ToUpper(EnvPrefix + "_" + strings.ReplaceAll(field, ".", "_"))
}

// EnvFields returns the paths of every field an environment variable can
// override, in schema order.
func EnvFields() []string {
	return scalarFields(reflect.TypeFor[Cluster](), "")
}

// resolvePaths makes relative paths absolute: against base (the file's
// directory), or the current directory for values given as flags.
func (c *Cluster) resolvePaths(base string, fs *pflag.FlagSet) error {
	fromFlag := func(name string) bool {
		if fs == nil {
			return false
		}
		fl := fs.Lookup(name)
		return fl != nil && fl.Changed
	}
	resolve := func(p *string, flag string) error {
		if *p == "" || filepath.IsAbs(*p) {
			return nil
		}
		if flag != "" && fromFlag(flag) {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return fmt.Errorf("resolve --%s %s: %w", flag, *p, err)
			}
			*p = abs
			return nil
		}
		*p = filepath.Join(base, *p)
		return nil
	}
	if err := resolve(&c.RunDir, "run-dir"); err != nil {
		return err
	}
	if err := resolve(&c.Log.Dir, "log-dir"); err != nil {
		return err
	}
	for i := range c.ConfigServers {
		if err := resolve(&c.ConfigServers[i].DataDir, ""); err != nil {
			return err
		}
	}
	for i := range c.Shards {
		for j := range c.Shards[i].Members {
			if err := resolve(&c.Shards[i].Members[j].DataDir, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// oneLine folds a multi-line library error into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
