package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// Config describes one benchmark run.
type Config struct {
	URI      string `json:"uri"`
	DB       string `json:"db"`
	Coll     string `json:"coll"`
	Workload string `json:"workload"`
	// Records is the number of records loaded (keys 0..Records-1) and
	// addressed by reads, updates and scans.
	Records int64 `json:"records"`
	// DocSize is the approximate payload bytes of a document, spread over
	// Fields string fields.
	DocSize int `json:"doc_size"`
	Fields  int `json:"fields"`
	Threads int `json:"threads"`
	// Duration bounds a run; Ops bounds it by operation count (the first
	// reached ends it). A load ignores both and inserts Records.
	Duration       Duration `json:"duration"`
	Ops            int64    `json:"ops"`
	Distribution   string   `json:"distribution"`
	WriteConcern   string   `json:"write_concern"`
	ReadPreference string   `json:"read_preference"`
	// Shard shards the collection hashed on _id before loading.
	Shard bool `json:"shard"`
	// Drop drops the collection before loading.
	Drop bool `json:"drop"`
	// BatchSize is the documents per insertMany of a load.
	BatchSize int `json:"batch_size"`
	// Interval is the time series' step and the progress line's period.
	Interval Duration `json:"interval"`
	// OpTimeout bounds each operation (a ClientTimeout error past it).
	OpTimeout Duration `json:"op_timeout"`
	// Seed seeds the workers' random generators (0: time-based).
	Seed uint64 `json:"seed"`
}

// Duration is a time.Duration that reads and writes JSON as "1.5s".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// DefaultConfig returns the defaults of the command's flags.
func DefaultConfig() Config {
	return Config{
		URI: "mongodb://127.0.0.1:27017/", DB: "bench", Coll: "usertable", Workload: "a",
		Records: 100_000, DocSize: 1000, Fields: 10, Threads: 8, Duration: Duration(30 * time.Second),
		WriteConcern: "majority", ReadPreference: "primary", BatchSize: 100,
		Interval: Duration(time.Second), OpTimeout: Duration(10 * time.Second),
	}
}

// Validate checks c and fills derived defaults.
func (c *Config) Validate() error {
	var errs []error
	if _, err := LookupWorkload(c.Workload); err != nil {
		errs = append(errs, err)
	}
	if c.Records < 1 {
		errs = append(errs, errors.New("--records must be at least 1"))
	}
	if c.Threads < 1 {
		errs = append(errs, errors.New("--threads must be at least 1"))
	}
	if c.DocSize < 1 {
		errs = append(errs, errors.New("--doc-size must be at least 1"))
	}
	if c.Fields < 1 {
		c.Fields = 1
	}
	if c.Fields > c.DocSize {
		c.Fields = c.DocSize
	}
	if c.BatchSize < 1 {
		errs = append(errs, errors.New("--batch-size must be at least 1"))
	}
	if c.Duration <= 0 && c.Ops <= 0 {
		errs = append(errs, errors.New("give --duration or --ops"))
	}
	if c.Interval <= 0 {
		c.Interval = Duration(time.Second)
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = Duration(10 * time.Second)
	}
	if c.DB == "" || c.Coll == "" {
		errs = append(errs, errors.New("--db and --coll must not be empty"))
	}
	if _, err := chooserFactory(c.Distribution, 1); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.writeConcern(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.readPref(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) writeConcern() (*writeconcern.WriteConcern, error) {
	switch s := strings.ToLower(c.WriteConcern); s {
	case "majority":
		return writeconcern.Majority(), nil
	default:
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--write-concern %q: want majority or a member count", c.WriteConcern)
		}
		return &writeconcern.WriteConcern{W: n}, nil
	}
}

func (c *Config) readPref() (*readpref.ReadPref, error) {
	mode, err := readpref.ModeFromString(c.ReadPreference)
	if err != nil {
		return nil, fmt.Errorf("--read-preference %q: want primary, primaryPreferred, secondary, secondaryPreferred or nearest", c.ReadPreference)
	}
	return readpref.New(mode)
}
