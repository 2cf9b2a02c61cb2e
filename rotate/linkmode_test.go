package rotate_test

import (
	"os"
	"sync"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/rotate"
)

var (
	modeOnce   sync.Once
	chosenMode rotate.LinkMode
)

// testLinkMode is the link mode the store's tests run in: symbolic links
// where this process can make them, else copies (Wine 8; Windows without
// SeCreateSymbolicLinkPrivilege), as the store's auto mode chooses there.
// CERTKEEPER_TEST_LINK_MODE=copy runs them with copies anywhere (Linux
// included), CERTKEEPER_TEST_LINK_MODE=symlink insists on links.
func testLinkMode() rotate.LinkMode {
	modeOnce.Do(func() {
		switch os.Getenv("CERTKEEPER_TEST_LINK_MODE") {
		case "copy":
			chosenMode = rotate.LinkCopy
		case "symlink":
			chosenMode = rotate.LinkSymlink
		default:
			chosenMode = rotate.LinkSymlink
			if testenv.SymlinksErr() != nil {
				chosenMode = rotate.LinkCopy
			}
		}
	})
	return chosenMode
}

// needLinks skips a test whose assertions are about the symbolic links
// themselves, when the tests run with copies (copies_test.go has the copy
// mode's own).
func needLinks(t testing.TB) {
	t.Helper()
	if testLinkMode() == rotate.LinkCopy {
		t.Skip("asserts the symbolic links themselves; the store runs with copies here (copies_test.go tests those)")
	}
	testenv.NeedSymlinks(t)
}
