//go:build unix

package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

const openNonblock = syscall.O_NONBLOCK

// checkInboxOwner refuses an inbox not owned by the agent's user, writable
// by others, or writable by a group other than group.
func checkInboxOwner(fi fs.FileInfo, what, group string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot tell its owner", what)
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("%s is owned by uid %d, not the agent's user (uid %d); nothing in it is touched: chown %d it, or remove it (the agent makes it)", what, st.Uid, uid, uid)
	}
	mode := fi.Mode().Perm()
	if mode&0o002 != 0 {
		return fmt.Errorf("%s is writable by others (mode %04o); nothing in it is touched: chmod o-w it (a push account gets access by group: inbox_group)", what, mode)
	}
	if mode&0o020 == 0 {
		return nil
	}
	name := strconv.Itoa(int(st.Gid))
	if g, err := user.LookupGroupId(name); err == nil {
		name = g.Name
	}
	if group == "" {
		return fmt.Errorf("%s is writable by group %s (mode %04o), which the bundle does not name; nothing in it is touched: chmod g-w it, or set inbox_group = %q in the bundle", what, name, mode, name)
	}
	gid, err := lookupGroup(group)
	if err != nil {
		return fmt.Errorf("%s: inbox_group: %w", what, err)
	}
	if int(st.Gid) != gid {
		return fmt.Errorf("%s is writable by group %s (mode %04o), not by inbox_group %q; nothing in it is touched: chgrp %s it, or chmod g-w it", what, name, mode, group, group)
	}
	return nil
}

func lookupGroup(group string) (int, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}

// shareInbox gives a new inbox to inbox_group: group-writable, setgid so
// what the push account creates stays in the group.
func shareInbox(dir, group string) error {
	gid, err := lookupGroup(group)
	if err != nil {
		return fmt.Errorf("inbox %s: inbox_group: %w", dir, err)
	}
	if err := os.Lchown(dir, -1, gid); err != nil {
		return err
	}
	return os.Chmod(dir, 0o770|os.ModeSetgid)
}

// checkAncestors refuses an inbox below a directory another user could
// use to swap it: one writable by others without the sticky bit, or owned
// by a user other than root and the agent's. Both the path as written and
// the path its symlinks lead to are checked (a link can be replaced by
// whoever writes the directory holding it). A missing ancestor is left to
// the caller (ensure makes it).
func checkAncestors(dir, what string) error {
	paths := []string{filepath.Dir(filepath.Clean(dir))}
	if r, err := filepath.EvalSymlinks(paths[0]); err == nil && r != paths[0] {
		paths = append(paths, r)
	}
	uid := uint32(os.Geteuid())
	for _, start := range paths {
		for p := start; ; p = filepath.Dir(p) {
			fi, err := os.Lstat(p)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					if q := filepath.Dir(p); q != p {
						continue
					}
					break
				}
				return fmt.Errorf("%s: %w", what, err)
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if fi.IsDir() && ok {
				if st.Uid != 0 && st.Uid != uid {
					return fmt.Errorf("%s is below %s, owned by uid %d, who could replace it; nothing in it is touched: chown root %s, or move the state directory", what, p, st.Uid, p)
				}
				if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0 {
					return fmt.Errorf("%s is below %s, which is writable by others (mode %04o), so anyone could replace it; nothing in it is touched: chmod o-w %s", what, p, fi.Mode().Perm(), p)
				}
			}
			if q := filepath.Dir(p); q == p {
				break
			}
		}
	}
	return nil
}
