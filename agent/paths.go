package agent

import (
	"path/filepath"
	"slices"
)

// WritableDirs lists the directories the agent writes: the state
// directory, and each bundle's live directory and inbox. A sandboxed
// service (systemd's ProtectSystem=strict) must leave them writable.
func (c *Config) WritableDirs() []string {
	dirs := []string{filepath.Clean(c.StateDir)}
	for _, b := range c.Bundles {
		dirs = append(dirs, filepath.Clean(b.Resolved.Dir), filepath.Clean(b.Inbox))
	}
	slices.Sort(dirs)
	return slices.Compact(dirs)
}
