package platform

import (
	"io/fs"
	"strings"
	"testing"
)

// A key's access list is loose when anyone but SYSTEM and Administrators
// may read or change it; a certificate's may also let Users read.
func TestLooseAccess(t *testing.T) {
	const (
		all    = 0x10000000 // GENERIC_ALL
		read   = 0x1200a9   // FILE_GENERIC_READ | FILE_EXECUTE, icacls' (RX)
		write  = 0x0002
		listen = 0x00100000 // SYNCHRONIZE only: neither read nor change
	)
	secure := []ACE{{"SY", true, all}, {"BA", true, all}}
	cases := []struct {
		name    string
		entries []ACE
		mode    fs.FileMode
		want    string
	}{
		{"a key as SecureFile makes it", secure, 0o600, ""},
		{"a certificate as SecureFile makes it", append(secure, ACE{"BU", true, read}), 0o644, ""},
		{"a key granted to Everyone (icacls /grant Everyone:R)", append(secure, ACE{"WD", true, read}), 0o600, "Everyone may read"},
		{"a key readable by Users", append(secure, ACE{"BU", true, read}), 0o600, `BUILTIN\Users may read`},
		{"a certificate writable by Users", append(secure, ACE{"BU", true, read | write}), 0o644, `BUILTIN\Users may read and change`},
		{"a key granted to a user by SID", append(secure, ACE{"S-1-5-21-1-2-3-1001", true, all}), 0o600, "S-1-5-21-1-2-3-1001 may read and change"},
		{"a deny entry narrows", append(secure, ACE{"WD", false, all}), 0o600, ""},
		{"an entry granting neither read nor change", append(secure, ACE{"AU", true, listen}), 0o600, ""},
		{"several, sorted", append(secure, ACE{"WD", true, read}, ACE{"AU", true, read}), 0o600, `Everyone may read; NT AUTHORITY\Authenticated Users may read`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := strings.Join(LooseAccess(c.entries, c.mode), "; "); got != c.want {
				t.Errorf("LooseAccess = %q, want %q", got, c.want)
			}
		})
	}
}
