package server

import (
	"bytes"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/shardd/server/servertest"
	"github.com/psdb/psdb/shardd/storage"
)

// TestCloneSnapshotSessions: the statement records follow the documents
// in chunks without ns, within both chunk bounds (a long session split),
// before the done chunk, and carry exactly the snapshot's records.
func TestCloneSnapshotSessions(t *testing.T) {
	ctx := ctxT(t)
	eng := servertest.OpenStore(t, "", storage.Options{NoSync: true})
	if _, err := eng.Insert(ctx, "db.a", []bson.Raw{raw(t, bson.D{{Key: "_id", Value: 1}})}, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	lsid := func(i int) []byte {
		return raw(t, bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{byte(i)}, 16)}}})
	}
	want := 0
	for i := range 6 {
		for s := range 1 + i {
			w := storage.StmtWrite{
				Statement: storage.Statement{LSID: lsid(i), TxnNumber: int64(i + 1), StmtID: int32(s)},
				Result:    raw(t, bson.D{{Key: "n", Value: int64(s)}, {Key: "pad", Value: fmt.Sprint(i, s)}}),
			}
			if _, _, err := eng.RecordStatement(ctx, w); err != nil {
				t.Fatal(err)
			}
			want++
		}
	}
	snap, err := eng.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	all, next, err := snap.ScanSessions(nil, 1000, 1<<20)
	_ = snap.Close()
	if err != nil || next != nil {
		t.Fatal(next, err)
	}
	flatten := func(ss []storage.RefetchedSession) []string {
		var out []string
		for _, s := range ss {
			for _, r := range s.Records {
				out = append(out, fmt.Sprintf("%x %d %d %v %x", s.LSID, r.TxnNumber, r.StmtID, r.Record.OpTime, []byte(r.Record.Result)))
			}
		}
		return out
	}
	wantRecs := flatten(all)
	if len(wantRecs) != want {
		t.Fatalf("%d records in the snapshot, want %d", len(wantRecs), want)
	}
	for _, bound := range []struct{ entries, bytes int }{{4, 1 << 20}, {1000, 200}} {
		c, _ := serveClone(t, eng, bound.entries, bound.bytes)
		chunks, err := cloneAll(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		sessionChunks := 0
		for i, ch := range chunks {
			if len(ch.GetSessions()) == 0 {
				continue
			}
			sessionChunks++
			if ch.GetNs() != "" || len(ch.GetDocuments()) > 0 || ch.GetDone() || i == 0 || chunks[i-1].GetDone() {
				t.Fatalf("chunk %d with sessions: ns %q, %d documents, done %v", i, ch.GetNs(), len(ch.GetDocuments()), ch.GetDone())
			}
			if i+1 < len(chunks) && chunks[i+1].GetNs() != "" {
				t.Fatalf("a collection chunk after the sessions")
			}
			n, size := 0, 0
			var page []storage.RefetchedSession
			for _, s := range ch.GetSessions() {
				rs := storage.RefetchedSession{LSID: s.GetLsid()}
				size += len(s.GetLsid())
				for _, st := range s.GetStatements() {
					rs.Records = append(rs.Records, storage.SessionRecord{TxnNumber: st.GetTxnNumber(), StmtID: st.GetStmtId(), Record: storage.StmtRecord{
						Result: st.GetResult(), OpTime: storage.OpTime{Term: st.GetOpTime().GetTerm(), Index: st.GetOpTime().GetIndex()},
					}})
					n++
					size += 32 + len(st.GetResult())
				}
				page = append(page, rs)
			}
			if n > bound.entries || (n > 1 && size > bound.bytes) {
				t.Fatalf("bounds %+v: chunk of %d records, %d bytes", bound, n, size)
			}
			got = append(got, flatten(page)...)
		}
		if fmt.Sprint(got) != fmt.Sprint(wantRecs) {
			t.Fatalf("bounds %+v: records sent\n%v\nwant\n%v", bound, got, wantRecs)
		}
		if min := (want + bound.entries - 1) / bound.entries; sessionChunks < min || sessionChunks < 2 {
			t.Fatalf("bounds %+v: %d chunks of records", bound, sessionChunks)
		}
		if last := chunks[len(chunks)-1]; !last.GetDone() || len(last.GetSessions()) != 0 {
			t.Fatalf("last chunk %v", last)
		}
	}
}
