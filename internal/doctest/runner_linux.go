//go:build linux

package doctest

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StepTimeout bounds one block on one machine; generous, since the
// machine running the tests is shared.
const StepTimeout = 3 * time.Minute

// Every block runs after this prelude: errexit, pipefail, and a trap that
// names the command that failed and its line in the block.
const prelude = "set -eo pipefail\n" +
	`trap 'rc=$?; echo "@@doctest-failed:$rc:$LINENO:$BASH_COMMAND" >&2' ERR` + "\n"

var preludeLines = strings.Count(execHeader+prelude, "\n")

var failedMarker = regexp.MustCompile(`(?m)^@@doctest-failed:(\d+):(\d+):(.*)$`)

// PrivateKeyMarker ends the first line of every PEM private key block
// ("-----BEGIN EC PRIVATE KEY-----"); no command's output and no log may
// hold one.
const PrivateKeyMarker = "PRIVATE KEY-----"

// Summary counts what a guide's run did.
type Summary struct {
	Ran, Wrote, Examples int
	Skipped              []string // "file:line: reason"
	Standins             int
}

// RunSteps follows a guide on the cluster. It stops at the first step
// that fails, naming the guide, the block, the machine and the command.
func (c *Cluster) RunSteps(t *testing.T, steps []Step) Summary {
	t.Helper()
	var sum Summary
	for i, s := range steps {
		where := fmt.Sprintf("%s:%d (block %d)", s.File, s.Line, i+1)
		switch s.Kind {
		case Example:
			sum.Examples++
			continue
		case Skip:
			// A subtest of its own, so `go test -v` lists it as SKIP with
			// the guide's reason.
			sum.Skipped = append(sum.Skipped, fmt.Sprintf("%s: %s", where, s.Reason))
			t.Run(fmt.Sprintf("%s:%d", s.File, s.Line), func(t *testing.T) {
				t.Skipf("on %s: %s", strings.Join(s.Machines, ", "), s.Reason)
			})
			continue
		}
		for _, name := range s.Machines {
			m := c.Machines[name]
			if m == nil {
				t.Fatalf("%s: no machine %q", where, name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), StepTimeout)
			start := time.Now()
			var out string
			var err error
			if s.Kind == File {
				out, err = c.Exec(ctx, m, "set -e\nmkdir -p "+shq(filepath.Dir(s.Path))+"\ncat > "+shq(s.Path), s.Text)
				sum.Wrote++
				t.Logf("WRITE %s: %s on %s", where, s.Path, name)
			} else {
				out, err = c.Exec(ctx, m, prelude+s.Text, "yes\n")
				sum.Ran++
				t.Logf("RUN %s on %s (%s):\n%s", where, name, time.Since(start).Round(time.Millisecond), indent(out))
			}
			if ctx.Err() != nil {
				err = fmt.Errorf("the block did not finish within %v", StepTimeout)
			}
			cancel()
			for _, n := range c.Standins(m) {
				sum.Standins++
				t.Logf("    stand-in on %s: %s", name, n)
			}
			if err != nil {
				t.Fatalf("%s failed on %s: %s\n%s", where, name, describeFailure(s, out, err), indent(out))
			}
			if strings.Contains(out, PrivateKeyMarker) {
				t.Errorf("%s on %s printed a private key (invariant 3: keys are never printed)", where, name)
			}
		}
	}
	return sum
}

// describeFailure names the command that failed and its line in the
// Markdown file, from the trap's marker.
func describeFailure(s Step, out string, err error) string {
	m := failedMarker.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return err.Error()
	}
	last := m[len(m)-1]
	line, _ := strconv.Atoi(last[2])
	return fmt.Sprintf("line %d: `%s` exited %s", s.Line+line-preludeLines, last[3], last[1])
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
