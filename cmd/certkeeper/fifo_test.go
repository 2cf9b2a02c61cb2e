//go:build unix

package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A FIFO given as an input is named as one, as the config and inventory
// errors name it, not "(p---------)".
func TestAFIFOInputIsNamed(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "node.crt")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	code, stdout, stderr := runIn("verify", fifo)
	if code != 1 || !strings.Contains(stdout+stderr, fifo+" is not a regular file (a FIFO)") {
		t.Errorf("exit %d:\n%s%s", code, stdout, stderr)
	}
}
