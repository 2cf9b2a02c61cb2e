//go:build !windows

package platform

// afterInstall has nothing to add where kardianos writes the whole
// registration (a unit file, a plist).
func afterInstall(string) ([]string, error) { return nil, nil }
