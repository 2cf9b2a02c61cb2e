package doctest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestTroubleshooting keeps docs/troubleshooting.md honest in both
// directions, by the messages' skeletons (the text with what varies as
// "…"), read from the source with go/ast (messages.go):
//
//   - every message the code makes is quoted on the page, so a new error
//     comes with its explanation;
//   - every message the page quotes is still made by the code, so the page
//     does not rot when a message is reworded or removed.
//
// A failure prints what to paste (a new message, with where it is made)
// or what to remove (the page's line).
func TestTroubleshooting(t *testing.T) {
	root := repo()
	msgs, err := ReadMessages(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 200 {
		t.Fatalf("only %d messages found in the source: is the extractor broken?", len(msgs))
	}
	page := filepath.Join(root, "docs", "troubleshooting.md")
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	quoted := DocQuotes(data)
	code := map[string]Message{}
	var missing []string
	for _, m := range msgs {
		code[m.Skeleton] = m
		if _, ok := quoted[m.Skeleton]; !ok {
			missing = append(missing, fmt.Sprintf("%s (%s)\n- %s", m.Pos, m.Kind, quote(m.Skeleton)))
		}
	}
	var stale []string
	for q, line := range quoted {
		if _, ok := code[q]; !ok {
			stale = append(stale, fmt.Sprintf("docs/troubleshooting.md:%d: %s", line, quote(q)))
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 {
		t.Errorf("%d messages the code prints are not in docs/troubleshooting.md; add each with its cause and fix:\n%s",
			len(missing), strings.Join(missing, "\n"))
	}
	if len(stale) > 0 {
		t.Errorf("%d messages docs/troubleshooting.md quotes are no longer made by the code; update or remove them:\n%s",
			len(stale), strings.Join(stale, "\n"))
	}
	t.Logf("%d messages in the code, %d quoted on the page", len(code), len(quoted))
}

// quote writes a skeleton as a Markdown code span.
func quote(s string) string {
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}
