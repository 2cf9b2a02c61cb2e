package doctest

import "path/filepath"

// repo is the module's root, from this package's directory.
func repo() string {
	d, _ := filepath.Abs("../..")
	return d
}

// docFiles are the pages an admin reads: docs/, docs/guides/ and the
// README.
func docFiles() []string {
	root := repo()
	files, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	guides, _ := filepath.Glob(filepath.Join(root, "docs", "guides", "*.md"))
	return append(append(files, guides...), filepath.Join(root, "README.md"))
}
