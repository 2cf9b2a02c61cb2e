//go:build windows

package platform

import (
	"fmt"
	"io/fs"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// SecureDir replaces a directory's access list with a protected one (no
// entries inherited from above): SYSTEM and Administrators have full
// control, inherited by everything created inside, so a key written there
// is never readable by anyone else, not even between its creation and
// SecureFile. Users may list the directory only when mode allows others to
// read it.
func SecureDir(path string, mode fs.FileMode) error {
	return setProtectedDACL(path, mode, true)
}

// SecureFile replaces a file's access list the same way: a key (mode
// 0600 or 0400) is readable only by SYSTEM and Administrators; a
// certificate (0644) also by Users.
func SecureFile(path string, mode fs.FileMode) error {
	return setProtectedDACL(path, mode, false)
}

func setProtectedDACL(path string, mode fs.FileMode, dir bool) error {
	acl, err := protectedDACL(mode, dir)
	if err != nil {
		return fmt.Errorf("%s: build access list: %w", path, err)
	}
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, acl, nil)
	if err != nil {
		return fmt.Errorf("%s: set access list: %w", path, err)
	}
	return nil
}

// protectedDACL is the access list a Unix mode stands for: the owner's
// bits go to SYSTEM (what the service runs as) and Administrators, the
// others' read bit to Users. Group bits have no counterpart and are
// ignored.
func protectedDACL(mode fs.FileMode, dir bool) (*windows.ACL, error) {
	inherit := uint32(windows.NO_INHERITANCE)
	if dir {
		inherit = windows.SUB_CONTAINERS_AND_OBJECTS_INHERIT
	}
	entry := func(t windows.WELL_KNOWN_SID_TYPE, access windows.ACCESS_MASK, inh uint32) (windows.EXPLICIT_ACCESS, error) {
		sid, err := windows.CreateWellKnownSid(t)
		if err != nil {
			return windows.EXPLICIT_ACCESS{}, err
		}
		return windows.EXPLICIT_ACCESS{
			AccessPermissions: access,
			AccessMode:        windows.GRANT_ACCESS,
			Inheritance:       inh,
			Trustee: windows.TRUSTEE{
				TrusteeForm:  windows.TRUSTEE_IS_SID,
				TrusteeType:  windows.TRUSTEE_IS_WELL_KNOWN_GROUP,
				TrusteeValue: windows.TrusteeValueFromSID(sid),
			},
		}, nil
	}
	var entries []windows.EXPLICIT_ACCESS
	for _, t := range []windows.WELL_KNOWN_SID_TYPE{windows.WinLocalSystemSid, windows.WinBuiltinAdministratorsSid} {
		e, err := entry(t, windows.GENERIC_ALL, inherit)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	if mode&0o004 != 0 {
		access := windows.ACCESS_MASK(windows.GENERIC_READ)
		if dir {
			access |= windows.GENERIC_EXECUTE
		}
		// Not inherited: a readable directory must not make the key in it
		// readable.
		e, err := entry(windows.WinBuiltinUsersSid, access, windows.NO_INHERITANCE)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return windows.ACLFromEntries(entries, nil)
}

// AccessDrift says how path's access list grants more than mode means
// (LooseAccess): a key someone opened to Everyone with icacls or the
// Explorer's Security tab. Nothing is returned where the file system
// keeps no access lists (see AccessListsKept); callers check that first.
func AccessDrift(path string, mode fs.FileMode) ([]string, error) {
	entries, err := readACL(path)
	if err != nil {
		return nil, err
	}
	return LooseAccess(entries, mode), nil
}

// readACL returns path's access list as data.
func readACL(path string) ([]ACE, error) {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return nil, fmt.Errorf("%s: read access list: %w", path, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return nil, fmt.Errorf("%s: read access list: %w", path, err)
	}
	if dacl == nil {
		// A null DACL grants everyone everything.
		return []ACE{{SID: "WD", Allow: true, Mask: windows.GENERIC_ALL}}, nil
	}
	var out []ACE
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return nil, fmt.Errorf("%s: read access list entry %d: %w", path, i, err)
		}
		var allow bool
		switch ace.Header.AceType {
		case windows.ACCESS_ALLOWED_ACE_TYPE:
			allow = true
		case windows.ACCESS_DENIED_ACE_TYPE:
		default:
			continue // object and callback entries: not made by file tools
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		out = append(out, ACE{SID: shortSID(sid), Allow: allow, Mask: uint32(ace.Mask)})
	}
	return out, nil
}

// shortSID is a SID in SDDL's short form where LooseAccess knows one.
func shortSID(sid *windows.SID) string {
	for t, short := range map[windows.WELL_KNOWN_SID_TYPE]string{
		windows.WinLocalSystemSid: "SY", windows.WinBuiltinAdministratorsSid: "BA", windows.WinBuiltinUsersSid: "BU",
		windows.WinWorldSid: "WD", windows.WinAuthenticatedUserSid: "AU", windows.WinInteractiveSid: "IU",
		windows.WinBuiltinGuestsSid: "BG", windows.WinAnonymousSid: "AN",
	} {
		if sid.IsWellKnown(t) {
			return short
		}
	}
	return sid.String()
}

var (
	accessKeptOnce sync.Once
	accessKept     bool
)

// AccessListsKept reports whether files keep the access lists SecureFile
// sets, probed once per process with a file of its own in the temporary
// directory: NTFS does; Wine 8 keeps none, it maps an
// access list onto the Unix mode bits (SecureFile's SYSTEM and
// Administrators become mode 0775) and reads back a list made from them,
// which grants Everyone read. Where lists are not kept, AccessDrift would
// find every key loose and no repair could change that.
func AccessListsKept() bool {
	accessKeptOnce.Do(func() { accessKept = probeAccessLists() })
	return accessKept
}

func probeAccessLists() bool {
	f, err := os.CreateTemp("", "certkeeper-acl-probe-")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	if err := SecureFile(name, 0o600); err != nil {
		return false
	}
	entries, err := readACL(name)
	if err != nil || len(LooseAccess(entries, 0o600)) > 0 {
		return false
	}
	for _, e := range entries {
		if e.SID == "BA" && e.Allow {
			return true
		}
	}
	return false
}
