package agent

import (
	"path/filepath"
	"slices"
)

// WritableDirs lists the directories the agent writes: the state
// directory, each bundle's live directory and inbox, and the directory of
// the metrics textfile (the file is replaced by a rename there). A
// sandboxed service (systemd's ProtectSystem=strict) must leave them
// writable.
func (c *Config) WritableDirs() []string {
	dirs := []string{filepath.Clean(c.StateDir)}
	if c.MetricsTextfile != "" {
		dirs = append(dirs, filepath.Dir(c.MetricsTextfile))
	}
	for _, b := range c.Bundles {
		dirs = append(dirs, filepath.Clean(b.Resolved.Dir), filepath.Clean(b.Inbox))
	}
	slices.Sort(dirs)
	return slices.Compact(dirs)
}
