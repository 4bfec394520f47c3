package admin

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// render returns r's table and its JSON.
func render(t *testing.T, r Result) (string, string) {
	t.Helper()
	var tb, js bytes.Buffer
	if err := r.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(js.Bytes()) {
		t.Fatalf("invalid JSON: %s", js.String())
	}
	return tb.String(), js.String()
}

// compact strips the JSON's indentation.
func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func check(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n--- got\n%s\n--- want\n%s", what, got, want)
	}
}

func TestShardListRender(t *testing.T) {
	l := ShardList{Shards: []Shard{
		parseShard(mustRaw(t, bson.D{{Key: "_id", Value: "shard1"}, {Key: "host", Value: "shard1/127.0.0.1:1,127.0.0.1:2"}, {Key: "state", Value: int32(1)}})),
		parseShard(mustRaw(t, bson.D{{Key: "_id", Value: "s2"}, {Key: "host", Value: "s2/h:3"}, {Key: "state", Value: int32(1)}, {Key: "draining", Value: true}})),
	}}
	tb, js := render(t, l)
	check(t, "table", tb, ""+
		"SHARD   STATE     MEMBERS\n"+
		"shard1  active    127.0.0.1:1,127.0.0.1:2\n"+
		"s2      draining  h:3\n")
	check(t, "json", compact(t, js), `{"shards":[{"name":"shard1","host":"shard1/127.0.0.1:1,127.0.0.1:2","state":"active","members":["127.0.0.1:1","127.0.0.1:2"]},`+
		`{"name":"s2","host":"s2/h:3","state":"draining","members":["h:3"]}]}`)
}

func TestRemoveProgressRender(t *testing.T) {
	started := parseRemove("s2", mustRaw(t, bson.D{{Key: "msg", Value: "draining started successfully"}, {Key: "state", Value: "started"},
		{Key: "shard", Value: "s2"}, {Key: "note", Value: "n"}, {Key: "dbsToMove", Value: bson.A{"db1"}}, {Key: "collectionsToMove", Value: bson.A{}}, {Key: "ok", Value: 1.0}}))
	tb, js := render(t, started)
	check(t, "started table", tb, ""+
		"SHARD                s2\n"+
		"STATE                started\n"+
		"MSG                  draining started successfully\n"+
		"DBS TO MOVE          db1\n"+
		"COLLECTIONS TO MOVE  -\n"+
		"NOTE                 n\n")
	check(t, "started json", compact(t, js), `{"shard":"s2","state":"started","msg":"draining started successfully","remainingChunks":0,"remainingDBs":0,"jumboChunks":0,"dbsToMove":["db1"],"collectionsToMove":[],"note":"n"}`)
	check(t, "started line", started.Line(), "removeShard s2: started; dbsToMove=[db1] collectionsToMove=[]")

	ongoing := parseRemove("s2", mustRaw(t, bson.D{{Key: "msg", Value: "draining ongoing"}, {Key: "state", Value: "ongoing"},
		{Key: "remaining", Value: bson.D{{Key: "chunks", Value: int64(3)}, {Key: "dbs", Value: int64(1)}, {Key: "jumboChunks", Value: int64(0)}}},
		{Key: "dbsToMove", Value: bson.A{"db1"}}, {Key: "collectionsToMove", Value: bson.A{"db1.c"}}}))
	tb, _ = render(t, ongoing)
	check(t, "ongoing table", tb, ""+
		"SHARD                s2\n"+
		"STATE                ongoing\n"+
		"MSG                  draining ongoing\n"+
		"REMAINING CHUNKS     3\n"+
		"REMAINING DBS        1\n"+
		"JUMBO CHUNKS         0\n"+
		"DBS TO MOVE          db1\n"+
		"COLLECTIONS TO MOVE  db1.c\n")
	check(t, "ongoing line", ongoing.Line(), "removeShard s2: ongoing; remaining chunks=3 dbs=1 jumbo=0 dbsToMove=[db1]")

	done := parseRemove("s2", mustRaw(t, bson.D{{Key: "msg", Value: "removeshard completed successfully"}, {Key: "state", Value: "completed"}, {Key: "shard", Value: "s2"}}))
	tb, _ = render(t, done)
	check(t, "completed table", tb, "SHARD  s2\nSTATE  completed\nMSG    removeshard completed successfully\n")
	if !done.Completed() || ongoing.Completed() {
		t.Error("Completed")
	}
}

// TestFieldsRenderUnknown: balancerStatus fields that this package does
// not know (leader, inFlight, lastErrors) are shown, in the reply's order,
// and ok/$clusterTime/operationTime are not.
func TestFieldsRenderUnknown(t *testing.T) {
	reply := mustRaw(t, bson.D{
		{Key: "mode", Value: "full"}, {Key: "inBalancerRound", Value: false}, {Key: "numBalancerRounds", Value: int64(12)},
		{Key: "leader", Value: "router-1"},
		{Key: "inFlight", Value: bson.A{bson.D{{Key: "ns", Value: "db.c"}, {Key: "min", Value: bson.D{{Key: "x", Value: bson.MinKey{}}}}, {Key: "to", Value: "s2"}}}},
		{Key: "lastErrors", Value: bson.A{}},
		{Key: "lastRound", Value: bson.D{{Key: "verdict", Value: "balanced"}, {Key: "loads", Value: bson.D{{Key: "s1", Value: int32(2)}}}, {Key: "empty", Value: bson.D{}}}},
		{Key: "ok", Value: 1.0}, {Key: "$clusterTime", Value: bson.D{{Key: "clusterTime", Value: bson.Timestamp{T: 1}}}},
		{Key: "operationTime", Value: bson.Timestamp{T: 1}},
	})
	f, err := NewFields(reply)
	if err != nil {
		t.Fatal(err)
	}
	st := BalancerStatus{f}
	if st.Mode() != "full" {
		t.Errorf("Mode = %q", st.Mode())
	}
	tb, js := render(t, st)
	check(t, "table", tb, ""+
		"FIELD               VALUE\n"+
		"mode                full\n"+
		"inBalancerRound     false\n"+
		"numBalancerRounds   12\n"+
		"leader              router-1\n"+
		"inFlight            (1)\n"+
		"  -                 { ns: \"db.c\", min: { x: MinKey }, to: \"s2\" }\n"+
		"lastErrors          []\n"+
		"lastRound.verdict   balanced\n"+
		"lastRound.loads.s1  2\n"+
		"lastRound.empty     {}\n")
	check(t, "json", compact(t, js), `{"mode":"full","inBalancerRound":false,"numBalancerRounds":12,"leader":"router-1",`+
		`"inFlight":[{"ns":"db.c","min":{"x":{"$minKey":1}},"to":"s2"}],"lastErrors":[],`+
		`"lastRound":{"verdict":"balanced","loads":{"s1":2},"empty":{}}}`)

	ch := BalancerChange{Command: "balancerStop", Status: st}
	tb, js = render(t, ch)
	if !strings.HasPrefix(tb, "balancerStop: ok\nFIELD") {
		t.Errorf("change table:\n%s", tb)
	}
	if !strings.Contains(compact(t, js), `"command":"balancerStop","status":{"mode":"full"`) {
		t.Errorf("change json: %s", js)
	}
}

func chunkDoc(t *testing.T, ns string, min, max any, shard string, major uint32) bson.Raw {
	return mustRaw(t, bson.D{{Key: "_id", Value: "x"}, {Key: "ns", Value: ns}, {Key: "min", Value: bson.D{{Key: "k", Value: min}}},
		{Key: "max", Value: bson.D{{Key: "k", Value: max}}}, {Key: "shard", Value: shard}, {Key: "lastmod", Value: bson.Timestamp{T: major, I: 1}}})
}

func TestChunkListRender(t *testing.T) {
	var l ChunkList
	for _, d := range []bson.Raw{
		chunkDoc(t, "db.c", bson.MinKey{}, int32(0), "s1", 1),
		chunkDoc(t, "db.c", int32(0), bson.MaxKey{}, "s2", 2),
		chunkDoc(t, "db.d", bson.MinKey{}, bson.MaxKey{}, "s1", 1),
	} {
		l.Chunks = append(l.Chunks, parseChunk(d))
	}
	l.PerShard = countChunks(l.Chunks)
	tb, js := render(t, l)
	check(t, "table", tb, ""+
		"NS    MIN            MAX            SHARD  VERSION\n"+
		"db.c  { k: MinKey }  { k: 0 }       s1     1|1\n"+
		"db.c  { k: 0 }       { k: MaxKey }  s2     2|1\n"+
		"db.d  { k: MinKey }  { k: MaxKey }  s1     1|1\n"+
		"\n"+
		"NS    SHARD  CHUNKS\n"+
		"db.c  s1     1\n"+
		"db.c  s2     1\n"+
		"db.d  s1     1\n")
	check(t, "json", compact(t, js), `{"chunks":[`+
		`{"ns":"db.c","min":{"k":{"$minKey":1}},"max":{"k":0},"shard":"s1","version":"1|1"},`+
		`{"ns":"db.c","min":{"k":0},"max":{"k":{"$maxKey":1}},"shard":"s2","version":"2|1"},`+
		`{"ns":"db.d","min":{"k":{"$minKey":1}},"max":{"k":{"$maxKey":1}},"shard":"s1","version":"1|1"}],`+
		`"perShard":[{"ns":"db.c","shard":"s1","chunks":1},{"ns":"db.c","shard":"s2","chunks":1},{"ns":"db.d","shard":"s1","chunks":1}]}`)
}

func TestMoveSplitRender(t *testing.T) {
	find := mustRaw(t, bson.D{{Key: "k", Value: int32(5)}})
	tb, js := render(t, MoveResult{NS: "db.c", Find: Doc(find), To: "s2", Millis: 40})
	check(t, "move table", tb, "moved the chunk of db.c holding { k: 5 } to s2 in 40 ms\n")
	check(t, "move json", compact(t, js), `{"ns":"db.c","find":{"k":5},"to":"s2","waitForDelete":false,"millis":40}`)
	tb, js = render(t, SplitResult{NS: "db.c", Middle: Doc(find), Chunks: 3})
	check(t, "split table", tb, "split the chunk of db.c at { k: 5 }; db.c has 3 chunks\n")
	check(t, "split json", compact(t, js), `{"ns":"db.c","middle":{"k":5},"chunks":3}`)
	tb, _ = render(t, SplitResult{NS: "db.c", Find: Doc(find), Chunks: 4})
	check(t, "split find table", tb, "split the chunk of db.c holding { k: 5 } at its median; db.c has 4 chunks\n")
}

func TestRSStatusRender(t *testing.T) {
	doc := mustRaw(t, bson.D{
		{Key: "set", Value: "s1"}, {Key: "myState", Value: int32(1)}, {Key: "term", Value: int64(3)},
		{Key: "optimes", Value: bson.D{{Key: "lastCommittedOpTime", Value: bson.D{{Key: "t", Value: int64(3)}, {Key: "i", Value: int64(41)}}}}},
		{Key: "members", Value: bson.A{
			bson.D{{Key: "_id", Value: int32(0)}, {Key: "name", Value: "127.0.0.1:1"}, {Key: "member", Value: "s1a"}, {Key: "health", Value: 1.0},
				{Key: "state", Value: int32(1)}, {Key: "stateStr", Value: "PRIMARY"}, {Key: "optime", Value: bson.D{{Key: "t", Value: int64(3)}, {Key: "i", Value: int64(42)}}},
				{Key: "lagMillis", Value: int64(0)}, {Key: "syncSourceHost", Value: ""}},
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "name", Value: "127.0.0.1:2"}, {Key: "member", Value: "s1b"}, {Key: "health", Value: 1.0},
				{Key: "state", Value: int32(2)}, {Key: "stateStr", Value: "SECONDARY"}, {Key: "optime", Value: bson.D{{Key: "t", Value: int64(3)}, {Key: "i", Value: int64(40)}}},
				{Key: "lagMillis", Value: int64(15)}, {Key: "syncSourceHost", Value: "127.0.0.1:1"}},
			bson.D{{Key: "_id", Value: int32(2)}, {Key: "name", Value: "127.0.0.1:3"}, {Key: "member", Value: "s1c"}, {Key: "health", Value: 0.0},
				{Key: "state", Value: int32(8)}, {Key: "stateStr", Value: "(not reachable/healthy)"}, {Key: "lastHeartbeatMessage", Value: "connection refused"}},
		}},
	})
	st := RSStatus{Shards: []ShardRS{parseShardRS("s1", doc)}}
	sh, ok := st.Shard("s1")
	if !ok || sh.Primary() != "s1a" || sh.Healthy() != 2 {
		t.Fatalf("Shard/Primary/Healthy: %+v", sh)
	}
	tb, js := render(t, st)
	check(t, "table", tb, ""+
		"shard s1  set s1  term 3  commit point 3:41\n"+
		"MEMBER  NAME         STATE                    HEALTH  TERM  OPTIME  LAG   SYNC SOURCE\n"+
		"s1a     127.0.0.1:1  PRIMARY                  1       3     3:42    0s    -\n"+
		"s1b     127.0.0.1:2  SECONDARY                1       3     3:40    15ms  127.0.0.1:1\n"+
		"s1c     127.0.0.1:3  (not reachable/healthy)  0       -     -       -     connection refused\n")
	check(t, "json", compact(t, js), `{"shards":[{"shard":"s1","set":"s1","term":3,"lastCommittedOpTime":{"t":3,"i":41},"members":[`+
		`{"_id":0,"member":"s1a","name":"127.0.0.1:1","stateStr":"PRIMARY","health":1,"optime":{"t":3,"i":42},"lagMillis":0},`+
		`{"_id":1,"member":"s1b","name":"127.0.0.1:2","stateStr":"SECONDARY","health":1,"optime":{"t":3,"i":40},"lagMillis":15,"syncSourceHost":"127.0.0.1:1"},`+
		`{"_id":2,"member":"s1c","name":"127.0.0.1:3","stateStr":"(not reachable/healthy)","health":0,"lagMillis":0,"lastHeartbeatMessage":"connection refused"}]}]}`)

	tb, js = render(t, StepDownResult{Shard: "s1", SteppedDown: "s1a", Host: "127.0.0.1:1", NewPrimary: "s1b"})
	check(t, "stepdown table", tb, "shard s1: s1a (127.0.0.1:1) stepped down; new primary s1b\n")
	check(t, "stepdown json", compact(t, js), `{"shard":"s1","steppedDown":"s1a","host":"127.0.0.1:1","newPrimary":"s1b"}`)
}

func TestSummaryRender(t *testing.T) {
	f, err := NewFields(mustRaw(t, bson.D{{Key: "mode", Value: "off"}, {Key: "ok", Value: 1.0}}))
	if err != nil {
		t.Fatal(err)
	}
	s := Summary{
		Shards:      []SummaryShard{{Name: "s1", State: "active", Primary: "s1a", Healthy: 3, Members: 3, Term: 2}, {Name: "s2", State: "draining", Members: 1}},
		Databases:   []SummaryDatabase{{Name: "db", Primary: "s1", Partitioned: true}},
		Collections: []SummaryCollection{{NS: "db.c", Key: Doc(mustRaw(t, bson.D{{Key: "k", Value: int32(1)}})), Chunks: 3, PerShard: map[string]int{"s2": 1, "s1": 2}}},
		Balancer:    BalancerStatus{f},
		Routers:     []SummaryRouter{{Addr: "127.0.0.1:27017", ID: "r1", Ping: "2026-01-01T00:00:00Z"}},
	}
	tb, js := render(t, s)
	check(t, "table", tb, ""+
		"SHARD  STATE     PRIMARY  HEALTHY  TERM\n"+
		"s1     active    s1a      3/3      2\n"+
		"s2     draining  -        0/1      0\n"+
		"\n"+
		"DATABASE  PRIMARY SHARD  PARTITIONED\n"+
		"db        s1             true\n"+
		"\n"+
		"COLLECTION  SHARD KEY  CHUNKS  PER SHARD\n"+
		"db.c        { k: 1 }   3       s1=2 s2=1\n"+
		"\n"+
		"BALANCER\n"+
		"FIELD  VALUE\n"+
		"mode   off\n"+
		"\n"+
		"ROUTER           ID  PING\n"+
		"127.0.0.1:27017  r1  2026-01-01T00:00:00Z\n")
	check(t, "json", compact(t, js), `{"shards":[{"name":"s1","state":"active","primary":"s1a","healthyMembers":3,"members":3,"term":2},`+
		`{"name":"s2","state":"draining","primary":"","healthyMembers":0,"members":1,"term":0}],`+
		`"databases":[{"name":"db","primary":"s1","partitioned":true}],`+
		`"collections":[{"ns":"db.c","key":{"k":1},"unique":false,"chunks":3,"perShard":{"s1":2,"s2":1}}],`+
		`"balancer":{"mode":"off"},"routers":[{"addr":"127.0.0.1:27017","routerId":"r1","ping":"2026-01-01T00:00:00Z"}]}`)
}
