//go:build !windows

package platform

// DefaultConfigPath is the agent's config file when --config is not given.
func DefaultConfigPath() string { return unixConfigPath }

// DefaultStateDir is where the agent keeps its state (inboxes, status).
func DefaultStateDir() string { return unixStateDir }

// NativeDir turns a default directory written the Unix way into this
// system's; on Unix it is the identity.
func NativeDir(dir string) string { return dir }
