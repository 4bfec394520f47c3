package replset

import (
	"errors"
	"testing"

	"github.com/psdb/psdb/shardd/storage"
)

func ot(term, index uint64) storage.OpTime { return storage.OpTime{Term: term, Index: index} }

type vote struct {
	granted bool
	last    storage.OpTime
}

// TestBallotDecide is DESIGN §4's vote rule as a table: a majority of the
// members (the candidate included) must grant, and no answer may show a
// newer log than the candidate's.
func TestBallotDecide(t *testing.T) {
	cases := []struct {
		name    string
		self    storage.OpTime
		members int
		votes   []vote // answers; missing members did not answer
		want    error
	}{
		{"3 members, one grant", ot(2, 10), 3, []vote{{true, ot(2, 10)}}, nil},
		{"3 members, both grant", ot(2, 10), 3, []vote{{true, ot(2, 9)}, {true, ot(1, 12)}}, nil},
		{"3 members, nobody answers", ot(2, 10), 3, nil, errNoMajority},
		{"3 members, one refuses, one silent", ot(2, 10), 3, []vote{{false, ot(2, 10)}}, errNoMajority},
		{"newer index in the same term", ot(2, 10), 3, []vote{{true, ot(2, 10)}, {false, ot(2, 11)}}, errNewerPeer},
		{"newer term with a lower index", ot(2, 10), 3, []vote{{true, ot(2, 10)}, {false, ot(3, 4)}}, errNewerPeer},
		{"older term with a higher index is older", ot(3, 4), 3, []vote{{true, ot(2, 10)}}, nil},
		{"5 members need 3", ot(1, 1), 5, []vote{{true, ot(1, 1)}, {false, ot(1, 1)}, {false, ot(1, 0)}}, errNoMajority},
		{"5 members, 3 grants", ot(1, 1), 5, []vote{{true, ot(1, 1)}, {true, ot(1, 0)}}, nil},
		{"1 member", ot(1, 1), 1, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBallot(c.self, c.members)
			for i, v := range c.votes {
				b.add(string(rune('a'+i)), v.granted, v.last)
			}
			err := b.decide()
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("decide = %v, want %v", err, c.want)
			}
		})
	}
}

func TestStateNames(t *testing.T) {
	for s, want := range map[State]string{StateStartup: "STARTUP", StateSecondary: "SECONDARY", StatePrimary: "PRIMARY", StateRecovering: "RECOVERING"} {
		if s.String() != want {
			t.Errorf("%d: %s, want %s", s, s, want)
		}
	}
	if StatePrimary.Code() != 1 || StateSecondary.Code() != 2 || StateRecovering.Code() != 3 {
		t.Error("replSetGetStatus state codes")
	}
}
