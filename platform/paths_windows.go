//go:build windows

package platform

import (
	"os"
	"strings"
)

// programData is %ProgramData%, machine-wide application data that
// services running as SYSTEM use.
func programData() string {
	if p := os.Getenv("ProgramData"); p != "" {
		return p
	}
	return `C:\ProgramData`
}

// DefaultConfigPath is the agent's config file when --config is not given:
// C:\ProgramData\certkeeper\certkeeper.toml.
func DefaultConfigPath() string {
	return WindowsDir(programData(), "/etc/certkeeper") + `\certkeeper.toml`
}

// DefaultStateDir is C:\ProgramData\certkeeper\state.
func DefaultStateDir() string { return WindowsDir(programData(), unixStateDir) }

// NativeDir maps a layout preset's Unix directory (/etc/flocker) to
// C:\ProgramData\certkeeper\flocker; a path that is already a Windows one
// is returned unchanged.
func NativeDir(dir string) string {
	if !strings.HasPrefix(dir, "/") {
		return dir
	}
	return WindowsDir(programData(), dir)
}
