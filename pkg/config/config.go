// Package config owns the description of a PSDB cluster: the cluster.yaml
// schema, its defaults, how the file, PSDB_* environment variables and
// command-line flags combine (flags > environment > file > defaults), and the
// validation that refuses a bad description with the field and the reason.
//
// It also answers the questions every process and tool asks of that
// description: which nodes exist, in what order they start, where each keeps
// its data, log and pid files, and how clients reach the cluster.
//
// This package must never start processes, open network connections or
// touch etcd; apart from Load reading the file and ClaimDataDir stamping a
// data directory, it does no I/O. It keeps no package-level state: every
// Cluster is built by Default, Parse or Load and passed explicitly.
//
// The schema, defaults and the environment/flag mapping are documented in
// docs/design/config.md and in the comments of the checked-in cluster.yaml.
package config

import (
	"time"
)

// Cluster is the whole cluster description. Build it with Default, Parse or
// Load. A Cluster is a plain value: it is safe for concurrent reads, and
// must not be modified while other goroutines read it.
type Cluster struct {
	// Name identifies the cluster. It is stamped into every data directory
	// (ClaimDataDir) so a node refuses a data directory of another cluster.
	Name string `yaml:"name"`
	// RunDir is the base directory for data, logs and pid files of
	// `psdb cluster up`. Load resolves a relative RunDir against the
	// directory of the cluster.yaml file (against the current directory when
	// it comes from the --run-dir flag).
	RunDir string `yaml:"runDir"`
	// Log configures every node's logger.
	Log Log `yaml:"log"`
	// ConfigServers are the members of the config server (embedded etcd).
	ConfigServers []ConfigServer `yaml:"configServers"`
	// Shards are the shard replica sets.
	Shards []Shard `yaml:"shards"`
	// Routers are the mongos processes clients connect to.
	Routers []Router `yaml:"routers"`
	// Replication holds the tunables of replication inside a shard and of the
	// config server's etcd.
	Replication Replication `yaml:"replication"`
	// Sharding holds the tunables of chunks, the balancer and migrations.
	Sharding Sharding `yaml:"sharding"`
	// Router holds the tunables shared by every router.
	Router RouterTunables `yaml:"router"`
}

// Log configures logging (see package logging).
type Log struct {
	// Level is the minimum level logged: debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is the form of the console output: "console" (human-readable)
	// or "json" (the same JSON lines as the log file).
	Format string `yaml:"format"`
	// Dir holds one JSON log file per node, <Dir>/<node>.log. Empty means
	// <RunDir>/logs.
	Dir string `yaml:"dir,omitempty"`
	// StatsInterval is how often every node logs its load line (ops/s,
	// latency percentiles, replication state and lag; package opstats).
	// 0 disables the line.
	StatsInterval time.Duration `yaml:"statsInterval"`
}

// ConfigServer is one member of the config server's etcd cluster.
type ConfigServer struct {
	// Name is the node's name, unique among all nodes; it is also the etcd
	// member name.
	Name string `yaml:"name"`
	// ClientAddr is the host:port etcd serves clients on.
	ClientAddr string `yaml:"clientAddr"`
	// PeerAddr is the host:port etcd members talk to each other on.
	PeerAddr string `yaml:"peerAddr"`
	// DataDir is the etcd data directory; empty means <RunDir>/data/<name>.
	DataDir string `yaml:"dataDir,omitempty"`
}

// Shard is one shard: a replica set of shardd members.
type Shard struct {
	// Name is the shard's name ("rs0"), unique among shards.
	Name string `yaml:"name"`
	// Members are the shard's shardd processes: 1, 3, 5 or 7 of them.
	Members []Member `yaml:"members"`
	// Oplog overrides the replication-wide oplog retention for this
	// shard's members (see OplogRetentionOf); zero fields inherit.
	Oplog ShardOplog `yaml:"oplog,omitempty"`
}

// Member is one shardd process, a member of a shard's replica set.
type Member struct {
	// Name is the node's name, unique among all nodes.
	Name string `yaml:"name"`
	// Addr is the host:port of the member's gRPC server.
	Addr string `yaml:"addr"`
	// DataDir is the member's Pebble directory; empty means
	// <RunDir>/data/<name>.
	DataDir string `yaml:"dataDir,omitempty"`
}

// Router is one mongos process.
type Router struct {
	// Name is the node's name, unique among all nodes.
	Name string `yaml:"name"`
	// Addr is the host:port the router serves the MongoDB wire protocol on.
	Addr string `yaml:"addr"`
}

// Replication holds the tunables of replication and elections.
type Replication struct {
	// LeaseTTL is the TTL of a shard's primary lease in etcd. etcd leases
	// count whole seconds, so it must be a whole number of seconds, at least
	// 1s, and at least 1.5 x EtcdElectionTimeout (etcd's minimum lease TTL).
	LeaseTTL time.Duration `yaml:"leaseTTL"`
	// EtcdHeartbeat is the config server etcd's heartbeat interval.
	EtcdHeartbeat time.Duration `yaml:"etcdHeartbeat"`
	// EtcdElectionTimeout is the config server etcd's election timeout; at
	// least 5 x EtcdHeartbeat (etcd's own rule).
	EtcdElectionTimeout time.Duration `yaml:"etcdElectionTimeout"`
	// ElectionBackoff is the upper bound of the randomized delay a secondary
	// waits after the primary lease disappears before it stands as a
	// candidate.
	ElectionBackoff time.Duration `yaml:"electionBackoff"`
	// CatchUpTimeout bounds how long a catching-up member (a new primary
	// fetching the newest entries, or a migration's catch-up phase) waits
	// before giving up on that step.
	CatchUpTimeout time.Duration `yaml:"catchUpTimeout"`
	// DefaultWriteConcern is the w used when a write names none: "majority"
	// or a member count ("1", "2", ...) no larger than the smallest shard.
	DefaultWriteConcern string `yaml:"defaultWriteConcern"`
	// WTimeout is the default wtimeout of a write concern; 0 waits forever
	// (MongoDB's default).
	WTimeout time.Duration `yaml:"wTimeout"`
	// OplogRetention is the minimum age an oplog entry reaches before it may
	// be truncated (MongoDB's oplogMinRetentionHours); 0 means entries are
	// truncated by size alone.
	OplogRetention time.Duration `yaml:"oplogRetention"`
	// OplogMaxBytes is the oplog's target size: once the oplog is larger,
	// its oldest entries are truncated, but never one younger than
	// OplogRetention.
	OplogMaxBytes Size `yaml:"oplogMaxBytes"`
}

// Sharding holds the tunables of chunks, the balancer and migrations.
type Sharding struct {
	// ChunkSize is the size past which a chunk is split at its median.
	ChunkSize Size `yaml:"chunkSize"`
	// HashedInitialChunksPerShard is how many chunks per shard a new hashed
	// collection is pre-split into.
	HashedInitialChunksPerShard int `yaml:"hashedInitialChunksPerShard"`
	// BalancerInterval is the pause between two balancer rounds.
	BalancerInterval time.Duration `yaml:"balancerInterval"`
	// BalancerEnabled is whether the balancer runs in a new cluster: the
	// config server stores it when it first creates the catalog; from then
	// on only balancerStart and balancerStop change it.
	BalancerEnabled bool `yaml:"balancerEnabled"`
	// ImbalanceThreshold is a chunk count: the balancer moves chunks of a
	// collection while its most loaded shard owns at least this many chunks
	// more than its least loaded shard. 1 balances as evenly as possible.
	ImbalanceThreshold int `yaml:"imbalanceThreshold"`
	// MigrationBatchBytes bounds one batch of documents sent during a chunk
	// migration's clone and catch-up phases (a single larger document is
	// still sent, alone).
	MigrationBatchBytes Size `yaml:"migrationBatchBytes"`
}

// RouterTunables holds the tunables shared by every router.
type RouterTunables struct {
	// CursorTimeout closes a client cursor idle for this long.
	CursorTimeout time.Duration `yaml:"cursorTimeout"`
	// MaxMessageBytes is the largest wire protocol message accepted
	// (MongoDB's maxMessageSizeBytes).
	MaxMessageBytes Size `yaml:"maxMessageBytes"`
}

// Defaults, in one place. Default() is built from these.
const (
	DefaultRunDir                      = "run"
	DefaultLogLevel                    = "info"
	DefaultLogFormat                   = "console"
	DefaultLogStatsInterval            = 10 * time.Second
	DefaultLeaseTTL                    = 1 * time.Second
	DefaultEtcdHeartbeat               = 100 * time.Millisecond
	DefaultEtcdElectionTimeout         = 500 * time.Millisecond
	DefaultElectionBackoff             = 200 * time.Millisecond
	DefaultCatchUpTimeout              = 10 * time.Second
	DefaultWriteConcern                = "majority"
	DefaultWTimeout                    = 0
	DefaultOplogRetention              = 24 * time.Hour
	DefaultOplogMaxBytes               = 1 * GiB
	DefaultChunkSize                   = 128 * MiB
	DefaultHashedInitialChunksPerShard = 2
	DefaultBalancerInterval            = 10 * time.Second
	DefaultImbalanceThreshold          = 2
	DefaultMigrationBatchBytes         = 4 * MiB
	DefaultCursorTimeout               = 10 * time.Minute
	DefaultMaxMessageBytes             = 48 * MB
)

// Default returns a Cluster holding every default and no nodes. It does not
// validate: a cluster needs at least a config server, a shard and a router.
func Default() *Cluster {
	return &Cluster{
		RunDir: DefaultRunDir,
		Log: Log{
			Level:         DefaultLogLevel,
			Format:        DefaultLogFormat,
			StatsInterval: DefaultLogStatsInterval,
		},
		Replication: Replication{
			LeaseTTL:            DefaultLeaseTTL,
			EtcdHeartbeat:       DefaultEtcdHeartbeat,
			EtcdElectionTimeout: DefaultEtcdElectionTimeout,
			ElectionBackoff:     DefaultElectionBackoff,
			CatchUpTimeout:      DefaultCatchUpTimeout,
			DefaultWriteConcern: DefaultWriteConcern,
			WTimeout:            DefaultWTimeout,
			OplogRetention:      DefaultOplogRetention,
			OplogMaxBytes:       DefaultOplogMaxBytes,
		},
		Sharding: Sharding{
			ChunkSize:                   DefaultChunkSize,
			HashedInitialChunksPerShard: DefaultHashedInitialChunksPerShard,
			BalancerInterval:            DefaultBalancerInterval,
			BalancerEnabled:             true,
			ImbalanceThreshold:          DefaultImbalanceThreshold,
			MigrationBatchBytes:         DefaultMigrationBatchBytes,
		},
		Router: RouterTunables{
			CursorTimeout:   DefaultCursorTimeout,
			MaxMessageBytes: DefaultMaxMessageBytes,
		},
	}
}
