package failpoint

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func phaseData(t *testing.T, phase string) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(bson.D{{Key: "phase", Value: phase}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func matchPhase(phase string) func(bson.Raw) bool {
	return func(d bson.Raw) bool {
		s, ok := d.Lookup("phase").StringValueOK()
		return ok && s == phase
	}
}

func TestOffIsInert(t *testing.T) {
	r := NewRegistry("p")
	if _, ok := r.Eval("p", nil); ok {
		t.Fatal("an off point was entered")
	}
	if _, ok := r.Eval("unknown", nil); ok {
		t.Fatal("an unknown point was entered")
	}
	entered, err := r.Hang(t.Context(), "p", nil)
	if entered || err != nil {
		t.Fatalf("Hang on an off point: %v, %v", entered, err)
	}
	st, err := r.State("p")
	if err != nil || st.Mode != Off || st.Entered != 0 {
		t.Fatalf("state %+v, %v", st, err)
	}
	if _, err := r.Configure("unknown", Setting{Mode: AlwaysOn}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("configure an unknown point: %v", err)
	}
	if _, err := r.State("unknown"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("state of an unknown point: %v", err)
	}
	if got := r.Names(); !slices.Equal(got, []string{"p"}) {
		t.Fatalf("names %v", got)
	}
}

func TestModesAndCount(t *testing.T) {
	r := NewRegistry("p")
	r.Register("p") // idempotent
	data := phaseData(t, "clone")
	if n, err := r.Configure("p", Setting{Mode: AlwaysOn, Data: data}); err != nil || n != 0 {
		t.Fatalf("configure: %d, %v", n, err)
	}
	// A non-matching evaluation does not enter.
	if _, ok := r.Eval("p", matchPhase("catchUp")); ok {
		t.Fatal("entered with another phase")
	}
	for range 3 {
		d, ok := r.Eval("p", matchPhase("clone"))
		if !ok || d.Lookup("phase").StringValue() != "clone" {
			t.Fatalf("not entered or wrong data: %v %s", ok, d)
		}
	}
	// {times: 2}: two more entries, then exhausted but still configured.
	if n, err := r.Configure("p", Setting{Mode: Times, Times: 2}); err != nil || n != 3 {
		t.Fatalf("configure times: count %d, %v; want 3", n, err)
	}
	hits := 0
	for range 5 {
		if _, ok := r.Eval("p", nil); ok {
			hits++
		}
	}
	if hits != 2 {
		t.Fatalf("times 2 entered %d times", hits)
	}
	st, _ := r.State("p")
	if st.Mode != Times || st.Times != 0 || st.Entered != 5 {
		t.Fatalf("state after times: %+v", st)
	}
	if n, _ := r.Configure("p", Setting{Mode: Off}); n != 5 {
		t.Fatalf("count at off: %d, want 5", n)
	}
	// times 0 is off; a negative count and an unknown mode are refused.
	if _, err := r.Configure("p", Setting{Mode: Times, Times: 0}); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.State("p"); st.Mode != Off {
		t.Fatalf("times 0: mode %v", st.Mode)
	}
	if _, err := r.Configure("p", Setting{Mode: Times, Times: -1}); err == nil {
		t.Fatal("negative times accepted")
	}
	if _, err := r.Configure("p", Setting{Mode: Mode(7)}); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

func TestHangUntilOff(t *testing.T) {
	r := NewRegistry("p")
	if _, err := r.Configure("p", Setting{Mode: AlwaysOn, Data: phaseData(t, "clone")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	type res struct {
		entered bool
		err     error
	}
	done := make(chan res, 2)
	for range 2 {
		go func() {
			e, err := r.Hang(ctx, "p", matchPhase("clone"))
			done <- res{e, err}
		}()
	}
	if err := r.WaitEntered(ctx, "p", 2); err != nil {
		t.Fatal(err)
	}
	// Re-configuring a point that stays on does not release the waiters.
	if _, err := r.Configure("p", Setting{Mode: AlwaysOn, Data: phaseData(t, "other")}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		t.Fatalf("Hang returned while the point is on: %+v", got)
	default:
	}
	if _, err := r.Configure("p", Setting{Mode: Off}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := <-done; !got.entered || got.err != nil {
			t.Fatalf("Hang: %+v", got)
		}
	}
	// On again: a new Hang waits again, until its context ends.
	if _, err := r.Configure("p", Setting{Mode: Times, Times: 1}); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	e, err := r.Hang(short, "p", nil)
	if !e || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hang bounded by its context: %v, %v", e, err)
	}
	// Exhausted: not entered again.
	if e, err := r.Hang(ctx, "p", nil); e || err != nil {
		t.Fatalf("Hang on an exhausted point: %v, %v", e, err)
	}
	if st, _ := r.State("p"); st.Entered != 3 {
		t.Fatalf("entered %d, want 3", st.Entered)
	}
}

func TestWaitEnteredContext(t *testing.T) {
	r := NewRegistry("p")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := r.WaitEntered(ctx, "p", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitEntered: %v", err)
	}
	if err := r.WaitEntered(ctx, "nope", 1); !errors.Is(err, ErrUnknown) {
		t.Fatalf("WaitEntered unknown: %v", err)
	}
}
