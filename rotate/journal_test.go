package rotate

import "testing"

// Recovery's decision about a copy-mode swap journal, as data: forward
// whenever the journal names a whole generation, back to ..data's only
// when it does not, and a refusal when neither is whole.
func TestDecideJournal(t *testing.T) {
	const a, b = "..gen-000001", "..gen-000002"
	cases := []struct {
		name string
		j    journalState
		want journalAction
		gen  string
	}{
		{"no journal: no swap was under way", journalState{Data: a, DataWhole: true}, journalNone, ""},
		{"no journal, nothing installed", journalState{}, journalNone, ""},
		{"journal to B, ..data still A: finish the swap to B", journalState{Present: true, Target: b, TargetWhole: true, Data: a, DataWhole: true}, journalForward, b},
		{"journal to B, ..data already B (crash before the journal was removed)", journalState{Present: true, Target: b, TargetWhole: true, Data: b, DataWhole: true}, journalForward, b},
		{"journal to B, no ..data (the first install)", journalState{Present: true, Target: b, TargetWhole: true}, journalForward, b},
		{"journal to B, ..data A damaged: B still whole", journalState{Present: true, Target: b, TargetWhole: true, Data: a}, journalForward, b},
		{"journal to B, B not whole (edited by hand): back to A", journalState{Present: true, Target: b, Data: a, DataWhole: true}, journalBack, a},
		{"unreadable journal: back to A", journalState{Present: true, Data: a, DataWhole: true}, journalBack, a},
		{"neither whole: refuse", journalState{Present: true, Target: b, Data: a}, journalStuck, ""},
		{"unreadable journal, no ..data: refuse", journalState{Present: true}, journalStuck, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, gen := decideJournal(c.j)
			if got != c.want || gen != c.gen {
				t.Errorf("decideJournal = %v %q, want %v %q", got, gen, c.want, c.gen)
			}
		})
	}
}
