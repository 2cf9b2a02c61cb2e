// Package platform holds what differs between operating systems: file
// ownership and permission checks, and the mechanisms that make a daemon
// re-read its certificates.
package platform

import (
	"fmt"
	"os/user"
	"strconv"
)

// Owner is a resolved file owner; -1 in either field leaves it unchanged.
type Owner struct {
	UID, GID int
	// Names as configured, for messages.
	User, Group string
}

// NoOwner leaves ownership as the process creates it.
var NoOwner = Owner{UID: -1, GID: -1}

// LookupOwner resolves a configured user and group (names or numbers).
// Empty strings keep the process's own identity.
func LookupOwner(userName, groupName string) (Owner, error) {
	o := Owner{UID: -1, GID: -1, User: userName, Group: groupName}
	if userName != "" {
		if n, err := strconv.Atoi(userName); err == nil {
			o.UID = n
		} else {
			u, err := user.Lookup(userName)
			if err != nil {
				return o, fmt.Errorf("owner %q: %w (create the user, or fix owner in the config)", userName, err)
			}
			o.UID, _ = strconv.Atoi(u.Uid)
			if groupName == "" {
				o.GID, _ = strconv.Atoi(u.Gid)
			}
		}
	}
	if groupName != "" {
		if n, err := strconv.Atoi(groupName); err == nil {
			o.GID = n
		} else {
			g, err := user.LookupGroup(groupName)
			if err != nil {
				return o, fmt.Errorf("group %q: %w (create the group, or fix group in the config)", groupName, err)
			}
			o.GID, _ = strconv.Atoi(g.Gid)
		}
	}
	return o, nil
}

// UserName returns a user's name for messages, or the number.
func UserName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// GroupName returns a group's name for messages, or the number.
func GroupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}
