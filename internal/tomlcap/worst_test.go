package tomlcap_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/certkeeper/certkeeper/internal/tomlcap"
)

// The worst inputs at a pair of limits decode within MaxAlloc, and one
// level deeper is refused by the scan before any decoding.
func TestWorst(t *testing.T) {
	for _, lim := range []tomlcap.Limits{{Bytes: 128 << 10, Depth: 6}, {Bytes: 192 << 10, Depth: 3}, {Bytes: 64 << 10, Depth: 3}} {
		for name, data := range tomlcap.Worst(lim) {
			if err := tomlcap.Check("test", name, data, lim); err != nil {
				t.Fatalf("%v", err)
			}
			var err error
			start := time.Now()
			alloc := tomlcap.Alloc(func() {
				var v map[string]any
				_, err = toml.Decode(string(data), &v)
			})
			t.Logf("%s %d levels %-6s: %.1f MiB in %v", tomlcap.Size(lim.Bytes), lim.Depth, name, float64(alloc)/(1<<20), time.Since(start).Round(time.Millisecond))
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if alloc > tomlcap.MaxAlloc {
				t.Errorf("%s at %+v: %d MiB allocated", name, lim, alloc>>20)
			}
			deeper := tomlcap.Worst(tomlcap.Limits{Bytes: lim.Bytes, Depth: lim.Depth + 1})[name]
			if name != "flat" && name != "wide" {
				if err := tomlcap.Check("test", name, deeper, lim); !errors.Is(err, tomlcap.ErrLimit) || !strings.Contains(err.Error(), "deeper than the limit") {
					t.Errorf("%s one level deeper: %v", name, err)
				}
			}
		}
	}
}

// The scan counts what the decoder nests, and nothing inside strings or
// comments.
func TestDepth(t *testing.T) {
	for in, want := range map[string]int{
		"a = 1":                          1,
		"a.b.c = 1":                      3,
		"[a.b]\nc = 1":                   3,
		"[a.b]\nc = 1\n[d]\ne = 1":       3,
		"[[bundle]]\nenv.X = \"a.b.c\"":  3,
		"a = {b = {c = 1}}":              3,
		"a = [[1], [2], [3]]":            3,
		"a = [1, 2, 3, 4]":               2,
		"a = {b = 1, c = 2, d = 3}":      2,
		"a = \"{{{{{{{{{\"":              1,
		"a = '[[[[[[[[['":                1,
		"a = \"\"\"\n{{{{\n[[[[\n\"\"\"": 1,
		"# {{{{{{{{{{{{\na = 1":          1,
		"\"a.b.c\" = 1":                  1,
		"a = 1.5":                        2, // a value's dot counts: over, never under
	} {
		if got, _ := tomlcap.Depth([]byte(in), 100); got != want {
			t.Errorf("Depth(%q) = %d, want %d", in, got, want)
		}
	}
}

func FuzzDepth(f *testing.F) {
	f.Add([]byte("a = {b = [1, {c = 2}]}\n[x.y]\nz.w = 'q'"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, _ := tomlcap.Depth(data, 1<<30)
		if d < 0 {
			t.Fatal(d)
		}
	})
}

// BenchmarkWorst times the decoder on the worst inputs at each file
// kind's limits (config, inventory, ca.toml): each must stay under a
// second. go test -bench Worst -benchtime 3x ./internal/tomlcap/
func BenchmarkWorst(b *testing.B) {
	for _, lim := range []tomlcap.Limits{{Bytes: 128 << 10, Depth: 6}, {Bytes: 192 << 10, Depth: 3}, {Bytes: 64 << 10, Depth: 3}} {
		for name, data := range tomlcap.Worst(lim) {
			b.Run(tomlcap.Size(lim.Bytes)+"-"+name, func(b *testing.B) {
				for b.Loop() {
					var v map[string]any
					if _, err := toml.Decode(string(data), &v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
