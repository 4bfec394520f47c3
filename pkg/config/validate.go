package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Limits enforced by Validate.
const (
	// MaxMembers is the largest replica set (and config server) size:
	// MongoDB's limit of voting members.
	MaxMembers = 7
	// MinLeaseTTL is the shortest primary lease etcd can grant.
	MinLeaseTTL = time.Second
	// MinChunkSize and MaxChunkSize bound sharding.chunkSize (tests use small
	// chunks; MongoDB allows up to 1 GiB).
	MinChunkSize = 1 * KiB
	MaxChunkSize = 1 * GiB
	// MinMaxMessageBytes is the smallest router.maxMessageBytes: a 16 MiB
	// document plus room for the command around it (MongoDB's internal BSON
	// limit, 16 MiB + 16 KiB).
	MinMaxMessageBytes = 16*MiB + 16*KiB
	// MaxMaxMessageBytes keeps router.maxMessageBytes within the wire
	// protocol's int32 message length.
	MaxMaxMessageBytes = 2*GiB - 1
	// maxNameLen bounds names (they become file names and etcd keys).
	maxNameLen = 63
	// maxEtcdElectionTimeout is etcd's upper bound for its election timeout.
	maxEtcdElectionTimeout = 50 * time.Second
)

// Validate checks the whole description and returns a *ValidationError
// listing every problem (field path and reason), or nil. Load and Parse
// call it; call it again after changing a Cluster in code.
func (c *Cluster) Validate() error {
	ps := &problems{}
	c.validate(ps)
	return ps.err()
}

func (c *Cluster) validate(ps *problems) {
	checkName(ps, "name", c.Name, "cluster name")
	if strings.TrimSpace(c.RunDir) == "" {
		ps.add("runDir", "must not be empty")
	}
	c.validateLog(ps)
	c.validateTopology(ps)
	c.validateReplication(ps)
	c.validateSharding(ps)
	c.validateRouter(ps)
}

func (c *Cluster) validateLog(ps *problems) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		ps.add("log.level", fmt.Sprintf("%q is not a level (debug, info, warn or error)", c.Log.Level))
	}
	switch c.Log.Format {
	case "console", "json":
	default:
		ps.add("log.format", fmt.Sprintf("%q is not a format (console or json)", c.Log.Format))
	}
	notNegative(ps, "log.statsInterval", c.Log.StatsInterval)
}

// seen records which field first used a name, address or directory, to
// report duplicates with both places.
type seen map[string]string

func (s seen) claim(ps *problems, field, key, display, what string) {
	if first, dup := s[key]; dup {
		ps.add(field, fmt.Sprintf("%s %q is already used by %s", what, display, first))
		return
	}
	s[key] = field
}

func (c *Cluster) validateTopology(ps *problems) {
	names, addrs := seen{}, seen{}
	node := func(field, name string) {
		if checkName(ps, joinField(field, "name"), name, "node name") {
			names.claim(ps, joinField(field, "name"), name, name, "node name")
		}
	}
	addr := func(field, value string) {
		if key, ok := checkHostPort(ps, field, value); ok {
			addrs.claim(ps, field, key, value, "address")
		}
	}

	switch n := len(c.ConfigServers); {
	case n == 0:
		ps.add("configServers", "at least one config server is required")
	case n%2 == 0 || n > MaxMembers:
		ps.add("configServers", fmt.Sprintf("has %d members; use an odd number up to %d (1, 3, 5 or 7): an even count tolerates no more failures than one member fewer", n, MaxMembers))
	}
	for i, cs := range c.ConfigServers {
		f := indexField("configServers", i)
		node(f, cs.Name)
		addr(joinField(f, "clientAddr"), cs.ClientAddr)
		addr(joinField(f, "peerAddr"), cs.PeerAddr)
	}

	if len(c.Shards) == 0 {
		ps.add("shards", "at least one shard is required")
	}
	shardNames := seen{}
	for i, sh := range c.Shards {
		f := indexField("shards", i)
		if checkName(ps, joinField(f, "name"), sh.Name, "shard name") {
			shardNames.claim(ps, joinField(f, "name"), sh.Name, sh.Name, "shard name")
		}
		switch n := len(sh.Members); {
		case n == 0:
			ps.add(joinField(f, "members"), fmt.Sprintf("shard %q has no members", sh.Name))
		case n%2 == 0 || n > MaxMembers:
			ps.add(joinField(f, "members"), fmt.Sprintf("shard %q has %d members; use an odd number up to %d (1, 3, 5 or 7): an even count tolerates no more failures than one member fewer", sh.Name, n, MaxMembers))
		}
		for j, m := range sh.Members {
			mf := indexField(joinField(f, "members"), j)
			node(mf, m.Name)
			addr(joinField(mf, "addr"), m.Addr)
		}
		sh.Oplog.validate(ps, joinField(f, "oplog"))
	}

	if len(c.Routers) == 0 {
		ps.add("routers", "at least one router is required")
	}
	for i, r := range c.Routers {
		f := indexField("routers", i)
		node(f, r.Name)
		addr(joinField(f, "addr"), r.Addr)
	}

	// Two nodes must never share a data directory (defaults included).
	dirs := seen{}
	for _, n := range c.nodes() {
		if n.DataDir != "" && n.Name != "" {
			dirs.claim(ps, n.field+".dataDir", cleanPath(n.DataDir), n.DataDir, "data directory")
		}
	}
}

func (c *Cluster) validateReplication(ps *problems) {
	r := c.Replication
	if positive(ps, "replication.etcdHeartbeat", r.EtcdHeartbeat) {
		wholeUnit(ps, "replication.etcdHeartbeat", r.EtcdHeartbeat, time.Millisecond, "millisecond", "etcd counts it in milliseconds")
	}
	if positive(ps, "replication.etcdElectionTimeout", r.EtcdElectionTimeout) {
		wholeUnit(ps, "replication.etcdElectionTimeout", r.EtcdElectionTimeout, time.Millisecond, "millisecond", "etcd counts it in milliseconds")
		if r.EtcdHeartbeat > 0 && r.EtcdElectionTimeout < 5*r.EtcdHeartbeat {
			ps.add("replication.etcdElectionTimeout", fmt.Sprintf("%s must be at least 5 x replication.etcdHeartbeat (%s), as etcd requires", r.EtcdElectionTimeout, 5*r.EtcdHeartbeat))
		}
		if r.EtcdElectionTimeout > maxEtcdElectionTimeout {
			ps.add("replication.etcdElectionTimeout", fmt.Sprintf("%s is more than etcd's maximum of %s", r.EtcdElectionTimeout, maxEtcdElectionTimeout))
		}
	}
	switch {
	case r.LeaseTTL < MinLeaseTTL:
		ps.add("replication.leaseTTL", fmt.Sprintf("%s is shorter than %s, the shortest lease etcd grants", r.LeaseTTL, MinLeaseTTL))
	case r.LeaseTTL%time.Second != 0:
		ps.add("replication.leaseTTL", fmt.Sprintf("%s is not a whole number of seconds (etcd lease TTLs count seconds)", r.LeaseTTL))
	case r.EtcdElectionTimeout > 0 && 3*r.EtcdElectionTimeout > 2*r.LeaseTTL:
		ps.add("replication.leaseTTL", fmt.Sprintf("%s is shorter than 1.5 x replication.etcdElectionTimeout (%s): etcd would silently lengthen the lease", r.LeaseTTL, 3*r.EtcdElectionTimeout/2))
	}
	if positive(ps, "replication.electionBackoff", r.ElectionBackoff) && r.ElectionBackoff >= r.LeaseTTL && r.LeaseTTL > 0 {
		ps.add("replication.electionBackoff", fmt.Sprintf("%s must be shorter than replication.leaseTTL (%s)", r.ElectionBackoff, r.LeaseTTL))
	}
	positive(ps, "replication.catchUpTimeout", r.CatchUpTimeout)
	c.validateWriteConcern(ps)
	notNegative(ps, "replication.wTimeout", r.WTimeout)
	notNegative(ps, "replication.oplogRetention", r.OplogRetention)
	if r.OplogMaxBytes < MiB {
		ps.add("replication.oplogMaxBytes", fmt.Sprintf("%s is less than the minimum of 1MiB", r.OplogMaxBytes))
	}
}

func (c *Cluster) validateWriteConcern(ps *problems) {
	const field = "replication.defaultWriteConcern"
	w := c.Replication.DefaultWriteConcern
	if w == "majority" {
		return
	}
	n, err := strconv.Atoi(w)
	if err != nil || n < 1 {
		ps.add(field, fmt.Sprintf("%q is not a write concern (\"majority\" or a member count such as \"1\")", w))
		return
	}
	for _, sh := range c.Shards {
		if len(sh.Members) > 0 && n > len(sh.Members) {
			ps.add(field, fmt.Sprintf("w:%d can never be satisfied by shard %q with %d member(s)", n, sh.Name, len(sh.Members)))
			return
		}
	}
}

func (c *Cluster) validateSharding(ps *problems) {
	s := c.Sharding
	if s.ChunkSize < MinChunkSize || s.ChunkSize > MaxChunkSize {
		ps.add("sharding.chunkSize", fmt.Sprintf("%s is outside %s..%s", s.ChunkSize, MinChunkSize, MaxChunkSize))
	}
	if s.HashedInitialChunksPerShard < 1 || s.HashedInitialChunksPerShard > 1024 {
		ps.add("sharding.hashedInitialChunksPerShard", fmt.Sprintf("%d is outside 1..1024", s.HashedInitialChunksPerShard))
	}
	positive(ps, "sharding.balancerInterval", s.BalancerInterval)
	if s.ImbalanceThreshold < 1 {
		ps.add("sharding.imbalanceThreshold", fmt.Sprintf("%d must be at least 1 (a difference in chunk count)", s.ImbalanceThreshold))
	}
	if s.MigrationBatchBytes < KiB || s.MigrationBatchBytes > 64*MiB {
		ps.add("sharding.migrationBatchBytes", fmt.Sprintf("%s is outside 1KiB..64MiB", s.MigrationBatchBytes))
	}
}

func (c *Cluster) validateRouter(ps *problems) {
	r := c.Router
	positive(ps, "router.cursorTimeout", r.CursorTimeout)
	if r.MaxMessageBytes < MinMaxMessageBytes || r.MaxMessageBytes > MaxMaxMessageBytes {
		ps.add("router.maxMessageBytes", fmt.Sprintf("%s is outside %s..%s (a 16MiB document must fit; the wire length is an int32)", r.MaxMessageBytes, MinMaxMessageBytes, MaxMaxMessageBytes))
	}
}

func positive(ps *problems, field string, d time.Duration) bool {
	if d <= 0 {
		ps.add(field, fmt.Sprintf("%s must be positive", d))
		return false
	}
	return true
}

func notNegative(ps *problems, field string, d time.Duration) {
	if d < 0 {
		ps.add(field, fmt.Sprintf("%s must not be negative", d))
	}
}

func wholeUnit(ps *problems, field string, d, unit time.Duration, unitName, why string) {
	if d%unit != 0 {
		ps.add(field, fmt.Sprintf("%s is not a whole number of %ss (%s)", d, unitName, why))
	}
}

// checkName checks a cluster, shard or node name: 1-63 letters, digits, '-'
// or '_', starting with a letter or digit. Names become file names, etcd
// member names and etcd key segments.
func checkName(ps *problems, field, name, what string) bool {
	if name == "" {
		ps.add(field, what+" is required")
		return false
	}
	if len(name) > maxNameLen {
		ps.add(field, fmt.Sprintf("%s %q is longer than %d characters", what, name, maxNameLen))
		return false
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '-' || r == '_')
		if !ok {
			ps.add(field, fmt.Sprintf("%s %q may only hold letters, digits, '-' and '_', starting with a letter or digit", what, name))
			return false
		}
	}
	return true
}

// checkHostPort checks a host:port and returns its canonical form (host
// lower-cased, IP addresses in canonical notation) for duplicate detection.
func checkHostPort(ps *problems, field, value string) (string, bool) {
	if value == "" {
		ps.add(field, "address is required (host:port)")
		return "", false
	}
	host, port, err := net.SplitHostPort(value)
	if err != nil {
		ps.add(field, fmt.Sprintf("%q is not a host:port address", value))
		return "", false
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		ps.add(field, fmt.Sprintf("%q has a bad port %q (1-65535)", value, port))
		return "", false
	}
	if host == "" {
		ps.add(field, fmt.Sprintf("%q has no host (write 127.0.0.1:%s for a local node)", value, port))
		return "", false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			ps.add(field, fmt.Sprintf("%q: zoned IPv6 addresses are not supported", value))
			return "", false
		}
		return net.JoinHostPort(ip.Unmap().String(), port), true
	}
	if !validHostname(host) {
		ps.add(field, fmt.Sprintf("%q has a bad host %q (an IP address or a DNS name)", value, host))
		return "", false
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), port), true
}

// validHostname reports whether h is a DNS name: dot-separated labels of
// letters, digits and '-', each 1-63 long, not starting or ending with '-'.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-') {
				return false
			}
		}
	}
	return true
}
