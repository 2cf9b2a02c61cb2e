package platform

import (
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
)

// Whether access lists are kept is probed, not assumed: Wine 8 keeps
// none (so the store does not judge keys' lists there, which would all
// read as loose); NTFS on Windows does.
func TestAccessListsKeptIsProbed(t *testing.T) {
	got := AccessListsKept()
	if testenv.UnderWine() {
		if got {
			t.Fatal("AccessListsKept under Wine 8: true, but Wine maps access lists onto Unix mode bits")
		}
		return
	}
	if !got {
		t.Error("AccessListsKept on Windows: false; NTFS keeps access lists (is the temporary directory on FAT?)")
	}
}
