package server

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/psdb/psdb/pkg/logging"
	"github.com/psdb/psdb/pkg/mongoerr"
)

// closeCounter is a sliceSource that counts Close calls.
type closeCounter struct {
	sliceSource
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return c.sliceSource.Close() }

func TestCursorRegistry(t *testing.T) {
	r := newCursorRegistry(time.Hour, logging.Nop())
	defer r.close()
	src := &closeCounter{sliceSource: sliceSource{docs: []bson.Raw{{5, 0, 0, 0, 0}, {5, 0, 0, 0, 0}}}}
	_, cancel := r.context()
	c, err := r.add("a.b", src, cancel)
	if err != nil {
		t.Fatal(err)
	}
	// add returns the cursor busy: a second user is refused.
	if _, err := r.acquire(c.id, ""); mongoerr.CodeOf(err) != mongoerr.CursorInUse {
		t.Fatalf("acquire of a busy cursor: %v", err)
	}
	r.release(c, false)
	if _, err := r.acquire(c.id, "a.other"); mongoerr.CodeOf(err) != mongoerr.Unauthorized {
		t.Fatalf("acquire with another namespace: %v", err)
	}
	got, err := r.acquire(c.id, "a.b")
	if err != nil || got != c {
		t.Fatalf("acquire: %v", err)
	}
	// Killing a busy cursor defers the close to its release.
	killed, notFound := r.kill([]int64{c.id, 99})
	if len(killed) != 1 || len(notFound) != 1 || src.closed != 0 {
		t.Fatalf("kill busy: killed %v notFound %v closed %d", killed, notFound, src.closed)
	}
	if _, err := r.acquire(c.id, ""); mongoerr.CodeOf(err) != mongoerr.CursorNotFound {
		t.Fatalf("acquire of a killed cursor: %v", err)
	}
	r.release(c, false)
	if src.closed != 1 || r.len() != 0 {
		t.Fatalf("after release: closed %d, open %d", src.closed, r.len())
	}
	// After close, nothing new is registered.
	r.close()
	_, cancel = r.context()
	if _, err := r.add("a.b", &sliceSource{}, cancel); mongoerr.CodeOf(err) != mongoerr.InterruptedAtShutdown {
		t.Fatalf("add after close: %v", err)
	}
}

func TestCursorFill(t *testing.T) {
	big := make([]byte, 6<<20)
	d, _ := bson.Marshal(bson.D{{Key: "b", Value: big}})
	small := bson.Raw{5, 0, 0, 0, 0}
	tests := []struct {
		name      string
		docs      []bson.Raw
		n         int
		wantLen   int
		exhausted bool
	}{
		{"count bound", []bson.Raw{small, small, small}, 2, 2, false},
		{"exact end", []bson.Raw{small, small}, 2, 2, true},
		{"bytes bound", []bson.Raw{d, d, d, d}, 0, 2, false},
		{"one oversized doc still goes", []bson.Raw{d}, 0, 1, true},
		{"empty", nil, 5, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &cursor{src: &sliceSource{docs: append([]bson.Raw(nil), tt.docs...)}, cancel: func() {}}
			b, ex, err := c.fill(tt.n)
			if err != nil || len(b) != tt.wantLen || ex != tt.exhausted {
				t.Fatalf("fill: %d docs exhausted=%v err=%v", len(b), ex, err)
			}
		})
	}
}
