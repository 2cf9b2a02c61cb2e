package doctest

import "path/filepath"

// repo is the module's root, from this package's directory.
func repo() string {
	d, _ := filepath.Abs("../..")
	return d
}
