package rotate_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"github.com/certkeeper/certkeeper/platform"
	"github.com/certkeeper/certkeeper/rotate"
	"golang.org/x/sys/windows"
)

// grantEveryoneRead is what `icacls node.key /grant Everyone:R` does.
func grantEveryoneRead(t *testing.T, path string) {
	t.Helper()
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatal(err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		t.Fatal(err)
	}
	everyone, err := windows.CreateWellKnownSid(windows.WinWorldSid)
	if err != nil {
		t.Fatal(err)
	}
	acl, err := windows.ACLFromEntries([]windows.EXPLICIT_ACCESS{{
		AccessPermissions: windows.GENERIC_READ, AccessMode: windows.GRANT_ACCESS,
		Trustee: windows.TRUSTEE{TrusteeForm: windows.TRUSTEE_IS_SID, TrusteeType: windows.TRUSTEE_IS_WELL_KNOWN_GROUP, TrusteeValue: windows.TrusteeValueFromSID(everyone)},
	}}, dacl)
	if err != nil {
		t.Fatal(err)
	}
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION, nil, nil, acl, nil); err != nil {
		t.Fatal(err)
	}
}

// A key opened to Everyone is access drift, found by status and repaired
// as a chmod 0644 is on Unix: the key is owner-only again.
func TestAccessDriftIsRepaired(t *testing.T) {
	if !platform.AccessListsKept() {
		if testenv.UnderWine() {
			t.Skip("needs access lists kept on files, which Wine 8 does not do: it maps a list onto the Unix mode bits (SecureFile's SYSTEM and Administrators become 0775) and reads back one made from them, which grants Everyone read")
		}
		t.Skip("this file system keeps no access lists (FAT?)")
	}
	dir := filepath.Join(t.TempDir(), "b")
	s := &rotate.Store{Dir: dir, DirMode: 0o700, Owner: platform.NoOwner, Keep: 2}
	if _, err := s.Install(files("CERT", "KEY"), "test"); err != nil {
		t.Fatal(err)
	}
	if drift, err := s.Repair(); err != nil || len(drift) != 0 {
		t.Fatalf("a fresh install drifts: %v, %v", drift, err)
	}
	key := filepath.Join(dir, "node.key")
	if m, _, _ := s.LinkMode(); m == rotate.LinkSymlink {
		key = filepath.Join(liveGenDir(t, dir), "node.key")
	}
	grantEveryoneRead(t, key)
	if loose, err := platform.AccessDrift(key, 0o600); err != nil || len(loose) == 0 {
		t.Fatalf("AccessDrift after the grant: %v, %v", loose, err)
	}
	drift, err := s.Repair()
	if err != nil || len(drift) != 1 || drift[0].Kind != rotate.DriftAccess || !strings.Contains(drift[0].Detail, "Everyone may read") {
		t.Fatalf("Repair: %v, %v; want the key's access drift", drift, err)
	}
	if loose, err := platform.AccessDrift(filepath.Join(dir, "node.key"), 0o600); err != nil || len(loose) != 0 {
		t.Fatalf("after repair the key still grants %v, %v", loose, err)
	}
}
