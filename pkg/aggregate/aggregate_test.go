package aggregate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/mongoerr"
)

func jdocs(t testing.TB, js string) []bson.Raw {
	t.Helper()
	var w struct {
		V []bson.Raw `bson:"v"`
	}
	if err := bson.UnmarshalExtJSON([]byte(`{"v":`+js+`}`), false, &w); err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	return w.V
}

func mustParse(t testing.TB, pipeline string) *Pipeline {
	t.Helper()
	p, err := Parse(jdocs(t, pipeline))
	if err != nil {
		t.Fatalf("parse %s: %v", pipeline, err)
	}
	return p
}

func TestSplitPlacement(t *testing.T) {
	tests := []struct {
		name      string
		pipeline  string
		shard     []string
		merge     []string
		mergeSort bool
	}{
		{"streaming only", `[{"$match": {"a": 1}}, {"$project": {"a": 1}}, {"$unwind": "$a"}]`,
			[]string{"$match", "$project", "$unwind"}, []string{}, false},
		{"group split", `[{"$match": {}}, {"$group": {"_id": "$a", "n": {"$sum": 1}}}, {"$sort": {"n": -1}}]`,
			[]string{"$match", "$group"}, []string{"$group", "$sort"}, false},
		{"group with first not split", `[{"$group": {"_id": "$a", "f": {"$first": "$b"}}}]`,
			[]string{}, []string{"$group"}, false},
		{"sort then limit", `[{"$sort": {"a": 1}}, {"$skip": 5}, {"$limit": 10}, {"$project": {"a": 1}}]`,
			[]string{"$sort"}, []string{"$skip", "$limit", "$project"}, true},
		{"limit", `[{"$limit": 3}, {"$addFields": {"x": 1}}]`,
			[]string{"$limit"}, []string{"$limit", "$addFields"}, false},
		{"skip then limit", `[{"$skip": 2}, {"$limit": 3}]`,
			[]string{"$limit"}, []string{"$skip", "$limit"}, false},
		{"count", `[{"$count": "n"}]`,
			[]string{"$group"}, []string{"$group", "$project"}, false},
		{"sortByCount", `[{"$sortByCount": "$a"}]`,
			[]string{"$group"}, []string{"$group", "$sort"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			shard, merge := mustParse(t, tc.pipeline).Split()
			if got := shard.Stages(); !reflect.DeepEqual(got, tc.shard) {
				t.Errorf("shard stages %v, want %v", got, tc.shard)
			}
			if got := merge.Stages(); !reflect.DeepEqual(got, tc.merge) {
				t.Errorf("merge stages %v, want %v", got, tc.merge)
			}
			if (merge.MergeSort() != nil) != tc.mergeSort {
				t.Errorf("merge sort %v, want %v", merge.MergeSort() != nil, tc.mergeSort)
			}
		})
	}
	// The shard's $sort keeps skip+limit documents.
	shard, _ := mustParse(t, `[{"$sort": {"a": 1}}, {"$skip": 5}, {"$limit": 10}]`).Split()
	if got := shard.stages[0].(*sortStage).limit; got != 15 {
		t.Fatalf("shard sort limit %d, want 15", got)
	}
	shard, _ = mustParse(t, `[{"$skip": 2}, {"$limit": 3}]`).Split()
	if got := shard.stages[0].(*limitStage).n; got != 5 {
		t.Fatalf("shard limit %d, want 5", got)
	}
}

func TestMemoryLimit(t *testing.T) {
	var docs []bson.Raw
	for i := 0; i < 2000; i++ {
		d, _ := bson.Marshal(bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: fmt.Sprintf("%0500d", i)}})
		docs = append(docs, d)
	}
	for _, pl := range []string{
		`[{"$sort": {"pad": -1}}]`,
		`[{"$group": {"_id": "$_id", "all": {"$push": "$pad"}}}]`,
		`[{"$group": {"_id": null, "all": {"$addToSet": "$pad"}}}]`,
	} {
		p := mustParse(t, pl)
		p.MemoryLimit = 100 << 10
		_, err := p.Run(context.Background(), docs)
		if mongoerr.CodeOf(err) != mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed {
			t.Errorf("%s: want code 292, got %v", pl, err)
		}
	}
	// A $sort followed by a $limit keeps only the top documents and fits.
	p := mustParse(t, `[{"$sort": {"pad": -1}}, {"$limit": 3}]`)
	p.MemoryLimit = 100 << 10
	out, err := p.Run(context.Background(), docs)
	if err != nil || len(out) != 3 || out[0].Lookup("_id").Int32() != 1999 {
		t.Fatalf("top-k sort: %d docs, err %v", len(out), err)
	}
}

// blockingInput is a Source that never ends until its context is cancelled.
type endlessSource struct{ n int }

func (s *endlessSource) Next(ctx context.Context) (bson.Raw, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.n++
	d, _ := bson.Marshal(bson.D{{Key: "_id", Value: s.n}, {Key: "g", Value: s.n % 7}})
	return d, nil
}

func TestCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	src := &endlessSource{}
	out := mustParse(t, `[{"$group": {"_id": "$g", "n": {"$sum": 1}}}]`).Stream(src)
	done := make(chan error, 1)
	go func() {
		_, err := out.Next(ctx)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

func TestLimitStopsReading(t *testing.T) {
	src := &endlessSource{}
	out, err := Collect(context.Background(), mustParse(t, `[{"$match": {"g": 3}}, {"$limit": 2}]`).Stream(src))
	if err != nil || len(out) != 2 {
		t.Fatalf("got %d docs, err %v", len(out), err)
	}
	if src.n != 10 {
		t.Fatalf("read %d input documents, want 10", src.n)
	}
}

func TestMergeSorted(t *testing.T) {
	p := mustParse(t, `[{"$sort": {"a": 1}}]`)
	_, merge := p.Split()
	streams := [][]bson.Raw{
		jdocs(t, `[{"a": 1}, {"a": 4}, {"a": 9}]`),
		jdocs(t, `[{"a": 2}, {"a": 3}]`),
		nil,
		jdocs(t, `[{"a": 0}, {"a": 10}]`),
	}
	var got []int32
	for _, d := range merge.MergeSorted(streams) {
		got = append(got, d.Lookup("a").Int32())
	}
	if want := []int32{0, 1, 2, 3, 4, 9, 10}; !reflect.DeepEqual(got, want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
}

func TestStageErrors(t *testing.T) {
	tests := []struct {
		pipeline string
		code     mongoerr.Code
	}{
		{`[{"$bogus": 1}]`, 40324},
		{`[{}]`, 40323},
		{`[{"$group": {"_id": 1, "x": {"$sum": "$$nope"}}}]`, 0},
		{`[{"$group": {"_id": 1, "x": {"$count": 1}}}]`, mongoerr.TypeMismatch},
		{`[{"$group": {"_id": 1, "_id": 2}}]`, 15948},
		{`[{"$project": {"a": {}}}]`, 51270},
		{`[{"$project": {"a": 0, "b": {"$add": [1]}}}]`, 31252},
		{`[{"$project": {"a.b": 1, "a": 1}}]`, 31250},
		{`[{"$unwind": {"path": "$a", "bogus": 1}}]`, 28811},
		{`[{"$unwind": {"path": 1}}]`, 28808},
		{`[{"$replaceRoot": 1}]`, 40229},
		{`[{"$replaceRoot": {"newRoot": "$a", "x": 1}}]`, 40415},
		{`[{"$sort": 1}]`, 15973},
		{`[{"$limit": 1.5}]`, 15957},
		{`[{"$unset": 1}]`, 31002},
		{`[{"$count": 1}]`, 40156},
		{`[{"$addFields": {"$a": 1}}]`, 16410},
	}
	for _, tc := range tests {
		_, err := Parse(jdocs(t, tc.pipeline))
		if tc.code == 0 {
			if err != nil {
				t.Errorf("%s: unexpected parse error %v", tc.pipeline, err)
			}
			continue
		}
		if mongoerr.CodeOf(err) != tc.code {
			t.Errorf("%s: want code %d, got %v", tc.pipeline, tc.code, err)
		}
	}
}

func TestProjectShapes(t *testing.T) {
	tests := []struct {
		name, pipeline, in, want string
	}{
		{"computed id first", `[{"$project": {"a": 1, "_id": "$a"}}]`, `[{"_id": 1, "a": 2}]`, `[{"_id": 2, "a": 2}]`},
		{"id only inclusion", `[{"$project": {"_id": 1}}]`, `[{"_id": 1, "a": 2}]`, `[{"_id": 1}]`},
		{"computed into existing subdocument", `[{"$project": {"a.b": 1, "a.c": {"$literal": 5}}}]`, `[{"_id": 1, "a": {"b": 1, "x": 2}}]`, `[{"_id": 1, "a": {"b": 1, "c": 5}}]`},
		{"computed replaces scalar", `[{"$project": {"a.c": "x"}}]`, `[{"_id": 1, "a": 5}]`, `[{"_id": 1, "a": {"c": "x"}}]`},
		{"computed into array elements", `[{"$addFields": {"a.c": 1}}]`, `[{"_id": 1, "a": [{"b": 1}, 2]}]`, `[{"_id": 1, "a": [{"b": 1, "c": 1}, {"c": 1}]}]`},
		{"addFields remove", `[{"$addFields": {"a": "$$REMOVE"}}]`, `[{"_id": 1, "a": 2, "b": 3}]`, `[{"_id": 1, "b": 3}]`},
		{"unset through array", `[{"$unset": "a.b"}]`, `[{"_id": 1, "a": [{"b": 1, "c": 2}, 5]}]`, `[{"_id": 1, "a": [{"c": 2}, 5]}]`},
		{"unwind index nested", `[{"$unwind": {"path": "$a", "includeArrayIndex": "i.j"}}]`, `[{"_id": 1, "a": [7]}]`, `[{"_id": 1, "a": 7, "i": {"j": {"$numberLong": "0"}}}]`},
		{"group by document key order", `[{"$group": {"_id": {"x": "$x"}, "n": {"$sum": 1}}}]`, `[{"x": 1}, {"x": 1.0}]`, `[{"_id": {"x": 1}, "n": 2}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := mustParse(t, tc.pipeline).Run(context.Background(), jdocs(t, tc.in))
			if err != nil {
				t.Fatal(err)
			}
			want := jdocs(t, tc.want)
			if len(out) != len(want) {
				t.Fatalf("got %v, want %v", out, want)
			}
			for i := range out {
				if !bytesEqualDoc(out[i], want[i]) {
					t.Fatalf("got %v, want %v", out[i], want[i])
				}
			}
		})
	}
}

func bytesEqualDoc(a, b bson.Raw) bool {
	return compareDocs(a, b) == 0
}

func TestSourceEOF(t *testing.T) {
	src := mustParse(t, `[{"$sort": {"a": 1}}]`).Stream(FromSlice(nil))
	for i := 0; i < 2; i++ {
		if _, err := src.Next(context.Background()); !errors.Is(err, io.EOF) {
			t.Fatalf("want io.EOF, got %v", err)
		}
	}
}

func TestLetVariables(t *testing.T) {
	p := mustParse(t, `[{"$project": {"_id": 0, "v": {"$multiply": ["$a", "$$factor"]}}}]`)
	p.Let = map[string]bson.RawValue{"factor": {Type: bson.TypeInt32, Value: []byte{3, 0, 0, 0}}}
	out, err := p.Run(context.Background(), jdocs(t, `[{"a": 2}]`))
	if err != nil || len(out) != 1 || out[0].Lookup("v").Int32() != 6 {
		t.Fatalf("got %v, %v", out, err)
	}
	// Without the variable the expression fails with 17276.
	p.Let = nil
	if _, err := p.Run(context.Background(), jdocs(t, `[{"a": 2}]`)); mongoerr.CodeOf(err) != 17276 {
		t.Fatalf("want 17276, got %v", err)
	}
}

// TestConcurrentRuns runs one parsed pipeline from several goroutines (run
// with -race): a Pipeline is immutable and every run has its own state.
func TestConcurrentRuns(t *testing.T) {
	p := mustParse(t, `[{"$addFields": {"x": {"$map": {"input": [1, 2], "in": {"$add": ["$$this", "$$k"]}}}}},
		{"$group": {"_id": "$g", "n": {"$sum": 1}, "xs": {"$push": "$x"}}}, {"$sort": {"_id": 1}}, {"$limit": 2}]`)
	p.Let = map[string]bson.RawValue{"k": {Type: bson.TypeInt32, Value: []byte{1, 0, 0, 0}}}
	docs := jdocs(t, `[{"g": 1}, {"g": 2}, {"g": 1}, {"g": 3}]`)
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			out, err := p.Run(context.Background(), docs)
			if err == nil && (len(out) != 2 || out[0].Lookup("n").Int32() != 2) {
				err = fmt.Errorf("unexpected output %v", out)
			}
			errs <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestPipelineLengthLimit(t *testing.T) {
	stage := jdocs(t, `[{"$limit": 5}]`)[0]
	long := make([]bson.Raw, MaxStages+1)
	for i := range long {
		long[i] = stage
	}
	if _, err := Parse(long); mongoerr.CodeOf(err) != 7749501 {
		t.Fatalf("want 7749501, got %v", err)
	}
	if _, err := Parse(long[:MaxStages]); err != nil {
		t.Fatalf("%d stages refused: %v", MaxStages, err)
	}
}

func TestMergeStreamsDescendingAndTies(t *testing.T) {
	_, merge := mustParse(t, `[{"$sort": {"a": -1}}]`).Split()
	streams := []Source{
		FromSlice(jdocs(t, `[{"a": 5, "s": 0}, {"a": 1, "s": 0}]`)),
		FromSlice(jdocs(t, `[{"a": [0, 9], "s": 1}, {"a": 5, "s": 1}, {"a": 3, "s": 1}]`)),
	}
	out, err := Collect(context.Background(), MergeStreams(merge.MergeSort(), streams))
	if err != nil {
		t.Fatal(err)
	}
	// [0, 9] sorts by its largest element when descending: first. The two
	// 5s keep stream order.
	var got []int32
	for _, d := range out {
		got = append(got, d.Lookup("s").Int32())
	}
	if want := []int32{1, 0, 1, 1, 0}; !reflect.DeepEqual(got, want) || out[0].Lookup("a").Type != bson.TypeArray {
		t.Fatalf("merged streams %v, want %v", got, want)
	}
	// Concatenation when there is no sort.
	cat, err := Collect(context.Background(), MergeStreams(nil, []Source{FromSlice(jdocs(t, `[{"x": 1}]`)), FromSlice(nil), FromSlice(jdocs(t, `[{"x": 2}]`))}))
	if err != nil || len(cat) != 2 || cat[1].Lookup("x").Int32() != 2 {
		t.Fatalf("concatenation: %v, %v", cat, err)
	}
}
