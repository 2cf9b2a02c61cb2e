package platform

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/internal/testenv"
	"golang.org/x/sys/windows"
)

// A key gets a protected access list (nothing inherited) granting SYSTEM
// and Administrators only; a certificate (0644) also lets Users read.
// Read back through the Windows API, as icacls shows it.
func TestSecureFileAccessList(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		mode      os.FileMode
		want      []string
		notWanted []string
	}{
		{0o600, []string{"(A;;FA;;;SY)", "(A;;FA;;;BA)"}, []string{";BU)", ";WD)", ";AU)"}},
		{0o644, []string{"(A;;FA;;;SY)", "(A;;FA;;;BA)", ";;;BU)"}, []string{";WD)", ";AU)"}},
	} {
		p := filepath.Join(dir, "f"+c.mode.String())
		if err := WriteFileAtomic(p, []byte("x"), c.mode, NoOwner); err != nil {
			t.Fatal(err)
		}
		sd, err := windows.GetNamedSecurityInfo(p, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
		if err != nil {
			t.Fatal(err)
		}
		sddl := sd.String()
		if testenv.UnderWine() && !strings.Contains(sddl, ";;;BA)") {
			t.Skipf("needs access lists kept on files, which Wine 8 does not do (it reads back %s, made from the Unix mode)", sddl)
		}
		if !strings.HasPrefix(sddl, "D:P") {
			t.Errorf("mode %v: %s is not protected (inherits from above)", c.mode, sddl)
		}
		for _, w := range c.want {
			if !strings.Contains(sddl, w) {
				t.Errorf("mode %v: %s lacks %s", c.mode, sddl, w)
			}
		}
		for _, n := range c.notWanted {
			if strings.Contains(sddl, n) {
				t.Errorf("mode %v: %s grants %s", c.mode, sddl, n)
			}
		}
	}
}
