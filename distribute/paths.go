package distribute

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
)

// ExpandHome replaces a leading "~" or "~/" with the current user's home
// directory, as a shell would in the inventory's and flags' paths. Other
// users' homes ("~bob/") are not expanded: the error says so.
func ExpandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		if strings.HasPrefix(p, "~") {
			return "", fmt.Errorf("%q: only ~ and ~/ are expanded; write another user's home as an absolute path", p)
		}
		return p, nil
	}
	home, err := homeDir()
	if err != nil {
		return "", fmt.Errorf("%q: %w", p, err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}

// homeDir is $HOME, or the account's home from the user database when
// $HOME is unset, as it is for a systemd service (the CA-renew timer
// pushing with an inventory written for an interactive shell).
func homeDir() (string, error) {
	if h, err := os.UserHomeDir(); err == nil {
		return h, nil
	}
	u, err := user.Current()
	if err != nil || u.HomeDir == "" {
		return "", fmt.Errorf("no home directory: $HOME is unset and the user database has none; write the path out in full")
	}
	return u.HomeDir, nil
}
