package config_test

import (
	"os"
	"reflect"
	"testing"

	"github.com/psdb/psdb/pkg/config"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, and a
// description it accepts must survive Encode and Parse unchanged.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../cluster.yaml"); err == nil {
		f.Add(b)
	}
	f.Add(doc())
	f.Add(doc(section{"shrads", "[]"}))
	f.Add(doc(section{"replication", "5"}))
	f.Add(doc(section{"routers", "[r0]"}))
	f.Add(doc(section{"shards", "[{name: rs0, members: [{name: a, addr: '[::ffff:127.0.0.1]:1'}]}]"}))
	f.Add(doc(section{"replication", "{leaseTTL: abc, oplogMaxBytes: 99999999999TiB}"}))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("? [a, b]\n: c\n"))
	f.Add([]byte("1: 2\ntrue: {null: ~}\n"))
	f.Add([]byte("\"a.b\": 1\n\"\": x\n"))
	f.Add([]byte("name: !!binary aGVsbG8=\n"))
	f.Add([]byte("- a\n"))
	f.Add([]byte(""))
	f.Add([]byte("shrads:\nname: x\n"))
	f.Add([]byte("a:\n b:\n  c:\n   d: [[[[{}]]]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err != nil {
			return
		}
		out, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode of an accepted config: %v", err)
		}
		c2, err := config.Parse(out)
		if err != nil {
			t.Fatalf("Parse(Encode()) failed: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}
