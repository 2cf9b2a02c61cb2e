// Package tomlcap bounds what a TOML file may cost before BurntSushi/toml
// parses it. The decoder's memory grows with the square of a key's depth
// (every key keeps its full path, and each level of a nested inline table
// copies it again): 7 KiB of nested inline tables took 193 MiB. So a file
// is read only when it is a regular file no larger than a cap that fits
// real files, and parsed only when a cheap scan finds no key deeper than
// MaxDepth; below both, any input parses in a few MiB (see the fuzz
// targets of the packages that use it).
package tomlcap

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/certkeeper/certkeeper/platform"
)

// Limits are what one kind of file may hold. Bytes and Depth are chosen
// together: the decoder's allocations grow with both, and the pair keeps
// the worst input of that size and depth under MaxAlloc (TestWorst and
// the fuzz targets of the packages that read each kind measure it).
type Limits struct {
	// Bytes is the largest file.
	Bytes int64
	// Depth is the deepest key path: a table header's components, the
	// dotted key's components and each level of inline table or array
	// below it, added up ([[bundle]] env.X is 2).
	Depth int
}

// MaxAlloc is what parsing any file within its Limits may allocate.
const MaxAlloc = 50 << 20

// ErrLimit matches (errors.Is) every error for a file beyond a limit.
var ErrLimit = errors.New("beyond certkeeper's limit")

type limitError struct{ msg string }

func (e *limitError) Error() string        { return e.msg }
func (e *limitError) Is(target error) bool { return target == ErrLimit }

func beyond(format string, a ...any) error { return &limitError{fmt.Sprintf(format, a...)} }

// ReadFile reads a file of the kind what ("config", "inventory") when it
// is a regular file of at most max bytes. It opens without blocking, so a
// FIFO, a device or a directory put in a file's place is refused at once
// rather than hanging the reader.
func ReadFile(what, path string, lim Limits) ([]byte, error) {
	max := lim.Bytes
	f, err := openNonblock(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s); the %s must be a regular file", path, platform.FileType(fi.Mode()), what)
	}
	if fi.Size() > max {
		return nil, beyond("%s: %d bytes, larger than the %s limit for %s files", path, fi.Size(), Size(max), what)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if int64(len(data)) > max {
		return nil, beyond("%s: larger than the %s limit for %s files (it grew while read)", path, Size(max), what)
	}
	if err := Check(what, path, data, lim); err != nil {
		return nil, err
	}
	return data, nil
}

// Size writes a byte count the way the limits are documented.
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// Check refuses data beyond the limits, naming the file, the line and
// the limit. Parse functions call it first, so data handed to them from
// elsewhere is bounded too.
func Check(what, path string, data []byte, lim Limits) error {
	if int64(len(data)) > lim.Bytes {
		return beyond("%s: %d bytes, larger than the %s limit for %s files", path, len(data), Size(lim.Bytes), what)
	}
	if d, line := Depth(data, lim.Depth); d > lim.Depth {
		return beyond("%s:%d: keys or tables nested deeper than the limit of %d levels for %s files", path, line, lim.Depth, what)
	}
	return nil
}

// Depth scans data for the deepest key path, counting outside strings and
// comments: a key below a table header is one deeper than the header's
// components, then each dot, "{" or "[" is one level more, back to the
// enclosing level at "," and to the header's at the end of a top-level
// line. Dots in values (1.5, a
// time's fraction) count too: the scan overestimates, never under. It
// stops once the depth passes stop, and returns it with its line.
func Depth(data []byte, stop int) (max, line int) {
	var (
		stack  []int // the depth at each open "{" or "["
		header int   // depth of the current [table]
		cur    = 1   // depth of a key written here
		ln     = 1
		bol    = true // only blanks since the line began
	)
	mark := func() bool {
		if cur > max {
			max, line = cur, ln
		}
		return max > stop
	}
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch c {
		case '\n':
			ln++
			bol = true
			if len(stack) == 0 {
				cur = header + 1
			}
			continue
		case ' ', '\t', '\r':
			continue
		case '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
			i--
			continue
		case '"', '\'':
			n, lines := skipString(data[i:])
			i += n - 1
			ln += lines
		case '.':
			cur++
		case '{':
			stack = append(stack, cur)
			cur++
		case '[':
			if bol && len(stack) == 0 {
				// A table header: its depth is its components'.
				cur, header = 1, 0
				for i+1 < len(data) && data[i+1] == '[' {
					i++
				}
				j := i + 1
				for ; j < len(data) && data[j] != ']' && data[j] != '\n'; j++ {
					switch data[j] {
					case '.':
						cur++
					case '"', '\'':
						n, _ := skipString(data[j:])
						j += n - 1
					}
					if mark() {
						return max, line
					}
				}
				header = cur
				cur++
				for j < len(data) && data[j] == ']' {
					j++
				}
				i = j - 1
				bol = false
				continue
			}
			stack = append(stack, cur)
			cur++
		case '}', ']':
			if n := len(stack); n > 0 {
				cur = stack[n-1]
				stack = stack[:n-1]
			}
		case ',':
			if n := len(stack); n > 0 {
				cur = stack[n-1] + 1
			}
		}
		bol = false
		if mark() {
			return max, line
		}
	}
	return max, line
}

// skipString returns the length of the string starting data (basic,
// literal, or their multi-line forms) and the newlines inside it; an
// unterminated string runs to the end (the parser reports it).
func skipString(data []byte) (n, lines int) {
	q := data[0]
	multi := len(data) >= 3 && data[1] == q && data[2] == q
	i := 1
	if multi {
		i = 3
	}
	for i < len(data) {
		c := data[i]
		switch {
		case c == '\\' && q == '"':
			i += 2
			continue
		case c == '\n':
			lines++
			if !multi {
				return i, lines - 1 // the newline ends the line, not the string
			}
		case c == q && !multi:
			return i + 1, lines
		case c == q && multi && i+2 < len(data) && data[i+1] == q && data[i+2] == q:
			i += 3
			for i < len(data) && data[i] == q { // """a"""" ends with quotes in the string
				i++
			}
			return i, lines
		}
		i++
	}
	return len(data), lines
}
