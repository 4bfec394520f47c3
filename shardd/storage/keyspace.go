package storage

import (
	"encoding/binary"
	"fmt"
)

// Key layout. Every Pebble key starts with one of these bytes; nothing else
// builds Pebble keys.
const (
	prefixDoc   byte = 'd' // d | collID(4) | key(_id)
	prefixIndex byte = 'i' // i | collID(4) | indexID(4) | tuple | key(_id) | len(key(_id))(4)
	prefixOplog byte = 'o' // o | term(8) | index(8)
	prefixMeta  byte = 'm' // m | kind | ...
	// Retryable-write statement records (session.go): the result of a
	// statement, written in the batch of its write and carried by its
	// oplog entry. Removed only when the session starts a newer txnNumber.
	prefixSession byte = 's' // s | len(lsid)(2) | lsid | txnNumber(8) | stmtId(4) → optime(16) | BSON result
)

// Metadata kinds: the byte after prefixMeta.
const (
	metaFormat byte = 'f' // m f                → formatRecord
	metaIDs    byte = 'n' // m n                → idsRecord (ID allocators)
	metaColl   byte = 'c' // m c | collID(4)    → collRecord
	metaStats  byte = 's' // m s | collID(4)    → statsRecord
	metaTerm   byte = 't' // m t                → termRecord
	metaLastOp byte = 'l' // m l                → term(8) | index(8) of the newest oplog entry
	metaVote   byte = 'v' // m v                → termRecord: the newest term this member promised in a vote (vote.go)
	// m y → syncMarkRecord, present while an initial sync is in progress (clone.go)
	metaInitialSync byte = 'y'
	// m b → term(8) | index(8) of the newest entry no longer in the oplog:
	// removed by retention, or the snapshot an initial sync installed (clone.go)
	metaOplogBase byte = 'b'
)

// resetKeepKeys are the only keys ResetForInitialSync (clone.go) keeps: the
// member's identity and promises, not its data. Every other key, whatever
// its prefix, is deleted by the reset, so a new kind of data (documents,
// session records, ...) is reset without further work; a new key that
// must SURVIVE a resync (a promise, an identity) must be added here.
// Keys starting with 0xff are reserved (the reset's upper bound).
var resetKeepKeys = [][]byte{
	metaKey(metaFormat), // what this directory is
	metaKey(metaIDs),    // IDs are never reused within a store's lifetime
	metaKey(metaTerm),   // terms never go back
	metaKey(metaVote),   // a vote is a promise (vote.go)
}

// idTrailerLen is the width of the trailer that ends every index entry key:
// the length of the key(_id) before it, big-endian. It lets a reader split
// an entry into its index tuple and its key(_id) without decoding the tuple.
// It never changes the order of entries: two entries with equal tuples and
// equal key(_id) are the same entry, and key(_id) is self-delimiting.
const idTrailerLen = 4

func metaKey(kind byte) []byte { return []byte{prefixMeta, kind} }

func metaCollKey(coll uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixMeta, metaColl}, coll)
}

func metaStatsKey(coll uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixMeta, metaStats}, coll)
}

// docPrefix is the prefix of every document key of a collection.
func docPrefix(coll uint32) []byte {
	k := make([]byte, 0, 5)
	k = append(k, prefixDoc)
	return binary.BigEndian.AppendUint32(k, coll)
}

// docKey returns d | coll | idKey.
func docKey(coll uint32, idKey []byte) []byte {
	k := make([]byte, 0, 5+len(idKey))
	k = append(k, prefixDoc)
	k = binary.BigEndian.AppendUint32(k, coll)
	return append(k, idKey...)
}

// collIndexPrefix is the prefix of every index entry of a collection.
func collIndexPrefix(coll uint32) []byte {
	k := make([]byte, 0, 5)
	k = append(k, prefixIndex)
	return binary.BigEndian.AppendUint32(k, coll)
}

// indexPrefix is the prefix of every entry of one index.
func indexPrefix(coll, idx uint32) []byte {
	k := make([]byte, 0, 9)
	k = append(k, prefixIndex)
	k = binary.BigEndian.AppendUint32(k, coll)
	return binary.BigEndian.AppendUint32(k, idx)
}

const indexPrefixLen = 9

// indexEntryKey returns i | coll | idx | tuple | idKey | len(idKey).
func indexEntryKey(coll, idx uint32, tuple, idKey []byte) []byte {
	k := make([]byte, 0, indexPrefixLen+len(tuple)+len(idKey)+idTrailerLen)
	k = append(k, prefixIndex)
	k = binary.BigEndian.AppendUint32(k, coll)
	k = binary.BigEndian.AppendUint32(k, idx)
	k = append(k, tuple...)
	k = append(k, idKey...)
	return binary.BigEndian.AppendUint32(k, uint32(len(idKey)))
}

// splitIndexEntry splits an index entry key into its tuple and its key(_id).
// The returned slices alias key.
func splitIndexEntry(key []byte) (tuple, idKey []byte, err error) {
	if len(key) < indexPrefixLen+idTrailerLen {
		return nil, nil, fmt.Errorf("index entry %x: too short: %w", key, ErrCorrupt)
	}
	n := int(binary.BigEndian.Uint32(key[len(key)-idTrailerLen:]))
	body := key[indexPrefixLen : len(key)-idTrailerLen]
	if n == 0 || n > len(body) {
		return nil, nil, fmt.Errorf("index entry %x: bad _id length %d: %w", key, n, ErrCorrupt)
	}
	return body[:len(body)-n], body[len(body)-n:], nil
}

// oplogKey returns o | term | index.
func oplogKey(t OpTime) []byte {
	k := make([]byte, 0, 17)
	k = append(k, prefixOplog)
	k = binary.BigEndian.AppendUint64(k, t.Term)
	return binary.BigEndian.AppendUint64(k, t.Index)
}

func decodeOpTime(b []byte) (OpTime, error) {
	if len(b) != 16 {
		return OpTime{}, fmt.Errorf("optime of %d bytes: %w", len(b), ErrCorrupt)
	}
	return OpTime{Term: binary.BigEndian.Uint64(b), Index: binary.BigEndian.Uint64(b[8:])}, nil
}

func encodeOpTime(t OpTime) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), t.Term)
	return binary.BigEndian.AppendUint64(b, t.Index)
}

// prefixEnd returns the smallest key greater than every key that starts with
// p, or nil when there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// successor returns the smallest key greater than k.
func successor(k []byte) []byte {
	return append(append(make([]byte, 0, len(k)+1), k...), 0)
}
