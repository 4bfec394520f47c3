package keys

import (
	"crypto/md5"
	"encoding/binary"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// hashVersion is the first byte hashed; it names this definition of Hash.
const hashVersion = 0x01

// Hash returns the 64-bit hash of v used for hashed shard keys:
// the first 8 bytes of MD5(0x01 || Encode(v)), read as a little-endian
// int64. Values that Compare equal hash equal (they encode equal), so 1,
// int64(1), 1.0 and decimal 1.0 share a hash. Embedded documents and arrays
// are hashed like any value. The definition decides data placement and must
// never change; the golden values in the tests pin it.
func Hash(v bson.RawValue) int64 {
	var buf [128]byte
	b := AppendValue(append(buf[:0], hashVersion), v)
	sum := md5.Sum(b)
	return int64(binary.LittleEndian.Uint64(sum[:8]))
}
