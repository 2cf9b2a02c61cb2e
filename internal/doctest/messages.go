package doctest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The error messages certkeeper prints, read from its source: what
// docs/troubleshooting.md must explain. A message is found where the code
// makes one, whatever the build tags:
//
//   - fmt.Errorf(FORMAT, …), errors.New(TEXT);
//   - fmt.Sprintf(FORMAT, …) (reasons, status texts);
//   - a call to a function of the same package whose parameters include
//     one named format, reason, msg, text or hint (usageError, the
//     config's error helper, the validator's fail, status's worse);
//   - a Msg, Reason, Hint, HealthText or Problem field, in a composite literal
//     (ConfigError{Msg: …}, Problem{Reason: …}) or an assignment;
//   - a logger's Error or Warn call with a literal first argument (the
//     agent's log lines);
//   - fmt.Fprint(f|ln)(e.stderr, …) in the command-line package.
//
// Each is reduced to a Skeleton: the text with every formatting verb,
// every computed part and every <placeholder> replaced by "…". Context
// prefixes that only wrap another error ("node %s: %w", "%s: %w") are not
// messages of their own. The validator's hints, printed after their
// reason in parentheses, count as messages: the docs quote them with it.

// Message is one place the code makes an error message.
type Message struct {
	Skeleton string
	Pos      string // file:line
	Kind     string // "error", "log", "usage", "output"
}

var verb = regexp.MustCompile(`%[-+# 0]*(\[\d+\])?(\*|\d+)?(\.(\*|\d+))?(\[\d+\])?[a-zA-Z]`)

// Skeleton turns a format string into the form the docs quote: verbs (and
// computed parts, already "…") become "…", "%%" becomes "%", spaces are
// collapsed.
func Skeleton(format string) string {
	s := strings.ReplaceAll(format, "%%", "\x00")
	s = verb.ReplaceAllString(s, "…")
	s = strings.ReplaceAll(s, "\x00", "%")
	return normalize(s)
}

var placeholder = regexp.MustCompile(`<[a-zA-Z][^<>]*>`)

// normalize makes <placeholders> "…" and collapses white space, the same
// on both sides (the code has literal <ca-dir> in places, the docs <file>).
func normalize(s string) string {
	s = placeholder.ReplaceAllString(s, "…")
	return strings.Join(strings.Fields(s), " ")
}

// DocSkeleton turns a message as quoted in the docs, with placeholders in
// angle brackets ("<file>: no leaf certificate (<files>)") or "…", into a
// Skeleton.
func DocSkeleton(quote string) string { return normalize(quote) }

// IsWrapper says whether a skeleton only adds context to another error or
// formats a token: no words; no spaces at all (a URL, a key name); a
// fragment appended to another message ("; …"); at most two words before
// a value ("node …", "RSA …"); or at most three words ending in a wrapped
// error (": …") or an index ("]").
func IsWrapper(skel string) bool {
	words := 0
	for _, f := range strings.FieldsFunc(skel, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r == '-')
	}) {
		if len(f) >= 2 {
			words++
		}
	}
	switch {
	case words == 0, !strings.ContainsAny(skel, " \t\n"), strings.HasPrefix(skel, ";"):
		return true
	case words <= 2 && strings.HasSuffix(skel, "…"):
		return true
	case words <= 3:
		return strings.HasSuffix(skel, ": …") || strings.HasSuffix(skel, "]")
	}
	return false
}

// messageParams are parameter names that carry a message.
var messageParams = map[string]bool{"format": true, "reason": true, "msg": true, "text": true, "hint": true}

// messageFields are struct fields that carry a message.
var messageFields = map[string]bool{"Msg": true, "Reason": true, "Hint": true, "HealthText": true, "Problem": true}

// Messages extracts the messages of the Go packages in dirs (non-test
// files; every build tag). Positions are relative to root.
func Messages(root string, dirs []string) ([]Message, error) {
	var out []Message
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(root, d, "*.go"))
		if err != nil {
			return nil, err
		}
		fset := token.NewFileSet()
		var parsed []*ast.File
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				return nil, err
			}
			parsed = append(parsed, af)
		}
		// Functions of this package that take a message parameter, and
		// which argument it is.
		takes := map[string][]int{}
		for _, af := range parsed {
			for _, decl := range af.Decls {
				fd, ok := decl.(*ast.FuncDecl)
				if !ok {
					continue
				}
				i := 0
				for _, field := range fd.Type.Params.List {
					names := field.Names
					if len(names) == 0 {
						i++
						continue
					}
					for _, n := range names {
						if messageParams[n.Name] {
							takes[fd.Name.Name] = append(takes[fd.Name.Name], i)
						}
						i++
					}
				}
			}
		}
		for _, af := range parsed {
			ast.Inspect(af, func(n ast.Node) bool {
				add := func(e ast.Expr, kind string) {
					text, ok := literal(e)
					if !ok {
						return
					}
					p := fset.Position(e.Pos())
					rel, _ := filepath.Rel(root, p.Filename)
					out = append(out, Message{Skeleton: Skeleton(text), Pos: fmt.Sprintf("%s:%d", rel, p.Line), Kind: kind})
				}
				switch x := n.(type) {
				case *ast.CallExpr:
					name, recv := callee(x)
					switch {
					case recv == "fmt" && name == "Errorf" && len(x.Args) > 0,
						recv == "errors" && name == "New" && len(x.Args) == 1:
						add(x.Args[0], "error")
					case recv == "fmt" && (name == "Fprintf" || name == "Fprintln" || name == "Fprint") && len(x.Args) > 1 && isStderr(x.Args[0]):
						add(x.Args[1], "output")
					case recv == "fmt" && name == "Sprintf" && len(x.Args) > 0:
						add(x.Args[0], "text")
					case recv != "" && recv != "fmt" && (name == "Error" || name == "Warn") && len(x.Args) > 0:
						add(x.Args[0], "log")
					default:
						if recv == "fmt" {
							break
						}
						for _, i := range takes[name] {
							if i < len(x.Args) {
								add(x.Args[i], "error")
							}
						}
					}
				case *ast.KeyValueExpr:
					if k, ok := x.Key.(*ast.Ident); ok && messageFields[k.Name] {
						add(x.Value, "error")
					}
				case *ast.AssignStmt:
					for i, l := range x.Lhs {
						if sel, ok := l.(*ast.SelectorExpr); ok && messageFields[sel.Sel.Name] && i < len(x.Rhs) {
							add(x.Rhs[i], "text")
						}
					}
				}
				return true
			})
		}
	}
	// One entry per skeleton, at its first position; wrappers and empty
	// strings dropped.
	seen := map[string]bool{}
	var uniq []Message
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pos < out[j].Pos })
	for _, m := range out {
		if m.Skeleton == "" || m.Skeleton == "…" || IsWrapper(m.Skeleton) || seen[m.Skeleton] {
			continue
		}
		seen[m.Skeleton] = true
		uniq = append(uniq, m)
	}
	return uniq, nil
}

func callee(c *ast.CallExpr) (name, recv string) {
	switch f := c.Fun.(type) {
	case *ast.Ident:
		return f.Name, ""
	case *ast.SelectorExpr:
		switch x := f.X.(type) {
		case *ast.Ident:
			return f.Sel.Name, x.Name
		default:
			return f.Sel.Name, "?"
		}
	}
	return "", ""
}

func isStderr(e ast.Expr) bool {
	s, ok := e.(*ast.SelectorExpr)
	return ok && s.Sel.Name == "stderr" || ok && s.Sel.Name == "Stderr"
}

// literal evaluates a string literal or a concatenation of them; computed
// parts become "%v" (and so "…" in the skeleton). It reports false when
// no part is literal.
func literal(e ast.Expr) (string, bool) {
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(x.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if x.Op != token.ADD {
			return "", false
		}
		l, lok := literal(x.X)
		r, rok := literal(x.Y)
		if !lok && !rok {
			return "", false
		}
		if !lok {
			l = "%v"
		}
		if !rok {
			r = "%v"
		}
		return l + r, true
	case *ast.ParenExpr:
		return literal(x.X)
	}
	return "", false
}

// DocQuotes returns the messages quoted in a troubleshooting document, by
// skeleton, with their line. An entry is a list item whose first line is
// only a code span ("- `message` \"), followed by more lines that are only
// a code span (other messages with the same fix), then the explanation.
func DocQuotes(data []byte) map[string]int {
	out := map[string]int{}
	inItem := false
	for i, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "- "):
			t, inItem = strings.TrimSpace(t[2:]), true
		case !inItem:
			continue
		}
		spans, ok := quoteLine(t)
		if !ok {
			inItem = false
			continue
		}
		for _, span := range spans {
			out[DocSkeleton(span)] = i + 1
		}
	}
	return out
}

// quoteLine reports whether a line is nothing but code spans (and a
// trailing backslash, Markdown's line break), and returns them.
func quoteLine(t string) ([]string, bool) {
	t = strings.TrimSpace(strings.TrimSuffix(t, "\\"))
	if !strings.HasPrefix(t, "`") {
		return nil, false
	}
	spans := CodeSpans(t)
	rest := t
	for _, s := range spans {
		i := strings.Index(rest, s)
		if i < 0 {
			return nil, false
		}
		rest = rest[:i] + rest[i+len(s):]
	}
	if strings.Trim(rest, "` ") != "" {
		return nil, false
	}
	return spans, len(spans) > 0
}

// CodeSpans returns the code spans of a line of Markdown: a run of n
// backticks opens one, the next run of exactly n closes it, and one space
// is stripped from each end when both are there (so “ `a` “ quotes a
// backtick). An unclosed run is text.
func CodeSpans(line string) []string {
	var out []string
	for i := 0; i < len(line); {
		if line[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(line) && line[i+n] == '`' {
			n++
		}
		start := i + n
		j, closed := start, false
		for j < len(line) {
			if line[j] != '`' {
				j++
				continue
			}
			m := 0
			for j+m < len(line) && line[j+m] == '`' {
				m++
			}
			if m == n {
				closed = true
				break
			}
			j += m
		}
		if !closed {
			i = start
			continue
		}
		s := line[start:j]
		if len(s) >= 2 && s[0] == ' ' && s[len(s)-1] == ' ' && strings.Trim(s, " ") != "" {
			s = s[1 : len(s)-1]
		}
		out = append(out, s)
		i = j + n
	}
	return out
}

// ReadMessages is Messages over certkeeper's packages, from the module
// root.
func ReadMessages(root string) ([]Message, error) {
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return nil, fmt.Errorf("%s is not the module root: %w", root, err)
	}
	return Messages(root, []string{"cmd/certkeeper", "agent", "rotate", "pki", "distribute", "authority", "fleet", "platform", "demo", "internal/mtlsdaemon", "internal/tomlcap"})
}
