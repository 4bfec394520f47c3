package launcher

import (
	"strings"
	"testing"

	"github.com/psdb/psdb/pkg/config"
)

func TestWriteStatusTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []NodeStatus
		want string
	}{
		{
			name: "without info",
			in: []NodeStatus{
				{Name: "cfg0", Role: config.RoleConfigServer, Addr: "127.0.0.1:2379", PID: 42, State: StateRunning},
				{Name: "rs0a", Role: config.RoleShard, Shard: "rs0", Addr: "127.0.0.1:27101", State: StateNotBuilt},
			},
			want: `NODE  ROLE       SHARD  ADDRESS          PID  STATE
cfg0  configsvr  -      127.0.0.1:2379   42   running
rs0a  shardd     rs0    127.0.0.1:27101  -    not-built
`,
		},
		{
			name: "with info",
			in: []NodeStatus{
				{Name: "rs0a", Role: config.RoleShard, Shard: "rs0", Addr: "127.0.0.1:27101", PID: 7, State: StateRunning, Info: "primary"},
				{Name: "rs0b", Role: config.RoleShard, Shard: "rs0", Addr: "127.0.0.1:27102", State: StateDown},
			},
			want: `NODE  ROLE    SHARD  ADDRESS          PID  STATE    INFO
rs0a  shardd  rs0    127.0.0.1:27101  7    running  primary
rs0b  shardd  rs0    127.0.0.1:27102  -    down     -
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := WriteStatusTable(&b, tc.in); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
		})
	}
}
