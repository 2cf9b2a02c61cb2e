package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Rejected sets are named with a zero-padded sequence, so a listing by
// name (ls, os.ReadDir) is the order they were rejected in; sets an older
// version named without padding ("9-…", "12-…") keep their place, and the
// next set follows the highest of them.
func TestRejectedSetNamesSortInOrder(t *testing.T) {
	at := time.Date(2026, 12, 1, 23, 40, 40, 123e6, time.UTC)
	for _, tc := range []struct {
		seq  int
		want string
	}{
		{1, "000001-20261201T234040.123Z"},
		{42, "000042-20261201T234040.123Z"},
		{999999, "999999-20261201T234040.123Z"},
	} {
		if got := rejectedName(tc.seq, at); got != tc.want {
			t.Errorf("rejectedName(%d) = %q, want %q", tc.seq, got, tc.want)
		}
	}

	inbox := filepath.Join(t.TempDir(), "inbox")
	for _, old := range []string{"9-20261101T000000.000Z", "12-20261102T000000.000Z"} {
		if err := os.MkdirAll(filepath.Join(inbox, rejectedDir, old), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ib := inboxDir{dir: inbox}
	var made []string
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(inbox, "x.crt"), []byte("not a certificate"), 0o600); err != nil {
			t.Fatal(err)
		}
		dst, err := ib.reject([]InboxFile{{Name: "x.crt"}}, "test", at.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, filepath.Base(dst))
	}
	if want := []string{"000013-20261201T234040.123Z", "000014-20261201T234041.123Z", "000015-20261201T234042.123Z"}; !slices.Equal(made, want) {
		t.Fatalf("new sets %v, want %v", made, want)
	}
	r, err := os.OpenRoot(filepath.Join(inbox, rejectedDir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sets, err := rejectedSets(r)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int
	for _, s := range sets {
		seqs = append(seqs, s.seq)
	}
	if !slices.Equal(seqs, []int{9, 12, 13, 14, 15}) {
		t.Fatalf("sequences read %v, want 9 12 13 14 15", seqs)
	}
	es, _ := os.ReadDir(filepath.Join(inbox, rejectedDir))
	var byName []string
	for _, e := range es {
		byName = append(byName, e.Name())
	}
	if !slices.IsSorted(made) || byName[0] != made[0] || byName[2] != made[2] {
		t.Fatalf("listing by name %v: the new sets do not sort in order", byName)
	}
}
