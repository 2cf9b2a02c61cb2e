//go:build windows

package platform

import (
	"fmt"
	"io/fs"

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
