package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Every command returns an error; withErrors turns it into the exit code
// and the one message the admin sees (DESIGN.md: 0 success, 1 failure,
// 2 usage; check's own 0-3 travel as exitError, said already).
func TestWithErrorsMapsErrorsToExitCodes(t *testing.T) {
	c := &command{name: "install"}
	for _, tc := range []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"success", nil, 0, ""},
		{"a failure says the command and the reason", errors.New("flocker: node.crt: expired"), 1, "certkeeper install: flocker: node.crt: expired\n"},
		{"a wrapped failure too", fmt.Errorf("reading: %w", errors.New("no such file")), 1, "certkeeper install: reading: no such file\n"},
		{"a usage mistake points at --help", usagef("no files given"), 2, "certkeeper install: no files given\nRun `certkeeper install --help` for usage.\n"},
		{"an exit code already said is silent", exitError(3), 3, ""},
		{"WARNING from check is silent", exitError(1), 1, ""},
		{"help ends the command with 0", exitError(0), 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
			got := withErrors(c, func(context.Context, *env, []string) error { return tc.err })(context.Background(), e, nil)
			if got != tc.code || errOut.String() != tc.stderr || out.Len() != 0 {
				t.Errorf("exit %d, stderr %q, stdout %q; want exit %d, stderr %q", got, errOut.String(), out.String(), tc.code, tc.stderr)
			}
		})
	}
}
