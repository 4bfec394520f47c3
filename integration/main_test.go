// Package integration holds the tests that boot real clusters of real
// processes through integration/harness. Shared binaries are built once per
// run by TestMain (or taken from PSDB_BIN).
package integration

import (
	"os"
	"testing"

	"github.com/psdb/psdb/integration/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
