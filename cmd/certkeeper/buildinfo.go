package main

import "runtime/debug"

// buildCommit is the commit certkeeper was built from: the one set with
// -ldflags -X main.commit, else the one a plain `go build` in a git
// checkout records (vcs.revision, with "-dirty" for uncommitted changes).
func buildCommit() string {
	if commit != "" {
		return commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}
