package platform

import (
	"path"
	"strings"
)

// Where certkeeper keeps its config and state by default, per system.
const (
	unixConfigPath = "/etc/certkeeper/certkeeper.toml"
	unixStateDir   = "/var/lib/certkeeper"
)

// WindowsDir maps a Unix default directory (a layout preset's /etc/flocker,
// the state directory /var/lib/certkeeper) to its place under Windows'
// ProgramData (normally C:\ProgramData): programData\certkeeper\flocker,
// programData\certkeeper\state. Other paths are returned unchanged; an
// admin writes Windows paths in the config.
func WindowsDir(programData, unixDir string) string {
	base := strings.TrimRight(programData, `\/`) + `\certkeeper`
	switch {
	case unixDir == unixStateDir:
		return base + `\state`
	case unixDir == path.Dir(unixConfigPath):
		return base
	case strings.HasPrefix(unixDir, "/etc/"):
		return base + `\` + strings.ReplaceAll(strings.TrimPrefix(unixDir, "/etc/"), "/", `\`)
	}
	return unixDir
}
