//go:build !unix

package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Supported reports whether the demo runs on this system: it needs Unix
// signals (the daemons reload on SIGHUP) and process groups.
const Supported = false

var errUnsupported = errors.New("certkeeper demo runs on Linux and macOS: its daemons reload on SIGHUP, which Windows does not have")

// Run reports that the demo does not run here.
func Run(context.Context, Options) (Summary, error) { return Summary{}, errUnsupported }

// Daemon reports that the demo's daemon does not run here.
func Daemon(_ context.Context, _ []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, errUnsupported)
	return 1
}
