package platform

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// ACE is one entry of a file's access list, as data: the input of
// LooseAccess. SID is in SDDL's short form where it has one ("SY", "BA",
// "BU", "WD", "AU") and S-1-… otherwise.
type ACE struct {
	SID   string
	Allow bool
	// Mask is the access the entry grants or denies (FILE_* or GENERIC_*
	// bits).
	Mask uint32
}

// The access bits that let a principal read a file's content, or change
// what it is or who may read it.
const (
	aceRead  = 0x0001 | 0x80000000 | 0x10000000 // FILE_READ_DATA, GENERIC_READ, GENERIC_ALL
	aceWrite = 0x0002 | 0x0004 | 0x40000000 | 0x10000000 | 0x00040000 | 0x00080000 | 0x00010000
	// FILE_WRITE_DATA, FILE_APPEND_DATA, GENERIC_WRITE, GENERIC_ALL, WRITE_DAC, WRITE_OWNER, DELETE
)

// LooseAccess judges a file's access list against the Unix mode it stands
// for (SecureFile): SYSTEM and Administrators may do anything; when mode
// lets others read (a certificate, 0644), Users may read too; nobody else
// may read or change the file. It returns what else is granted, one
// phrase per principal ("Everyone may read"), sorted; none means the list
// is as tight as SecureFile makes it. Deny entries only narrow, so they
// are never loose.
func LooseAccess(entries []ACE, mode fs.FileMode) []string {
	granted := map[string]uint32{}
	for _, e := range entries {
		if e.Allow {
			granted[e.SID] |= e.Mask
		}
	}
	var out []string
	for sid, mask := range granted {
		switch {
		case sid == "SY" || sid == "BA":
			continue
		case sid == "BU" && mode&0o004 != 0 && mask&aceWrite == 0:
			continue
		}
		var what []string
		if mask&aceRead != 0 {
			what = append(what, "read")
		}
		if mask&aceWrite != 0 {
			what = append(what, "change")
		}
		if len(what) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%s may %s", principalName(sid), strings.Join(what, " and ")))
	}
	sort.Strings(out)
	return out
}

// principalName is how an admin knows a SID (icacls' names).
func principalName(sid string) string {
	switch sid {
	case "WD":
		return "Everyone"
	case "BU":
		return "BUILTIN\\Users"
	case "AU":
		return "NT AUTHORITY\\Authenticated Users"
	case "IU":
		return "NT AUTHORITY\\INTERACTIVE"
	case "BG":
		return "BUILTIN\\Guests"
	case "AN":
		return "ANONYMOUS LOGON"
	}
	return sid
}
