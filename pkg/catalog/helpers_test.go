package catalog

import (
	"bytes"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func members(shard string, n int) []Member {
	out := make([]Member, n)
	for i := range out {
		out[i] = Member{Name: shard + "-" + string(rune('a'+i)), Addr: "127.0.0.1:" + string(rune('1'+i)) + "000" + shard}
	}
	return out
}

// addShards registers active shards named names.
func addShards(t testing.TB, c *Catalog, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := c.AddShard(testCtx(t), n, members(n, 3), ShardActive); err != nil {
			t.Fatalf("AddShard %s: %v", n, err)
		}
	}
}

func mustErr(t testing.TB, err, sentinel error, code mongoerr.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error %v (%v), got nil", sentinel, code)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("want errors.Is %v, got %v", sentinel, err)
	}
	if code != 0 && mongoerr.CodeOf(err) != code {
		t.Fatalf("want code %v, got %v (%v)", code, mongoerr.CodeOf(err), err)
	}
}

func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func doc(t testing.TB, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkTiling asserts chunks tile [MinKey, MaxKey) in order and returns
// the highest version.
func checkTiling(t testing.TB, key ShardKey, chunks []Chunk) Version {
	t.Helper()
	if len(chunks) == 0 {
		t.Fatal("no chunks")
	}
	gmin, _ := encodeBoundAnyKey(key.GlobalMin())
	gmax, _ := encodeBoundAnyKey(key.GlobalMax())
	if !bytes.Equal(chunks[0].MinKey, gmin) {
		t.Fatalf("first chunk starts at %s, not at MinKey", chunks[0].Min)
	}
	if !bytes.Equal(chunks[len(chunks)-1].MaxKey, gmax) {
		t.Fatalf("last chunk ends at %s, not at MaxKey", chunks[len(chunks)-1].Max)
	}
	var hi Version
	seen := map[Version]bool{}
	for i, ch := range chunks {
		if bytes.Compare(ch.MinKey, ch.MaxKey) >= 0 {
			t.Fatalf("chunk %d is empty or inverted: %s", i, ch)
		}
		if i > 0 && !bytes.Equal(chunks[i-1].MaxKey, ch.MinKey) {
			t.Fatalf("gap or overlap between chunk %d %s and %d %s", i-1, chunks[i-1], i, ch)
		}
		if seen[ch.Version] {
			t.Fatalf("version %s used twice", ch.Version)
		}
		seen[ch.Version] = true
		if hi.Less(ch.Version) {
			hi = ch.Version
		}
	}
	return hi
}
