// Command psdb is PSDB's command line: `psdb cluster up|down|status|logs`
// boots and supervises the processes of a cluster.yaml on this machine;
// later commands (shell, admin, bench) are added as one file each in
// tools/psdb/cmd.
package main

import (
	"os"

	"github.com/psdb/psdb/tools/psdb/cmd"
)

func main() {
	os.Exit(cmd.Execute(os.Args[1:], os.Stdout, os.Stderr))
}
