// Package doctest runs the guides in docs/ the way a new admin follows
// them: each fenced block in order, on simulated machines (a private mount,
// UTS and network namespace each, over the real file system), with the
// real certkeeper package, a real OpenSSH sshd per machine, real files.
//
// The conventions a guide follows are in docs/README.md ("How the guides
// are tested"). In short:
//
//   - a ```sh block whose first line is "# on MACHINE" runs, as root, in a
//     fresh bash (errexit, pipefail) in /root on that machine; "# on node1
//     and node2" runs it on both. "(skipped by the doc test: REASON)" on
//     that line skips it, and the test log says so;
//   - any other block whose first line is "# /abs/path on MACHINE" (or
//     "# inventory: /abs/path on MACHINE") is written to that file, as an
//     admin would with an editor;
//   - every other block (console, text, toml without such a line) is an
//     example and does not run.
//
// Pure parts (this file) are tested on their own; the machines are in
// machine_linux.go and the systemctl stand-in in systemctl.go.
package doctest

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"unicode"
)

// Block is one fenced code block of a Markdown file.
type Block struct {
	File string
	Line int    // line of the opening fence, from 1
	Lang string // first word of the info string: "sh", "toml", ""
	Text string // the content, without the fences, dedented like the fence
}

// Blocks returns the fenced code blocks of a Markdown document in order.
// Fences are ``` or ~~~ (three or more), indented by any amount (blocks
// inside list items); a block ends at a closing fence of the same kind
// at least as long, or at the end of the document.
func Blocks(file string, data []byte) []Block {
	var out []Block
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		indent, fence, info, ok := openFence(lines[i])
		if !ok {
			continue
		}
		b := Block{File: file, Line: i + 1, Lang: firstWord(info)}
		var body []string
		for i++; i < len(lines); i++ {
			if closesFence(lines[i], fence) {
				break
			}
			body = append(body, dedent(lines[i], indent))
		}
		if len(body) > 0 {
			b.Text = strings.Join(body, "\n") + "\n"
		}
		out = append(out, b)
	}
	return out
}

func openFence(line string) (indent int, fence, info string, ok bool) {
	trimmed := strings.TrimLeft(line, " ")
	indent = len(line) - len(trimmed)
	for _, c := range []byte{'`', '~'} {
		n := 0
		for n < len(trimmed) && trimmed[n] == c {
			n++
		}
		if n < 3 {
			continue
		}
		info = strings.TrimSpace(trimmed[n:])
		if c == '`' && strings.Contains(info, "`") {
			return 0, "", "", false // an inline code span, not a fence
		}
		return indent, trimmed[:n], info, true
	}
	return 0, "", "", false
}

func closesFence(line, fence string) bool {
	t := strings.TrimSpace(line)
	return len(t) >= len(fence) && strings.Trim(t, fence[:1]) == "" && t[0] == fence[0]
}

func dedent(line string, n int) string {
	for i := 0; i < n && len(line) > 0 && line[0] == ' '; i++ {
		line = line[1:]
	}
	return line
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return strings.Trim(f[0], "{}.")
	}
	return ""
}

// StepKind says what the harness does with a block.
type StepKind int

const (
	Example StepKind = iota // shown, not run
	Run                     // a shell block run on machines
	File                    // written to Path on machines
	Skip                    // a shell block the doc test cannot run, with a reason
)

// Step is a block read as an instruction.
type Step struct {
	Block
	Kind     StepKind
	Machines []string // "admin", "node1", …
	Path     string   // for File
	Reason   string   // for Skip
}

var (
	onLine   = regexp.MustCompile(`^#\s+on\s+(.+)$`)
	fileLine = regexp.MustCompile(`^#\s+(?:(?:inventory|fragment):\s+)?(/\S+)\s+on\s+(.+)$`)
	skipNote = regexp.MustCompile(`\(skipped by the doc test: ([^)]+)\)`)
	machine  = regexp.MustCompile(`^(?:the\s+)?(admin host|[a-z][a-z0-9-]*)$`)
)

// shellLangs run; everything but these and the file-writing blocks is an
// example.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true}

// ParseStep reads a block's first line. A shell block must say where it
// runs; an error says which block and what is missing, so a guide can not
// have a shell block that silently never runs.
func ParseStep(b Block) (Step, error) {
	s := Step{Block: b}
	first, _, _ := strings.Cut(b.Text, "\n")
	first = strings.TrimSpace(first)
	if shellLangs[b.Lang] {
		m := onLine.FindStringSubmatch(first)
		if m == nil {
			return s, fmt.Errorf(`%s:%d: a %s block in a tested guide starts with "# on MACHINE" (the admin host, node1, …); this one starts with %q`, b.File, b.Line, b.Lang, first)
		}
		rest := m[1]
		if r := skipNote.FindStringSubmatch(rest); r != nil {
			s.Kind, s.Reason = Skip, strings.TrimSpace(r[1])
			rest = strings.TrimSpace(skipNote.ReplaceAllString(rest, ""))
		} else {
			s.Kind = Run
		}
		ms, err := machines(rest)
		if err != nil {
			return s, fmt.Errorf("%s:%d: %v", b.File, b.Line, err)
		}
		s.Machines = ms
		return s, nil
	}
	switch b.Lang {
	case "console", "text", "output", "":
		return s, nil
	}
	if m := fileLine.FindStringSubmatch(first); m != nil {
		ms, err := machines(m[2])
		if err != nil {
			return s, fmt.Errorf("%s:%d: %v", b.File, b.Line, err)
		}
		s.Kind, s.Path, s.Machines = File, m[1], ms
	}
	return s, nil
}

// machines parses "the admin host", "node1", "node1 and node2", with any
// commentary after a comma.
func machines(s string) ([]string, error) {
	s, _, _ = strings.Cut(s, ",")
	s, _, _ = strings.Cut(s, " (")
	var out []string
	for _, part := range strings.Split(s, " and ") {
		part = strings.TrimSpace(part)
		m := machine.FindStringSubmatch(part)
		if m == nil {
			return nil, fmt.Errorf(`%q is not a machine name: write "the admin host" or a short name such as node1`, part)
		}
		name := m[1]
		if name == "admin host" {
			name = "admin"
		}
		out = append(out, name)
	}
	return out, nil
}

// Slug is GitHub's anchor for a heading: lower case, letters, digits,
// spaces, hyphens and underscores kept (code spans' backticks and other
// punctuation dropped), spaces made hyphens.
func Slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Anchors lists the anchors of a Markdown document's headings (outside
// code blocks), numbering repeats as GitHub does ("x", "x-1").
func Anchors(data []byte) map[string]bool {
	out := map[string]bool{}
	count := map[string]int{}
	inFence := ""
	for _, line := range strings.Split(string(data), "\n") {
		if _, fence, _, ok := openFence(line); ok && inFence == "" {
			inFence = fence
			continue
		} else if inFence != "" {
			if closesFence(line, inFence) {
				inFence = ""
			}
			continue
		}
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "#") {
			continue
		}
		h := strings.TrimLeft(t, "#")
		if h == "" || h[0] != ' ' {
			continue
		}
		s := Slug(h)
		if n := count[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		count[s]++
	}
	return out
}

var link = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// Links returns the targets of a document's Markdown links, with their
// lines, outside code blocks and code spans.
func Links(data []byte) map[string][]int {
	out := map[string][]int{}
	inFence := ""
	for i, line := range strings.Split(string(data), "\n") {
		if _, fence, _, ok := openFence(line); ok && inFence == "" {
			inFence = fence
			continue
		} else if inFence != "" {
			if closesFence(line, inFence) {
				inFence = ""
			}
			continue
		}
		for _, span := range CodeSpans(line) {
			line = strings.Replace(line, span, "", 1)
		}
		for _, m := range link.FindAllStringSubmatch(line, -1) {
			out[m[1]] = append(out[m[1]], i+1)
		}
	}
	return out
}

// LoadSteps reads a guide's blocks as steps; an error names the block.
func LoadSteps(path, name string) ([]Step, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var steps []Step
	for _, b := range Blocks(name, data) {
		s, err := ParseStep(b)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// StepMachines lists the machines steps use, in order of first use (the
// admin host first).
func StepMachines(steps []Step) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range steps {
		for _, m := range s.Machines {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	for i, m := range out {
		if m == "admin" {
			out = append([]string{"admin"}, append(out[:i:i], out[i+1:]...)...)
			break
		}
	}
	return out
}
