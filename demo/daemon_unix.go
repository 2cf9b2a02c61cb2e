//go:build unix

package demo

import (
	"context"
	"io"

	"github.com/certkeeper/certkeeper/internal/mtlsdaemon"
)

// Daemon runs the demo's stand-in for a cluster daemon (`certkeeper demo
// daemon`): mutual TLS with a bundle's files, re-read on SIGHUP, until
// ctx ends. It returns the exit code.
func Daemon(ctx context.Context, args []string, stderr io.Writer) int {
	return mtlsdaemon.Main(ctx, "certkeeper demo daemon", args, stderr)
}
