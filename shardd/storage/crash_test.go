package storage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The crash test runs real processes: the test binary re-executes itself
// as a child (TestMain sees crashChildEnv) that writes documents with index
// entries from several goroutines and prints every acknowledged operation;
// the parent SIGKILLs it after a random number of acknowledgements, reopens
// the store and checks that every acknowledged write is there, intact, and
// that Validate finds the indexes and statistics consistent. All cycles
// share one data directory, so each reopen also re-checks earlier cycles.

const (
	crashChildEnv  = "PSDB_STORAGE_CRASH_CHILD_DIR"
	crashCycleEnv  = "PSDB_STORAGE_CRASH_CYCLE"
	crashNS        = "crash.docs"
	crashWriters   = 8
	crashCycles    = 30
	crashChildLife = 60 * time.Second // a child whose parent vanished stops by itself
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		cycle, _ := strconv.Atoi(os.Getenv(crashCycleEnv))
		os.Exit(crashChild(dir, cycle))
	}
	os.Exit(m.Run())
}

// crashDoc is the document with _id id at version ver. The child writes it
// and the parent rebuilds it to compare bytes.
func crashDoc(id string, w, ver int) bson.Raw {
	b, err := bson.Marshal(bson.D{
		{Key: "_id", Value: id},
		{Key: "u", Value: id + "/" + strconv.Itoa(ver)},
		{Key: "w", Value: w},
		{Key: "v", Value: ver},
		{Key: "tags", Value: bson.A{ver % 5, (ver + 1) % 5, "t" + id}},
		{Key: "pad", Value: strings.Repeat("p", (len(id)*31+ver*17)%300)},
	})
	if err != nil {
		panic(err)
	}
	return b
}

var crashIndexes = []IndexSpec{
	{Key: []IndexKeyPart{{Field: "u"}}, Unique: true},
	{Key: []IndexKeyPart{{Field: "tags"}}},
	{Key: []IndexKeyPart{{Field: "w"}, {Field: "v", Desc: true}}},
}

// crashChild is the child process: it writes until killed. Protocol on
// stdout, one line per event, each written with one write call:
//
//	READY
//	P <op> <id> <writer> <ver>   about to write (may or may not happen)
//	A <op> <id> <writer> <ver>   acknowledged: Insert/Replace/Delete returned success
//
// op is i (insert), u (replace) or d (delete).
func crashChild(dir string, cycle int) int {
	e, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), crashChildLife)
	defer cancel()
	for _, spec := range crashIndexes {
		if _, err := e.CreateIndex(ctx, crashNS, spec); err != nil {
			fmt.Fprintln(os.Stderr, "create index:", err)
			return 2
		}
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	say("READY")
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cycle), uint64(w)))
			type live struct {
				id  string
				ver int
			}
			var docs []live
			for n := 0; ctx.Err() == nil; n++ {
				if w == 0 && n%25 == 24 {
					// A catalog change now and then, so kills also land in
					// index builds and drops.
					toggleCrashIndex(ctx, e)
					continue
				}
				switch r := rng.IntN(10); {
				case r < 6 || len(docs) == 0:
					id := fmt.Sprintf("c%d-w%d-%d", cycle, w, n)
					say("P i %s %d 0", id, w)
					res, err := e.Insert(ctx, crashNS, []bson.Raw{crashDoc(id, w, 0)}, WriteOptions{Ordered: true})
					if err != nil || res[0].Err != nil {
						fmt.Fprintln(os.Stderr, "insert:", err, res)
						os.Exit(3)
					}
					say("A i %s %d 0", id, w)
					docs = append(docs, live{id, 0})
				case r < 9:
					d := &docs[rng.IntN(len(docs))]
					say("P u %s %d %d", d.id, w, d.ver+1)
					ok, err := e.Replace(ctx, crashNS, bson.RawValue{Type: bson.TypeString, Value: bsonString(d.id)}, crashDoc(d.id, w, d.ver+1))
					if err != nil || !ok {
						fmt.Fprintln(os.Stderr, "replace:", ok, err)
						os.Exit(3)
					}
					d.ver++
					say("A u %s %d %d", d.id, w, d.ver)
				default:
					i := rng.IntN(len(docs))
					d := docs[i]
					say("P d %s %d %d", d.id, w, d.ver)
					ok, err := e.Delete(ctx, crashNS, bson.RawValue{Type: bson.TypeString, Value: bsonString(d.id)})
					if err != nil || !ok {
						fmt.Fprintln(os.Stderr, "delete:", ok, err)
						os.Exit(3)
					}
					say("A d %s %d %d", d.id, w, d.ver)
					docs = append(docs[:i], docs[i+1:]...)
				}
			}
		}()
	}
	wg.Wait()
	return 4 // only reached when the parent never killed us
}

// toggleCrashIndex creates the extra index when it is absent and drops it
// when it is present.
func toggleCrashIndex(ctx context.Context, e *Engine) {
	spec := IndexSpec{Key: []IndexKeyPart{{Field: "pad"}, {Field: "v"}}}
	name := DefaultIndexName(spec.Key)
	specs, err := e.ListIndexes(crashNS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "list indexes:", err)
		os.Exit(3)
	}
	for _, s := range specs {
		if s.Name == name {
			if err := e.DropIndex(ctx, crashNS, name); err != nil {
				fmt.Fprintln(os.Stderr, "drop index:", err)
				os.Exit(3)
			}
			return
		}
	}
	if _, err := e.CreateIndex(ctx, crashNS, spec); err != nil {
		fmt.Fprintln(os.Stderr, "create index:", err)
		os.Exit(3)
	}
}

// bsonString returns the value bytes of a BSON string.
func bsonString(s string) []byte {
	b := bson.Raw(mustMarshal(bson.D{{Key: "s", Value: s}})).Lookup("s")
	return b.Value
}

func mustMarshal(d bson.D) []byte {
	b, err := bson.Marshal(d)
	if err != nil {
		panic(err)
	}
	return b
}

// docState is what the parent expects of one _id.
type docState struct {
	exists bool
	w, ver int
}

type crashEvent struct {
	ack bool
	op  string
	id  string
	st  docState
}

func parseCrashLine(line string) (crashEvent, bool) {
	f := strings.Fields(line)
	if len(f) != 5 || (f[0] != "P" && f[0] != "A") {
		return crashEvent{}, false
	}
	w, err1 := strconv.Atoi(f[3])
	ver, err2 := strconv.Atoi(f[4])
	if err1 != nil || err2 != nil {
		return crashEvent{}, false
	}
	ev := crashEvent{ack: f[0] == "A", op: f[1], id: f[2]}
	if ev.op != "d" {
		ev.st = docState{exists: true, w: w, ver: ver}
	}
	return ev, true
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Log("-short: running 3 crash cycles instead of", crashCycles)
	}
	cycles := crashCycles
	if testing.Short() {
		cycles = 3
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	acked := map[string]docState{}   // state of each _id after its last acknowledged write
	pending := map[string]docState{} // state an unacknowledged write in flight would leave
	totalAcks, flying, landed := 0, 0, 0
	for cycle := range cycles {
		killAfter := 1 + rng.IntN(500)
		acks, stderr := runCrashChild(t, dir, cycle, killAfter, acked, pending)
		totalAcks += acks

		e, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("cycle %d: reopen after SIGKILL: %v\nchild stderr: %s", cycle, err, stderr)
		}
		present := int64(0)
		flying += len(pending)
		for id, want := range acked {
			doc, found, err := e.Get(crashNS, bson.RawValue{Type: bson.TypeString, Value: bsonString(id)})
			if err != nil {
				t.Fatalf("cycle %d: Get %s: %v", cycle, id, err)
			}
			got := docState{exists: found}
			if found {
				got.w = int(doc.Lookup("w").Int32())
				got.ver = int(doc.Lookup("v").Int32())
				if !bytes.Equal(doc, crashDoc(id, got.w, got.ver)) {
					t.Fatalf("cycle %d: document %s is damaged: %v", cycle, id, doc)
				}
				present++
			}
			p, inFlight := pending[id]
			if got != want && !(inFlight && got == p) {
				t.Fatalf("cycle %d: %s is %+v; acknowledged state %+v (write in flight: %v %+v)", cycle, id, got, want, inFlight, p)
			}
			if inFlight && got == p && got != want {
				landed++
			}
			acked[id] = got // what the next cycles must keep
		}
		// Writes that were announced but never acknowledged for _ids with no
		// acknowledged state (inserts): either outcome is allowed; record it.
		for id, p := range pending {
			if _, ok := acked[id]; ok {
				continue
			}
			doc, found, err := e.Get(crashNS, bson.RawValue{Type: bson.TypeString, Value: bsonString(id)})
			if err != nil {
				t.Fatal(err)
			}
			if found {
				if !bytes.Equal(doc, crashDoc(id, p.w, p.ver)) {
					t.Fatalf("cycle %d: unacknowledged insert %s is damaged: %v", cycle, id, doc)
				}
				present++
				acked[id] = p
				landed++
			}
		}
		clear(pending)
		res, err := e.Validate(context.Background(), crashNS)
		if err != nil {
			t.Fatalf("cycle %d: Validate: %v", cycle, err)
		}
		if !res.Valid || res.NRecords != present {
			t.Fatalf("cycle %d: Validate: valid=%v records=%d (expected %d) errors=%v", cycle, res.Valid, res.NRecords, present, res.Errors)
		}
		if _, err := e.ReadOplog(OpTime{}, 0); err != nil {
			t.Fatalf("cycle %d: oplog unreadable: %v", cycle, err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d cycles, %d acknowledged writes, %d documents tracked; %d writes were in flight at a kill, %d of them had landed",
		cycles, totalAcks, len(acked), flying, landed)
}

// runCrashChild starts a writer child, SIGKILLs it after killAfter
// acknowledgements, and folds its announced and acknowledged writes into
// acked and pending. It returns the number of acknowledgements.
func runCrashChild(t *testing.T, dir string, cycle, killAfter int, acked, pending map[string]docState) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashCycleEnv+"="+strconv.Itoa(cycle))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	acks := 0
	ready := false
	apply := func(line string) {
		if line == "READY" {
			ready = true
			return
		}
		ev, ok := parseCrashLine(line)
		if !ok {
			t.Fatalf("cycle %d: bad child line %q", cycle, line)
		}
		if ev.ack {
			acks++
			acked[ev.id] = ev.st
			delete(pending, ev.id)
		} else {
			pending[ev.id] = ev.st
		}
	}
	for !killed {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("cycle %d: child exited before the kill (ready=%v, %d acks): %s", cycle, ready, acks, stderr.String())
			}
			apply(line)
			if acks >= killAfter {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				killed = true
			}
		case <-deadline.C:
			t.Fatalf("cycle %d: child made no progress in time (ready=%v, %d acks): %s", cycle, ready, acks, stderr.String())
		}
	}
	// Everything the child wrote to the pipe before dying is still to be read.
	for line := range lines {
		apply(line)
	}
	_ = cmd.Wait()
	if !ready {
		t.Fatalf("cycle %d: child never became ready: %s", cycle, stderr.String())
	}
	return acks, stderr.String()
}
