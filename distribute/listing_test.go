package distribute_test

import (
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/distribute"
)

type entry struct {
	name string
	size int64
	mode fs.FileMode
}

func (e entry) Name() string       { return e.name }
func (e entry) Size() int64        { return e.size }
func (e entry) Mode() fs.FileMode  { return e.mode }
func (e entry) ModTime() time.Time { return time.Time{} }
func (e entry) IsDir() bool        { return e.mode.IsDir() }
func (e entry) Sys() any           { return nil }

// What a (possibly hostile) server lists decides nothing by itself: each
// entry is checked as data.
func TestCheckListing(t *testing.T) {
	lim := distribute.Limits{MaxFiles: 4, MaxFileSize: 100, MaxTotal: 150}
	reg := func(n string, size int64) fs.FileInfo { return entry{n, size, 0o644} }
	for _, tc := range []struct {
		name    string
		entries []fs.FileInfo
		want    string // error substring, or the accepted names joined
	}{
		{"a bundle", []fs.FileInfo{reg("node.key", 10), reg("cluster.crt", 10), reg("node.crt", 10)}, "cluster.crt,node.crt,node.key"},
		{"dot files skipped", []fs.FileInfo{reg(".node.key.tmp", 10), reg("node.crt", 10)}, "node.crt"},
		{"climbing name", []fs.FileInfo{reg("../../etc/shadow", 10)}, "path separator"},
		{"dot dot", []fs.FileInfo{reg("..", 10)}, `".." is not a file name`},
		{"separator", []fs.FileInfo{reg("a/b", 10)}, "path separator"},
		{"control character", []fs.FileInfo{reg("a\nb", 10)}, "control character"},
		{"symlink", []fs.FileInfo{entry{"cluster.crt", 10, fs.ModeSymlink | 0o777}}, "dir/cluster.crt is a symlink"},
		{"directory", []fs.FileInfo{entry{"sub", 0, fs.ModeDir | 0o755}}, "dir/sub is not a regular file (a directory)"},
		{"fifo", []fs.FileInfo{entry{"p", 0, fs.ModeNamedPipe | 0o644}}, "dir/p is not a regular file (a FIFO)"},
		{"device", []fs.FileInfo{entry{"d", 0, fs.ModeDevice | 0o644}}, "(a device)"},
		{"too big", []fs.FileInfo{reg("node.crt", 101)}, "larger than the 100-byte limit"},
		{"too much", []fs.FileInfo{reg("a", 100), reg("b", 100)}, "holds more than 150 bytes"},
		{"too many", []fs.FileInfo{reg("a", 1), reg("b", 1), reg("c", 1), reg("d", 1), reg("e", 1)}, "holds 5 entries, more than the 4"},
		{"empty", nil, "holds no files"},
		{"only temporaries", []fs.FileInfo{reg(".x", 1)}, "holds no files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := distribute.CheckListing("dir", tc.entries, lim)
			var got string
			if err != nil {
				got = err.Error()
			} else {
				var names []string
				for _, f := range files {
					names = append(names, f.Name)
				}
				got = strings.Join(names, ",")
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
