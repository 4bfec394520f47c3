package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Role is the kind of process a node runs. Its value is also the name of
// the node's binary and the "role" field of its log lines.
type Role string

// Roles.
const (
	RoleConfigServer Role = "configsvr"
	RoleShard        Role = "shardd"
	RoleRouter       Role = "mongos"
)

// ErrUnknownNode is wrapped by Node when no node has the given name.
var ErrUnknownNode = errors.New("unknown node")

// Node is one process of the cluster with every path resolved.
type Node struct {
	// Name is the node's name, unique in the cluster.
	Name string
	// Role says which binary runs the node.
	Role Role
	// Shard is the shard a RoleShard node belongs to; empty otherwise.
	Shard string
	// Addr is what the node serves: etcd's client address for a config
	// server, the gRPC address for a shard member, the MongoDB wire address
	// for a router.
	Addr string
	// PeerAddr is etcd's peer address for a config server; empty otherwise.
	PeerAddr string
	// DataDir is the node's data directory (etcd's for a config server,
	// Pebble's for a shard member); empty for a router, which keeps no data.
	DataDir string
	// LogFile receives the node's JSON log lines: <log.dir>/<name>.log.
	LogFile string
	// PidFile is where `psdb cluster up` records the node's process id:
	// <runDir>/pids/<name>.pid.
	PidFile string
}

// nodeRef is a node with its path in cluster.yaml, for validation messages.
type nodeRef struct {
	Node
	field string
}

// Nodes returns every node in start order: config servers, then each
// shard's members (shard by shard, in file order), then routers.
func (c *Cluster) Nodes() []Node {
	refs := c.nodes()
	out := make([]Node, len(refs))
	for i, r := range refs {
		out[i] = r.Node
	}
	return out
}

// Node returns the node called name, or an error wrapping ErrUnknownNode.
func (c *Cluster) Node(name string) (Node, error) {
	all := c.Nodes()
	for _, n := range all {
		if n.Name == name {
			return n, nil
		}
	}
	known := make([]string, len(all))
	for i, n := range all {
		known[i] = n.Name
	}
	return Node{}, fmt.Errorf("%w %q in cluster %q (nodes: %s)", ErrUnknownNode, name, c.Name, strings.Join(known, ", "))
}

// Shard returns the shard called name and whether it exists.
func (c *Cluster) Shard(name string) (Shard, bool) {
	for _, s := range c.Shards {
		if s.Name == name {
			return s, true
		}
	}
	return Shard{}, false
}

func (c *Cluster) nodes() []nodeRef {
	var out []nodeRef
	for i, cs := range c.ConfigServers {
		out = append(out, c.node(cs.Name, RoleConfigServer, "", cs.ClientAddr, cs.PeerAddr, cs.DataDir, indexField("configServers", i)))
	}
	for i, sh := range c.Shards {
		for j, m := range sh.Members {
			out = append(out, c.node(m.Name, RoleShard, sh.Name, m.Addr, "", m.DataDir, indexField(joinField(indexField("shards", i), "members"), j)))
		}
	}
	for i, r := range c.Routers {
		n := c.node(r.Name, RoleRouter, "", r.Addr, "", "", indexField("routers", i))
		n.DataDir = ""
		out = append(out, n)
	}
	return out
}

func (c *Cluster) node(name string, role Role, shard, addr, peer, dataDir, field string) nodeRef {
	if dataDir == "" {
		dataDir = filepath.Join(c.RunDir, "data", name)
	}
	return nodeRef{field: field, Node: Node{
		Name:     name,
		Role:     role,
		Shard:    shard,
		Addr:     addr,
		PeerAddr: peer,
		DataDir:  dataDir,
		LogFile:  filepath.Join(c.LogDir(), name+".log"),
		PidFile:  filepath.Join(c.RunDir, "pids", name+".pid"),
	}}
}

// LogDir returns the directory of the per-node log files: log.dir, or
// <runDir>/logs when it is empty.
func (c *Cluster) LogDir() string {
	if c.Log.Dir != "" {
		return c.Log.Dir
	}
	return filepath.Join(c.RunDir, "logs")
}

// ConnectionString returns the MongoDB URI of the cluster's routers,
// "mongodb://127.0.0.1:27017/" (several routers are comma-separated).
func (c *Cluster) ConnectionString() string {
	addrs := make([]string, len(c.Routers))
	for i, r := range c.Routers {
		addrs[i] = r.Addr
	}
	return "mongodb://" + strings.Join(addrs, ",") + "/"
}

// EtcdEndpoints returns the config servers' etcd client URLs
// ("http://127.0.0.1:2379"), as clientv3.Config.Endpoints takes them.
func (c *Cluster) EtcdEndpoints() []string {
	out := make([]string, len(c.ConfigServers))
	for i, cs := range c.ConfigServers {
		out[i] = "http://" + cs.ClientAddr
	}
	return out
}

// EtcdInitialCluster returns etcd's initial-cluster setting for the config
// servers: "cfg0=http://127.0.0.1:2380,cfg1=...".
func (c *Cluster) EtcdInitialCluster() string {
	parts := make([]string, len(c.ConfigServers))
	for i, cs := range c.ConfigServers {
		parts[i] = cs.Name + "=http://" + cs.PeerAddr
	}
	return strings.Join(parts, ",")
}

// cleanPath normalizes a path for duplicate detection.
func cleanPath(p string) string {
	return filepath.Clean(p)
}
