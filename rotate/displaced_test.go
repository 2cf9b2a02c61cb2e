package rotate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/internal/testpki"
	"github.com/certkeeper/certkeeper/platform"
)

// A link replaced by a regular file 200 times left 200 key copies in
// ..displaced/. Now the newest keepDisplaced stay, by the sequence ending
// their names, even when the clock went back meanwhile; the newest copy
// is the last hand-placed file.
func TestDisplacedCopiesAreBounded(t *testing.T) {
	testenv.NeedSymlinks(t)
	dir := filepath.Join(t.TempDir(), "b")
	clock := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	s := &Store{Dir: dir, DirMode: 0o700, Owner: platform.NoOwner, Keep: 2, Now: func() time.Time { return clock }}
	in := []File{{Name: "node.crt", Data: []byte("C"), Mode: 0o644}, {Name: "node.key", Data: []byte("K"), Mode: 0o600}}
	if _, err := s.Install(in, "test"); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		clock = clock.Add(time.Minute)
		if i == 20 {
			clock = clock.Add(-24 * time.Hour)
		}
		os.Remove(filepath.Join(dir, "node.key"))
		testpki.WriteFile(t, dir, "node.key", []byte("HAND "+string(rune('A'+i))), 0o600)
		if _, err := s.Install(in, "test"); err != nil {
			t.Fatal(err)
		}
	}
	es, _ := os.ReadDir(filepath.Join(dir, "..displaced"))
	if len(es) != 8 {
		t.Fatalf("%d copies kept, want 8", len(es))
	}
	found := false
	for _, e := range es {
		b, _ := os.ReadFile(filepath.Join(dir, "..displaced", e.Name()))
		if string(b) == "HAND "+string(rune('A'+39)) {
			found = strings.HasSuffix(e.Name(), ".40")
		}
	}
	if !found {
		t.Fatalf("the newest copy is not kept: %v", es)
	}
}
