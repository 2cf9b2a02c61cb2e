package doctest

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pendingDocs are pages another branch writes; links to them are allowed
// to dangle until it is merged. Empty: every page linked to exists.
var pendingDocs = map[string]bool{}

// Every relative link in README.md and docs/ leads to a file that exists,
// and every #anchor to a heading of that file, so the guides' cross
// references do not rot.
func TestDocLinks(t *testing.T) {
	root := repo()
	files := docFiles()
	anchors := map[string]map[string]bool{}
	anchorsOf := func(p string) map[string]bool {
		if a, ok := anchors[p]; ok {
			return a
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		anchors[p] = Anchors(data)
		return anchors[p]
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		for target, lines := range Links(data) {
			if u, err := url.Parse(target); err != nil || u.Scheme != "" || strings.HasPrefix(target, "//") {
				continue // an outside address: not checked here
			}
			n++
			path, frag, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
			}
			destRel, _ := filepath.Rel(root, dest)
			if _, err := os.Stat(dest); err != nil {
				if pendingDocs[destRel] {
					continue
				}
				t.Errorf("%s:%v: link to %s: %s does not exist", rel, lines, target, destRel)
				continue
			}
			if frag != "" && strings.HasSuffix(dest, ".md") && !anchorsOf(dest)[frag] {
				t.Errorf("%s:%v: link to %s: %s has no heading with anchor #%s", rel, lines, target, destRel, frag)
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d relative links found: is the link parser broken?", n)
	}
}
