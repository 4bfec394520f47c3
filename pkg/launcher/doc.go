// Package launcher starts, watches and stops the processes of a cluster.yaml
// on this machine. It is the one piece of code behind both `psdb cluster
// up|down|status` and the integration harness (integration/harness).
//
// # What it owns
//
//   - The start order: config servers, then each shard's members, then the
//     routers (config.Cluster.Nodes order). Nodes start group by group (all
//     config servers, then one shard's members, ... , then all routers) and
//     a group is started completely before its health is awaited: a 3-member
//     config server or replica set cannot become healthy before a majority
//     of its members runs.
//   - Pid files (config.Node.PidFile) and the redirection of every child's
//     stdout and stderr into its log file (config.Node.LogFile), so
//     `psdb cluster status|down|logs` work from another terminal and a
//     failing start is reported with the tail of the node's log.
//   - Stopping: SIGTERM to the node's process group, SIGKILL after the stop
//     timeout.
//
// Children run in their own session (setsid): a Ctrl-C in the terminal
// reaches only the launcher, which then stops the nodes in reverse order,
// and a detached cluster survives the launcher's exit.
//
// # The child contract
//
// Every node binary is started as
//
//	<BinDir>/<binary> --config <absolute cluster.yaml> --name <node>
//
// with the launcher's environment (so PSDB_* overrides reach every node) and
// stdout/stderr appended to the node's log file. Binaries: configsvr,
// shardd, mongos (BinaryName). A role whose binary is not in BinDir is
// reported as StateNotBuilt and skipped, so adding a role to a cluster is
// adding its binary. How a node is found healthy is a per-role HealthCheck
// (Options.Health); the defaults are in DefaultHealthChecks.
//
// # What it must never do
//
// It never starts a node twice (a node whose pid file names a live process
// of that node is adopted, not restarted), never signals a process it cannot
// tie to the node (pid files are checked against /proc/<pid>/cmdline), never
// deletes data directories, and never leaves processes it started behind
// when Up fails.
package launcher
