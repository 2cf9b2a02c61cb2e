// Package msgs holds one of each way certkeeper makes a message, for
// TestMessages. It is not built (testdata).
package msgs

import (
	"errors"
	"fmt"
	"os"
)

var errPlain = errors.New("no CA here")

type problem struct{ Reason, Hint string }

type logger interface{ Warn(string, ...any) }

func usageError(c int, format string, args ...any) int { return c }

func fail(file, reason, hint string) {}

func all(log logger, name string, err error) error {
	usageError(2, "--dir DIR is required")
	fail("f", "key does not match", "take both from the same issue")
	_ = problem{Reason: fmt.Sprintf("a second key (the first is in %s)", name), Hint: "remove one"}
	log.Warn("fetch from the source failed", "err", err)
	fmt.Fprintf(os.Stderr, "certkeeper: unknown command %q\n", name)
	_ = fmt.Errorf("node %s: %w", name, err)    // a wrapper
	_ = fmt.Errorf("%s: %w", name, err)         // a wrapper
	_ = fmt.Sprintf("sftp://%s@%s", name, name) // a token
	_ = errors.New("missing: id; it comes from <ca-dir>/nodes/<id>/")
	_ = fmt.Errorf("100%% of %d files; key %q is "+name+" bytes", 3, name)
	return errPlain
}
