package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// LocalSpec describes a cluster generated on one machine, every node on
// 127.0.0.1 (test harnesses and `psdb cluster` tooling).
type LocalSpec struct {
	// Name is the cluster name (default "psdb-local").
	Name string
	// RunDir is the base directory (default "run").
	RunDir string
	// ConfigServers, Shards, MembersPerShard and Routers are counts
	// (defaults 1, 2, 3 and 1).
	ConfigServers   int
	Shards          int
	MembersPerShard int
	Routers         int
	// Port returns a port to listen on, e.g. FreePort. It is called once
	// per address, in Nodes order (config servers: client then peer).
	// Required by Local; WriteLocal defaults it to FreePort.
	Port func() (int, error)
}

// Local builds and validates a single-machine cluster from spec, with the
// defaults of Default for every tunable. Node names follow cluster.yaml:
// cfg0.., shards rs0.. with members rs0a, rs0b.., routers mongos0...
// Change tunables on the result, then call Validate again.
func Local(spec LocalSpec) (*Cluster, error) {
	if spec.Port == nil {
		return nil, errors.New("config.Local: spec.Port is required")
	}
	orDefault := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	c := Default()
	c.Name = spec.Name
	if c.Name == "" {
		c.Name = "psdb-local"
	}
	if spec.RunDir != "" {
		c.RunDir = spec.RunDir
	}
	var portErr error
	addr := func() string {
		p, err := spec.Port()
		if err != nil && portErr == nil {
			portErr = err
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	for i := range orDefault(spec.ConfigServers, 1) {
		c.ConfigServers = append(c.ConfigServers, ConfigServer{Name: "cfg" + strconv.Itoa(i), ClientAddr: addr(), PeerAddr: addr()})
	}
	members := orDefault(spec.MembersPerShard, 3)
	for i := range orDefault(spec.Shards, 2) {
		sh := Shard{Name: "rs" + strconv.Itoa(i)}
		for j := range members {
			name := sh.Name + string(rune('a'+j%26))
			if j >= 26 {
				name += strconv.Itoa(j / 26)
			}
			sh.Members = append(sh.Members, Member{Name: name, Addr: addr()})
		}
		c.Shards = append(c.Shards, sh)
	}
	for i := range orDefault(spec.Routers, 1) {
		c.Routers = append(c.Routers, Router{Name: "mongos" + strconv.Itoa(i), Addr: addr()})
	}
	if portErr != nil {
		return nil, fmt.Errorf("config.Local: pick a port: %w", portErr)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// WriteLocal builds a Local cluster, lets edit adjust it (nil: none),
// writes it as dir/cluster.yaml and loads it back the way a node does
// (Load, so paths are resolved). Tests and tools that need a throw-away
// cluster description use it; a nil spec.Port picks free ports.
func WriteLocal(dir string, spec LocalSpec, edit func(*Cluster)) (path string, c *Cluster, err error) {
	if spec.Port == nil {
		spec.Port = FreePort
	}
	c, err = Local(spec)
	if err != nil {
		return "", nil, err
	}
	if edit != nil {
		edit(c)
	}
	data, err := c.Encode()
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", nil, fmt.Errorf("write %s: %w", path, err)
	}
	c, err = Load(path, nil)
	if err != nil {
		return "", nil, err
	}
	return path, c, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (it
// listens on port 0 and closes). Another process may take it before it is
// used; that is acceptable for tests and local development only.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
