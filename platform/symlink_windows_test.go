package platform

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
)

// Where no symbolic link can be made (Wine 8, or Windows without
// SeCreateSymbolicLinkPrivilege) the store's check says so and what to do,
// and leaves nothing behind.
func TestCheckSymlinksSaysWhy(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	err = CheckSymlinks(root)
	switch {
	case testenv.UnderWine():
		if !errors.Is(err, ErrNoSymlinks) || !strings.Contains(err.Error(), "Wine before 10.20 has none") {
			t.Errorf("under Wine 8: %v, want ErrNoSymlinks saying Wine has none", err)
		}
	case err != nil:
		if !errors.Is(err, ErrNoSymlinks) || !strings.Contains(err.Error(), "SeCreateSymbolicLinkPrivilege") {
			t.Errorf("without the privilege: %v, want ErrNoSymlinks naming it", err)
		}
	}
	if l := leftovers(t, dir); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}
