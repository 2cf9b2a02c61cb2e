package distribute

import (
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CheckRemoteName refuses a name from a remote listing that is not a plain
// file name: a listing is data from another machine, and a name such as
// "../../etc/shadow" or "a/b" must never become a path.
func CheckRemoteName(n string) error {
	switch {
	case n == "" || n == "." || n == "..":
		return fmt.Errorf("%q is not a file name", n)
	case len(n) > 255:
		return fmt.Errorf("name %.40q… is longer than 255 bytes", n)
	case strings.ContainsAny(n, "/\\"):
		return fmt.Errorf("name %q contains a path separator; names in the remote directory must be plain file names", n)
	case !utf8.ValidString(n):
		return fmt.Errorf("name %q is not valid UTF-8", n)
	}
	for _, r := range n {
		if unicode.IsControl(r) {
			return fmt.Errorf("name %q contains a control character", n)
		}
	}
	return nil
}

// CheckRemoteDir checks a remote directory from a config or inventory: a
// path on the server (absolute, or relative to the SFTP start directory)
// that never climbs with "..".
func CheckRemoteDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("empty remote directory")
	}
	for _, part := range strings.Split(dir, "/") {
		if part == ".." {
			return fmt.Errorf("remote directory %q contains \"..\"; give a path that does not climb", dir)
		}
	}
	for _, r := range dir {
		if unicode.IsControl(r) || r == '\\' {
			return fmt.Errorf("remote directory %q contains a control character or a backslash", dir)
		}
	}
	return nil
}

// remoteJoin joins a checked directory and a checked name.
func remoteJoin(dir, name string) string {
	return path.Join(dir, name)
}
