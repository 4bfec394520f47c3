// Package failpoint owns named fail points: switches compiled into the
// code at the places where a test needs to stop or bend it, as MongoDB's
// fail points are (configured with its configureFailPoint command). A
// site asks its point whether it is on (Eval) or waits on it (Hang); a
// test turns the point on ("alwaysOn", or for the next n entries), with
// optional data that the site matches, and reads how many times it was
// entered.
//
// A fail point is inert unless enabled: every point starts off, an off
// point costs one mutex and one map look-up per evaluation, and nothing
// but a Configure call (in PSDB, the router's configureFailPoint command,
// refused unless the router runs with test commands enabled) turns one
// on. Fail points are process-wide, like MongoDB's: the sites use the
// Default registry; unit tests may build their own with NewRegistry.
package failpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Mode says when a fail point is on.
type Mode int

const (
	// Off: the point is never entered.
	Off Mode = iota
	// AlwaysOn: the point is entered at every evaluation that matches.
	AlwaysOn
	// Times: the point is entered at the next Setting.Times evaluations
	// that match, then no more (it stays configured, exhausted).
	Times
)

// String is the mode's name in configureFailPoint's terms.
func (m Mode) String() string {
	switch m {
	case Off:
		return "off"
	case AlwaysOn:
		return "alwaysOn"
	case Times:
		return "times"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Setting is a fail point's configuration.
type Setting struct {
	Mode Mode
	// Times: with Mode Times, how many more entries (counts down; 0:
	// exhausted).
	Times int64
	// Data is the point's optional data document: sites match on it
	// (e.g. which phase to hang after) and may read it.
	Data bson.Raw
}

// State is a fail point's configuration and its hit counter.
type State struct {
	Setting
	// Entered counts the evaluations that entered the point since the
	// process started (MongoDB's timesEntered); it never goes back.
	Entered int64
}

// ErrUnknown is returned (wrapped) for a name no site registered.
var ErrUnknown = errors.New("no such fail point")

// Registry holds named fail points. Safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	points map[string]*point
}

type point struct {
	set     Setting
	entered int64
	// off is closed while the point is off; a new channel replaces it
	// when the point is turned on. Hang waits on it.
	off chan struct{}
	// entry is closed (and replaced) at every entry: WaitEntered waits
	// on it.
	entry chan struct{}
}

// Default is the process-wide registry the sites use.
var Default = NewRegistry()

// NewRegistry returns a registry holding the named points, all off.
func NewRegistry(names ...string) *Registry {
	r := &Registry{points: map[string]*point{}}
	for _, n := range names {
		r.Register(n)
	}
	return r
}

// Register declares the point name (off). Registering a name again is a
// no-op, so a site's package may register its points in init.
func (r *Registry) Register(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.points[name]; !ok {
		off := make(chan struct{})
		close(off)
		r.points[name] = &point{off: off, entry: make(chan struct{})}
	}
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.points))
	for n := range r.points {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Configure sets the point's mode and data and returns how many times it
// was entered before (configureFailPoint's count). Turning a point off
// (Mode Off, or Times with Times 0) releases every Hang waiting on it;
// changing the setting of a point that stays on does not.
func (r *Registry) Configure(name string, s Setting) (int64, error) {
	if s.Mode < Off || s.Mode > Times {
		return 0, fmt.Errorf("fail point %s: invalid mode %d", name, int(s.Mode))
	}
	if s.Mode == Times && s.Times < 0 {
		return 0, fmt.Errorf("fail point %s: times must not be negative, got %d", name, s.Times)
	}
	if s.Mode == Times && s.Times == 0 {
		s.Mode = Off
	}
	if s.Mode != Times {
		s.Times = 0
	}
	s.Data = slices.Clone(s.Data)
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.points[name]
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	wasOff := p.set.Mode == Off
	p.set = s
	switch {
	case s.Mode == Off && !wasOff:
		close(p.off)
	case s.Mode != Off && wasOff:
		p.off = make(chan struct{})
	}
	return p.entered, nil
}

// State returns the point's setting and hit counter.
func (r *Registry) State(name string) (State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.points[name]
	if !ok {
		return State{}, fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	st := State{Setting: p.set, Entered: p.entered}
	st.Data = slices.Clone(st.Data)
	return st, nil
}

// enterLocked decides whether an evaluation enters p: the point is on
// (not exhausted) and match, when set, accepts its data. Entering counts
// and uses up one of a Times point's entries.
func (p *point) enterLocked(match func(data bson.Raw) bool) bool {
	switch p.set.Mode {
	case Off:
		return false
	case Times:
		if p.set.Times <= 0 {
			return false
		}
	}
	if match != nil && !match(p.set.Data) {
		return false
	}
	p.entered++
	close(p.entry)
	p.entry = make(chan struct{})
	if p.set.Mode == Times {
		p.set.Times--
	}
	return true
}

// Eval reports whether this evaluation enters the point, with its data.
// match (nil: any data) runs under the registry's lock: it must be quick
// and must not use the registry. An unknown name is never entered.
func (r *Registry) Eval(name string, match func(data bson.Raw) bool) (bson.Raw, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.points[name]
	if !ok || !p.enterLocked(match) {
		return nil, false
	}
	return slices.Clone(p.set.Data), true
}

// Hang evaluates the point like Eval and, when it is entered, blocks
// until the point is turned off or ctx ends. It reports whether it was
// entered, and ctx's error when ctx ended the wait. A point that is off
// or does not match returns at once.
func (r *Registry) Hang(ctx context.Context, name string, match func(data bson.Raw) bool) (bool, error) {
	r.mu.Lock()
	p, ok := r.points[name]
	if !ok || !p.enterLocked(match) {
		r.mu.Unlock()
		return false, nil
	}
	off := p.off
	r.mu.Unlock()
	select {
	case <-off:
		return true, nil
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// WaitEntered waits until the point was entered at least n times in all
// (State.Entered >= n) or ctx ends.
func (r *Registry) WaitEntered(ctx context.Context, name string, n int64) error {
	for {
		r.mu.Lock()
		p, ok := r.points[name]
		if !ok {
			r.mu.Unlock()
			return fmt.Errorf("%w: %q", ErrUnknown, name)
		}
		entered, next := p.entered, p.entry
		r.mu.Unlock()
		if entered >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fail point %s entered %d times, waiting for %d: %w", name, entered, n, ctx.Err())
		case <-next:
		}
	}
}
